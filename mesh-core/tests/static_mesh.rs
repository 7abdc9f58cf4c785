//! A mesh from a static Envoy resource file: listener with RDS, EDS cluster, endpoints —
//! decoded, validated, resolved into a warm snapshot, and routed, with no control plane.

use http::{HeaderMap, Method};
use mesh_core::{mesh::Mesh, snapshot::RequestView};

const RESOURCES: &str = r#"
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: "reviews:9080"
  apiListener:
    apiListener:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      rds:
        routeConfigName: reviews-routes
        configSource: { ads: {} }
      httpFilters:
      - name: envoy.filters.http.router
        typedConfig:
          "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
- "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  name: reviews-routes
  virtualHosts:
  - name: reviews
    domains: ["reviews", "reviews:9080"]
    routes:
    - name: testers
      match:
        prefix: /
        headers: [{ name: end-user, stringMatch: { exact: jason } }]
      route: { cluster: v2 }
    - name: split
      match: { prefix: / }
      route:
        weightedClusters:
          clusters: [{ name: v1, weight: 90 }, { name: v2, weight: 10 }]
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: v1
  type: EDS
  edsClusterConfig: { edsConfig: { ads: {} } }
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: v2
  type: STATIC
  loadAssignment:
    clusterName: v2
    endpoints:
    - lbEndpoints:
      - endpoint: { address: { socketAddress: { address: 127.0.0.2, portValue: 9080 } } }
- "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
  clusterName: v1
  endpoints:
  - loadBalancingWeight: 1
    lbEndpoints:
    - endpoint: { address: { socketAddress: { address: 127.0.0.1, portValue: 9080 } } }
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: broken
  type: EDS
  lbPolicy: CLUSTER_PROVIDED
"#;

#[tokio::test]
async fn static_file_routes_without_a_control_plane() {
    let dir = std::env::temp_dir().join(format!("mesh-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resources.yaml");
    std::fs::write(&path, RESOURCES).unwrap();

    let mesh = Mesh::from_static_file(&path).unwrap();
    // The unsupported cluster was rejected by name; the rest applied.
    let broken = mesh
        .cache()
        .entry::<mesh_core::model::Cluster>("broken")
        .unwrap();
    assert!(
        matches!(broken.status, mesh_core::cache::ResourceStatus::Nacked(ref e) if e.field.contains("lb_policy"))
    );

    let snapshot = mesh.target("reviews:9080").ready().await.unwrap();
    fn view(h: &HeaderMap) -> RequestView<'_> {
        RequestView {
            authority: "reviews:9080",
            path_and_query: "/r",
            method: &Method::GET,
            scheme: None,
            headers: h,
        }
    }
    let mut headers = HeaderMap::new();
    let v2 = (0..2000)
        .filter(|_| snapshot.route(&view(&headers)).unwrap().cluster.name() == "v2")
        .count();
    // Binomial(2000, 0.1): mean 200, sd 13.4; ±80 is ~6 sd.
    assert!((120..=280).contains(&v2), "v2 got {v2} of 2000");
    headers.insert("end-user", "jason".parse().unwrap());
    let d = snapshot.route(&view(&headers)).unwrap();
    assert_eq!((&**d.route.name(), d.cluster.name()), ("testers", "v2"));
    assert_eq!(
        d.cluster.pick().unwrap().address(),
        "127.0.0.2:9080".parse().unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn missing_file_is_a_named_error() {
    let err = Mesh::from_static_file("/nonexistent/mesh.yaml").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/mesh.yaml"), "{err}");
}
