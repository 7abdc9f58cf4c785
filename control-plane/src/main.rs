//! `mesh-control-plane` binary (placeholder until the server lands).
fn main() {}
