//! The Shouhu HTTP API and the `shouhu` binary's building blocks.
//!
//! * [`config`] — the configuration tree (defaults → TOML → `SHOUHU__…` environment).
//! * [`server`] — state, router, listeners, graceful shutdown.
//! * [`routes`] — one file per resource under `/api/v1`, with the OpenAPI document.
//! * [`auth`] — sessions, roles, passwords, signed media tokens.
//! * [`error`] — the one error → HTTP mapping.
//! * [`demo`] — seed data for `shouhu demo` and the benchmarks.
//! * [`simulate`] — simulated JT/T 808 terminals and phone apps (`shouhu simulate`).
//!
//! No SQL lives here: every query goes through `shouhu-storage` repositories.

#![forbid(unsafe_code)]

pub mod audit_seal;
pub mod auth;
pub mod bench;
pub mod bench_enforcement;
pub mod bench_live;
pub mod bench_positions;
pub mod bench_recording;
pub mod bench_sip;
pub mod calls;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod documents;
pub mod dto;
pub mod error;
pub mod extract;
pub mod http_server;
pub mod recording_export;
pub mod recording_jobs;
pub mod request_guard;
pub mod routes;
pub mod s3;
pub mod server;
pub mod simulate;
pub mod simulate_gb;
pub mod sip;
pub mod state;
pub mod subprocess;
pub mod tabular;
pub mod telemetry;
