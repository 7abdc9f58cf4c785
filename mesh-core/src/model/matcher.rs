//! String, header and query-parameter matchers (Envoy `type.matcher.v3`, gRFC A28 and A63).

use std::{fmt, hash, ops::Deref, sync::Arc};

/// A compiled RE2-syntax regex that matches the **whole** input (Envoy `safe_regex` semantics;
/// grpc-go compiles `^(?:re)$`). Compares and hashes by its source pattern.
#[derive(Clone)]
pub struct Regex {
    source: Arc<str>,
    compiled: regex::Regex,
}

impl Regex {
    /// Compiles `pattern` anchored at both ends. The error text comes from the `regex` crate.
    pub fn full_match(pattern: &str) -> Result<Self, regex::Error> {
        let compiled = regex::Regex::new(&format!("^(?:{pattern})$"))?;
        Ok(Regex {
            source: pattern.into(),
            compiled,
        })
    }

    /// The pattern as configured (without the anchors).
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl Deref for Regex {
    type Target = regex::Regex;
    fn deref(&self) -> &regex::Regex {
        &self.compiled
    }
}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Regex({:?})", self.source)
    }
}

impl PartialEq for Regex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl Eq for Regex {}
impl hash::Hash for Regex {
    fn hash<H: hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state)
    }
}

/// `envoy.type.matcher.v3.StringMatcher`. `ignore_case` lowercases both sides (ignored for
/// regex, as in Envoy and gRPC).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StringMatcher {
    /// Equal to the value.
    Exact {
        /// Expected value (lowercased already when `ignore_case`).
        value: Arc<str>,
        /// Compare case-insensitively.
        ignore_case: bool,
    },
    /// Starts with the value (non-empty).
    Prefix {
        /// Expected prefix.
        value: Arc<str>,
        /// Compare case-insensitively.
        ignore_case: bool,
    },
    /// Ends with the value (non-empty).
    Suffix {
        /// Expected suffix.
        value: Arc<str>,
        /// Compare case-insensitively.
        ignore_case: bool,
    },
    /// Contains the value (non-empty).
    Contains {
        /// Expected substring.
        value: Arc<str>,
        /// Compare case-insensitively.
        ignore_case: bool,
    },
    /// Matches the whole input.
    Regex(Regex),
}

/// `envoy.config.route.v3.HeaderMatcher`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HeaderMatcher {
    /// Header name, lowercased (pseudo-headers keep their leading `:`).
    pub name: Arc<str>,
    /// How the value is matched.
    pub matcher: HeaderMatch,
    /// Invert the result (an absent header still does not match, except for
    /// [`HeaderMatch::Present`]; see XDS-SEMANTICS.md row 6).
    pub invert: bool,
    /// Envoy's `treat_missing_header_as_empty`: an absent header is matched as `""`.
    pub treat_missing_as_empty: bool,
}

/// The value test of a [`HeaderMatcher`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HeaderMatch {
    /// A string matcher over the (comma-joined) header value.
    String(StringMatcher),
    /// `present_match`: the header is present (`true`) or absent (`false`).
    Present(bool),
    /// `range_match`: the value parses as a base-10 `i64` in `[start, end)`.
    Range {
        /// Inclusive start.
        start: i64,
        /// Exclusive end.
        end: i64,
    },
}

/// `envoy.config.route.v3.QueryParameterMatcher`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueryParamMatcher {
    /// Parameter name (exact, case-sensitive).
    pub name: Arc<str>,
    /// `None` = `present_match`; otherwise the value must match.
    pub value: Option<StringMatcher>,
}
