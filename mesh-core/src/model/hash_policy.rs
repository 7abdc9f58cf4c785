//! `RouteAction.hash_policy`: how a route derives the request hash that RING_HASH and MAGLEV
//! clusters pick by (Envoy `route_components.proto` `RouteAction.HashPolicy`; gRFC A42;
//! XDS-SEMANTICS.md row 21).
//!
//! Policies are evaluated in order; each that yields a value is folded in as
//! `hash = rotl(hash, 1) ^ value` (Envoy and gRPC combine alike), and a `terminal` policy that
//! yields one stops the walk. No value at all ⇒ the balancer uses a random hash (gRFC A42; for
//! Envoy the same as a random pick). Values are hashed with XXH64, seed 0.

use std::{fmt, hash, sync::Arc};

/// One `RouteAction.HashPolicy`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HashPolicy {
    /// What to hash.
    pub source: HashSource,
    /// `terminal`: once this policy yields a value, skip the rest.
    pub terminal: bool,
}

/// `HashPolicy.policy_specifier`, for the kinds the mesh computes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HashSource {
    /// `header`: the header's value (several values joined with `,`, as gRPC does; Envoy
    /// hashes the sorted list instead). Names are lowercased; `:authority`, `:path` (query
    /// included) and `:method` read the request line. Absent ⇒ no value.
    Header {
        /// Header name, lowercase.
        name: Arc<str>,
        /// `regex_rewrite`: every match of the regex is replaced by the substitution before
        /// hashing.
        rewrite: Option<RegexRewrite>,
    },
    /// `cookie`: the value of this cookie in the `Cookie` header. The mesh never generates
    /// the cookie (Envoy does when `ttl` is set): an absent cookie yields no value.
    Cookie {
        /// Cookie name.
        name: Arc<str>,
    },
    /// `connection_properties.source_ip`: the source IP the caller attaches to the request
    /// (a client cannot know its own source address before connecting, gRFC A42; see
    /// `mesh_tower::route::SourceIp`). Absent ⇒ no value.
    SourceIp,
    /// `query_parameter`: the first value of this query parameter. Absent ⇒ no value.
    QueryParameter {
        /// Parameter name (case-sensitive).
        name: Arc<str>,
    },
}

/// `envoy.type.matcher.v3.RegexMatchAndSubstitute`: every match (unanchored) of `pattern` is
/// replaced by `substitution`, written as in RE2 (`\1` refers to a group). Compares and
/// hashes by pattern and substitution.
#[derive(Clone)]
pub struct RegexRewrite {
    pattern: Arc<str>,
    compiled: regex::Regex,
    substitution: Arc<str>,
    /// `substitution` in the `regex` crate's syntax (`${1}`, `$$`).
    replacement: Box<str>,
}

impl RegexRewrite {
    /// Compiles `pattern` (RE2 syntax, not anchored). The error text comes from the `regex`
    /// crate.
    pub fn new(pattern: &str, substitution: &str) -> Result<Self, regex::Error> {
        Ok(RegexRewrite {
            pattern: pattern.into(),
            compiled: regex::Regex::new(pattern)?,
            substitution: substitution.into(),
            replacement: re2_replacement(substitution).into(),
        })
    }

    /// The input with every match replaced.
    pub fn apply<'a>(&self, input: &'a str) -> std::borrow::Cow<'a, str> {
        self.compiled.replace_all(input, &*self.replacement)
    }

    /// The pattern as configured.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The substitution as configured.
    pub fn substitution(&self) -> &str {
        &self.substitution
    }
}

impl fmt::Debug for RegexRewrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RegexRewrite({:?} -> {:?})",
            self.pattern, self.substitution
        )
    }
}

impl PartialEq for RegexRewrite {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.substitution == other.substitution
    }
}
impl Eq for RegexRewrite {}
impl hash::Hash for RegexRewrite {
    fn hash<H: hash::Hasher>(&self, state: &mut H) {
        self.pattern.hash(state);
        self.substitution.hash(state);
    }
}

/// RE2's `\N` group references → `${N}`, a literal `$` → `$$`, `\\` → `\`.
fn re2_replacement(sub: &str) -> String {
    let mut out = String::with_capacity(sub.len() + 4);
    let mut chars = sub.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str("${");
                    out.push(*d);
                    out.push('}');
                    chars.next();
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_uses_re2_group_syntax() {
        let r = RegexRewrite::new("^/user/([0-9]+)/.*$", "id-\\1$").unwrap();
        assert_eq!(r.apply("/user/42/profile"), "id-42$");
        assert_eq!(r.apply("/other"), "/other");
    }
}
