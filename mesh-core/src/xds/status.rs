//! What the ADS client knows about its stream, for CSDS and the admin page (gRFC A40).
//!
//! Per-resource state (ACKED / NACKED / DOES_NOT_EXIST / REQUESTED) lives in the
//! [`ResourceCache`](crate::cache::ResourceCache); this is the per-type and per-connection part.

use std::{collections::BTreeMap, sync::Arc};

use crate::model::ResourceType;

/// The client's view of its ADS stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XdsStatus {
    /// The server we talk to, as written in the bootstrap.
    pub server_uri: Arc<str>,
    /// Whether an ADS stream is currently established.
    pub connected: bool,
    /// Streams established so far (1 after the first connect, 2 after a reconnect, …).
    pub streams: u64,
    /// Why the last connection attempt or stream failed, if one did.
    pub last_error: Option<Arc<str>>,
    /// Per resource type; a type appears once it has been subscribed or answered.
    pub types: BTreeMap<ResourceType, TypeStatus>,
}

/// Per-type protocol state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeStatus {
    /// The `version_info` of the last ACKed response (`""` before the first).
    pub acked_version: Arc<str>,
    /// The nonce of the last response on the current stream (`""` on a fresh stream).
    pub nonce: Arc<str>,
    /// Responses ACKed so far.
    pub acks: u64,
    /// Responses NACKed so far.
    pub nacks: u64,
    /// The most recent NACK, cleared by the next ACK of this type.
    pub last_nack: Option<Nack>,
}

/// A NACKed response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    /// The rejected response's `version_info`.
    pub version: Arc<str>,
    /// The rejected response's nonce.
    pub nonce: Arc<str>,
    /// The `error_detail.message` sent back: every rejected resource with its reason.
    pub message: Arc<str>,
}
