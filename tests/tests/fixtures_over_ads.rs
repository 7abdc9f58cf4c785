//! Real control-plane output (`shared/fixtures/xds`: Envoy Gateway translator output, Istio
//! `config_dump`s) served by our control plane over ADS to our mesh client, which must route on
//! it as the fixture's author intended.
//!
//! Each fixture set is decoded with `mesh_core::source`, served unchanged through
//! [`ControlPlaneHandle::set_resources`](mesh_control_plane::ControlPlaneHandle::set_resources),
//! and fetched by a [`Mesh`] built from a bootstrap pointing at the control plane
//! (`Mesh::from_bootstrap`, LDS → RDS → CDS → EDS). Routing decisions are then read from the
//! target's compiled snapshot (`Snapshot::route`, what the tower layer runs per request).
//!
//! Adaptations, each the least a control plane serving a proxyless client would do:
//! - **API listeners.** Our client (like gRPC) only accepts API listeners, while the fixtures'
//!   listeners are server listeners (filter chains on `:::10080`) or absent. The Envoy Gateway
//!   listener's own HttpConnectionManager (rds `first-listener` over ADS, router filter) is lifted
//!   out of its filter chain into an `api_listener` named like a target (`eg.test:10080`); for
//!   route-only fixtures an API listener pointing at the fixture's RouteConfiguration by name is
//!   built the same way. Fixture routes, clusters and endpoints themselves are served unchanged.
//! - **Missing referents.** Clusters or endpoints a fixture route names but the fixture does not
//!   contain are synthesized from the fixture's own siblings (a copy of its cluster under the
//!   referenced name; endpoints from its ClusterLoadAssignment, or 127.0.0.1 where the fixture
//!   only has an Envoy internal address). Each test says which.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{bail, Context, Result};
use envoy_types::pb::envoy::config::{
    core::v3::{address, socket_address::PortSpecifier, Address, SocketAddress},
    endpoint::v3::{
        lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint,
        LocalityLbEndpoints,
    },
    listener::v3::{filter::ConfigType, ApiListener, Listener},
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager, Rds,
};

use http::{HeaderMap, Method};
use mesh_control_plane::{translate::to_any, ControlPlane, ControlPlaneHandle, XdsResources};
use mesh_core::{
    mesh::Mesh,
    snapshot::{RequestView, RouteError, Snapshot},
    source::{self, DecodeOptions, DecodedResource, Format},
};
use prost::Message;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/xds");

/// Every resource of one fixture file.
fn decode(file: &str) -> Result<Vec<DecodedResource>> {
    let path = Path::new(FIXTURES).join(file);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let format = Format::from_path(&path).context("fixture format")?;
    let options = DecodeOptions {
        default_type: source::default_type_for(&path),
        ..DecodeOptions::default()
    };
    Ok(source::decode_resources_with(&text, format, &options)?)
}

/// Adds decoded resources to `xds` (listeners are not served as-is: see the module docs).
fn add(xds: &mut XdsResources, resources: Vec<DecodedResource>) {
    for r in resources {
        match r {
            DecodedResource::Listener(l) => xds.listeners.push(l),
            DecodedResource::RouteConfiguration(r) => xds.routes.push(r),
            DecodedResource::Cluster(c) => xds.clusters.push(c),
            DecodedResource::ClusterLoadAssignment(e) => xds.endpoints.push(e),
        }
    }
}

/// The HttpConnectionManager of a server listener's (default) filter chain.
fn hcm_of(listener: &Listener) -> Result<HttpConnectionManager> {
    let chains = listener
        .default_filter_chain
        .iter()
        .chain(&listener.filter_chains);
    for f in chains.flat_map(|c| &c.filters) {
        if let Some(ConfigType::TypedConfig(any)) = &f.config_type {
            if any.type_url.ends_with(".HttpConnectionManager") {
                return Ok(HttpConnectionManager::decode(any.value.as_slice())?);
            }
        }
    }
    bail!("listener `{}` has no HttpConnectionManager", listener.name)
}

/// An API listener named `target` around `hcm`.
fn api_listener(target: &str, hcm: &HttpConnectionManager) -> Listener {
    Listener {
        name: target.to_owned(),
        api_listener: Some(ApiListener {
            api_listener: Some(to_any(hcm)),
        }),
        ..Default::default()
    }
}

/// `hcm` with its RDS pointed at `route_config_name`.
fn with_rds(
    mut hcm: HttpConnectionManager,
    route_config_name: &str,
) -> Result<HttpConnectionManager> {
    let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier else {
        bail!("fixture HCM does not use rds")
    };
    hcm.route_specifier = Some(RouteSpecifier::Rds(Rds {
        config_source: rds.config_source.clone(),
        route_config_name: route_config_name.to_owned(),
    }));
    Ok(hcm)
}

/// The Envoy Gateway weighted-backend listener's HCM (the template for route-only fixtures).
fn eg_hcm() -> Result<HttpConnectionManager> {
    let listeners = decode("envoy-gateway/http-route-weighted-backend.listeners.yaml")?;
    let Some(DecodedResource::Listener(l)) = listeners.first() else {
        bail!("no listener in the fixture")
    };
    hcm_of(l)
}

fn socket(cla: &LocalityLbEndpoints) -> Vec<String> {
    cla.lb_endpoints
        .iter()
        .filter_map(|e| match &e.host_identifier {
            Some(HostIdentifier::Endpoint(Endpoint {
                address: Some(a), ..
            })) => match &a.address {
                Some(address::Address::SocketAddress(s)) => match s.port_specifier {
                    Some(PortSpecifier::PortValue(p)) => Some(format!("{}:{p}", s.address)),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn loopback_endpoint(port: u32) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: "127.0.0.1".into(),
                    port_specifier: Some(PortSpecifier::PortValue(port)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn single_locality(cluster: &str, endpoints: Vec<LbEndpoint>) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_owned(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: endpoints,
            load_balancing_weight: Some(envoy_types::pb::google::protobuf::UInt32Value {
                value: 1,
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Serves `xds` from a fresh control plane and waits for our client to be ready on `target`.
async fn serve(
    xds: XdsResources,
    target: &str,
) -> Result<(ControlPlaneHandle, Mesh, std::sync::Arc<Snapshot>)> {
    let cp = ControlPlane::builder().start().await?;
    cp.set_resources(xds);
    let mesh = tests::mesh(&cp, "fixtures-over-ads")?;
    let snapshot = tokio::time::timeout(Duration::from_secs(10), mesh.target(target).ready())
        .await
        .with_context(|| format!("{target} not ready in 10 s: {:#?}", cp.client_status()))??;
    Ok((cp, mesh, snapshot))
}

/// No client of `cp` NACKed anything: the fixture was accepted as served.
fn assert_no_nacks(cp: &ControlPlaneHandle) {
    for c in cp.client_status() {
        for (ty, t) in &c.types {
            assert!(t.nack.is_none() && t.nacks == 0, "{ty:?} NACKed: {t:?}");
        }
    }
}

/// The cluster a request to `path` is routed to (with `headers`), or the routing error.
fn route(snapshot: &Snapshot, authority: &str, path: &str) -> Result<String, RouteError> {
    let headers = HeaderMap::new();
    let req = RequestView {
        authority,
        path_and_query: path,
        method: &Method::GET,
        scheme: Some("http"),
        headers: &headers,
    };
    snapshot.route(&req).map(|d| d.cluster.name().to_owned())
}

#[tokio::test]
async fn envoy_gateway_weighted_backend_set_routes_to_its_cluster_and_endpoints() -> Result<()> {
    // Listener (HCM lifted into an API listener), route, cluster, endpoints: all from the
    // fixture, nothing synthesized.
    let mut xds = XdsResources::default();
    let target = "eg.test:10080";
    xds.listeners.push(api_listener(target, &eg_hcm()?));
    for kind in ["routes", "clusters", "endpoints"] {
        add(
            &mut xds,
            decode(&format!(
                "envoy-gateway/http-route-weighted-backend.{kind}.yaml"
            ))?,
        );
    }
    let (cp, _mesh, snap) = serve(xds, target).await?;
    assert_no_nacks(&cp);
    assert_eq!(&*snap.route_config().name, "first-listener");

    // `prefix: /` on `*` → `first-route-dest`, whatever the path or authority.
    for (authority, path) in [("eg.test:10080", "/"), ("other.example", "/a/b?c=d")] {
        assert_eq!(
            route(&snap, authority, path).as_deref(),
            Ok("first-route-dest")
        );
    }
    // The cluster balances over the fixture's four endpoints (4 localities, weights
    // 20/40/20/20). Locality weights are not applied by the balancer yet (resilience work), so
    // only coverage is asserted: 400 least-request picks missing one of 4 endpoints has
    // probability ≤ 4·(3/4)^400 < 1e-49.
    let cluster = snap.clusters().get("first-route-dest").context("cluster")?;
    let cla = cluster.assignment.as_ref().context("endpoints")?;
    assert_eq!(cla.localities.len(), 4);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..400 {
        let p = cluster.pick().context("a pick")?;
        *seen.entry(p.address().to_string()).or_default() += 1;
    }
    let addresses: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        addresses,
        [
            "1.1.1.1:50001",
            "2.2.2.2:50002",
            "3.3.3.3:50003",
            "4.4.4.4:50004"
        ],
        "{seen:?}"
    );
    cp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn envoy_gateway_zonal_weighted_clusters_split_30_70() -> Result<()> {
    // The route is the fixture's; its two clusters `first-route-dest/backend/{0,1}` are not in
    // the fixture: synthesized as copies of the weighted-backend fixture's `first-route-dest`
    // cluster, with that fixture's locality 0 / 1 endpoints.
    let mut xds = XdsResources::default();
    let target = "zonal.test:10080";
    xds.listeners.push(api_listener(target, &eg_hcm()?));
    add(
        &mut xds,
        decode("envoy-gateway/http-route-zonal-routing-weighted-clusters.routes.yaml")?,
    );
    let mut base = XdsResources::default();
    add(
        &mut base,
        decode("envoy-gateway/http-route-weighted-backend.clusters.yaml")?,
    );
    add(
        &mut base,
        decode("envoy-gateway/http-route-weighted-backend.endpoints.yaml")?,
    );
    let cluster = base
        .cluster("first-route-dest")
        .context("fixture cluster")?
        .clone();
    let cla = base
        .endpoint("first-route-dest")
        .context("fixture endpoints")?
        .clone();
    let mut expected_endpoint = BTreeMap::new();
    for i in 0..2 {
        let name = format!("first-route-dest/backend/{i}");
        let mut c = cluster.clone();
        c.name = name.clone();
        c.eds_cluster_config.as_mut().context("eds")?.service_name = name.clone();
        xds.clusters.push(c);
        let locality = cla.endpoints[i].clone();
        expected_endpoint.insert(name.clone(), socket(&locality));
        xds.endpoints.push(ClusterLoadAssignment {
            cluster_name: name,
            endpoints: vec![locality],
            ..Default::default()
        });
    }
    let (cp, _mesh, snap) = serve(xds, target).await?;
    assert_no_nacks(&cp);

    // 30/70: backend/0 ~ Binomial(2000, 0.3): mean 600, sd 20.5; [497, 703] is ±5 sd, so a
    // correct split fails with probability < 1e-6.
    const N: usize = 2000;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..N {
        let c = route(&snap, "zonal.test", "/any").map_err(anyhow::Error::from)?;
        *counts.entry(c).or_default() += 1;
    }
    let b0 = counts
        .get("first-route-dest/backend/0")
        .copied()
        .unwrap_or(0);
    let b1 = counts
        .get("first-route-dest/backend/1")
        .copied()
        .unwrap_or(0);
    assert_eq!(b0 + b1, N, "{counts:?}");
    assert!((497..=703).contains(&b0), "{counts:?}");
    // Each cluster picks its own locality's endpoint.
    for (name, want) in &expected_endpoint {
        let h = snap.clusters().get(name.as_str()).context("cluster")?;
        let got = h.pick().context("pick")?.address().to_string();
        assert_eq!(&vec![got], want, "{name}");
    }
    cp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn istio_sidecar_http_routes_pick_the_fixture_clusters() -> Result<()> {
    // `istioctl x describe` fixture: RouteConfiguration `http.8080` (bookinfo productpage
    // routes: exact /productpage, /login, /logout; prefix /static, /api/v1/products; all
    // case-sensitive) → `outbound|9080||productpage…`. The dump holds only the `v1` subset
    // cluster: the default cluster is synthesized as its copy; endpoints are one loopback
    // address (the dump has none).
    let mut xds = XdsResources::default();
    add(
        &mut xds,
        decode("istio/describe__describe_http_config.json")?,
    );
    let default = "outbound|9080||productpage.default.svc.cluster.local";
    let v1 = xds
        .cluster("outbound|9080|v1|productpage.default.svc.cluster.local")
        .context("fixture cluster")?
        .clone();
    let mut c = v1.clone();
    c.name = default.to_owned();
    c.eds_cluster_config.as_mut().context("eds")?.service_name = default.to_owned();
    xds.clusters.push(c);
    for name in [default, &v1.name] {
        xds.endpoints
            .push(single_locality(name, vec![loopback_endpoint(9080)]));
    }
    let target = "productpage:9080";
    xds.listeners
        .push(api_listener(target, &with_rds(eg_hcm()?, "http.8080")?));
    let (cp, _mesh, snap) = serve(xds, target).await?;
    assert_no_nacks(&cp);

    let routed = [
        "/productpage",
        "/login",
        "/logout",
        "/static/css/app.css",
        "/staticfoo",
        "/api/v1/products",
        "/api/v1/products/7/reviews",
        "/productpage?u=normal",
    ];
    for path in routed {
        assert_eq!(
            route(&snap, "productpage:9080", path).as_deref(),
            Ok(default),
            "{path}"
        );
    }
    // Exact paths are exact, matching is case-sensitive, and nothing else is routed (the
    // VirtualService has no catch-all).
    for path in [
        "/productpage/x",
        "/Login",
        "/STATIC/a",
        "/",
        "/api/v1/product",
    ] {
        match route(&snap, "productpage:9080", path) {
            Err(RouteError::NoRoute { .. }) => {}
            other => panic!("{path}: expected no route, got {other:?}"),
        }
    }
    cp.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn istio_inbound_route_and_cluster_from_a_sidecar_dump() -> Result<()> {
    // `istioctl proxy-config` dump: RouteConfiguration `inbound-vip|8000|http|httpbin…` (`*`,
    // prefix `/`) → the dump's own cluster of that name. Its ClusterLoadAssignment points at an
    // Envoy internal address, which an in-process client cannot dial (see tests/fixtures.rs), so
    // a loopback one replaces it.
    let mut xds = XdsResources::default();
    for r in decode("istio/proxyconfig__config_dump.json")? {
        match r {
            DecodedResource::RouteConfiguration(rc) => xds.routes.push(rc),
            DecodedResource::Cluster(c) => xds.clusters.push(c),
            _ => {}
        }
    }
    let name = "inbound-vip|8000|http|httpbin.default.svc.cluster.local";
    xds.endpoints
        .push(single_locality(name, vec![loopback_endpoint(8000)]));
    let target = "httpbin:8000";
    xds.listeners
        .push(api_listener(target, &with_rds(eg_hcm()?, name)?));
    let (cp, _mesh, snap) = serve(xds, target).await?;
    assert_no_nacks(&cp);
    for path in ["/", "/get", "/status/418?x=1"] {
        assert_eq!(
            route(&snap, "httpbin:8000", path).as_deref(),
            Ok(name),
            "{path}"
        );
    }
    let picked = snap
        .clusters()
        .get(name)
        .context("cluster")?
        .pick()
        .context("pick")?;
    assert_eq!(picked.address().to_string(), "127.0.0.1:8000");
    cp.shutdown().await;
    Ok(())
}
