//! Errors from starting the ADS client. Failures after start (connect, stream, invalid
//! resources) never surface as errors: they are retried, NACKed, and shown in
//! [`XdsStatus`](super::XdsStatus) and the cache.

use crate::bootstrap::ChannelCredsKind;

/// The ADS client could not be started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XdsError {
    /// The bootstrap lists no xDS server.
    #[error("bootstrap lists no xds server")]
    NoServer,
    /// The first server's channel credentials are recognised but not implemented yet.
    #[error("xds server `{server}`: channel credentials `{kind}` not supported yet")]
    UnsupportedCredentials {
        /// The server URI.
        server: String,
        /// The credentials it asks for.
        kind: ChannelCredsKind,
    },
    /// The server URI cannot be dialled.
    #[error("xds server `{server}`: {reason}")]
    InvalidServerUri {
        /// The server URI.
        server: String,
        /// Why.
        reason: String,
    },
    /// `XdsClient::start` was called outside a tokio runtime.
    #[error("the xds client must be started inside a tokio runtime")]
    NoRuntime,
}
