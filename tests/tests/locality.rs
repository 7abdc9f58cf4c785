//! Locality-aware EDS end to end: the control plane reads WorkloadEntry localities and a
//! DestinationRule `localityLbSetting`, and serves each ADS client the assignment reshaped for
//! the locality in its bootstrap `node`; the mesh client's priority balancer (overprovisioning,
//! outlier ejection) then keeps traffic local, fails over in the configured order, or splits it
//! by the `distribute` weights. Real backends on loopback stand in for four "localities".

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use bytes::Bytes;
use examples::Misbehavior;
use http::Request;
use http_body_util::Full;
use mesh_core::{bootstrap::Bootstrap, mesh::Mesh, snapshot::ClusterHandle};
use mesh_tower::{
    client::{http1, HttpClient},
    retry::ReplayBody,
    MeshStack, MeshStackLayer,
};
use tests::{control_plane, ready, temp_dir, write, Backend};
use tower::{Layer, ServiceExt};

const HOST: &str = "svc.test";
const TARGET: &str = "svc.test:8080";
const CLUSTER: &str = "outbound|8080||svc.test";

type Stack = MeshStack<HttpClient<ReplayBody<Full<Bytes>>>>;

/// Two backends in A/a1, one in B/b1, one in C/c1.
async fn backends() -> Result<Vec<(Backend, &'static str)>> {
    let mut out = Vec::new();
    for (name, loc) in [
        ("a1-x", "A/a1"),
        ("a1-y", "A/a1"),
        ("b1", "B/b1"),
        ("c1", "C/c1"),
    ] {
        out.push((Backend::start(name).await?, loc));
    }
    Ok(out)
}

/// A ServiceEntry with one WorkloadEntry per backend (with its locality) and a
/// DestinationRule with `traffic_policy`.
fn config(backends: &[(Backend, &str)], traffic_policy: &str) -> String {
    let mut y = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{ name: svc, namespace: test }}\n\
         spec:\n  hosts: [{HOST}]\n  ports: [{{ number: 8080, name: http, protocol: HTTP }}]\n  \
         workloadSelector: {{ labels: {{ app: svc }} }}\n"
    );
    for (b, loc) in backends {
        y += &format!(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{ name: {n}, namespace: test }}\n\
             spec:\n  address: {ip}\n  ports: {{ http: {p} }}\n  labels: {{ app: svc }}\n  locality: {loc}\n",
            n = b.name(),
            ip = b.addr().ip(),
            p = b.addr().port()
        );
    }
    y + &format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{ name: svc, namespace: test }}\n\
         spec:\n  host: {HOST}\n  trafficPolicy: {traffic_policy}\n"
    )
}

/// A warm mesh client whose bootstrap node sits in `locality` (`None`: no locality), and its
/// full stack.
async fn client(
    cp: &mesh_control_plane::ControlPlaneHandle,
    id: &str,
    locality: Option<(&str, &str)>,
) -> Result<(Mesh, Stack)> {
    let loc = locality
        .map(|(r, z)| format!(r#","locality":{{"region":"{r}","zone":"{z}"}}"#))
        .unwrap_or_default();
    let bootstrap = Bootstrap::from_json(&format!(
        r#"{{"xds_servers":[{{"server_uri":"{}","channel_creds":[{{"type":"insecure"}}]}}],
            "node":{{"id":"{id}","cluster":"tests"{loc}}}}}"#,
        cp.ads_addr()
    ))?;
    let m = Mesh::from_bootstrap(&bootstrap)?;
    ready(&m, TARGET).await?;
    let svc = MeshStackLayer::new(m.clone())
        .ready_timeout(Duration::from_secs(10))
        .layer(http1());
    Ok((m, svc))
}

/// `n` GETs; answers counted by the backend that sent them (`status` appended when not 200).
async fn send(svc: &Stack, n: usize) -> Result<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let req = Request::get(format!("http://{TARGET}/")).body(Full::default())?;
        let resp = svc.clone().oneshot(req).await?;
        let name = resp
            .headers()
            .get("x-backend")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string();
        let key = if resp.status() == 200 {
            name
        } else {
            format!("{name} {}", resp.status().as_u16())
        };
        *out.entry(key).or_default() += 1;
    }
    Ok(out)
}

fn cluster(m: &Mesh) -> Result<Arc<ClusterHandle>> {
    let snap = m.target(TARGET).snapshot();
    let snap = snap.as_ref().context("target is warm")?;
    snap.clusters()
        .get(CLUSTER)
        .cloned()
        .context("cluster in the snapshot")
}

fn only(got: &BTreeMap<String, usize>, allowed: &[&str]) -> bool {
    got.keys().all(|k| allowed.contains(&k.as_str()))
}

#[tokio::test]
async fn local_zone_first_then_the_failover_region() -> Result<()> {
    let bs = backends().await?;
    let dir = temp_dir("locality");
    write(
        &dir,
        "svc.yaml",
        &config(
            &bs,
            "{ loadBalancer: { localityLbSetting: { failover: [{ from: A, to: C }] } }, \
               outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100 } }",
        ),
    );
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let (ma, a) = client(&cp, "client-a", Some(("A", "a1"))).await?;
    let (_mb, b) = client(&cp, "client-b", Some(("B", "b1"))).await?;
    let (_mn, none) = client(&cp, "client-none", None).await?;

    // Healthy: a client in A/a1 stays in its zone (priority 0 is 100 % healthy, so the
    // overprovisioned load never spills), spread over both local endpoints; a client in B
    // stays in B. Deterministic: priority load is 100/0/0, not a probability.
    let got = send(&a, 60).await?;
    assert!(only(&got, &["a1-x", "a1-y"]), "{got:?}");
    assert_eq!(got.len(), 2, "both local endpoints used: {got:?}");
    let got = send(&b, 30).await?;
    assert!(only(&got, &["b1"]), "{got:?}");
    // Without a locality the client gets the shared assignment: one priority, all four used
    // (round robin over the weighted localities).
    let got = send(&none, 60).await?;
    assert_eq!(got.len(), 4, "{got:?}");

    // The local zone fails: each 503 ejects its endpoint at once (consecutive5xxErrors: 1).
    for (bk, _) in &bs[..2] {
        bk.misbehave(Some(Misbehavior::Status(503)));
    }
    let detector = cluster(&ma)?;
    let detector = detector.outlier().context("outlier detection configured")?;
    let mut tries = 0;
    while !(detector.is_ejected(bs[0].0.addr()) && detector.is_ejected(bs[1].0.addr())) {
        tries += 1;
        anyhow::ensure!(tries <= 50, "local endpoints not ejected after 50 requests");
        send(&a, 1).await?;
    }
    // Then everything goes to the `failover` region C (priority 1), not to B (priority 2).
    let got = send(&a, 50).await?;
    assert_eq!(got.get("c1"), Some(&50), "{got:?}");
    // Client B never saw A's endpoints first: still all in B.
    let got = send(&b, 20).await?;
    assert!(only(&got, &["b1"]), "{got:?}");
    Ok(())
}

#[tokio::test]
async fn distribute_splits_by_the_configured_weights() -> Result<()> {
    let bs = backends().await?;
    let dir = temp_dir("locality");
    write(
        &dir,
        "svc.yaml",
        &config(
            &bs,
            "{ loadBalancer: { localityLbSetting: { distribute: [ \
               { from: \"A/a1/*\", to: { \"A/a1/*\": 70, \"B/*\": 30 } }, \
               { from: \"B/*\", to: { \"C/*\": 100 } } ] } } }",
        ),
    );
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let (_ma, a) = client(&cp, "client-a", Some(("A", "a1"))).await?;
    let (_mb, b) = client(&cp, "client-b", Some(("B", "b1"))).await?;

    // 200 requests from A/a1: 70 % to A/a1 (both endpoints), 30 % to B, none to C. The client
    // picks a locality by a smooth weighted round-robin schedule (weights 70:30 → period 10),
    // so 200 picks are exactly 140/60 whatever the starting point; the ±10 tolerance only covers
    // a balancer rebuilt mid-run (a config push restarting the schedule), not chance.
    let got = send(&a, 200).await?;
    let local = got.get("a1-x").unwrap_or(&0) + got.get("a1-y").unwrap_or(&0);
    let remote = *got.get("b1").unwrap_or(&0);
    eprintln!("from A/a1: {got:?}");
    assert!(only(&got, &["a1-x", "a1-y", "b1"]), "{got:?}");
    assert!((130..=150).contains(&local), "A/a1 got {local}: {got:?}");
    assert!((50..=70).contains(&remote), "B got {remote}: {got:?}");
    // A client in B gets its own weights: everything to C.
    let got = send(&b, 40).await?;
    assert_eq!(got.get("c1"), Some(&40), "{got:?}");
    Ok(())
}
