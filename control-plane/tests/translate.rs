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
    // istiod grpcgen: fault, then the router last; each with a typed_config.
    let filters: Vec<(&str, &str)> = hcm
        .http_filters
        .iter()
        .map(|f| match &f.config_type {
            Some(ConfigType::TypedConfig(any)) => (f.name.as_str(), any.type_url.as_str()),
            other => panic!("{} without typed_config: {other:?}", f.name),
        })
        .collect();
    assert_eq!(
        filters,
        [
            (
                "envoy.filters.http.fault",
                "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
            ),
            (
                "envoy.filters.http.router",
                "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
            ),
        ]
    );
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
    // One (empty) locality, weighted by its endpoint count as istiod weighs localities.
    assert_eq!(all.endpoints.len(), 1);
    assert_eq!(
        all.endpoints[0]
            .load_balancing_weight
            .as_ref()
            .unwrap()
            .value,
        3
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

const POLICY_VS: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: greeter }
spec:
  hosts: [greeter.default.svc.cluster.local]
  ports: [{ number: 50051, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1 }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: greeter }
spec:
  hosts: [greeter]
  http:
  - name: faulty
    match: [{ headers: { x-fault: { exact: "1" } } }]
    fault:
      delay: { fixedDelay: 1.5s, percentage: { value: 10.5 } }
      abort: { grpcStatus: UNAVAILABLE, percentage: { value: 100 } }
    route: [{ destination: { host: greeter } }]
  - name: resilient
    retries: { attempts: 3, retryOn: "unavailable,cancelled", perTryTimeout: 250ms }
    timeout: 2s
    route: [{ destination: { host: greeter } }]
"#;

#[test]
fn fault_retries_and_timeout_in_istiod_proxyless_form() {
    use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
        fault_abort::ErrorType, HttpFault,
    };
    use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;

    let (config, warnings) = load_str("policy.yaml", POLICY_VS).expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    let xds = translate(&config);
    let rc = xds
        .route("greeter.default.svc.cluster.local:50051")
        .expect("route config");
    let routes = &rc.virtual_hosts[0].routes;
    assert_eq!(routes.len(), 2, "{routes:?}");

    let faulty = &routes[0];
    assert_eq!(faulty.name, "faulty");
    assert_eq!(faulty.typed_per_filter_config.len(), 1);
    let any = &faulty.typed_per_filter_config["envoy.filters.http.fault"];
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
    );
    let fault = HttpFault::decode(any.value.as_slice()).unwrap();
    let delay = fault.delay.expect("delay");
    let pct = delay.percentage.expect("delay percentage");
    assert_eq!(
        (pct.numerator, pct.denominator),
        (105_000, DenominatorType::Million as i32)
    );
    match delay.fault_delay_secifier {
        Some(FaultDelaySecifier::FixedDelay(d)) => {
            assert_eq!((d.seconds, d.nanos), (1, 500_000_000))
        }
        other => panic!("{other:?}"),
    }
    let abort = fault.abort.expect("abort");
    assert_eq!(abort.error_type, Some(ErrorType::GrpcStatus(14)));
    assert_eq!(
        abort.percentage.expect("abort percentage").numerator,
        1_000_000
    );
    let Some(Action::Route(a)) = &faulty.action else {
        panic!("route action")
    };
    // No `retries` ⇒ istiod's default policy (2 retries on connect-failure, refused-stream,
    // unavailable, cancelled); no `timeout` ⇒ no max_stream_duration.
    let rp = a
        .retry_policy
        .as_ref()
        .expect("istiod default retry policy");
    assert_eq!(rp.num_retries.unwrap().value, 2);
    assert!(a.max_stream_duration.is_none());

    let resilient = &routes[1];
    assert!(resilient.typed_per_filter_config.is_empty());
    let Some(Action::Route(a)) = &resilient.action else {
        panic!("route action")
    };
    let rp = a.retry_policy.as_ref().expect("retry policy");
    assert_eq!(rp.retry_on, "unavailable,cancelled");
    assert_eq!(rp.num_retries.unwrap().value, 3);
    let ptt = rp.per_try_timeout.unwrap();
    assert_eq!((ptt.seconds, ptt.nanos), (0, 250_000_000));
    assert!(rp.retry_back_off.is_none());
    // istiod's defaults: avoid previous hosts, up to 5 picks.
    assert_eq!(
        rp.retry_host_predicate[0].name,
        "envoy.retry_host_predicates.previous_hosts"
    );
    assert_eq!(rp.host_selection_retry_max_attempts, 5);
    let msd = a
        .max_stream_duration
        .as_ref()
        .and_then(|m| m.max_stream_duration)
        .expect("max_stream_duration");
    assert_eq!((msd.seconds, msd.nanos), (2, 0));
    assert_eq!(a.timeout.map(|t| t.seconds), Some(2));
}

#[test]
fn route_timeout_is_disabled_unless_the_virtual_service_sets_one() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: a, namespace: demo }
spec:
  hosts: [a.demo]
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1 }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: b, namespace: demo }
spec:
  hosts: [b.demo]
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1 }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: b, namespace: demo }
spec:
  hosts: [b.demo]
  http:
  - name: slow
    timeout: 3s
    route: [{ destination: { host: b.demo } }]
  - name: plain
    match: [{ uri: { prefix: /x } }]
    route: [{ destination: { host: b.demo } }]
"#;
    let (config, _) = load_str("inline", yaml).unwrap();
    let xds = translate(&config);
    let action =
        |rc: &str, i: usize| match &xds.route(rc).unwrap().virtual_hosts[0].routes[i].action {
            Some(Action::Route(a)) => a.clone(),
            other => panic!("{other:?}"),
        };
    // Default route (no VirtualService) and a VS rule without `timeout`: 0 = disabled.
    for a in [action("a.demo:80", 0), action("b.demo:80", 0)] {
        assert_eq!(a.timeout.map(|d| (d.seconds, d.nanos)), Some((0, 0)));
        assert!(a.max_stream_duration.is_none());
    }
    let slow = action("b.demo:80", 1);
    assert_eq!(slow.timeout.map(|d| d.seconds), Some(3));
    assert_eq!(
        slow.max_stream_duration
            .and_then(|m| m.max_stream_duration)
            .map(|d| d.seconds),
        Some(3)
    );
}

#[test]
fn http2_max_requests_becomes_the_clusters_max_requests_breaker() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: a, namespace: demo }
spec:
  hosts: [a.demo]
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, labels: { version: v1 } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: a, namespace: demo }
spec:
  host: a.demo
  trafficPolicy: { connectionPool: { http: { http2MaxRequests: 100, maxRetries: 5, idleTimeout: 1s } } }
  subsets:
  - name: v1
    labels: { version: v1 }
    trafficPolicy: { connectionPool: { http: { http2MaxRequests: 7 } } }
"#;
    let (config, warnings) = load_str("inline", yaml).unwrap();
    // Pool settings proxyless clients do not honour are reported, not silently dropped.
    assert!(
        warnings
            .iter()
            .any(|w| w.to_string().contains("idleTimeout")),
        "{warnings:?}"
    );
    let xds = translate(&config);
    let max = |name: &str| {
        let c = xds.cluster(name).unwrap();
        let t = &c.circuit_breakers.as_ref().unwrap().thresholds[0];
        assert_eq!(t.priority, 0, "DEFAULT priority");
        assert_eq!(
            t.max_retries.map(|v| v.value),
            Some(5),
            "maxRetries, inherited"
        );
        t.max_requests.as_ref().unwrap().value
    };
    assert_eq!(max("outbound|80||a.demo"), 100);
    assert_eq!(
        max("outbound|80|v1|a.demo"),
        7,
        "the subset's own policy wins"
    );
}
