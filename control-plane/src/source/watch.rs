//! Hot reload of a config directory: `notify` events (debounced) plus a slow poll fallback (for
//! file systems without change events), both reduced to "the directory's content hash changed".
//!
//! Each changed content is loaded with [`load_sources`] and handed to the
//! callback, which decides what to do with an error (the control plane keeps its last good config).

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{load_sources, read_dir_files, ConfigError, MeshConfig, Warning};

/// The result of one load attempt.
pub type LoadResult = Result<(MeshConfig, Vec<Warning>), ConfigError>;

/// How the directory is watched.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Quiet time after a change event before reloading (editors write in bursts).
    pub debounce: Duration,
    /// Poll interval of the fallback that re-reads the directory.
    pub poll_interval: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(50),
            poll_interval: Duration::from_secs(2),
        }
    }
}

/// Reads `dir` once: its content fingerprint and the load result.
pub(crate) async fn read_and_load(dir: PathBuf) -> (Option<String>, LoadResult) {
    let read = tokio::task::spawn_blocking(move || read_dir_files(&dir)).await;
    let files = match read {
        Ok(Ok(files)) => files,
        Ok(Err(e)) => return (None, Err(e)),
        Err(join) => {
            return (
                None,
                Err(ConfigError::Io {
                    path: PathBuf::new(),
                    message: format!("reader task failed: {join}"),
                }),
            )
        }
    };
    let mut hasher = Sha256::new();
    for (name, text) in &files {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    let fingerprint = crate::cache::hex(&hasher.finalize()[..16]);
    let result = load_sources(files.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    (Some(fingerprint), result)
}

/// Watches `dir` until `shutdown` becomes true, calling `on_load` whenever the directory's
/// content differs from what was last seen. `initial` is the fingerprint already loaded (if any).
/// Each read-and-apply holds `load_lock`, so loads triggered elsewhere (a manual reload) are
/// applied in the order their reads happened.
pub(crate) fn spawn(
    dir: PathBuf,
    options: WatchOptions,
    initial: Option<String>,
    load_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    mut shutdown: watch::Receiver<bool>,
    on_load: impl Fn(LoadResult) + Send + 'static,
) -> JoinHandle<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watcher = {
        use notify::Watcher;
        let tx = tx.clone();
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = tx.send(());
            }
        })
        .and_then(|mut w| {
            w.watch(&dir, notify::RecursiveMode::NonRecursive)?;
            Ok(w)
        })
    };
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "file watching unavailable; polling only");
            None
        }
    };
    tokio::spawn(async move {
        let _watcher = watcher; // dropped (and unregistered) when the task ends
        let mut last = initial;
        let mut poll = tokio::time::interval(options.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                    continue;
                }
                Some(()) = rx.recv() => {
                    tokio::time::sleep(options.debounce).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = poll.tick() => {}
            }
            let _guard = load_lock.lock().await;
            let (fingerprint, result) = read_and_load(dir.clone()).await;
            // Unreadable directories are keyed by their error, so one outage is reported once.
            let key = match (&fingerprint, &result) {
                (Some(f), _) => f.clone(),
                (None, Err(e)) => format!("error: {e}"),
                (None, Ok(_)) => String::new(),
            };
            if last.as_deref() == Some(key.as_str()) {
                continue;
            }
            last = Some(key);
            on_load(result);
        }
    })
}
