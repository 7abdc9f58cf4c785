//! Helpers for the tests that drive gRPC's own xDS implementation (Python `grpcio`, run by the
//! interop venv's interpreter) against our control plane: `grpcio_interop.rs` (grpcio's xDS
//! client), `grpcio_server_interop.rs` (grpcio's xDS server) and `grpcio_mtls_interop.rs`
//! (both, with xDS security).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

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

/// A running interop script speaking one JSON object per line on stdin and stdout (the
/// protocol of `tests/interop/grpcio_xds_server.py`): commands in, events out, each read
/// bounded by `step`. Its stderr is drained in the background for failure reports; the
/// process is killed when this is dropped.
pub struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: Option<tokio::task::JoinHandle<String>>,
    step: Duration,
}

impl Script {
    /// Runs `tests/interop/<name>` with `python`, reads bounded by `step`.
    pub fn spawn(python: &Path, name: &str, step: Duration) -> Result<Script> {
        let script = workspace_root().join("tests/interop").join(name);
        let mut child = Command::new(python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("run {} {}", python.display(), script.display()))?;
        let stderr = drain_stderr(&mut child);
        Ok(Script {
            stdin: child.stdin.take(),
            lines: BufReader::new(child.stdout.take().context("stdout")?).lines(),
            stderr: Some(stderr),
            child,
            step,
        })
    }

    /// Sends one command line.
    pub async fn send(&mut self, v: Value) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin.write_all(format!("{v}\n").as_bytes()).await?;
        Ok(stdin.flush().await?)
    }

    /// The next JSON object the script prints, which must be `{"event": <event>, ...}`.
    /// Other lines (grpcio may log to stdout) are skipped.
    pub async fn next(&mut self, event: &str) -> Result<Value> {
        loop {
            let line = tokio::time::timeout(self.step, self.lines.next_line())
                .await
                .with_context(|| format!("no {event} from grpcio within {:?}", self.step))??
                .with_context(|| format!("grpcio script ended before {event}"))?;
            if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(&line) {
                ensure!(v["event"] == event, "wanted {event}, got {v}");
                return Ok(v);
            }
        }
    }

    /// Kills the script and returns what it wrote to stderr (for a failure report); waits at
    /// most 5 s for each.
    pub async fn kill(&mut self) -> String {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        match self.stderr.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        }
    }

    /// Closes stdin (the script stops its server and exits) and waits at most 10 s for it.
    pub async fn finish(mut self) {
        self.stdin = None;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
