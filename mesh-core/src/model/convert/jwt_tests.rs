use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_requirement, requirement_rule, JwtHeader as HeaderProto, JwtRequirementOrList, RemoteJwks,
    RequirementRule,
};
use envoy_types::pb::google::protobuf::Empty;

use super::*;
use crate::model::{ErrorKind, ResourceType};

fn cx() -> Ctx<'static> {
    Ctx::new(ResourceType::Listener, "inbound")
}

/// A P-256 public key (any 32-byte coordinates pass the size check; none is verified here).
fn jwks() -> String {
    let c = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
    format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"k","x":"{c}","y":"{c}"}}]}}"#)
}

fn provider(jwks: &str) -> ProviderProto {
    ProviderProto {
        issuer: "https://issuer".into(),
        audiences: vec!["api".into()],
        from_headers: vec![HeaderProto {
            name: "authorization".into(),
            value_prefix: "Bearer ".into(),
        }],
        payload_in_metadata: "https://issuer".into(),
        jwks_source_specifier: Some(JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(Specifier::InlineString(jwks.into())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn req(t: jwt_requirement::RequiresType) -> RequirementProto {
    RequirementProto {
        requires_type: Some(t),
    }
}

/// The shape istiod emits for one `jwtRules` entry.
fn istio_shape(p: ProviderProto) -> Proto {
    Proto {
        providers: [("origins-0".to_string(), p)].into(),
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(PathSpecifier::Prefix("/".into())),
                ..Default::default()
            }),
            requirement_type: Some(requirement_rule::RequirementType::Requires(req(
                jwt_requirement::RequiresType::RequiresAny(JwtRequirementOrList {
                    requirements: vec![
                        req(jwt_requirement::RequiresType::ProviderName(
                            "origins-0".into(),
                        )),
                        req(jwt_requirement::RequiresType::AllowMissing(Empty {})),
                    ],
                }),
            ))),
        }],
        bypass_cors_preflight: true,
        ..Default::default()
    }
}

fn convert(p: Proto) -> Result<JwtAuthentication, ModelError> {
    jwt_authentication(&cx(), &Path::root(), p)
}

#[test]
fn istio_shape_converts() {
    let j = convert(istio_shape(provider(&jwks()))).unwrap();
    assert_eq!(j.providers.len(), 1);
    let p = &j.providers[0];
    assert_eq!((&*p.name, &*p.issuer), ("origins-0", "https://issuer"));
    assert_eq!(p.jwks.len(), 1);
    assert_eq!(p.clock_skew_seconds, 60);
    assert_eq!(p.payload_in_metadata.as_deref(), Some("https://issuer"));
    assert_eq!(&*p.from_headers[0].value_prefix, "Bearer ");
    assert_eq!(j.rules[0].path, PathMatch::Prefix("/".into()));
    assert_eq!(
        j.rules[0].requires,
        Some(JwtRequirement::Any(
            vec![
                JwtRequirement::Provider {
                    provider: 0,
                    audiences: None
                },
                JwtRequirement::AllowMissing
            ]
            .into()
        ))
    );
}

#[test]
fn jwks_from_a_file_is_read_at_config_time() {
    let path = std::env::temp_dir().join(format!("mesh-jwks-{}.json", std::process::id()));
    std::fs::write(&path, jwks()).unwrap();
    let mut p = provider("");
    p.jwks_source_specifier = Some(JwksSourceSpecifier::LocalJwks(DataSource {
        specifier: Some(Specifier::Filename(path.display().to_string())),
        ..Default::default()
    }));
    assert_eq!(
        convert(istio_shape(p.clone())).unwrap().providers[0]
            .jwks
            .len(),
        1
    );
    std::fs::remove_file(&path).unwrap();
    let e = convert(istio_shape(p)).unwrap_err();
    assert_eq!(e.field, "providers[origins-0].local_jwks.filename");
}

#[test]
fn errors_name_the_field() {
    let e = convert(istio_shape(provider("{\"keys\": 3}"))).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (ErrorKind::Invalid, "providers[origins-0].local_jwks")
    );

    let mut p = provider(&jwks());
    p.jwks_source_specifier = Some(JwksSourceSpecifier::RemoteJwks(RemoteJwks::default()));
    let e = convert(istio_shape(p)).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (ErrorKind::Unsupported, "providers[origins-0].remote_jwks")
    );

    let mut p = provider(&jwks());
    p.from_cookies = vec!["session".into(), "bad name;".into()];
    let e = convert(istio_shape(p)).unwrap_err();
    assert_eq!(e.field, "providers[origins-0].from_cookies[1]");
    assert!(e.reason.contains("cookie name"), "{e}");

    use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
        jwt_claim_to_header::PathSegment, JwtClaimToHeader,
    };
    let cth = |h: &str, c: &str, path: &[&str]| JwtClaimToHeader {
        header_name: h.into(),
        claim_name: c.into(),
        claim_path: path
            .iter()
            .map(|k| PathSegment { key: (*k).into() })
            .collect(),
    };
    for (bad, field, why) in [
        (cth(":authority", "sub", &[]), "header_name", "pseudo"),
        (cth("x y", "sub", &[]), "header_name", "header name"),
        (cth("", "sub", &[]), "header_name", "header name"),
        (cth("x-a", "", &[]), "", "required"),
        (cth("x-a", "sub", &["sub"]), "", "exclusive"),
    ] {
        let mut p = provider(&jwks());
        p.claim_to_headers = vec![cth("x-ok", "sub", &[]), bad];
        let e = convert(istio_shape(p)).unwrap_err();
        let want = match field {
            "" => "providers[origins-0].claim_to_headers[1]".to_string(),
            f => format!("providers[origins-0].claim_to_headers[1].{f}"),
        };
        assert_eq!(
            (e.kind, e.field.as_str()),
            (ErrorKind::Invalid, want.as_str())
        );
        assert!(e.reason.contains(why), "{e}");
    }
    let mut p = provider(&jwks());
    p.from_cookies = vec!["session".into()];
    p.claim_to_headers = vec![cth("x-a", "a.b", &[]), cth("x-b", "", &["a.b", "c"])];
    let got = convert(istio_shape(p)).unwrap();
    let got = &got.providers[0];
    assert_eq!(&*got.from_cookies, [Arc::from("session")]);
    let paths: Vec<Vec<&str>> = got
        .claim_to_headers
        .iter()
        .map(|c| c.claim.iter().map(|k| &**k).collect())
        .collect();
    assert_eq!(paths, [vec!["a", "b"], vec!["a.b", "c"]]);

    let mut cfg = istio_shape(provider(&jwks()));
    cfg.rules[0].requirement_type = Some(requirement_rule::RequirementType::Requires(req(
        jwt_requirement::RequiresType::ProviderName("nope".into()),
    )));
    let e = convert(cfg).unwrap_err();
    assert_eq!(e.field, "rules[0].requires.provider_name");
    assert!(e.reason.contains("nope"), "{e}");

    let mut cfg = istio_shape(provider(&jwks()));
    cfg.rules[0].r#match.as_mut().unwrap().headers = vec![Default::default()];
    let e = convert(cfg).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (ErrorKind::Unsupported, "rules[0].match.headers")
    );
}

#[test]
fn jwt_filter_must_come_once_and_before_rbac() {
    use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
    use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        http_filter::ConfigType, HttpFilter,
    };
    use prost::{Message, Name};
    fn f<T: Message + Name>(name: &str, m: &T) -> HttpFilter {
        HttpFilter {
            name: name.into(),
            config_type: Some(ConfigType::TypedConfig(
                envoy_types::pb::google::protobuf::Any {
                    type_url: T::type_url(),
                    value: m.encode_to_vec(),
                },
            )),
            ..Default::default()
        }
    }
    let jwt = || f("jwt", &istio_shape(provider(&jwks())));
    let jwt2 = || f("jwt2", &istio_shape(provider(&jwks())));
    let rbac = || f("rbac", &RbacFilter::default());
    let router = || f("router", &Router::default());
    let run = |v: Vec<HttpFilter>| super::super::listener::http_filters(&cx(), &Path::root(), &v);
    let ok = run(vec![jwt(), rbac(), router()]).unwrap();
    assert!(matches!(
        ok[0].config,
        crate::model::HttpFilterConfig::JwtAuthn(_)
    ));
    let e = run(vec![rbac(), jwt(), router()]).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (ErrorKind::Unsupported, "http_filters[1]")
    );
    let e = run(vec![jwt(), jwt2(), router()]).unwrap_err();
    assert_eq!(
        (e.kind, e.field.as_str()),
        (ErrorKind::Unsupported, "http_filters[1]")
    );
}
