//! Embeds the migrations: `$OUT_DIR/migrations.rs` lists every file of `migrations/postgres`
//! and `migrations/sqlite` with its text (`include_str!`), for `db::migrate` to turn into
//! sqlx migrations at start. Cargo rebuilds when a migration is added or changed.
use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut code = String::new();
    for backend in ["postgres", "sqlite"] {
        let dir = root.join(backend);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        writeln!(
            code,
            "pub const {}: &[(&str, &str)] = &[",
            backend.to_uppercase()
        )
        .unwrap();
        for path in files {
            let name = path.file_name().unwrap().to_str().unwrap();
            writeln!(
                code,
                "    ({name:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
        code.push_str("];\n");
    }
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("migrations.rs");
    std::fs::write(out, code).unwrap();
}
