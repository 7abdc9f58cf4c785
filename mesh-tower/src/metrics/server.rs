//! `server.address` values per authority, interned so the request path clones an `Arc<str>`
//! instead of copying the host.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use http::uri::Authority;
use opentelemetry::Value;

/// Authorities remembered; past this, new ones are copied per request (a mesh client talks to
/// a handful of targets, so this only bounds memory against a caller spraying hosts).
const MAX_ENTRIES: usize = 1024;

/// `server.address` and `server.port` of one request.
#[derive(Clone, Debug)]
pub(crate) struct Server {
    pub(crate) address: Value,
    pub(crate) port: i64,
}

/// Lock-free on the hit path: one `ArcSwap` load and a map lookup by `&str`.
#[derive(Debug, Default)]
pub(crate) struct ServerCache {
    hosts: ArcSwap<HashMap<Box<str>, Value>>,
}

impl ServerCache {
    /// The attributes for `authority`; `https` picks the default port when it names none.
    pub(crate) fn get(&self, authority: &Authority, https: bool) -> Server {
        let port = i64::from(authority.port_u16().unwrap_or(if https { 443 } else { 80 }));
        let key = authority.as_str();
        if let Some(address) = self.hosts.load().get(key) {
            return Server {
                address: address.clone(),
                port,
            };
        }
        // An IPv6 literal without its URI brackets, as semconv writes addresses.
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let address = Value::from(Arc::<str>::from(host));
        if self.hosts.load().len() < MAX_ENTRIES {
            self.hosts.rcu(|map| {
                let mut map = HashMap::clone(map);
                map.insert(key.into(), address.clone());
                map
            });
        }
        Server { address, port }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_host_and_port_and_reuses_the_host() {
        let cache = ServerCache::default();
        let a: Authority = "reviews.demo:9080".parse().unwrap();
        let first = cache.get(&a, false);
        assert_eq!(
            (first.address.as_str(), first.port),
            ("reviews.demo".into(), 9080)
        );
        // Interned once: a second request finds it, the map does not grow.
        assert_eq!(cache.get(&a, false).address.as_str(), "reviews.demo");
        assert_eq!(cache.hosts.load().len(), 1);
        let tls: Authority = "pay.demo".parse().unwrap();
        assert_eq!(cache.get(&tls, true).port, 443);
        assert_eq!(cache.get(&tls, false).port, 80);
        let v6: Authority = "[fd00::7]:8080".parse().unwrap();
        assert_eq!(cache.get(&v6, false).address.as_str(), "fd00::7");
    }
}
