//! The migrations are embedded by `sqlx::migrate!`, which cargo does not know reads
//! `migrations/`: rebuild when a migration is added or changed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
