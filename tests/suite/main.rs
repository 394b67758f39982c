//! Every integration test of shop, in one test binary: the helpers (`common`) and the
//! dependencies are compiled and linked once, not once per file. Each module is one
//! concern; its heavy tests are `#[ignore]`d with the name of their tier, and tests/run
//! runs those module by module (`cargo test --test suite -- --ignored MODULE::`).
//!
//! A plain `cargo test` runs the fast tier (real PostgreSQL and SQLite, real processes)
//! and lists the heavy tiers as ignored.

#[path = "../common/mod.rs"]
#[macro_use]
mod common;

mod accounts;
mod ansible;
mod attacks;
mod backup;
mod bench;
mod browser;
mod caching;
mod cli;
mod consistency;
mod items;
mod layout;
mod nginx;
mod orders;
mod package;
mod platforms;
mod resilience;
mod several_hosts;
mod systemd_host;
mod systemd_runtime;
mod systemd_units;
