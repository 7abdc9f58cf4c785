//! Helpers for the tests that drive gRPC's own xDS implementation (Python `grpcio`, run by the
//! interop venv's interpreter) against our control plane: `grpcio_interop.rs` (grpcio's xDS
//! client) and `grpcio_server_interop.rs` (grpcio's xDS server).

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Result};
use tokio::{io::AsyncReadExt, process::Child};

/// How to get an interpreter, for error messages.
pub const VENV_HELP: &str = "create it at the workspace root with \
    `python3 -m venv .venv-interop && .venv-interop/bin/pip install grpcio==1.85.1` \
    (or point MESH_INTEROP_PYTHON at a python with grpcio; MESH_SKIP_INTEROP=1 skips this test)";

/// The workspace root (where `.venv-interop` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate is inside the workspace")
        .to_path_buf()
}

/// The interop interpreter: `$MESH_INTEROP_PYTHON`, else `.venv-interop/bin/python` at the
/// workspace root (`.ci/run` creates it); `None` when there is none and `MESH_SKIP_INTEROP=1`
/// (the skip is announced on stderr), an error when there is none otherwise.
pub fn python(what: &str) -> Result<Option<PathBuf>> {
    if let Some(p) = std::env::var_os("MESH_INTEROP_PYTHON") {
        let p = PathBuf::from(p);
        ensure!(
            p.exists(),
            "MESH_INTEROP_PYTHON={} does not exist",
            p.display()
        );
        return Ok(Some(p));
    }
    let venv = workspace_root().join(".venv-interop/bin/python");
    if venv.exists() {
        return Ok(Some(venv));
    }
    if std::env::var("MESH_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!(
            "\n======== SKIPPED: {what} (MESH_SKIP_INTEROP=1; no {}) ========\n",
            venv.display()
        );
        return Ok(None);
    }
    bail!("no interop python at {}: {VENV_HELP}", venv.display())
}

/// Reads the child's stderr to the end in the background (so it never blocks on a full pipe);
/// the text, to show when a run fails.
pub fn drain_stderr(child: &mut Child) -> tokio::task::JoinHandle<String> {
    let err = child.stderr.take();
    tokio::spawn(async move {
        let mut s = String::new();
        if let Some(mut err) = err {
            let _ = err.read_to_string(&mut s).await;
        }
        s
    })
}
