//! Generates the tonic client and server for `proto/helloworld.proto` without `protoc`: the
//! proto is compiled to a `FileDescriptorSet` by `protox` (pure Rust), which
//! `tonic-prost-build` turns into `$OUT_DIR/helloworld.rs`, included by `src/greeter.rs`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("helloworld.proto").display()
    );
    let fds = protox::compile(["helloworld.proto"], [&dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
