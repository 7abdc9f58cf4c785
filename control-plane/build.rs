//! Generates the tonic server (and client, for tests and tools) for `proto/ca.proto` without
//! `protoc`: `protox` (pure Rust) compiles it to a `FileDescriptorSet`, which
//! `tonic-prost-build` turns into `$OUT_DIR/istio.v1.auth.rs`, included by `src/ca/server.rs`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", dir.join("ca.proto").display());
    let fds = protox::compile(["ca.proto"], [&dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
