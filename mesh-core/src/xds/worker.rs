//! The task that owns the ADS stream and all protocol state (see the module docs of
//! [`crate::xds`] for the rules it follows).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    future::Future,
    pin::pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use envoy_types::pb::{
    envoy::{
        config::core::v3::Node,
        service::discovery::v3::{
            aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
            DiscoveryRequest, DiscoveryResponse,
        },
    },
    google::rpc::Status,
};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Endpoint;
use tracing::debug;

use super::{
    backoff::Backoff,
    lock,
    resources::{self, with_resource_type},
    Nack, Subscribers, XdsError, XdsStatus,
};
use crate::{cache::ResourceCache, model::ResourceType};

/// How long a newly requested resource may take to arrive before it is declared missing
/// (Envoy `xds_protocol` "Knowing When a Requested Resource Does Not Exist"; gRFC A57).
pub(crate) const DOES_NOT_EXIST_TIMEOUT: Duration = Duration::from_secs(15);

/// Bound on establishing the connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest response accepted. tonic's default of 4 MiB is too small for a large mesh's CDS.
const MAX_RESPONSE_BYTES: usize = 128 * 1024 * 1024;

/// `google.rpc.Code.INVALID_ARGUMENT`, the code of our NACKs' `error_detail`.
const INVALID_ARGUMENT: i32 = 3;

/// The channel endpoint for a bootstrap `server_uri` with `insecure` credentials.
///
/// Accepts `host:port`, `dns:[//authority/]host:port` and `http://host:port`.
pub(crate) fn endpoint(server_uri: &str) -> Result<Endpoint, XdsError> {
    let invalid = |reason: &str| XdsError::InvalidServerUri {
        server: server_uri.to_owned(),
        reason: reason.to_owned(),
    };
    let authority = if let Some(rest) = server_uri.strip_prefix("dns:") {
        match rest.strip_prefix("//") {
            Some(with_authority) => with_authority
                .split_once('/')
                .map_or(with_authority, |(_, host)| host),
            None => rest,
        }
    } else if server_uri.starts_with("unix:") {
        return Err(invalid("unix domain sockets are not supported yet"));
    } else if let Some(rest) = server_uri.strip_prefix("http://") {
        rest
    } else if server_uri.contains("://") {
        return Err(invalid("unsupported scheme for insecure credentials"));
    } else {
        server_uri
    };
    if authority.is_empty() {
        return Err(invalid("no host"));
    }
    Endpoint::from_shared(format!("http://{authority}"))
        .map(|e| e.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
        .map_err(|e| invalid(&format!("invalid uri: {e}")))
}

/// Everything the worker is started with.
pub(crate) struct Config {
    pub(crate) endpoint: Endpoint,
    pub(crate) node: Node,
    pub(crate) ignore_resource_deletion: bool,
    pub(crate) cache: ResourceCache,
    pub(crate) subscribers: Arc<Mutex<Subscribers>>,
    pub(crate) wake: mpsc::UnboundedReceiver<ResourceType>,
    pub(crate) status: watch::Sender<XdsStatus>,
}

/// Per-type protocol state.
#[derive(Debug, Default)]
struct TypeState {
    /// The names currently subscribed (the worker's view of [`Subscribers`]).
    names: BTreeSet<Arc<str>>,
    /// `version_info` of the last ACKed response.
    version: String,
    /// Nonce of the last response on the current stream.
    nonce: String,
    /// Subscribed names some response contained (for implicit LDS/CDS deletion).
    received: HashSet<Arc<str>>,
}

/// The request half of an established stream.
struct Outbound {
    tx: mpsc::UnboundedSender<DiscoveryRequest>,
    node_sent: bool,
    sent_types: HashSet<ResourceType>,
}

/// Why a stream ended.
enum End {
    /// Every handle is gone: stop.
    Shutdown,
    /// The connection or stream failed: back off and reconnect.
    Lost,
}

pub(crate) struct Worker {
    endpoint: Endpoint,
    node: Node,
    ignore_resource_deletion: bool,
    cache: ResourceCache,
    subscribers: Arc<Mutex<Subscribers>>,
    wake: mpsc::UnboundedReceiver<ResourceType>,
    status: watch::Sender<XdsStatus>,
    types: BTreeMap<ResourceType, TypeState>,
    /// Does-not-exist deadlines.
    timers: HashMap<(ResourceType, Arc<str>), Instant>,
    backoff: Backoff,
}

impl Worker {
    pub(crate) fn new(c: Config) -> Self {
        Worker {
            endpoint: c.endpoint,
            node: c.node,
            ignore_resource_deletion: c.ignore_resource_deletion,
            cache: c.cache,
            subscribers: c.subscribers,
            wake: c.wake,
            status: c.status,
            types: BTreeMap::new(),
            timers: HashMap::new(),
            backoff: Backoff::default(),
        }
    }

    /// Connects, runs the stream, and reconnects with backoff until every handle is dropped.
    pub(crate) async fn run(mut self) {
        loop {
            if let End::Shutdown = self.run_stream().await {
                debug!("xds: every handle dropped, stopping");
                return;
            }
            // Nonces and timers belong to the stream; versions and the cache survive it.
            self.timers.clear();
            for state in self.types.values_mut() {
                state.nonce.clear();
            }
            self.status.send_modify(|s| {
                s.connected = false;
                for t in s.types.values_mut() {
                    t.nonce = "".into();
                }
            });
            let delay = self.backoff.next_delay();
            debug!(?delay, "xds: reconnecting after backoff");
            if self.drive(tokio::time::sleep(delay), None).await.is_none() {
                return;
            }
        }
    }

    async fn run_stream(&mut self) -> End {
        let endpoint = self.endpoint.clone();
        debug!(uri = %endpoint.uri(), "xds: connecting");
        let channel = match self.drive(endpoint.connect(), None).await {
            None => return End::Shutdown,
            Some(Err(e)) => return self.lost(format!("connect: {e}")),
            Some(Ok(channel)) => channel,
        };

        let (tx, rx) = mpsc::unbounded_channel();
        let mut out = Outbound {
            tx,
            node_sent: false,
            sent_types: HashSet::new(),
        };
        // Re-subscribe everything with the last ACKed versions; restart the does-not-exist
        // timers of what we do not have.
        for ty in ResourceType::ALL {
            let names = match self.types.get(&ty) {
                Some(state) if !state.names.is_empty() => state.names.clone(),
                _ => continue,
            };
            self.send(ty, &mut out, None);
            for name in names {
                self.start_timer(ty, name);
            }
        }

        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        let call = client.stream_aggregated_resources(UnboundedReceiverStream::new(rx));
        let mut inbound = match self.drive(call, Some(&mut out)).await {
            None => return End::Shutdown,
            Some(Err(status)) => return self.lost(format!("stream: {status}")),
            Some(Ok(response)) => response.into_inner(),
        };
        debug!("xds: stream established");
        self.status.send_modify(|s| {
            s.connected = true;
            s.streams += 1;
        });

        loop {
            match self.drive(inbound.message(), Some(&mut out)).await {
                None => return End::Shutdown,
                Some(Ok(Some(response))) => {
                    // A stream that delivered a response was healthy (gRFC A57).
                    self.backoff.reset();
                    self.on_response(response, &mut out);
                }
                Some(Ok(None)) => return self.lost("stream closed by the server".to_owned()),
                Some(Err(status)) => return self.lost(format!("stream: {status}")),
            }
        }
    }

    fn lost(&mut self, error: String) -> End {
        debug!(%error, "xds: stream lost");
        self.status.send_modify(|s| {
            s.connected = false;
            s.last_error = Some(error.into());
        });
        End::Lost
    }

    /// Awaits `fut` while handling subscription changes and does-not-exist timers. `None` when
    /// every handle is gone.
    async fn drive<F: Future>(
        &mut self,
        fut: F,
        mut out: Option<&mut Outbound>,
    ) -> Option<F::Output> {
        let mut fut = pin!(fut);
        loop {
            let deadline = self.timers.values().min().copied();
            tokio::select! {
                output = &mut fut => return Some(output),
                ty = self.wake.recv() => match ty {
                    Some(ty) => self.sync(ty, out.as_deref_mut()),
                    None => return None,
                },
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() => self.expire_timers(),
            }
        }
    }

    /// Brings the worker's name set for `ty` in line with the subscribers and, when a stream
    /// is up, tells the server.
    fn sync(&mut self, ty: ResourceType, out: Option<&mut Outbound>) {
        let desired: BTreeSet<Arc<str>> = lock(&self.subscribers)
            .get(&ty)
            .map(|names| names.keys().cloned().collect())
            .unwrap_or_default();
        let state = self.types.entry(ty).or_default();
        if desired == state.names {
            return;
        }
        let added: Vec<Arc<str>> = desired.difference(&state.names).cloned().collect();
        let removed: Vec<Arc<str>> = state.names.difference(&desired).cloned().collect();
        state.names = desired;
        let now_empty = state.names.is_empty();
        for name in &removed {
            state.received.remove(name);
            self.timers.remove(&(ty, name.clone()));
            with_resource_type!(ty, R => self.cache.forget::<R>(name));
        }
        for name in &added {
            with_resource_type!(ty, R => self.cache.request::<R>(name));
        }
        debug!(%ty, ?added, ?removed, "xds: subscription change");
        self.status.send_modify(|s| {
            s.types.entry(ty).or_default();
        });
        let Some(out) = out else { return };
        // An empty set is only sent to take back an earlier non-empty one on this stream: as a
        // first request it would mean "wildcard" for LDS/CDS (§3 row 10).
        if !now_empty || out.sent_types.contains(&ty) {
            self.send(ty, out, None);
        }
        for name in added {
            self.start_timer(ty, name);
        }
    }

    /// Sends the request for `ty`: its full name set, last ACKed version and latest nonce,
    /// with `error_detail` for a NACK.
    fn send(&mut self, ty: ResourceType, out: &mut Outbound, error: Option<Status>) {
        let state = self.types.entry(ty).or_default();
        let request = DiscoveryRequest {
            version_info: state.version.clone(),
            resource_names: state.names.iter().map(|n| n.to_string()).collect(),
            type_url: ty.type_url().to_owned(),
            response_nonce: state.nonce.clone(),
            error_detail: error,
            ..Default::default()
        };
        out.sent_types.insert(ty);
        self.write(out, request);
    }

    fn write(&self, out: &mut Outbound, mut request: DiscoveryRequest) {
        if !out.node_sent {
            request.node = Some(self.node.clone());
            out.node_sent = true;
        }
        debug!(
            type_url = %request.type_url,
            version = %request.version_info,
            nonce = %request.response_nonce,
            names = ?request.resource_names,
            nack = request.error_detail.is_some(),
            "xds: sending request"
        );
        // A closed receiver means the stream is ending; the receive side notices.
        let _ = out.tx.send(request);
    }

    fn start_timer(&mut self, ty: ResourceType, name: Arc<str>) {
        let cached = with_resource_type!(ty, R => self.cache.get::<R>(&name).is_some());
        if !cached {
            self.timers
                .insert((ty, name), Instant::now() + DOES_NOT_EXIST_TIMEOUT);
        }
    }

    fn expire_timers(&mut self) {
        let now = Instant::now();
        let expired: Vec<(ResourceType, Arc<str>)> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for (ty, name) in expired {
            self.timers.remove(&(ty, name.clone()));
            let subscribed = self.types.get(&ty).is_some_and(|s| s.names.contains(&name));
            if subscribed {
                debug!(%ty, %name, "xds: resource does not exist (timer expired)");
                with_resource_type!(ty, R => self.cache.remove::<R>(&name));
            }
        }
    }

    fn on_response(&mut self, response: DiscoveryResponse, out: &mut Outbound) {
        debug!(
            type_url = %response.type_url,
            version = %response.version_info,
            nonce = %response.nonce,
            resources = response.resources.len(),
            "xds: received response"
        );
        let Some(ty) = ResourceType::from_type_url(&response.type_url) else {
            let request = DiscoveryRequest {
                type_url: response.type_url.clone(),
                response_nonce: response.nonce.clone(),
                error_detail: Some(Status {
                    code: INVALID_ARGUMENT,
                    message: format!("unsupported resource type `{}`", response.type_url),
                    details: Vec::new(),
                }),
                ..Default::default()
            };
            self.write(out, request);
            return;
        };

        if !out.sent_types.contains(&ty) {
            // Nothing of this type was asked for on this stream. Answering would send an empty
            // name list, which for LDS/CDS means "wildcard" (§3 row 10): ignore it instead.
            debug!(%ty, "xds: ignoring unsolicited response");
            return;
        }
        let state = self.types.entry(ty).or_default();
        state.nonce.clone_from(&response.nonce);
        let outcome = resources::apply(ty, &response, &state.names, &self.cache);
        for name in &outcome.seen {
            self.timers.remove(&(ty, name.clone()));
        }

        // Listener and Cluster responses carry every subscribed resource (§3 row 18). A
        // resource that failed to decode has no name, so nothing can be concluded then.
        let whole_set = matches!(ty, ResourceType::Listener | ResourceType::Cluster);
        if whole_set && !self.ignore_resource_deletion && !outcome.unnamed_errors {
            let missing: Vec<Arc<str>> = state
                .received
                .iter()
                .filter(|n| !outcome.seen.contains(*n))
                .cloned()
                .collect();
            for name in missing {
                state.received.remove(&name);
                debug!(%ty, %name, "xds: resource removed (absent from response)");
                with_resource_type!(ty, R => self.cache.remove::<R>(&name));
            }
        }
        state.received.extend(outcome.seen.iter().cloned());

        let error = if outcome.errors.is_empty() {
            state.version.clone_from(&response.version_info);
            None
        } else {
            Some(Status {
                code: INVALID_ARGUMENT,
                message: format!(
                    "xds response validation errors: [{}]",
                    outcome.errors.join("; ")
                ),
                details: Vec::new(),
            })
        };
        let acked_version = state.version.clone();
        let nack = error.as_ref().map(|e| Nack {
            version: response.version_info.as_str().into(),
            nonce: response.nonce.as_str().into(),
            message: e.message.as_str().into(),
        });
        self.status.send_modify(|s| {
            let t = s.types.entry(ty).or_default();
            t.nonce = response.nonce.as_str().into();
            t.acked_version = acked_version.as_str().into();
            if nack.is_some() {
                t.nacks += 1;
            } else {
                t.acks += 1;
            }
            t.last_nack = nack;
        });
        self.send(ty, out, error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_uris() {
        let uri = |s: &str| endpoint(s).map(|e| e.uri().to_string());
        assert_eq!(uri("127.0.0.1:15010").unwrap(), "http://127.0.0.1:15010/");
        assert_eq!(
            uri("dns:///cp.example:15010").unwrap(),
            "http://cp.example:15010/"
        );
        assert_eq!(uri("dns://8.8.8.8/cp:1").unwrap(), "http://cp:1/");
        assert_eq!(uri("dns:cp:1").unwrap(), "http://cp:1/");
        assert_eq!(uri("http://[::1]:1").unwrap(), "http://[::1]:1/");
        for bad in ["unix:///etc/istio/proxy/XDS", "https://cp:1", "dns:///", ""] {
            assert!(
                matches!(endpoint(bad), Err(XdsError::InvalidServerUri { .. })),
                "{bad}"
            );
        }
    }
}
