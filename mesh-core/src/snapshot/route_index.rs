//! Candidate routes per request, in route order, without testing every route.
//!
//! First-match-wins (gRFC A28) forbids reordering, but a route whose literal prefix or exact
//! path pins down the first path segment (`/reviews/…`, exact `/ratings`) can only match paths
//! with that first segment. Such routes are bucketed by segment; everything else (regex, `/`,
//! a prefix ending mid-segment, case-insensitive) is always a candidate. A request tests the
//! merge of its segment's bucket and the always list, in ascending route order — the same
//! answer as the linear scan, with one hash lookup instead of a test per route.

use std::collections::HashMap;

use crate::model::{PathMatch, RouteMatch};

#[derive(Debug, Default)]
pub(crate) struct RouteIndex {
    by_segment: HashMap<Box<str>, Box<[u32]>>,
    always: Box<[u32]>,
}

impl RouteIndex {
    pub(crate) fn new<'a>(routes: impl Iterator<Item = &'a RouteMatch>) -> Self {
        let mut by_segment: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut always = Vec::new();
        for (i, m) in routes.enumerate() {
            match pinned_segment(m) {
                Some(seg) => by_segment.entry(seg.into()).or_default().push(i as u32),
                None => always.push(i as u32),
            }
        }
        RouteIndex {
            by_segment: by_segment
                .into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
            always: always.into(),
        }
    }

    /// Calls `f` on each candidate route index in ascending order until it returns `true`;
    /// returns that index.
    pub(crate) fn find(&self, path: &str, mut f: impl FnMut(usize) -> bool) -> Option<usize> {
        let bucket: &[u32] = self.by_segment.get(first_segment(path)).map_or(&[], |b| b);
        let (mut a, mut b) = (bucket.iter().peekable(), self.always.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => return None,
            };
            let i = *next? as usize;
            if f(i) {
                return Some(i);
            }
        }
    }
}

/// The first segment of a path: `/a/b` → `a`, `/a` → `a`, `/` → ``.
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split_once('/').map_or(rest, |(seg, _)| seg)
}

/// The first segment every path this route matches must have, if the match pins one down.
fn pinned_segment(m: &RouteMatch) -> Option<&str> {
    if !m.case_sensitive {
        return None;
    }
    match &m.path {
        // The segment is complete only if the prefix continues past it with a '/'.
        PathMatch::Prefix(p) => {
            let rest = p.strip_prefix('/')?;
            rest.split_once('/').map(|(seg, _)| seg)
        }
        PathMatch::Exact(p) => p.starts_with('/').then(|| first_segment(p)),
        PathMatch::Regex(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::Regex;

    fn m(path: PathMatch) -> RouteMatch {
        RouteMatch {
            path,
            case_sensitive: true,
            headers: Arc::new([]),
            query_params: Arc::new([]),
            fraction_per_million: None,
        }
    }

    /// The index must agree with a linear scan for every path.
    #[test]
    fn same_answer_as_linear_scan() {
        let routes = [
            m(PathMatch::Prefix("/api/v1/".into())),
            m(PathMatch::Regex(Regex::full_match("/api/.*").unwrap())),
            m(PathMatch::Exact("/api".into())),
            m(PathMatch::Prefix("/ap".into())),
            m(PathMatch::Prefix("/web/".into())),
            m(PathMatch::Exact("/".into())),
            m(PathMatch::Prefix("/".into())),
        ];
        let idx = RouteIndex::new(routes.iter());
        let test = |i: usize, path: &str| match &routes[i].path {
            PathMatch::Prefix(p) => path.starts_with(&**p),
            PathMatch::Exact(p) => path == &**p,
            PathMatch::Regex(r) => r.is_match(path),
        };
        for path in [
            "/api/v1/x",
            "/api/v2",
            "/api",
            "/apx",
            "/web/a",
            "/web",
            "/",
            "",
            "/other/x",
            "/api/",
        ] {
            let linear = (0..routes.len()).find(|&i| test(i, path));
            let mut order = Vec::new();
            let indexed = idx.find(path, |i| {
                order.push(i);
                test(i, path)
            });
            assert_eq!(indexed, linear, "path {path:?}");
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "ascending order for {path:?}: {order:?}"
            );
        }
        // `/web/a` skips the /api routes entirely.
        let mut tested = Vec::new();
        idx.find("/web/a", |i| {
            tested.push(i);
            false
        });
        assert_eq!(tested, [1, 3, 4, 6]);
    }
}
