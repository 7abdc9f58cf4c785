//! TLS session caches that forget their sessions when the identity material they were made
//! under is rotated.
//!
//! A resumed handshake (TLS 1.3 PSK, RFC 8446 §2.2; TLS 1.2 session IDs) skips certificates:
//! the client presents none and verifies none, the server takes the peer identity from the
//! session. With rustls's plain in-memory caches a rotation would therefore not reach
//! resumed connections — the client's old SVID stays what the server sees, and, worse, a peer
//! authenticated against a root that has since left the trust bundle is still accepted until
//! its ticket expires. So every cache here is tagged with the **generations** of the identities
//! it depends on ([`super::WorkloadIdentity`] bumps one on every swap) and replaced by an
//! empty one on the first handshake after any of them changed: the next handshake after a
//! rotation is a full one, with the new certificate and against the new trust bundle.
//! Established connections are not touched. Checking costs an atomic load per handshake,
//! never per request. Envoy gets the same effect by building a new TLS context (and so a new
//! session cache) for every secret update.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::Tls13ClientSessionValue;
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};
use rustls::NamedGroup;

use super::WorkloadIdentity;

/// Sessions kept per cache (rustls's default).
const SESSIONS: usize = 256;

/// The generations of up to two identities (SVID instance, roots instance).
type Generations = [u64; 2];

fn generations(sources: &[Arc<WorkloadIdentity>]) -> Generations {
    let mut g = [0; 2];
    for (slot, id) in g.iter_mut().zip(sources) {
        *slot = id.current().generation;
    }
    g
}

/// The cache of the current generations, replacing a stale one.
struct Tagged<C> {
    sources: Vec<Arc<WorkloadIdentity>>,
    cache: ArcSwap<(Generations, Arc<C>)>,
    new: fn() -> Arc<C>,
}

impl<C> Tagged<C> {
    fn new(sources: Vec<Arc<WorkloadIdentity>>, new: fn() -> Arc<C>) -> Self {
        debug_assert!(sources.len() <= 2);
        let cache = ArcSwap::from_pointee((generations(&sources), new()));
        Tagged {
            sources,
            cache,
            new,
        }
    }

    fn current(&self) -> Arc<C> {
        let now = generations(&self.sources);
        let held = self.cache.load();
        if held.0 == now {
            return held.1.clone();
        }
        // Racing handshakes may each install a fresh cache; one wins, the others' sessions are
        // just not remembered — harmless.
        let fresh = Arc::new((now, (self.new)()));
        self.cache.store(fresh.clone());
        fresh.1.clone()
    }
}

/// A client session store emptied when the client's identity or its roots rotate.
pub(crate) struct ClientSessions(Tagged<ClientSessionMemoryCache>);

impl ClientSessions {
    /// A store depending on `sources` (at most two: the SVID's and the roots' identity).
    pub(crate) fn new(sources: Vec<Arc<WorkloadIdentity>>) -> Arc<Self> {
        Arc::new(ClientSessions(Tagged::new(sources, || {
            Arc::new(ClientSessionMemoryCache::new(SESSIONS))
        })))
    }
}

impl fmt::Debug for ClientSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSessions")
    }
}

impl ClientSessionStore for ClientSessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.0.current().set_kx_hint(server_name, group)
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.0.current().kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.0.current().set_tls12_session(server_name, value)
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.0.current().tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.0.current().remove_tls12_session(server_name)
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.0.current().insert_tls13_ticket(server_name, value)
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.0.current().take_tls13_ticket(server_name)
    }
}

/// A server session cache emptied when the server's identity (certificate or trust bundle)
/// rotates.
pub(crate) struct ServerSessions(Tagged<ServerSessionMemoryCache>);

impl ServerSessions {
    /// A cache depending on `identity`.
    pub(crate) fn new(identity: Arc<WorkloadIdentity>) -> Arc<Self> {
        Arc::new(ServerSessions(Tagged::new(vec![identity], || {
            ServerSessionMemoryCache::new(SESSIONS)
        })))
    }
}

impl fmt::Debug for ServerSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSessions")
    }
}

impl StoresServerSessions for ServerSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.current().put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.current().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.current().take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}
