//! gRPC's `file_watcher` certificate provider (gRFC A29; grpc-go
//! `credentials/tls/certprovider/pemfile`): a bootstrap instance names a certificate chain, a
//! private key and a CA bundle, and the files are re-read every `refresh_interval` (default
//! 10 minutes, as gRPC) so an agent or `mesh-control-plane issue` can rotate them in place.
//!
//! - A re-read that finds the same bytes does nothing. New bytes are swapped into the instance's
//!   [`WorkloadIdentity`] only when they parse and the key matches the certificate (rustls
//!   `CertifiedKey::from_der` checks it), so a half-written or mismatched set keeps the current
//!   identity: the error is logged with the instance and the three paths, and the next refresh
//!   tries again. Nothing ever serves without a certificate.
//! - The swap is [`WorkloadIdentity::rotate_pem`]: handshakes from then on use the new
//!   material; established connections keep what they negotiated.
//! - The refresh task's lifetime is the providers': [`load`] returns a [`Watcher`] the
//!   [`super::CertificateProviders`] keep (shared by their clones); when the last clone is
//!   dropped the task is aborted at once, not at its next refresh. It holds only a `Weak` to
//!   the identity, so it never keeps the key alive either. Time is `tokio::time`, so tests run
//!   it on a paused clock. Outside a tokio runtime the files are read once, with a warning.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{read, TlsError, WorkloadIdentity};

/// gRPC's default `refresh_interval`.
pub(crate) const DEFAULT_REFRESH: Duration = Duration::from_secs(600);

/// The three files of one instance.
#[derive(Clone, Debug)]
pub(crate) struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl Files {
    fn read(&self) -> Result<[Vec<u8>; 3], TlsError> {
        Ok([read(&self.cert)?, read(&self.key)?, read(&self.ca)?])
    }
}

/// Parses a JSON protobuf `Duration` (`"600s"`, `"1.5s"`); `None` for anything else.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let secs = s.strip_suffix('s')?;
    let d: f64 = secs.parse().ok()?;
    (d.is_finite() && d > 0.0 && d < 1e12).then(|| Duration::from_secs_f64(d))
}

/// An instance's refresh task: aborted when dropped.
#[derive(Debug)]
pub(crate) struct Watcher(tokio::task::AbortHandle);

impl Watcher {
    /// The task's handle, to see it end (tests).
    #[cfg(test)]
    pub(crate) fn handle(&self) -> tokio::task::AbortHandle {
        self.0.clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Loads the instance's identity and, inside a tokio runtime, starts its refresh task, which
/// runs until the returned [`Watcher`] is dropped.
pub(crate) fn load(
    instance: &str,
    files: Files,
    refresh: Duration,
) -> Result<(Arc<WorkloadIdentity>, Option<Watcher>), TlsError> {
    let current = files.read()?;
    let identity = WorkloadIdentity::from_pem(&current[0], &current[1], &current[2])?;
    let watcher = match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            let task = rt.spawn(refresh_loop(
                instance.to_owned(),
                files,
                refresh,
                Arc::downgrade(&identity),
                current,
            ));
            Some(Watcher(task.abort_handle()))
        }
        Err(_) => {
            tracing::warn!(
                instance,
                "no tokio runtime: the certificate provider's files are read once, not every refresh_interval"
            );
            None
        }
    };
    Ok((identity, watcher))
}

async fn refresh_loop(
    instance: String,
    files: Files,
    refresh: Duration,
    identity: Weak<WorkloadIdentity>,
    mut current: [Vec<u8>; 3],
) {
    loop {
        tokio::time::sleep(refresh).await;
        let Some(identity) = identity.upgrade() else {
            return;
        };
        let fresh = match files.read() {
            Ok(f) => f,
            Err(e) => {
                log_refused(&instance, &files, &e);
                continue;
            }
        };
        if fresh == current {
            continue;
        }
        match identity.rotate_pem(&fresh[0], &fresh[1], &fresh[2]) {
            Ok(()) => {
                tracing::info!(instance = %instance, "certificate provider files changed; identity reloaded");
                current = fresh;
            }
            Err(e) => log_refused(&instance, &files, &e),
        }
    }
}

fn log_refused(instance: &str, files: &Files, e: &TlsError) {
    let path = |p: &Path| p.display().to_string();
    tracing::error!(
        instance,
        certificate_file = %path(&files.cert),
        private_key_file = %path(&files.key),
        ca_certificate_file = %path(&files.ca),
        error = %e,
        "certificate provider files not usable; keeping the current identity"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_protobuf_json_form() {
        assert_eq!(parse_duration("600s"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        for bad in ["", "600", "s", "-1s", "0s", "1e20s", "NaNs", "10m"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
