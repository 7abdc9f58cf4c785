use envoy_types::pb::envoy::config::listener::v3::Listener;
use std::sync::Arc;

use mesh_core::source::{decode_resources, DecodedResource, Format};

use crate::source::{load_str, ConfigError, MeshConfig};
use crate::translate::translate;

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","y":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"}]}"#;

fn config(extra: &str) -> Result<(MeshConfig, Vec<crate::source::Warning>), ConfigError> {
    load_str(
        "jwt.yaml",
        &format!(
            r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: greeter, namespace: demo}}
spec: {{address: 10.0.0.1, ports: {{grpc: 8080}}, labels: {{app: greeter}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: other, namespace: demo}}
spec: {{address: 10.0.0.2, ports: {{grpc: 8080}}, labels: {{app: other}}}}
---
{extra}"#
        ),
    )
}

fn inbound(config: &MeshConfig, ip: &str) -> Listener {
    translate(config)
        .listener(&format!("xds.istio.io/grpc/lds/inbound/{ip}:8080"))
        .expect("inbound listener")
}

fn golden(yaml: &str) -> Listener {
    match decode_resources(yaml, Format::Yaml).unwrap().pop() {
        Some(DecodedResource::Listener(l)) => l,
        other => panic!("not a listener: {other:?}"),
    }
}

/// istiod's shape for one jwtRule, before the ALLOW RBAC filter (policy_applier.go).
#[test]
fn one_rule_golden() {
    let (cfg, warnings) = config(&format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: demo}}
spec:
  selector: {{matchLabels: {{app: greeter}}}}
  jwtRules:
  - issuer: https://issuer.example
    audiences: [api]
    jwks: '{JWKS}'
    fromHeaders: [{{name: x-token, prefix: "Token "}}]
    fromParams: [jwt]
    outputPayloadToHeader: x-jwt-payload
    forwardOriginalToken: true
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: need-principal, namespace: demo}}
spec:
  selector: {{matchLabels: {{app: greeter}}}}
  rules: [{{from: [{{source: {{requestPrincipals: ["*"]}}}}]}}]
"#
    ))
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let want = golden(&format!(
        r#"
"@type": type.googleapis.com/envoy.config.listener.v3.Listener
name: xds.istio.io/grpc/lds/inbound/10.0.0.1:8080
address: {{socket_address: {{address: 10.0.0.1, port_value: 8080}}}}
filter_chains:
- name: inbound-plaintext
  filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: xds.istio.io/grpc/lds/inbound/10.0.0.1:8080
      route_config:
        name: xds.istio.io/grpc/lds/inbound/10.0.0.1:8080-routes
        virtual_hosts:
        - name: inbound|http
          domains: ["*"]
          routes: [{{match: {{prefix: /}}, non_forwarding_action: {{}}}}]
      http_filters:
      - name: envoy.filters.http.jwt_authn
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
          providers:
            origins-0:
              issuer: https://issuer.example
              audiences: [api]
              local_jwks: {{inline_string: '{JWKS}'}}
              forward: true
              from_headers: [{{name: x-token, value_prefix: "Token "}}]
              from_params: [jwt]
              forward_payload_header: x-jwt-payload
              payload_in_metadata: https://issuer.example
          rules:
          - match: {{prefix: /}}
            requires:
              requires_any:
                requirements:
                - provider_name: origins-0
                - allow_missing: {{}}
          bypass_cors_preflight: true
      - name: envoy.filters.http.rbac
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
          rules:
            policies:
              ns[demo]-policy[need-principal]-rule[0]:
                permissions: [{{and_rules: {{rules: [{{any: true}}]}}}}]
                principals:
                - and_ids:
                    ids:
                    - or_ids:
                        ids:
                        - metadata:
                            filter: istio_authn
                            path: [{{key: request.auth.principal}}]
                            value: {{string_match: {{safe_regex: {{regex: .+}}}}}}
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    ));
    assert_eq!(inbound(&cfg, "10.0.0.1"), want);
    // The other workload is not selected: no jwt filter, router alone.
    let other = inbound(&cfg, "10.0.0.2");
    let mesh = mesh_core::model::ServerListener::try_from(other).unwrap();
    assert_eq!(mesh.uniform_http_filters().unwrap().len(), 1);
    // And mesh-core accepts what was emitted.
    let l = mesh_core::model::ServerListener::try_from(inbound(&cfg, "10.0.0.1")).unwrap();
    assert!(
        mesh_core::authz::AuthzChain::from_http_filters(l.uniform_http_filters().unwrap())
            .jwt()
            .is_some()
    );
}

#[test]
fn several_rules_use_istiods_or_of_providers_and_all_allow_missing() {
    let (cfg, _) = config(&format!(
        r#"
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {{name: a, namespace: demo}}
spec:
  jwtRules: [{{issuer: a, jwks: '{JWKS}'}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: mesh, namespace: istio-system}}
spec:
  jwtRules: [{{issuer: b, jwks: '{JWKS}'}}]
"#
    ))
    .unwrap();
    let l = mesh_core::model::ServerListener::try_from(inbound(&cfg, "10.0.0.2")).unwrap();
    let mesh_core::model::HttpFilterConfig::JwtAuthn(j) =
        &l.uniform_http_filters().unwrap()[0].config
    else {
        panic!("first filter: {:?}", l.uniform_http_filters().unwrap()[0]);
    };
    let issuers: Vec<&str> = j.providers.iter().map(|p| &*p.issuer).collect();
    assert_eq!(issuers, ["a", "b"]);
    use mesh_core::model::JwtRequirement::*;
    let p = |i| Provider {
        provider: i,
        audiences: None,
    };
    let either = |i| Any(vec![p(i), AllowMissing].into());
    assert_eq!(
        j.rules[0].requires,
        Some(Any(vec![
            p(0),
            p(1),
            All(vec![either(0), either(1)].into())
        ]
        .into()))
    );
}

#[test]
fn jwks_uri_file_is_inlined_http_recorded_and_other_uris_warn() {
    let path = std::env::temp_dir().join(format!("cp-jwks-{}.json", std::process::id()));
    std::fs::write(&path, JWKS).unwrap();
    let (cfg, warnings) = config(&format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: a, namespace: demo}}
spec:
  jwtRules:
  - {{issuer: a, jwksUri: "file://{}"}}
  - {{issuer: b, jwksUri: "https://issuer.example/jwks", timeout: 1500ms}}
  - {{issuer: c, jwksUri: "ftp://issuer.example/jwks"}}
"#,
        path.display()
    ))
    .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(cfg.request_authentications[0].jwt_rules[0].jwks, JWKS);
    let rules = &cfg.request_authentications[0].jwt_rules;
    assert!(rules[0].jwks_uri.is_none());
    // Fetched by the control plane (crate::jwks), not at load.
    assert_eq!(rules[1].jwks, crate::source::model::EMPTY_JWKS);
    let remote = rules[1].jwks_uri.as_ref().unwrap();
    assert_eq!(
        (remote.uri.as_str(), remote.timeout, remote.field.as_str()),
        (
            "https://issuer.example/jwks",
            std::time::Duration::from_millis(1500),
            "spec.jwtRules[1].jwksUri"
        )
    );
    assert_eq!(remote.resource, "RequestAuthentication/demo/a");
    assert_eq!(rules[2].jwks, crate::source::model::EMPTY_JWKS);
    assert!(rules[2].jwks_uri.is_none());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].field, "spec.jwtRules[2].jwksUri");
    assert!(warnings[0].message.contains("not fetched"));
}

#[test]
fn bad_rules_name_file_line_and_field() {
    let cases = [
        ("{jwks: '{\"keys\":[]}'}", "spec.jwtRules[0].issuer"),
        ("{issuer: a, jwks: 'nope'}", "spec.jwtRules[0].jwks"),
        ("{issuer: a, jwks: '{}'}", "spec.jwtRules[0].jwks"),
        (
            "{issuer: a, jwksUri: 'file:///nonexistent/jwks'}",
            "spec.jwtRules[0].jwksUri",
        ),
        (
            "{issuer: a, jwksUri: 'http://x/j', timeout: 'soon'}",
            "spec.jwtRules[0].timeout",
        ),
        (
            "{issuer: a, jwksUri: 'http://x/j', timeout: 0s}",
            "spec.jwtRules[0].timeout",
        ),
        (
            "{issuer: a, jwksUri: 'http://exa mple/j'}",
            "spec.jwtRules[0].jwksUri",
        ),
        (
            "{issuer: a, fromCookies: [s, 'a b']}",
            "spec.jwtRules[0].fromCookies[1]",
        ),
        (
            "{issuer: a, fromCookies: [[s]]}",
            "spec.jwtRules[0].fromCookies[0]",
        ),
        (
            "{issuer: a, fromCookies: ['']}",
            "spec.jwtRules[0].fromCookies[0]",
        ),
        (
            "{issuer: a, outputClaimToHeaders: [{header: ':authority', claim: sub}]}",
            "spec.jwtRules[0].outputClaimToHeaders[0].header",
        ),
        (
            "{issuer: a, outputClaimToHeaders: [{header: x-a, claim: a}, {header: 'x_b', claim: sub}]}",
            "spec.jwtRules[0].outputClaimToHeaders[1].header",
        ),
        (
            "{issuer: a, outputClaimToHeaders: [{header: 'x b', claim: sub}]}",
            "spec.jwtRules[0].outputClaimToHeaders[0].header",
        ),
        (
            "{issuer: a, outputClaimToHeaders: [{header: x-a}]}",
            "spec.jwtRules[0].outputClaimToHeaders[0]",
        ),
        (
            "{issuer: a, outputClaimToHeaders: [{header: '', claim: sub}]}",
            "spec.jwtRules[0].outputClaimToHeaders[0]",
        ),
        (
            "{issuer: a, outputClaimToHeaders: [{header: x-a, claim: sub, extra: 1}]}",
            "spec.jwtRules[0].outputClaimToHeaders[0].extra",
        ),
        (
            "{issuer: a, outputClaimToHeaders: {header: x-a, claim: sub}}",
            "spec.jwtRules[0].outputClaimToHeaders",
        ),
        (
            "{issuer: a, fromHeaders: [{name: 'bad header'}]}",
            "spec.jwtRules[0].fromHeaders[0].name",
        ),
        (
            "{issuer: a, unknownField: 1}",
            "spec.jwtRules[0].unknownField",
        ),
    ];
    for (rule, field) in cases {
        let e = config(&format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n\
             metadata: {{name: r, namespace: demo}}\nspec:\n  jwtRules: [{rule}]\n"
        ))
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(field), "{rule}: {msg}");
        assert!(msg.starts_with("jwt.yaml:12"), "{rule}: {msg}");
    }
}

#[test]
fn cookies_and_claims_to_headers_reach_the_provider() {
    use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::JwtClaimToHeader;
    let (cfg, warnings) = config(&format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: demo}}
spec:
  selector: {{matchLabels: {{app: greeter}}}}
  jwtRules:
  - issuer: https://issuer.example
    jwks: '{JWKS}'
    fromCookies: [session, auth]
    outputClaimToHeaders:
    - {{header: x-jwt-sub, claim: sub}}
    - {{header: X-Jwt-Level, claim: nested.level}}
    - {{header: x-jwt-sub, claim: azp}}
"#
    ))
    .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        warnings[0].field,
        "spec.jwtRules[0].outputClaimToHeaders[2].header"
    );
    let rules: Vec<_> = cfg.request_authentications[0].jwt_rules.iter().collect();
    let authn = super::jwt_authentication(&rules).unwrap();
    let p = &authn.providers["origins-0"];
    assert_eq!(p.from_cookies, ["session", "auth"]);
    let cth = |h: &str, c: &str| JwtClaimToHeader {
        header_name: h.into(),
        claim_name: c.into(),
        ..Default::default()
    };
    assert_eq!(
        p.claim_to_headers,
        [
            cth("x-jwt-sub", "sub"),
            cth("X-Jwt-Level", "nested.level"),
            cth("x-jwt-sub", "azp")
        ]
    );
    // mesh-core accepts what was emitted: the listener converts.
    let l = mesh_core::model::ServerListener::try_from(inbound(&cfg, "10.0.0.1")).unwrap();
    let chain = mesh_core::authz::AuthzChain::from_http_filters(l.uniform_http_filters().unwrap());
    let p = &chain.jwt().unwrap().config().providers[0];
    assert_eq!(p.claim_to_headers[1].header.as_str(), "x-jwt-level");
    assert_eq!(
        &*p.claim_to_headers[1].claim,
        [Arc::from("nested"), Arc::from("level")]
    );
}
