//! Virtual-host selection by domain: exact, then `*.suffix` (longest first), then `prefix.*`
//! (longest first), then `*` — Envoy's `VirtualHost.domains` rule, which gRFC A28 adopts.
//!
//! Hosts are compared case-insensitively. If the authority carries a port and nothing matches
//! it as given, it is matched again without the port (what Envoy does with
//! `strip_any_host_port`; Istio emits both `host` and `host:port` domains anyway).

use std::collections::HashMap;

/// A compiled domain index over the virtual hosts of one route configuration.
#[derive(Debug, Default)]
pub(crate) struct DomainIndex {
    exact: HashMap<Box<str>, usize>,
    /// `(suffix, vhost)`, longest suffix first. The suffix keeps everything after the `*`.
    suffixes: Vec<(Box<str>, usize)>,
    /// `(prefix, vhost)`, longest prefix first.
    prefixes: Vec<(Box<str>, usize)>,
    wildcard: Option<usize>,
}

impl DomainIndex {
    /// Builds the index. Domains were validated and lowercased by the model; when two virtual
    /// hosts claim the same domain the first keeps it (Envoy rejects that config; a duplicate
    /// here can only be harmless).
    pub(crate) fn new<'a>(vhosts: impl Iterator<Item = &'a [std::sync::Arc<str>]>) -> Self {
        let mut idx = DomainIndex::default();
        for (i, domains) in vhosts.enumerate() {
            for d in domains {
                if &**d == "*" {
                    idx.wildcard.get_or_insert(i);
                } else if let Some(suffix) = d.strip_prefix('*') {
                    idx.suffixes.push((suffix.into(), i));
                } else if let Some(prefix) = d.strip_suffix('*') {
                    idx.prefixes.push((prefix.into(), i));
                } else {
                    idx.exact.entry((**d).into()).or_insert(i);
                }
            }
        }
        // Stable sorts keep configuration order among equal lengths.
        idx.suffixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        idx.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        idx
    }

    /// The virtual host for an authority, if any.
    pub(crate) fn find(&self, authority: &str) -> Option<usize> {
        if let Some(i) = self.find_host(authority) {
            return Some(i);
        }
        match split_port(authority) {
            Some(host) => self.find_host(host),
            None => None,
        }
    }

    fn find_host(&self, host: &str) -> Option<usize> {
        // Lowercase only when needed: authorities are almost always lowercase already.
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        if let Some(&i) = self.exact.get(host) {
            return Some(i);
        }
        // A wildcard never matches the empty string: the host must be longer than the suffix.
        for (suffix, i) in &self.suffixes {
            if host.len() > suffix.len() && host.ends_with(&**suffix) {
                return Some(*i);
            }
        }
        for (prefix, i) in &self.prefixes {
            if host.len() > prefix.len() && host.starts_with(&**prefix) {
                return Some(*i);
            }
        }
        self.wildcard
    }
}

/// `host` of `host:port` (IPv6 `[::1]:80` keeps its brackets); `None` when there is no port.
fn split_port(authority: &str) -> Option<&str> {
    let (host, port) = authority.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if host.starts_with('[') && !host.ends_with(']') {
        return None; // a bare IPv6 address, not host:port
    }
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn index(vhosts: &[&[&str]]) -> DomainIndex {
        let owned: Vec<Vec<Arc<str>>> = vhosts
            .iter()
            .map(|d| d.iter().map(|s| Arc::from(*s)).collect())
            .collect();
        DomainIndex::new(owned.iter().map(|v| v.as_slice()))
    }

    #[test]
    fn most_specific_wins() {
        let idx = index(&[
            &["*"],
            &["foo.*"],
            &["*.bar.com"],
            &["*.com"],
            &["api.bar.com"],
        ]);
        assert_eq!(idx.find("api.bar.com"), Some(4));
        assert_eq!(idx.find("x.bar.com"), Some(2), "longest suffix first");
        assert_eq!(idx.find("x.com"), Some(3));
        assert_eq!(idx.find("foo.org"), Some(1));
        assert_eq!(idx.find("other"), Some(0));
        assert_eq!(idx.find("API.BAR.COM"), Some(4), "case-insensitive");
    }

    #[test]
    fn suffix_beats_prefix_and_never_matches_empty() {
        let idx = index(&[&["foo.*"], &["*.com"]]);
        assert_eq!(idx.find("foo.com"), Some(1));
        let idx = index(&[&["*.com"]]);
        assert_eq!(idx.find(".com"), None);
    }

    #[test]
    fn port_is_tried_as_given_then_stripped() {
        let idx = index(&[&["reviews"], &["reviews:9080"]]);
        assert_eq!(idx.find("reviews:9080"), Some(1));
        assert_eq!(idx.find("reviews:80"), Some(0));
        assert_eq!(idx.find("ratings:80"), None);
        let idx = index(&[&["[::1]"]]);
        assert_eq!(idx.find("[::1]:80"), Some(0));
    }
}
