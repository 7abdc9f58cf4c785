//! Helpers for the "never panics" tests: seeded mutation ([`mutate`]) and random routing
//! probes over compiled snapshots ([`probe`]).
//!
//! Included by `mesh-core/tests/never_panics.rs` and, through `#[path]`, by
//! `tests/tests/never_panics.rs`, so both crates mutate and probe the same way.

pub mod mutate;
pub mod probe;
