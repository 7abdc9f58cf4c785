//! `RouteAction.hash_policy` (Envoy `route_components.proto`; gRFC A42; XDS-SEMANTICS.md
//! row 21).
//!
//! - `header`: name required (lowercased); `regex_rewrite` compiled (a bad regex is invalid).
//! - `cookie`: name required; `ttl`, `path` and `attributes` only matter for generating the
//!   cookie, which the mesh never does (a missing cookie yields no hash).
//! - `connection_properties`: `source_ip: true` hashes the source IP the caller supplies;
//!   `false` yields nothing and is dropped.
//! - `query_parameter`: name required.
//! - `filter_state`: dropped. Envoy's filter state does not exist in-process; gRPC's one key,
//!   `io.grpc.channel_id`, is not implemented (gRFC A42 lets unsupported kinds yield nothing,
//!   where Envoy would reject the config — the mesh follows gRPC here).
//! - No specifier: invalid.

use envoy_types::pb::envoy::config::route::v3::route_action::{
    hash_policy::PolicySpecifier, HashPolicy as HashPolicyProto,
};

use super::{Ctx, Path};
use crate::model::{HashPolicy, HashSource, ModelError, RegexRewrite};

/// Converts `hash_policy` at `path` (a `RouteAction`'s `hash_policy` list).
pub(super) fn hash_policies(
    cx: &Ctx<'_>,
    path: &Path,
    list: &[HashPolicyProto],
) -> Result<Vec<HashPolicy>, ModelError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, hp) in list.iter().enumerate() {
        let p = path.index("hash_policy", i);
        let non_empty = |field: &str, v: &str| {
            if v.is_empty() {
                Err(cx.invalid(&p.field(field).field("name"), "must not be empty"))
            } else {
                Ok(())
            }
        };
        let source = match &hp.policy_specifier {
            Some(PolicySpecifier::Header(h)) => {
                if h.header_name.is_empty() {
                    return Err(cx.invalid(&p.field("header").field("header_name"), "empty"));
                }
                let rewrite = match &h.regex_rewrite {
                    None => None,
                    Some(rw) => {
                        let rp = p.field("header").field("regex_rewrite");
                        let pattern = rw
                            .pattern
                            .as_ref()
                            .ok_or_else(|| cx.invalid(&rp.field("pattern"), "missing"))?;
                        Some(
                            RegexRewrite::new(&pattern.regex, &rw.substitution).map_err(|e| {
                                cx.invalid(
                                    &rp.field("pattern").field("regex"),
                                    format!("bad regex: {e}"),
                                )
                            })?,
                        )
                    }
                };
                HashSource::Header {
                    name: h.header_name.to_ascii_lowercase().into(),
                    rewrite,
                }
            }
            Some(PolicySpecifier::Cookie(c)) => {
                non_empty("cookie", &c.name)?;
                HashSource::Cookie {
                    name: c.name.as_str().into(),
                }
            }
            Some(PolicySpecifier::ConnectionProperties(c)) => {
                if !c.source_ip {
                    continue;
                }
                HashSource::SourceIp
            }
            Some(PolicySpecifier::QueryParameter(q)) => {
                non_empty("query_parameter", &q.name)?;
                HashSource::QueryParameter {
                    name: q.name.as_str().into(),
                }
            }
            Some(PolicySpecifier::FilterState(_)) => continue,
            None => return Err(cx.invalid(&p, "no policy specifier")),
        };
        out.push(HashPolicy {
            source,
            terminal: hp.terminal,
        });
    }
    Ok(out)
}
