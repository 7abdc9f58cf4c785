//! Per-request route matching: path, headers, query parameters and runtime fraction
//! (gRFC A28; Envoy `RouteMatch`). Everything here borrows from the request and the compiled
//! snapshot; the common cases allocate nothing.

use http::{header::HeaderName, HeaderMap, Method};

use crate::model::{
    HeaderMatch, HeaderMatcher, PathMatch, QueryParamMatcher, RouteMatch, StringMatcher,
};

/// What the router needs to see of a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// The `:authority` (or `Host`) the request is addressed to.
    pub authority: &'a str,
    /// The `:path`, query included (`/ratings?id=1`).
    pub path_and_query: &'a str,
    /// The `:method`.
    pub method: &'a Method,
    /// The `:scheme`, if known.
    pub scheme: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestView<'a> {
    /// `(path, query)`: split once per request, not once per route.
    pub(crate) fn split_path(&self) -> (&'a str, &'a str) {
        self.path_and_query
            .split_once('?')
            .unwrap_or((self.path_and_query, ""))
    }
}

/// A header matcher with its name parsed once, at snapshot build time.
#[derive(Debug)]
pub(crate) struct CompiledHeader {
    name: HeaderKey,
    spec: HeaderMatcher,
}

#[derive(Debug)]
enum HeaderKey {
    Authority,
    Path,
    Method,
    Scheme,
    Regular(HeaderName),
    /// A name `http` cannot represent: such a header can never be present.
    Invalid,
}

/// A route's match, compiled.
#[derive(Debug)]
pub(crate) struct CompiledMatch {
    path: PathMatch,
    case_sensitive: bool,
    headers: Box<[CompiledHeader]>,
    query: Box<[QueryParamMatcher]>,
    fraction_per_million: Option<u32>,
}

impl CompiledHeader {
    pub(crate) fn new(h: &HeaderMatcher) -> Self {
        CompiledHeader {
            name: match &*h.name {
                ":authority" | "host" => HeaderKey::Authority,
                ":path" => HeaderKey::Path,
                ":method" => HeaderKey::Method,
                ":scheme" => HeaderKey::Scheme,
                n => HeaderName::from_bytes(n.as_bytes())
                    .map(HeaderKey::Regular)
                    .unwrap_or(HeaderKey::Invalid),
            },
            spec: h.clone(),
        }
    }

    pub(crate) fn matches(&self, req: &RequestView<'_>) -> bool {
        header_matches(self, req)
    }
}

impl CompiledMatch {
    pub(crate) fn new(m: &RouteMatch) -> Self {
        let headers = m.headers.iter().map(CompiledHeader::new).collect();
        CompiledMatch {
            path: m.path.clone(),
            case_sensitive: m.case_sensitive,
            headers,
            query: m.query_params.iter().cloned().collect(),
            fraction_per_million: m.fraction_per_million,
        }
    }

    /// Whether the request matches. `path` and `query` come from [`RequestView::split_path`];
    /// `draw` yields a uniform number in `[0, 1_000_000)` and is called only if the route has a
    /// runtime fraction.
    pub(crate) fn matches(
        &self,
        req: &RequestView<'_>,
        (path, query): (&str, &str),
        draw: impl FnOnce() -> u32,
    ) -> bool {
        if !self.path_matches(path) {
            return false;
        }
        if !self.headers.iter().all(|h| header_matches(h, req)) {
            return false;
        }
        if !self.query.iter().all(|q| query_matches(q, query)) {
            return false;
        }
        match self.fraction_per_million {
            None => true,
            Some(n) => draw() < n,
        }
    }

    fn path_matches(&self, path: &str) -> bool {
        match &self.path {
            PathMatch::Prefix(p) => {
                if self.case_sensitive {
                    path.starts_with(&**p)
                } else {
                    path.len() >= p.len()
                        && path.is_char_boundary(p.len())
                        && path[..p.len()].eq_ignore_ascii_case(p)
                }
            }
            PathMatch::Exact(p) => {
                if self.case_sensitive {
                    path == &**p
                } else {
                    path.eq_ignore_ascii_case(p)
                }
            }
            PathMatch::Regex(re) => re.is_match(path),
        }
    }
}

fn header_matches(h: &CompiledHeader, req: &RequestView<'_>) -> bool {
    let mut joined = String::new();
    let value: Option<&str> = match &h.name {
        HeaderKey::Authority => Some(req.authority),
        HeaderKey::Path => Some(req.path_and_query),
        HeaderKey::Method => Some(req.method.as_str()),
        HeaderKey::Scheme => req.scheme,
        HeaderKey::Invalid => None,
        HeaderKey::Regular(name) => {
            let mut values = req.headers.get_all(name).iter();
            match (values.next(), values.next()) {
                (None, _) => None,
                (Some(v), None) => v.to_str().ok(),
                (Some(first), Some(second)) => {
                    // Multiple values are matched joined with "," (Envoy, gRFC A28).
                    for (i, v) in [first, second].into_iter().chain(values).enumerate() {
                        if i > 0 {
                            joined.push(',');
                        }
                        joined.push_str(v.to_str().unwrap_or(""));
                    }
                    Some(joined.as_str())
                }
            }
        }
    };
    let spec = &h.spec;
    let value = match (value, spec.treat_missing_as_empty) {
        (Some(v), _) => v,
        (None, true) => "",
        (None, false) => {
            // An absent header matches only `present: false` (or `present: true` inverted).
            return matches!(spec.matcher, HeaderMatch::Present(p) if p == spec.invert);
        }
    };
    let hit = match &spec.matcher {
        HeaderMatch::Present(p) => *p,
        HeaderMatch::Range { start, end } => value
            .parse::<i64>()
            .map(|v| *start <= v && v < *end)
            .unwrap_or(false),
        HeaderMatch::String(m) => string_matches(m, value),
    };
    hit != spec.invert
}

fn query_matches(q: &QueryParamMatcher, query: &str) -> bool {
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == &*q.name {
            return match &q.value {
                None => true,
                Some(m) => string_matches(m, value),
            };
        }
    }
    false
}

impl StringMatcher {
    /// Whether `value` matches (Envoy `StringMatcher` semantics; regexes match the whole value).
    pub fn matches(&self, value: &str) -> bool {
        string_matches(self, value)
    }
}

/// Evaluates a string matcher (lowercase values were prepared at conversion for `ignore_case`).
pub(crate) fn string_matches(m: &StringMatcher, value: &str) -> bool {
    match m {
        StringMatcher::Exact {
            value: v,
            ignore_case,
        } => {
            if *ignore_case {
                value.eq_ignore_ascii_case(v)
            } else {
                value == &**v
            }
        }
        StringMatcher::Prefix {
            value: v,
            ignore_case,
        } => {
            if *ignore_case {
                value.len() >= v.len()
                    && value.is_char_boundary(v.len())
                    && value[..v.len()].eq_ignore_ascii_case(v)
            } else {
                value.starts_with(&**v)
            }
        }
        StringMatcher::Suffix {
            value: v,
            ignore_case,
        } => {
            if *ignore_case {
                let start = value.len().wrapping_sub(v.len());
                value.len() >= v.len()
                    && value.is_char_boundary(start)
                    && value[start..].eq_ignore_ascii_case(v)
            } else {
                value.ends_with(&**v)
            }
        }
        StringMatcher::Contains {
            value: v,
            ignore_case,
        } => {
            if *ignore_case {
                value.to_ascii_lowercase().contains(&v.to_ascii_lowercase())
            } else {
                value.contains(&**v)
            }
        }
        StringMatcher::Regex(re) => re.is_match(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Regex;
    use std::sync::Arc;

    fn route(
        path: PathMatch,
        headers: Vec<HeaderMatcher>,
        query: Vec<QueryParamMatcher>,
    ) -> CompiledMatch {
        CompiledMatch::new(&RouteMatch {
            path,
            case_sensitive: true,
            headers: headers.into(),
            query_params: query.into(),
            fraction_per_million: None,
        })
    }

    fn hdr(name: &str, matcher: HeaderMatch, invert: bool) -> HeaderMatcher {
        HeaderMatcher {
            name: name.into(),
            matcher,
            invert,
            treat_missing_as_empty: false,
        }
    }

    fn exact(v: &str) -> HeaderMatch {
        HeaderMatch::String(StringMatcher::Exact {
            value: v.into(),
            ignore_case: false,
        })
    }

    fn check(m: &CompiledMatch, path: &str, headers: &[(&str, &str)]) -> bool {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let req = RequestView {
            authority: "svc:80",
            path_and_query: path,
            method: &Method::GET,
            scheme: Some("http"),
            headers: &map,
        };
        m.matches(&req, req.split_path(), || 0)
    }

    #[test]
    fn paths() {
        let p = route(PathMatch::Prefix("/api".into()), vec![], vec![]);
        assert!(check(&p, "/api/v1?x=1", &[]));
        assert!(!check(&p, "/ap", &[]));
        let e = route(PathMatch::Exact("/a".into()), vec![], vec![]);
        assert!(check(&e, "/a?q", &[]));
        assert!(!check(&e, "/a/", &[]));
        let r = route(
            PathMatch::Regex(Regex::full_match("/v[0-9]+/.*").unwrap()),
            vec![],
            vec![],
        );
        assert!(check(&r, "/v12/x", &[]));
        assert!(!check(&r, "/x/v12/x", &[]), "regex is a full match");
        let mut ci = CompiledMatch::new(&RouteMatch {
            path: PathMatch::Prefix("/api".into()),
            case_sensitive: false,
            headers: Arc::new([]),
            query_params: Arc::new([]),
            fraction_per_million: None,
        });
        assert!(check(&ci, "/API/x", &[]));
        ci.case_sensitive = true;
        assert!(!check(&ci, "/API/x", &[]));
    }

    #[test]
    fn headers_absent_inverted_and_joined() {
        let m = route(
            PathMatch::Prefix("/".into()),
            vec![hdr("end-user", exact("jason"), false)],
            vec![],
        );
        assert!(check(&m, "/", &[("end-user", "jason")]));
        assert!(!check(&m, "/", &[("end-user", "bob")]));
        assert!(!check(&m, "/", &[]));
        let inv = route(
            PathMatch::Prefix("/".into()),
            vec![hdr("end-user", exact("jason"), true)],
            vec![],
        );
        assert!(check(&inv, "/", &[("end-user", "bob")]));
        assert!(
            !check(&inv, "/", &[]),
            "absent header never matches, even inverted"
        );
        let absent = route(
            PathMatch::Prefix("/".into()),
            vec![hdr("x", HeaderMatch::Present(true), true)],
            vec![],
        );
        assert!(check(&absent, "/", &[]));
        assert!(!check(&absent, "/", &[("x", "1")]));
        let joined = route(
            PathMatch::Prefix("/".into()),
            vec![hdr("x", exact("a,b"), false)],
            vec![],
        );
        assert!(check(&joined, "/", &[("x", "a"), ("x", "b")]));
        let range = route(
            PathMatch::Prefix("/".into()),
            vec![hdr("n", HeaderMatch::Range { start: 1, end: 5 }, false)],
            vec![],
        );
        assert!(check(&range, "/", &[("n", "4")]));
        assert!(!check(&range, "/", &[("n", "5")]));
        assert!(!check(&range, "/", &[("n", "4x")]));
        let method = route(
            PathMatch::Prefix("/".into()),
            vec![hdr(":method", exact("GET"), false)],
            vec![],
        );
        assert!(check(&method, "/", &[]));
    }

    #[test]
    fn query_and_fraction() {
        let q = route(
            PathMatch::Prefix("/".into()),
            vec![],
            vec![QueryParamMatcher {
                name: "v".into(),
                value: Some(StringMatcher::Exact {
                    value: "2".into(),
                    ignore_case: false,
                }),
            }],
        );
        assert!(check(&q, "/x?a=1&v=2", &[]));
        assert!(!check(&q, "/x?v=3", &[]));
        assert!(!check(&q, "/x", &[]));
        let f = CompiledMatch::new(&RouteMatch {
            path: PathMatch::Prefix("/".into()),
            case_sensitive: true,
            headers: Arc::new([]),
            query_params: Arc::new([]),
            fraction_per_million: Some(250_000),
        });
        let map = HeaderMap::new();
        let req = RequestView {
            authority: "a",
            path_and_query: "/",
            method: &Method::GET,
            scheme: None,
            headers: &map,
        };
        assert!(f.matches(&req, req.split_path(), || 249_999));
        assert!(!f.matches(&req, req.split_path(), || 250_000));
    }

    #[test]
    fn string_matchers_ignore_case() {
        let m = StringMatcher::Suffix {
            value: "ABC".into(),
            ignore_case: true,
        };
        assert!(string_matches(&m, "xxabc"));
        let m = StringMatcher::Contains {
            value: "Mid".into(),
            ignore_case: true,
        };
        assert!(string_matches(&m, "aaMIDbb"));
        let m = StringMatcher::Prefix {
            value: "é".into(),
            ignore_case: true,
        };
        assert!(
            !string_matches(&m, "a"),
            "no panic on short or non-boundary input"
        );
    }
}
