//! Translation tests: Istio YAML → the xDS istiod's grpcgen would emit.

use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, LbPolicy};
use envoy_types::pb::envoy::config::core::v3::{address, config_source::ConfigSourceSpecifier};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, route::Action, route_action::ClusterSpecifier,
    route_match::PathSpecifier, Route,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter::ConfigType, HttpConnectionManager,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use mesh_control_plane::{load_str, translate, XdsResources};
use prost::Message;

const HOST: &str = "reviews.default.svc.cluster.local";

fn reviews() -> XdsResources {
    let (config, warnings) =
        load_str("reviews.yaml", include_str!("fixtures/reviews.yaml")).expect("loads");
    assert!(warnings.is_empty(), "unexpected warnings: {warnings:?}");
    translate(&config)
}

fn cluster_of(route: &Route) -> &ClusterSpecifier {
    match &route.action {
        Some(Action::Route(a)) => a.cluster_specifier.as_ref().expect("cluster specifier"),
        other => panic!("not a route action: {other:?}"),
    }
}

fn addresses(cla: &ClusterLoadAssignment) -> Vec<(String, u32)> {
    cla.endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .map(|e| match &e.host_identifier {
            Some(HostIdentifier::Endpoint(ep)) => {
                match ep.address.as_ref().and_then(|a| a.address.as_ref()) {
                    Some(address::Address::SocketAddress(sa)) => {
                        let port = match sa.port_specifier {
                            Some(
                                envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p),
                            ) => p,
                            _ => 0,
                        };
                        (sa.address.clone(), port)
                    }
                    other => panic!("unexpected address {other:?}"),
                }
            }
            other => panic!("unexpected host identifier {other:?}"),
        })
        .collect()
}

#[test]
fn listener_is_api_listener_with_rds_over_ads_and_router() {
    let xds = reviews();
    let name = format!("{HOST}:9080");
    let l = xds.listener(&name).expect("listener");
    assert_eq!(l.name, name);
    let any = l.api_listener.unwrap().api_listener.unwrap();
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    );
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    match hcm.route_specifier {
        Some(RouteSpecifier::Rds(rds)) => {
            assert_eq!(rds.route_config_name, name);
            assert!(matches!(
                rds.config_source.unwrap().config_source_specifier,
                Some(ConfigSourceSpecifier::Ads(_))
            ));
        }
        other => panic!("expected rds, got {other:?}"),
    }
    assert_eq!(hcm.http_filters.len(), 1);
    match &hcm.http_filters[0].config_type {
        Some(ConfigType::TypedConfig(any)) => assert_eq!(
            any.type_url,
            "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        ),
        other => panic!("router without typed_config: {other:?}"),
    }
    // Short-name alias, renamed to what was asked for.
    let alias = xds.listener("reviews:9080").expect("alias listener");
    assert_eq!(alias.name, "reviews:9080");
    assert!(xds.listener("reviews:1234").is_none());
    assert!(xds.listener("nope:9080").is_none());
}

#[test]
fn routes_keep_order_with_catch_all_last_and_weights() {
    let xds = reviews();
    let rc = xds.route(&format!("{HOST}:9080")).expect("route config");
    let vh = &rc.virtual_hosts[0];
    for d in [
        HOST,
        &format!("{HOST}:9080"),
        "reviews",
        "reviews:9080",
        "reviews.default:9080",
    ] {
        assert!(
            vh.domains.iter().any(|x| x == d),
            "missing domain {d}: {:?}",
            vh.domains
        );
    }
    let names: Vec<&str> = vh.routes.iter().map(|r| r.name.as_str()).collect();
    // jason has two matches → two routes; the VS catch-all goes last; no extra default route.
    assert_eq!(names, ["jason", "jason", "split", "catch-all"]);

    // Header match.
    let m = vh.routes[0].r#match.as_ref().unwrap();
    assert_eq!(m.headers.len(), 1);
    assert_eq!(m.headers[0].name, "end-user");
    match &m.headers[0].header_match_specifier {
        Some(HeaderMatchSpecifier::StringMatch(sm)) => {
            assert_eq!(sm.match_pattern, Some(MatchPattern::Exact("jason".into())))
        }
        other => panic!("unexpected header matcher {other:?}"),
    }
    // Prefix + ignoreUriCase.
    let m = vh.routes[1].r#match.as_ref().unwrap();
    assert_eq!(
        m.path_specifier,
        Some(PathSpecifier::Prefix("/reviews.Reviews/".into()))
    );
    assert_eq!(m.case_sensitive.as_ref().map(|b| b.value), Some(false));
    // Regex + query params.
    let m = vh.routes[2].r#match.as_ref().unwrap();
    assert!(matches!(
        m.path_specifier,
        Some(PathSpecifier::SafeRegex(_))
    ));
    assert_eq!(m.query_parameters[0].name, "debug");

    // Weighted clusters.
    match cluster_of(&vh.routes[2]) {
        ClusterSpecifier::WeightedClusters(wc) => {
            let got: Vec<(&str, u32)> = wc
                .clusters
                .iter()
                .map(|c| (c.name.as_str(), c.weight.as_ref().unwrap().value))
                .collect();
            assert_eq!(
                got,
                [
                    (format!("outbound|9080|v1|{HOST}").as_str(), 75),
                    (format!("outbound|9080|v2|{HOST}").as_str(), 25)
                ]
            );
        }
        other => panic!("expected weighted clusters, got {other:?}"),
    }
    // Single destination → plain cluster.
    assert_eq!(
        cluster_of(&vh.routes[3]),
        &ClusterSpecifier::Cluster(format!("outbound|9080|v1|{HOST}"))
    );
}

#[test]
fn default_route_only_without_virtual_service() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: greeter, namespace: demo }
spec:
  hosts: [greeter]
  ports: [{ number: 50051, name: grpc }]
  endpoints: [{ address: 127.0.0.1 }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: other, namespace: demo }
spec:
  hosts: [other]
  ports: [{ number: 80, name: http }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: other, namespace: demo }
spec:
  hosts: [other]
  http:
  - match: [{ uri: { exact: /a } }]
    route: [{ destination: { host: greeter } }]
"#;
    let (config, _) = load_str("inline", yaml).unwrap();
    let xds = translate(&config);
    let vh = &xds.route("greeter:50051").unwrap().virtual_hosts[0];
    assert_eq!(vh.routes.len(), 1);
    assert_eq!(vh.routes[0].name, "default");
    assert_eq!(
        vh.routes[0].r#match.as_ref().unwrap().path_specifier,
        Some(PathSpecifier::Prefix("/".into()))
    );
    assert_eq!(
        cluster_of(&vh.routes[0]),
        &ClusterSpecifier::Cluster("outbound|50051||greeter".into())
    );
    // A VS without a catch-all: its routes only, no default route (istiod): a request none of
    // them matches gets no route. The destination port defaults to the destination's port.
    let vh = &xds.route("other:80").unwrap().virtual_hosts[0];
    let names: Vec<&str> = vh.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [""]);
    assert_eq!(
        cluster_of(&vh.routes[0]),
        &ClusterSpecifier::Cluster("outbound|50051||greeter".into())
    );
}

#[test]
fn clusters_are_named_like_istio_and_use_eds_over_ads() {
    let xds = reviews();
    let names: Vec<&str> = xds.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("outbound|9080|v1|{HOST}"),
            format!("outbound|9080|v2|{HOST}"),
            format!("outbound|9080||{HOST}"),
        ]
    );
    for c in &xds.clusters {
        assert_eq!(
            c.cluster_discovery_type,
            Some(ClusterDiscoveryType::Type(3)) // EDS
        );
        let eds = c.eds_cluster_config.as_ref().unwrap();
        assert_eq!(eds.service_name, c.name);
        assert!(matches!(
            eds.eds_config.as_ref().unwrap().config_source_specifier,
            Some(ConfigSourceSpecifier::Ads(_))
        ));
        assert_eq!(c.lb_policy, LbPolicy::LeastRequest as i32);
        let policies = &c.load_balancing_policy.as_ref().unwrap().policies;
        let kinds: Vec<&str> = policies
            .iter()
            .map(|p| p.typed_extension_config.as_ref().unwrap().name.as_str())
            .collect();
        assert_eq!(
            kinds,
            [
                "envoy.load_balancing_policies.least_request",
                "envoy.load_balancing_policies.round_robin"
            ]
        );
    }
}

#[test]
fn endpoints_filtered_by_subset_with_locality_weight_and_port_mapping() {
    let xds = reviews();
    let all = xds.endpoint(&format!("outbound|9080||{HOST}")).unwrap();
    assert_eq!(all.endpoints.len(), 1);
    assert_eq!(
        all.endpoints[0]
            .load_balancing_weight
            .as_ref()
            .unwrap()
            .value,
        1
    );
    // inline endpoint maps the port by name; v1 uses targetPort; v2 maps by name.
    assert_eq!(
        addresses(all),
        [
            ("10.0.0.9".to_string(), 29080),
            ("10.0.0.1".to_string(), 19080),
            ("10.0.0.2".to_string(), 9999)
        ]
    );
    let v1 = xds.endpoint(&format!("outbound|9080|v1|{HOST}")).unwrap();
    assert_eq!(addresses(v1), [("10.0.0.1".to_string(), 19080)]);
    let v2 = xds.endpoint(&format!("outbound|9080|v2|{HOST}")).unwrap();
    assert_eq!(addresses(v2), [("10.0.0.2".to_string(), 9999)]);
}

#[test]
fn translation_is_deterministic() {
    assert_eq!(reviews(), reviews());
}

#[test]
fn readme_example_loads_without_warnings() {
    let readme = include_str!("../README.md");
    let start = readme.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
    let len = readme[start..].find("```").expect("end of block");
    let (config, warnings) = load_str("README.md", &readme[start..start + len]).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let xds = translate(&config);
    assert!(xds.listener("greeter:50051").is_some());
    assert_eq!(xds.clusters.len(), 3);
    let eds = xds
        .endpoint("outbound|50051|v2|greeter.default.svc.cluster.local")
        .unwrap();
    assert_eq!(addresses(eds), [("127.0.0.1".to_string(), 50062)]);
}
