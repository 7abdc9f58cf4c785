//! The ADS client: one state-of-the-world stream to the first xDS server of the bootstrap.
//!
//! Protocol: Envoy `xds_protocol` (aggregated discovery service, state of the world), as gRPC's
//! proxyless XdsClient speaks it (gRFC A27, XDS-SEMANTICS.md §3):
//!
//! - **Subscriptions** are ref-counted per (type, name). The first [`Subscription`] of a name
//!   adds it to the type's name set and sends a new `DiscoveryRequest` listing the full set
//!   (SotW), carrying the type's last ACKed version and latest nonce; dropping the last one
//!   sends the set without it and forgets the cached resource (A28, §3 rows 17 and 27).
//! - **ACK / NACK** every response (§3 row 4). Each resource is validated on its own; valid
//!   ones are applied even when a sibling is rejected, and the response is then NACKed with
//!   `error_detail` = `INVALID_ARGUMENT` listing every rejected resource and `version_info` = the
//!   last ACKed version (gRFC A46). A name twice in one response is a NACK (§3 row 5).
//!   Unrequested resources are ignored (A27). Listener and Cluster responses carry the whole
//!   set: a subscribed resource we had received that is missing is removed (§3 row 18), unless
//!   the server has the `ignore_resource_deletion` feature (gRFC A53). Route configurations and
//!   load assignments are never removed implicitly.
//! - **Does-not-exist**: a 15 s timer per newly requested resource, started once the request
//!   is written to an established connection, cancelled by the resource's arrival; expiry marks
//!   it does-not-exist in the cache. A new stream restarts timers only for resources without a
//!   value (gRFC A57, §3 row 11). The A88 variant (30 s, transient) is not implemented.
//! - **Reconnect** after the stream fails or ends, with jittered exponential backoff (100 ms,
//!   ×1.6, max 30 s, ±20 %) reset once a stream has delivered a response (gRFC A57). The cache
//!   keeps serving the last good config meanwhile. The new stream re-sends every type's full
//!   name set with its last ACKed version and no nonce (nonces are per stream, §3 rows 3 and
//!   8), and the first request carries the [`Node`](crate::bootstrap::NodeInfo) (§3 row 2).
//!
//! The stream runs in one spawned task that owns all protocol state; the handles talk to it
//! through a channel, and nothing holds a lock across an `.await`. Status for CSDS is published
//! in an [`XdsStatus`] on a `watch` channel; per-resource status is in the cache. Time comes
//! from `tokio::time` only, so tests run on paused time.

mod backoff;
mod error;
mod resources;
mod status;
mod worker;

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::{mpsc, watch};

pub use error::XdsError;
pub use status::{Nack, TypeStatus, XdsStatus};

use crate::{
    bootstrap::{Bootstrap, ChannelCredsKind},
    cache::ResourceCache,
    model::ResourceType,
};
use resources::with_resource_type;

/// Subscriber counts per type and name, shared by the handles (which edit it) and the worker
/// (which reads it when woken).
pub(crate) type Subscribers = BTreeMap<ResourceType, BTreeMap<Arc<str>, usize>>;

fn lock(subs: &Mutex<Subscribers>) -> MutexGuard<'_, Subscribers> {
    // The map is only ever edited by whole-integer updates, so a poisoned guard is still sound.
    subs.lock().unwrap_or_else(|e| e.into_inner())
}

/// Handle to a running ADS client. Cheap to clone; the stream stops when the last handle and
/// the last [`Subscription`] are dropped.
#[derive(Clone)]
pub struct XdsClient {
    shared: Arc<Shared>,
}

struct Shared {
    /// Wakes the worker: "the name set of this type changed".
    wake: mpsc::UnboundedSender<ResourceType>,
    subscribers: Arc<Mutex<Subscribers>>,
    cache: ResourceCache,
    status: watch::Receiver<XdsStatus>,
}

impl fmt::Debug for XdsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.shared.status.borrow();
        f.debug_struct("XdsClient")
            .field("server_uri", &status.server_uri)
            .field("connected", &status.connected)
            .finish_non_exhaustive()
    }
}

impl XdsClient {
    /// Starts the client: spawns the task driving one ADS stream to the bootstrap's first xDS
    /// server, writing what it receives into `cache`. Must be called inside a tokio runtime.
    pub fn start(bootstrap: &Bootstrap, cache: ResourceCache) -> Result<XdsClient, XdsError> {
        let server = bootstrap.xds_servers.first().ok_or(XdsError::NoServer)?;
        if server.channel_creds.kind != ChannelCredsKind::Insecure {
            return Err(XdsError::UnsupportedCredentials {
                server: server.server_uri.clone(),
                kind: server.channel_creds.kind,
            });
        }
        let endpoint = worker::endpoint(&server.server_uri)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| XdsError::NoRuntime)?;

        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(XdsStatus {
            server_uri: server.server_uri.as_str().into(),
            ..XdsStatus::default()
        });
        let subscribers = Arc::new(Mutex::new(Subscribers::new()));
        let worker = worker::Worker::new(worker::Config {
            endpoint,
            node: bootstrap.node.to_proto(),
            ignore_resource_deletion: server.has_feature("ignore_resource_deletion"),
            cache: cache.clone(),
            subscribers: subscribers.clone(),
            wake: wake_rx,
            status: status_tx,
        });
        runtime.spawn(worker.run());
        Ok(XdsClient {
            shared: Arc::new(Shared {
                wake: wake_tx,
                subscribers,
                cache,
                status: status_rx,
            }),
        })
    }

    /// Subscribes to a resource. The cache marks it requested at once; it fills in as the
    /// server answers. Dropping the last `Subscription` of a name unsubscribes it.
    pub fn subscribe(
        &self,
        resource_type: ResourceType,
        name: impl Into<Arc<str>>,
    ) -> Subscription {
        let name = name.into();
        let mut subs = lock(&self.shared.subscribers);
        let count = subs
            .entry(resource_type)
            .or_default()
            .entry(name.clone())
            .or_insert(0);
        *count += 1;
        if *count == 1 {
            with_resource_type!(resource_type, R => self.shared.cache.request::<R>(&name));
            // The worker stops only once every handle is gone, and we are one.
            let _ = self.shared.wake.send(resource_type);
        }
        drop(subs);
        Subscription {
            shared: self.shared.clone(),
            resource_type,
            name,
        }
    }

    /// The cache this client writes into.
    pub fn cache(&self) -> &ResourceCache {
        &self.shared.cache
    }

    /// The current stream status.
    pub fn status(&self) -> XdsStatus {
        self.shared.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn status_changes(&self) -> watch::Receiver<XdsStatus> {
        self.shared.status.clone()
    }
}

/// The ADS client as the [`Mesh`](crate::mesh::Mesh)'s config source:
/// `Mesh::new(cache.clone(), Arc::new(XdsClient::start(&bootstrap, cache)?))`.
impl crate::mesh::ConfigSource for XdsClient {
    fn subscribe(&self, ty: ResourceType, name: &str) -> crate::mesh::SubscriptionHandle {
        crate::mesh::SubscriptionHandle::new(XdsClient::subscribe(self, ty, name))
    }
}

/// Interest in one resource. Dropping the last one for a (type, name) unsubscribes.
pub struct Subscription {
    shared: Arc<Shared>,
    resource_type: ResourceType,
    name: Arc<str>,
}

impl Subscription {
    /// The resource type.
    pub fn resource_type(&self) -> ResourceType {
        self.resource_type
    }

    /// The resource name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("resource_type", &self.resource_type)
            .field("name", &self.name)
            .finish()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = lock(&self.shared.subscribers);
        let Some(names) = subs.get_mut(&self.resource_type) else {
            return;
        };
        let last = match names.get_mut(&self.name) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        if last {
            names.remove(&self.name);
            // The worker forgets the cached resource when it processes the change, so that a
            // response already in flight cannot bring it back.
            let _ = self.shared.wake.send(self.resource_type);
        }
    }
}
