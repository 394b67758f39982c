//! shop: a small items shop web service. `main.rs` wires the command line to `app`;
//! everything else is one module per concern.

pub mod access;
pub mod accounts;
pub mod admin;
pub mod app;
pub mod backup;
pub mod config;
pub mod db;
pub mod ids;
pub mod items;
pub mod money;
pub mod orders;
pub mod server;
pub mod systemd;
pub mod telemetry;
pub mod web;
