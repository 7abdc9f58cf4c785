//! SPIFFE IDs in the form Istio issues them: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`
//! (SPIFFE ID spec §2, Istio "Secure naming").

use std::fmt;

use super::CaError;

/// A workload identity `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
///
/// Built only through [`SpiffeId::new`] or [`SpiffeId::parse`], so every value is well formed:
/// a lowercase trust domain of `[a-z0-9.-_]` and non-empty path segments without `/`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    uri: String,
    trust_domain_len: usize,
}

impl SpiffeId {
    /// The Istio-shaped identity of a service account in a namespace.
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, CaError> {
        check_trust_domain(trust_domain)?;
        for (what, seg) in [
            ("namespace", namespace),
            ("service account", service_account),
        ] {
            if seg.is_empty() || seg.contains('/') || seg == "." || seg == ".." {
                return Err(CaError::InvalidIdentity(format!(
                    "{what} {seg:?} is not a path segment"
                )));
            }
        }
        Ok(Self {
            uri: format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"),
            trust_domain_len: trust_domain.len(),
        })
    }

    /// Parses any SPIFFE ID (`spiffe://<trust-domain>/<path>`), not only the Istio shape.
    pub fn parse(uri: &str) -> Result<Self, CaError> {
        let rest = uri.strip_prefix("spiffe://").ok_or_else(|| {
            CaError::InvalidIdentity(format!("{uri:?} does not start with spiffe://"))
        })?;
        let (td, path) = rest.split_once('/').unwrap_or((rest, ""));
        check_trust_domain(td)?;
        if !path.is_empty()
            && path
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(CaError::InvalidIdentity(format!(
                "{uri:?} has an empty or dot path segment"
            )));
        }
        Ok(Self {
            uri: uri.to_owned(),
            trust_domain_len: td.len(),
        })
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.uri["spiffe://".len().."spiffe://".len() + self.trust_domain_len]
    }

    /// The full URI, e.g. `spiffe://cluster.local/ns/default/sa/greeter`.
    pub fn as_str(&self) -> &str {
        &self.uri
    }
}

fn check_trust_domain(td: &str) -> Result<(), CaError> {
    let ok = !td.is_empty()
        && td.len() <= 255
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CaError::InvalidIdentity(format!(
            "trust domain {td:?} must be non-empty lowercase [a-z0-9.-_]"
        )))
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_shape_and_parse_round_trip() {
        let id = SpiffeId::new("cluster.local", "default", "greeter").unwrap();
        assert_eq!(id.as_str(), "spiffe://cluster.local/ns/default/sa/greeter");
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(SpiffeId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    fn rejects_malformed() {
        assert!(SpiffeId::new("Cluster.Local", "a", "b").is_err());
        assert!(SpiffeId::new("td", "a/b", "c").is_err());
        assert!(SpiffeId::new("td", "", "c").is_err());
        assert!(SpiffeId::parse("https://td/ns/a/sa/b").is_err());
        assert!(SpiffeId::parse("spiffe://td/ns//sa/b").is_err());
    }
}
