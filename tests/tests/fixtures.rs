//! Real xDS from public control planes (`shared/fixtures/xds`: Envoy Gateway translator output and
//! Istio `config_dump`s) through the static source's decoder and the model's `TryFrom`.
//!
//! Every Listener / RouteConfiguration / Cluster / ClusterLoadAssignment must decode and then
//! either validate into the model or be rejected for a reason listed in [`EXPECTED_REJECTIONS`].
//! The test fails on an unlisted rejection, on a listed rejection that no longer happens (the
//! table must shrink when support grows), and if the fixtures yield too few resources to mean
//! anything.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use mesh_core::model::{
    Cluster, ClusterLoadAssignment, ErrorKind, Listener, ModelError, ResourceType, RouteAction,
    RouteConfiguration,
};
use mesh_core::source::{self, DecodeOptions, DecodedResource, Format};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/xds");

/// Files in the fixture folders that hold no xDS resources.
const SKIPPED_FILES: &[(&str, &str)] = &[(
    "istio/grpcgen__xds_bootstrap.json",
    "a gRPC xDS bootstrap, not resources (mesh_core::bootstrap reads it)",
)];

/// A rejection the mesh makes on purpose, and why.
struct Expected {
    /// `folder/file`.
    file: &'static str,
    resource_type: ResourceType,
    /// Resource-name patterns (`*` matches any run of characters).
    names: &'static [&'static str],
    kind: ErrorKind,
    field: &'static str,
    why: &'static str,
}

/// Server listeners are read as gRFC A36 inbound listeners (for their RBAC filters); a sidecar's
/// listeners break A36's rules, as grpc would NACK them too.
const SERVER_NOT_A36: &str =
    "sidecar listener: listener filters, original-dst or several network filters (A36 NACKs)";
const SERVER_TCP: &str = "server listener without an http connection manager (tcp_proxy)";

const EXPECTED_REJECTIONS: &[Expected] = &[
    Expected {
        file: "envoy-gateway/mutual-tls.listeners.yaml",
        resource_type: ResourceType::Listener,
        names: &["first-listener"],
        kind: ErrorKind::Unsupported,
        field: "filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs",
        why: "server certificates from SDS: gRFC A29 takes them from certificate provider instances only (gRPC NACKs SDS too)",
    },
    Expected {
        file: "envoy-gateway/mutual-tls.listeners.yaml",
        resource_type: ResourceType::Listener,
        names: &["second-listener"],
        kind: ErrorKind::Unsupported,
        field: "filter_chains[0].filters[0].typed_config",
        why: SERVER_TCP,
    },
    Expected {
        file: "istio/authz__configdump.yaml",
        resource_type: ResourceType::Listener,
        names: &[
            "10.100.160.191_15021",
            "10.100.228.83_15021",
            "10.102.11.148_15021",
            "10.108.65.203_15012",
            "10.108.65.203_443",
            "10.109.111.153_15021",
            "10.111.137.16_15021",
            "10.96.0.10_53",
            "10.96.0.1_443",
            "10.98.166.148_443",
            "connect_terminate",
        ],
        kind: ErrorKind::Invalid,
        field: "filter_chains[0].filters",
        why: SERVER_NOT_A36,
    },
    Expected {
        file: "istio/authz__configdump.yaml",
        resource_type: ResourceType::Listener,
        names: &["virtualOutbound"],
        kind: ErrorKind::Invalid,
        field: "use_original_dst",
        why: SERVER_NOT_A36,
    },
    Expected {
        file: "istio/authz__configdump.yaml",
        resource_type: ResourceType::Listener,
        names: &[
            "0.0.0.0_*",
            "*_15008",
            "10.100.4.52_443",
            "10.96.0.10_9153",
            "connect_originate",
            "main_internal",
            "virtualInbound",
        ],
        kind: ErrorKind::Invalid,
        field: "listener_filters",
        why: SERVER_NOT_A36,
    },
    Expected {
        file: "istio/proxyconfig__config_dump.json",
        resource_type: ResourceType::Listener,
        names: &["main_internal"],
        kind: ErrorKind::Invalid,
        field: "listener_filters",
        why: SERVER_NOT_A36,
    },
    Expected {
        file: "envoy-gateway/authorization-client-cidr.routes.yaml",
        resource_type: ResourceType::RouteConfiguration,
        names: &["envoy-gateway/gateway-1/http"],
        kind: ErrorKind::Unsupported,
        field: "virtual_hosts[0].routes[0].match.path_separated_prefix",
        why: "path_separated_prefix is not implemented (gRPC NACKs it too)",
    },
    Expected {
        file: "envoy-gateway/load-balancer.clusters.yaml",
        resource_type: ResourceType::Cluster,
        names: &[
            "eleventh-route-dest",
            "twelfth-route-dest",
            "thirteen-route-dest",
        ],
        kind: ErrorKind::Unsupported,
        field: "load_balancing_policy.policies",
        why: "OverrideHost (stateful session) is not implemented",
    },
    Expected {
        file: "envoy-gateway/load-balancer.clusters.yaml",
        resource_type: ResourceType::Cluster,
        names: &["sixteenth-route-dest", "seventeenth-route-dest"],
        kind: ErrorKind::Unsupported,
        field: "load_balancing_policy.policies",
        why: "client-side weighted round robin (ORCA) is not implemented",
    },
    Expected {
        file: "istio/proxyconfig__config_dump.json",
        resource_type: ResourceType::ClusterLoadAssignment,
        names: &["inbound-vip|*"],
        kind: ErrorKind::Unsupported,
        field: "endpoints[0].lb_endpoints[0].endpoint.address.envoy_internal_address",
        why: "Envoy internal addresses (ambient/waypoint plumbing) have no meaning in-process",
    },
];

/// `*` matches any run of characters.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            s.starts_with(head)
                && (0..=s.len() - head.len())
                    .any(|i| s.is_char_boundary(head.len() + i) && glob(tail, &s[head.len() + i..]))
        }
    }
}

/// What happened to one resource.
struct Outcome {
    file: String,
    resource_type: ResourceType,
    name: String,
    result: Result<Converted, ModelError>,
}

enum Converted {
    /// No fixture has an API listener, so nothing reads an accepted one yet.
    Listener,
    Route(RouteConfiguration),
    Cluster(Box<Cluster>),
    Endpoints(ClusterLoadAssignment),
}

fn convert(r: DecodedResource) -> Result<Converted, ModelError> {
    Ok(match r {
        DecodedResource::Listener(p) => {
            Listener::try_from(p)?;
            Converted::Listener
        }
        DecodedResource::RouteConfiguration(p) => Converted::Route(p.try_into()?),
        DecodedResource::Cluster(p) => Converted::Cluster(Box::new(p.try_into()?)),
        DecodedResource::ClusterLoadAssignment(p) => Converted::Endpoints(p.try_into()?),
    })
}

fn fixture_files() -> Vec<(String, PathBuf)> {
    let root = Path::new(FIXTURES);
    let mut out = Vec::new();
    for dir in ["envoy-gateway", "istio"] {
        let entries = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("{}/{dir}: {e}", root.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if Format::from_path(&path).is_none() {
                continue; // LICENSE
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8 name");
            out.push((format!("{dir}/{name}"), path));
        }
    }
    out.sort();
    out
}

fn run_all() -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for (key, path) in fixture_files() {
        if SKIPPED_FILES.iter().any(|(f, _)| *f == key) {
            continue;
        }
        let format = Format::from_path(&path).expect("filtered above");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{key}: {e}"));
        let options = DecodeOptions {
            default_type: source::default_type_for(&path),
            ..DecodeOptions::default()
        };
        let resources = source::decode_resources_with(&text, format, &options)
            .unwrap_or_else(|e| panic!("{key} does not decode: {e}"));
        assert!(!resources.is_empty(), "{key}: no resources found");
        for r in resources {
            outcomes.push(Outcome {
                file: key.clone(),
                resource_type: r.resource_type(),
                name: r.name().to_owned(),
                result: convert(r),
            });
        }
    }
    outcomes
}

fn expectation_for(o: &Outcome) -> Option<usize> {
    EXPECTED_REJECTIONS.iter().position(|e| {
        e.file == o.file
            && e.resource_type == o.resource_type
            && e.names.iter().any(|p| glob(p, &o.name))
    })
}

#[test]
fn every_fixture_resource_converts_or_is_rejected_as_listed() {
    let outcomes = run_all();
    let mut problems = Vec::new();
    let mut hits = vec![0usize; EXPECTED_REJECTIONS.len()];
    for o in &outcomes {
        let expected = expectation_for(o);
        match (&o.result, expected) {
            (Ok(_), None) => {}
            (Ok(_), Some(i)) => problems.push(format!(
                "{} {} `{}`: expected rejection now succeeds ({}); shrink the table",
                o.file, o.resource_type, o.name, EXPECTED_REJECTIONS[i].why
            )),
            (Err(e), None) => problems.push(format!("{}: unexpected rejection: {e}", o.file)),
            (Err(e), Some(i)) => {
                let x = &EXPECTED_REJECTIONS[i];
                if e.kind != x.kind || e.field != x.field {
                    problems.push(format!(
                        "{}: rejected differently than listed ({:?} at `{}` expected): {e}",
                        o.file, x.kind, x.field
                    ));
                } else {
                    hits[i] += 1;
                }
            }
        }
    }
    for (x, n) in EXPECTED_REJECTIONS.iter().zip(&hits) {
        if *n == 0 {
            problems.push(format!(
                "{} {} {:?}: listed rejection never happened",
                x.file, x.resource_type, x.names
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn fixture_coverage_is_not_trivial() {
    let outcomes = run_all();
    // (decoded, accepted) per file and type.
    let mut counts: BTreeMap<(String, ResourceType), (usize, usize)> = BTreeMap::new();
    for o in &outcomes {
        let c = counts.entry((o.file.clone(), o.resource_type)).or_default();
        c.0 += 1;
        c.1 += usize::from(o.result.is_ok());
    }
    let get = |file: &str, rt| {
        counts
            .get(&(file.to_owned(), rt))
            .copied()
            .unwrap_or((0, 0))
    };
    let total = |rt, accepted: bool| {
        counts
            .iter()
            .filter(|((_, t), _)| *t == rt)
            .map(|(_, (d, a))| if accepted { *a } else { *d })
            .sum::<usize>()
    };
    // Istio config dumps: the tree walk finds every listener and the sidecar's clusters/routes.
    assert!(get("istio/authz__configdump.yaml", ResourceType::Listener).0 >= 29);
    let pc = "istio/proxyconfig__config_dump.json";
    assert!(
        get(pc, ResourceType::Cluster).1 >= 3,
        "{:?}",
        get(pc, ResourceType::Cluster)
    );
    assert!(get(pc, ResourceType::RouteConfiguration).1 >= 1);
    assert!(get(pc, ResourceType::ClusterLoadAssignment).0 >= 2);
    assert!(get(pc, ResourceType::Listener).0 >= 2);
    let dh = "istio/describe__describe_http_config.json";
    assert_eq!(get(dh, ResourceType::Cluster).1, 1);
    assert_eq!(get(dh, ResourceType::RouteConfiguration).1, 1);
    // Across everything.
    assert!(total(ResourceType::Cluster, true) >= 15);
    assert!(total(ResourceType::RouteConfiguration, true) >= 9);
    assert!(total(ResourceType::ClusterLoadAssignment, true) >= 2);
    assert!(total(ResourceType::Listener, false) >= 35);
}

fn find<'a>(outcomes: &'a [Outcome], file: &str, name: &str) -> &'a Converted {
    outcomes
        .iter()
        .find(|o| o.file == file && o.name == name && o.result.is_ok())
        .and_then(|o| o.result.as_ref().ok())
        .unwrap_or_else(|| panic!("{file}: `{name}` not accepted"))
}

#[test]
fn fixture_values_survive_conversion() {
    let outcomes = run_all();
    let Converted::Route(rc) = find(
        &outcomes,
        "envoy-gateway/http-route-zonal-routing-weighted-clusters.routes.yaml",
        "first-listener",
    ) else {
        panic!("not a route")
    };
    let RouteAction::WeightedClusters(ws) = &rc.virtual_hosts[0].routes[0].action else {
        panic!("{:?}", rc.virtual_hosts[0].routes[0].action)
    };
    let weights: Vec<u32> = ws.iter().map(|w| w.weight).collect();
    assert_eq!(weights, vec![30, 70]);

    let Converted::Endpoints(cla) = find(
        &outcomes,
        "envoy-gateway/http-route-weighted-backend.endpoints.yaml",
        "first-route-dest",
    ) else {
        panic!("not endpoints")
    };
    let locality_weights: Vec<Option<u32>> = cla.localities.iter().map(|l| l.weight).collect();
    assert_eq!(
        locality_weights,
        vec![Some(20), Some(40), Some(20), Some(20)]
    );

    let Converted::Cluster(c) = find(
        &outcomes,
        "envoy-gateway/http-route-weighted-backend.clusters.yaml",
        "first-route-dest",
    ) else {
        panic!("not a cluster")
    };
    assert_eq!(c.eds_service_name(), Some("first-route-dest"));
    assert_eq!(
        c.lb_policy,
        mesh_core::model::LbPolicy::LeastRequest { choice_count: 2 }
    );
    assert_eq!(c.connect_timeout, std::time::Duration::from_secs(10));
    assert!(c.transport.is_plaintext());

    // Transport sockets the mesh cannot honour (SDS, per-endpoint matches, Envoy's internal
    // upstream) keep the cluster but fail it closed, naming the field.
    use mesh_core::model::UpstreamTransport;
    for (file, name, field) in [
        (
            "istio/describe__describe_http_config.json",
            "outbound|9080|v1|productpage.default.svc.cluster.local",
            "transport_socket_matches[0].transport_socket",
        ),
        (
            "envoy-gateway/backend-tls-settings.clusters.yaml",
            "httproute/default/httproute-1/rule/0",
            "transport_socket_matches[0].transport_socket",
        ),
        (
            "istio/proxyconfig__config_dump.json",
            "inbound-vip|8000|http|httpbin.default.svc.cluster.local",
            "transport_socket.typed_config",
        ),
    ] {
        let Converted::Cluster(c) = find(&outcomes, file, name) else {
            panic!("{name}: not a cluster")
        };
        match &c.transport {
            UpstreamTransport::Unsupported(e) => {
                assert_eq!(
                    (e.kind, e.field.as_str()),
                    (ErrorKind::Unsupported, field),
                    "{name}"
                )
            }
            other => panic!("{name}: {other:?}"),
        }
    }

    // Load-balancing policies from `load_balancing_policy` extensions, with their locality
    // config, and the routes' hash policies.
    let lb = "envoy-gateway/load-balancer.clusters.yaml";
    let cluster = |name| match find(&outcomes, lb, name) {
        Converted::Cluster(c) => c,
        _ => panic!("not a cluster"),
    };
    use mesh_core::model::{HashSource, LbPolicy};
    let first = cluster("first-route-dest");
    assert_eq!(
        (first.lb_policy, first.lb_common.locality_weighted),
        (LbPolicy::RoundRobin, true)
    );
    assert_eq!(cluster("second-route-dest").lb_policy, LbPolicy::Random);
    assert_eq!(cluster("fourth-route-dest").lb_policy, LbPolicy::maglev());
    let Converted::Route(rc) = find(
        &outcomes,
        "envoy-gateway/load-balancer.routes.yaml",
        "first-listener",
    ) else {
        panic!("not a route")
    };
    let route = |name: &str| {
        rc.virtual_hosts[0]
            .routes
            .iter()
            .find(|r| &*r.name == name)
            .unwrap_or_else(|| panic!("no route {name}"))
    };
    assert_eq!(
        route("fourth-route").hash_policy[0].source,
        HashSource::SourceIp
    );
    assert!(matches!(
        &route("seventh-route").hash_policy[0].source,
        HashSource::Header { name, .. } if &**name == "name"
    ));
    assert!(matches!(
        &route("ninth-route").hash_policy[0].source,
        HashSource::Cookie { name } if &**name == "test"
    ));
}

#[test]
fn listener_protos_keep_istio_private_anys() {
    // Server listeners are rejected by the model, but decoding must have carried the
    // Istio-private `Any`s (stats.PluginConfig, MetadataExchange) instead of failing.
    let path = Path::new(FIXTURES).join("istio/authz__configdump.yaml");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let resources = source::decode_resources(&text, Format::Yaml).expect("decodes");
    let opaque = resources
        .iter()
        .filter_map(|r| match r {
            DecodedResource::Listener(l) => Some(l),
            _ => None,
        })
        .flat_map(|l| l.filter_chains.iter().chain(l.default_filter_chain.iter()))
        .flat_map(|fc| fc.filters.iter())
        .filter_map(|f| match &f.config_type {
            Some(
                envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(a),
            ) => Some(a),
            _ => None,
        })
        .filter(|a| a.type_url.ends_with("/stats.PluginConfig"))
        .count();
    assert!(
        opaque >= 10,
        "only {opaque} stats.PluginConfig filters kept"
    );
}

#[test]
fn glob_matches() {
    assert!(glob("*", ""));
    assert!(glob("inbound-vip|*", "inbound-vip|8100|http|x"));
    assert!(!glob("inbound-vip|*", "outbound|8100"));
    assert!(glob("a*c", "abbc"));
    assert!(!glob("a*c", "abcd"));
}
