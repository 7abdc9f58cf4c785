//! A route's hash policies, compiled: the request hash for RING_HASH / MAGLEV clusters
//! (Envoy `RouteAction.hash_policy`; gRFC A42). See [`crate::model::HashPolicy`] for what each
//! kind reads. Evaluated per request only when the route's chosen cluster hashes; values are
//! hashed with XXH64 (seed 0) straight from the request's bytes, without allocating (except
//! for a configured `regex_rewrite`).

use std::{fmt::Write as _, net::IpAddr};

use http::HeaderName;
use xxhash_rust::xxh64::{xxh64, Xxh64};

use super::RequestView;
use crate::model::{HashPolicy, HashSource, RegexRewrite};

/// One policy, with its header name parsed once.
#[derive(Debug)]
struct Compiled {
    source: Source,
    terminal: bool,
}

#[derive(Debug)]
enum Source {
    Header(HeaderName, Option<RegexRewrite>),
    Authority(Option<RegexRewrite>),
    Path(Option<RegexRewrite>),
    Method(Option<RegexRewrite>),
    Cookie(Box<str>),
    Ip,
    Query(Box<str>),
    /// A header name `http` cannot represent: never present.
    Never,
}

/// A route's hash policies.
#[derive(Debug)]
pub(crate) struct CompiledHashPolicy {
    policies: Box<[Compiled]>,
}

impl CompiledHashPolicy {
    /// `None` when the list is empty.
    pub(crate) fn new(list: &[HashPolicy]) -> Option<Self> {
        if list.is_empty() {
            return None;
        }
        let policies = list
            .iter()
            .map(|p| Compiled {
                terminal: p.terminal,
                source: match &p.source {
                    HashSource::Header { name, rewrite } => match &**name {
                        ":authority" | "host" => Source::Authority(rewrite.clone()),
                        ":path" => Source::Path(rewrite.clone()),
                        ":method" => Source::Method(rewrite.clone()),
                        n => HeaderName::from_bytes(n.as_bytes())
                            .map_or(Source::Never, |h| Source::Header(h, rewrite.clone())),
                    },
                    HashSource::Cookie { name } => Source::Cookie((**name).into()),
                    HashSource::SourceIp => Source::Ip,
                    HashSource::QueryParameter { name } => Source::Query((**name).into()),
                },
            })
            .collect();
        Some(CompiledHashPolicy { policies })
    }

    /// The request hash: policies in order, each value folded in as `rotl(h, 1) ^ value`, a
    /// `terminal` policy that produced a value ending the walk. `None` when none produced one.
    pub(crate) fn hash(&self, req: &RequestView<'_>, source_ip: Option<IpAddr>) -> Option<u64> {
        let mut hash: Option<u64> = None;
        for p in self.policies.iter() {
            let Some(v) = p.source.eval(req, source_ip) else {
                continue;
            };
            hash = Some(hash.map_or(v, |h| h.rotate_left(1) ^ v));
            if p.terminal {
                break;
            }
        }
        hash
    }
}

impl Source {
    fn eval(&self, req: &RequestView<'_>, source_ip: Option<IpAddr>) -> Option<u64> {
        match self {
            Source::Header(name, rewrite) => {
                let mut values = req.headers.get_all(name).iter();
                let first = values.next()?;
                if let Some(rw) = rewrite {
                    // Several values are joined with ',' as gRPC does, then rewritten.
                    let mut joined = String::from_utf8_lossy(first.as_bytes()).into_owned();
                    for v in values {
                        joined.push(',');
                        joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
                    }
                    return Some(hash_str(&joined, Some(rw)));
                }
                // Streamed: XXH64 over `v1,v2,…` without copying the values.
                let mut h = Xxh64::new(0);
                h.update(first.as_bytes());
                for v in values {
                    h.update(b",");
                    h.update(v.as_bytes());
                }
                Some(h.digest())
            }
            Source::Authority(rw) => Some(hash_str(req.authority, rw.as_ref())),
            Source::Path(rw) => Some(hash_str(req.path_and_query, rw.as_ref())),
            Source::Method(rw) => Some(hash_str(req.method.as_str(), rw.as_ref())),
            Source::Cookie(name) => req
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|kv| {
                    let (k, v) = kv.trim().split_once('=')?;
                    (k == &**name).then_some(v)
                })
                .map(|v| xxh64(v.as_bytes(), 0)),
            Source::Ip => {
                let ip = source_ip?;
                // Envoy hashes the address as text; format onto the stack.
                let mut buf = StackStr::default();
                let _ = write!(buf, "{ip}");
                Some(xxh64(buf.as_bytes(), 0))
            }
            Source::Query(name) => {
                let (_, query) = req.split_path();
                query
                    .split('&')
                    .find_map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (k == &**name).then_some(v)
                    })
                    .map(|v| xxh64(v.as_bytes(), 0))
            }
            Source::Never => None,
        }
    }
}

fn hash_str(s: &str, rewrite: Option<&RegexRewrite>) -> u64 {
    match rewrite {
        None => xxh64(s.as_bytes(), 0),
        Some(rw) => xxh64(rw.apply(s).as_bytes(), 0),
    }
}

/// Enough room for any IP address as text (IPv6 with zone: < 64 bytes).
struct StackStr {
    buf: [u8; 64],
    len: usize,
}

impl Default for StackStr {
    fn default() -> Self {
        StackStr {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl StackStr {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method};

    fn view<'a>(headers: &'a HeaderMap, path: &'a str) -> RequestView<'a> {
        RequestView {
            authority: "svc:80",
            path_and_query: path,
            method: &Method::GET,
            scheme: None,
            headers,
        }
    }

    fn policy(source: HashSource, terminal: bool) -> HashPolicy {
        HashPolicy { source, terminal }
    }

    fn header(name: &str) -> HashSource {
        HashSource::Header {
            name: name.into(),
            rewrite: None,
        }
    }

    #[test]
    fn sources_read_their_part_of_the_request() {
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("alice"));
        h.insert("cookie", HeaderValue::from_static("a=1; session=s42; b=2"));
        let req = view(&h, "/p?x=1&user=bob");
        let one = |s| {
            CompiledHashPolicy::new(&[policy(s, false)])
                .unwrap()
                .hash(&req, None)
        };
        assert_eq!(one(header("x-user")), Some(xxh64(b"alice", 0)));
        assert_eq!(one(header("x-absent")), None);
        assert_eq!(one(header(":authority")), Some(xxh64(b"svc:80", 0)));
        assert_eq!(
            one(HashSource::Cookie {
                name: "session".into()
            }),
            Some(xxh64(b"s42", 0))
        );
        assert_eq!(
            one(HashSource::Cookie {
                name: "nope".into()
            }),
            None
        );
        assert_eq!(
            one(HashSource::QueryParameter {
                name: "user".into()
            }),
            Some(xxh64(b"bob", 0))
        );
        assert_eq!(one(HashSource::SourceIp), None, "no source IP supplied");
        let ip = CompiledHashPolicy::new(&[policy(HashSource::SourceIp, false)])
            .unwrap()
            .hash(&req, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(ip, Some(xxh64(b"10.1.2.3", 0)));
        let rewritten = HashSource::Header {
            name: ":path".into(),
            rewrite: Some(RegexRewrite::new("\\?.*$", "").unwrap()),
        };
        assert_eq!(one(rewritten), Some(xxh64(b"/p", 0)));
    }

    #[test]
    fn multiple_values_join_with_commas() {
        let mut h = HeaderMap::new();
        h.append("x-k", HeaderValue::from_static("a"));
        h.append("x-k", HeaderValue::from_static("b"));
        let got = CompiledHashPolicy::new(&[policy(header("x-k"), false)])
            .unwrap()
            .hash(&view(&h, "/"), None);
        assert_eq!(got, Some(xxh64(b"a,b", 0)));
    }

    #[test]
    fn combined_like_envoy_and_terminal_stops() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-b", HeaderValue::from_static("2"));
        let req = view(&h, "/");
        let (a, b) = (xxh64(b"1", 0), xxh64(b"2", 0));
        let both =
            CompiledHashPolicy::new(&[policy(header("x-a"), false), policy(header("x-b"), false)]);
        assert_eq!(both.unwrap().hash(&req, None), Some(a.rotate_left(1) ^ b));
        let terminal =
            CompiledHashPolicy::new(&[policy(header("x-a"), true), policy(header("x-b"), false)]);
        assert_eq!(terminal.unwrap().hash(&req, None), Some(a));
        // A terminal policy without a value does not stop the walk.
        let skipped = CompiledHashPolicy::new(&[
            policy(header("x-none"), true),
            policy(header("x-b"), false),
        ]);
        assert_eq!(skipped.unwrap().hash(&req, None), Some(b));
        assert!(CompiledHashPolicy::new(&[]).is_none());
    }
}
