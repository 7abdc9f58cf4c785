//! RequestAuthentication → the Envoy `jwt_authn` HTTP filter on inbound listeners, built the way
//! istiod builds it for sidecars (istio/istio `pilot/pkg/security/authn/policy_applier.go`,
//! `convertToEnvoyJwtConfig`; Envoy `extensions/filters/http/jwt_authn/v3/config.proto`).
//!
//! Every `jwtRules[i]` of every RequestAuthentication selecting the workload (in load order)
//! becomes provider `origins-i`: `issuer`, `audiences`, `forward` = `forwardOriginalToken`,
//! `forward_payload_header` = `outputPayloadToHeader`, `payload_in_metadata` = the issuer,
//! `from_headers` / `from_params` / `from_cookies` (`fromCookies`), `claim_to_headers`
//! (`outputClaimToHeaders`: `header_name` / `claim_name`), and the JWKS inline in `local_jwks`. One rule on prefix `/`:
//! - one provider: `requires_any { origins-0, allow_missing }` — a token must verify if
//!   present, an absent one passes (Istio: only an AuthorizationPolicy can demand a principal);
//! - several: `requires_any { origins-0, …, origins-n, requires_all { any{origins-i,
//!   allow_missing} … } }`, so tokens of any one provider pass even when providers share a
//!   location.
//!
//! `bypass_cors_preflight: true`, as istiod. The filter is placed before the RBAC filters. istiod
//! follows it with its own `istio_authn` filter deriving the request principal (`iss/sub`) and
//! claims for RBAC; here mesh-core's inbound JWT layer writes that `istio_authn` metadata itself.
//! The filter is not optional: a server that cannot run it (e.g. a gRPC library without JWT
//! support) NACKs the listener rather than serving requests it cannot authenticate.

use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
use envoy_types::pb::envoy::config::route::v3::{route_match::PathSpecifier, RouteMatch};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_provider::JwksSourceSpecifier, jwt_requirement::RequiresType,
    requirement_rule::RequirementType, JwtAuthentication, JwtClaimToHeader, JwtHeader, JwtProvider,
    JwtRequirement, JwtRequirementAndList, JwtRequirementOrList, RequirementRule,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter::ConfigType, HttpFilter,
};
use envoy_types::pb::google::protobuf::Empty;

use super::to_any;
use crate::source::model::JwtRule;

/// The filter's name (Envoy's canonical name, as istiod emits it).
pub const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";

/// istiod's provider name for the `i`-th JWT rule.
pub fn provider_name(i: usize) -> String {
    format!("origins-{i}")
}

fn provider(r: &JwtRule) -> JwtProvider {
    JwtProvider {
        issuer: r.issuer.clone(),
        audiences: r.audiences.clone(),
        forward: r.forward_original_token,
        forward_payload_header: r.output_payload_to_header.clone().unwrap_or_default(),
        payload_in_metadata: r.issuer.clone(),
        from_headers: r
            .from_headers
            .iter()
            .map(|(name, prefix)| JwtHeader {
                name: name.clone(),
                value_prefix: prefix.clone(),
            })
            .collect(),
        from_params: r.from_params.clone(),
        from_cookies: r.from_cookies.clone(),
        claim_to_headers: r
            .output_claim_to_headers
            .iter()
            .map(|(header, claim)| JwtClaimToHeader {
                header_name: header.clone(),
                claim_name: claim.clone(),
                ..Default::default()
            })
            .collect(),
        jwks_source_specifier: Some(JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(Specifier::InlineString(r.jwks.clone())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn req(t: RequiresType) -> JwtRequirement {
    JwtRequirement {
        requires_type: Some(t),
    }
}

fn any(requirements: Vec<JwtRequirement>) -> JwtRequirement {
    req(RequiresType::RequiresAny(JwtRequirementOrList {
        requirements,
    }))
}

/// The `JwtAuthentication` for `rules`, `None` when there are none.
pub fn jwt_authentication(rules: &[&JwtRule]) -> Option<JwtAuthentication> {
    if rules.is_empty() {
        return None;
    }
    let by_name = |i| req(RequiresType::ProviderName(provider_name(i)));
    let or_missing = |i| any(vec![by_name(i), req(RequiresType::AllowMissing(Empty {}))]);
    let requires = if rules.len() == 1 {
        or_missing(0)
    } else {
        let mut outer: Vec<JwtRequirement> = (0..rules.len()).map(by_name).collect();
        outer.push(req(RequiresType::RequiresAll(JwtRequirementAndList {
            requirements: (0..rules.len()).map(or_missing).collect(),
        })));
        any(outer)
    };
    Some(JwtAuthentication {
        providers: rules
            .iter()
            .enumerate()
            .map(|(i, r)| (provider_name(i), provider(r)))
            .collect(),
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(PathSpecifier::Prefix("/".into())),
                ..Default::default()
            }),
            requirement_type: Some(RequirementType::Requires(requires)),
        }],
        bypass_cors_preflight: true,
        ..Default::default()
    })
}

/// The `jwt_authn` HTTP filter for `rules`, `None` when there are none.
pub fn jwt_filter(rules: &[&JwtRule]) -> Option<HttpFilter> {
    jwt_authentication(rules).map(|cfg| HttpFilter {
        name: JWT_FILTER.to_string(),
        config_type: Some(ConfigType::TypedConfig(to_any(&cfg))),
        ..Default::default()
    })
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
