//! Interop with gRPC's own xDS client: Python `grpcio` (gRPC C-core) driven by our control plane.
//!
//! The control plane runs in-process on a YAML directory this test writes; the grpcio side is
//! `tests/interop/grpcio_xds.py` run by the interop venv's Python: it starts grpcio backends,
//! then dials `xds:///NAME` targets with a bootstrap pointing at our ADS port and reports what
//! its calls saw as JSON. Scenarios, each observed from grpcio's side: a plain call (default
//! route), an 80/20 weighted split, a header route, fault aborts (HTTP and gRPC status) and a
//! fault delay, retries on UNAVAILABLE (with a no-retry control), locality failover priorities
//! rewritten for grpcio's node locality, and a listener grpcio NACKs —
//! whose text the control plane must record. Every other resource must be ACKed: that is the
//! check that what we emit is the gRPC-safe form (INTEROP.md, last section).
//!
//! The interpreter is `$MESH_INTEROP_PYTHON`, else `.venv-interop/bin/python` at the workspace
//! root (`python3 -m venv .venv-interop && .venv-interop/bin/pip install grpcio==1.85.1`, which
//! `.ci/run` does). Without one the test fails, unless `MESH_SKIP_INTEROP=1`.

use std::{collections::BTreeMap, process::Stdio, time::Duration};

use anyhow::{bail, ensure, Context, Result};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use mesh_control_plane::{translate::to_any, ClientStatus, ControlPlane, ResourceType};
use prost::Message;
use serde_json::Value;
use tests::interop;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{ChildStdout, Command},
};

/// The grpcio version `.ci/run` installs and these scenarios were checked with.
const GRPCIO_PIN: &str = "1.85.1";
/// Bound on the whole run (the script's own watchdog is 100 s).
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
/// 80/20 split: calls made and accepted v2 range. v2 ~ Binomial(400, 0.2): mean 80, sd 8; the
/// range [40, 120] is mean ± 5 sd, so a correct split fails it with probability < 1e-6.
const SPLIT_CALLS: u64 = 400;
const V2_RANGE: std::ops::RangeInclusive<u64> = 40..=120;

fn config_yaml(ports: &BTreeMap<String, u16>) -> Result<String> {
    let port = |n: &str| {
        ports
            .get(n)
            .copied()
            .with_context(|| format!("no {n} port"))
    };
    let (v1, v2, flaky) = (port("v1")?, port("v2")?, port("flaky")?);
    let se = |name: &str, port: u16, endpoints: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{ name: {name} }}\n\
             spec:\n  hosts: [{name}.default.svc.cluster.local]\n  \
             ports: [{{ number: {port}, name: grpc, protocol: GRPC }}]\n  resolution: STATIC\n  \
             endpoints:\n{endpoints}---\n"
        )
    };
    let ep = |p: u16, version: &str| {
        format!("  - {{ address: 127.0.0.1, ports: {{ grpc: {p} }}, labels: {{ version: {version} }} }}\n")
    };
    let ep_in = |p: u16, version: &str, locality: &str| {
        format!(
            "  - {{ address: 127.0.0.1, ports: {{ grpc: {p} }}, labels: {{ version: {version} }}, \
             locality: {locality} }}\n"
        )
    };
    let mut y = se("hello", 50050, &ep(v1, "v1"));
    y += &se("greeter", 50051, &(ep(v1, "v1") + &ep(v2, "v2")));
    y += &se("faulty", 50052, &ep(v1, "v1"));
    y += &se("flaky", 50053, &ep(flaky, "v1"));
    y += &se("flaky-noretry", 50054, &ep(flaky, "v1"));
    y += &se("flaky-default", 50056, &ep(flaky, "v1"));
    // v1 in grpcio's own locality (its bootstrap node says r1/z1), v2 in another region.
    y += &se(
        "local",
        50057,
        &(ep_in(v1, "v1", "r1/z1") + &ep_in(v2, "v2", "r2/z2")),
    );
    y += r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: local }
spec:
  host: local
  # Outlier detection turns on Istio's default locality failover.
  trafficPolicy:
    outlierDetection: { consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 30s }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: greeter }
spec:
  host: greeter
  # Outlier detection and pool limits ride along: grpcio must accept (ACK) them (gRFC A50).
  trafficPolicy:
    loadBalancer: { simple: LEAST_REQUEST }
    connectionPool: { tcp: { maxConnections: 100 }, http: { http1MaxPendingRequests: 100 } }
    outlierDetection: { consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50 }
  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: greeter }
spec:
  hosts: [greeter]
  http:
  - name: jason
    match: [{ headers: { x-user: { exact: jason } } }]
    route: [{ destination: { host: greeter, subset: v2 } }]
  - name: split
    route:
    - { destination: { host: greeter, subset: v1 }, weight: 80 }
    - { destination: { host: greeter, subset: v2 }, weight: 20 }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: faulty }
spec:
  hosts: [faulty]
  http:
  - name: abort-http
    match: [{ headers: { x-fault: { exact: http } } }]
    fault: { abort: { httpStatus: 404, percentage: { value: 100 } } }
    route: [{ destination: { host: faulty } }]
  - name: abort-grpc
    match: [{ headers: { x-fault: { exact: grpc } } }]
    fault: { abort: { grpcStatus: RESOURCE_EXHAUSTED, percentage: { value: 100 } } }
    route: [{ destination: { host: faulty } }]
  - name: delay
    match: [{ headers: { x-fault: { exact: delay } } }]
    fault: { delay: { fixedDelay: 300ms, percentage: { value: 100 } } }
    route: [{ destination: { host: faulty } }]
  - name: plain
    route: [{ destination: { host: faulty } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: flaky }
spec:
  hosts: [flaky]
  http:
  - retries: { attempts: 3, retryOn: unavailable }
    route: [{ destination: { host: flaky } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: flaky-noretry }
spec:
  hosts: [flaky-noretry]
  http:
  - retries: { attempts: 0 }
    route: [{ destination: { host: flaky-noretry } }]
"#;
    Ok(y)
}

/// The script's stdout, one JSON object per line, each read bounded in time.
struct Lines(tokio::io::Lines<BufReader<ChildStdout>>);

impl Lines {
    async fn next(&mut self, what: &str) -> Result<Value> {
        loop {
            let line = tokio::time::timeout(RUN_TIMEOUT, self.0.next_line())
                .await
                .with_context(|| format!("no {what} from grpcio within {RUN_TIMEOUT:?}"))??
                .with_context(|| format!("grpcio script ended before {what}"))?;
            // grpcio may log to stdout; only our JSON objects count.
            if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(&line) {
                return Ok(v);
            }
        }
    }
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("?")
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

#[tokio::test]
async fn grpcio_xds_client_against_our_control_plane() -> Result<()> {
    let Some(python) = interop::python("grpcio interop")? else {
        return Ok(());
    };
    let script = interop::workspace_root().join("tests/interop/grpcio_xds.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("run {} {}", python.display(), script.display()))?;
    let stderr = interop::drain_stderr(&mut child);
    let mut lines = Lines(BufReader::new(child.stdout.take().expect("piped")).lines());

    let run = async {
        let backends = lines.next("backend ports").await?;
        let ports: BTreeMap<String, u16> = serde_json::from_value(backends["ports"].clone())?;

        let dir = tests::temp_dir("grpcio");
        tests::write(&dir, "interop.yaml", &config_yaml(&ports)?);
        let cp = ControlPlane::builder().config_dir(&dir).start().await?;
        let status = cp.config_status();
        ensure!(status.ready, "config rejected: {:?}", status.last_error);
        ensure!(status.warnings.is_empty(), "{:?}", status.warnings);

        // Plus one listener grpcio must NACK: `broken:50055`, hello's listener without HTTP
        // filters (gRFC A39: "expected at least one HTTP filter").
        let mut xds = (*cp.resources()).clone();
        let mut broken = xds.listener("hello:50050").context("hello listener")?;
        broken.name = "broken:50055".into();
        let api = broken.api_listener.as_mut().context("api listener")?;
        let any = api.api_listener.as_mut().context("hcm")?;
        let mut hcm = HttpConnectionManager::decode(any.value.as_slice())?;
        hcm.http_filters.clear();
        *any = to_any(&hcm);
        xds.listeners.push(broken);
        cp.set_resources(xds);

        let stdin = child.stdin.as_mut().context("stdin")?;
        let ads = serde_json::json!({ "ads": cp.ads_addr().to_string() });
        stdin.write_all(format!("{ads}\n").as_bytes()).await?;
        stdin.flush().await?;
        let results = lines.next("results").await?;
        anyhow::Ok((cp, results))
    };
    let outcome = tokio::time::timeout(RUN_TIMEOUT, run).await;
    let (cp, r) = match outcome {
        Ok(Ok(v)) => v,
        failure => {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let err = tokio::time::timeout(Duration::from_secs(5), stderr)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let why = match failure {
                Ok(Err(e)) => format!("{e:#}"),
                _ => format!("timed out after {RUN_TIMEOUT:?}"),
            };
            bail!("grpcio interop run failed: {why}\n--- grpcio stderr ---\n{err}");
        }
    };
    println!("grpcio results: {r:#}");
    let version = r["grpcio_version"].as_str().unwrap_or("?");
    if version != GRPCIO_PIN {
        eprintln!("note: scenarios were pinned against grpcio {GRPCIO_PIN}, running {version}");
    }

    // 1. Default route: every call answered by the only endpoint.
    let g = &r["greeter"];
    assert_eq!(code(&g["first"]), "OK", "{g}");
    assert_eq!(count(&g["counts"], "v1"), 20, "{g}");

    // 2. Weighted 80/20, within the binomial bound stated on V2_RANGE.
    let s = &r["split"]["counts"];
    let (v1, v2) = (count(s, "v1"), count(s, "v2"));
    assert_eq!(v1 + v2, SPLIT_CALLS, "every split call answered: {s}");
    assert!(V2_RANGE.contains(&v2), "v2 got {v2} of {SPLIT_CALLS}: {s}");

    // 3. Header route.
    assert_eq!(count(&r["header"]["counts"], "v2"), 30, "{}", r["header"]);

    // 4. Faults (XDS-SEMANTICS row 14): HTTP 404 → UNIMPLEMENTED; grpcStatus passed through;
    // aborted calls never reach the backend; the delay precedes a normal answer.
    assert_eq!(code(&r["fault_none"]), "OK", "{}", r["fault_none"]);
    for (key, want) in [
        ("fault_http", "UNIMPLEMENTED"),
        ("fault_grpc", "RESOURCE_EXHAUSTED"),
    ] {
        let calls = r[key].as_array().context("list")?;
        assert_eq!(calls.len(), 5);
        for c in calls {
            assert_eq!(code(c), want, "{key}: {c}");
        }
    }
    assert_eq!(r["fault_backend_calls"], 0, "aborted calls reached v1");
    let d = &r["fault_delay"];
    assert_eq!((code(d), d["answer"].as_str()), ("OK", Some("v1")), "{d}");
    let elapsed = d["elapsed"].as_f64().unwrap_or(0.0);
    assert!(elapsed >= 0.3, "delay of 300 ms not applied: {elapsed} s");

    // 5. Retries: each call succeeds after FLAKY_FAILURES (2) UNAVAILABLE attempts, so the
    // backend saw 3 attempts per key — under the VirtualService's policy and under istiod's
    // default (2 retries on unavailable) for a host no VirtualService routes; with
    // `attempts: 0` the first failure is final.
    let attempts = &r["flaky_attempts"];
    for (i, c) in r["retry"].as_array().context("list")?.iter().enumerate() {
        assert_eq!(code(c), "OK", "retry call {i}: {c}");
        assert_eq!(count(attempts, &format!("r{i}")), 3, "{attempts}");
    }
    assert_eq!(code(&r["no_retry"]), "UNAVAILABLE", "{}", r["no_retry"]);
    assert_eq!(count(attempts, "n0"), 1, "{attempts}");
    assert_eq!(code(&r["default_retry"]), "OK", "{}", r["default_retry"]);
    assert_eq!(count(attempts, "d0"), 3, "{attempts}");

    // 6. Locality: the per-client EDS (v1 at priority 0 for r1/z1) is accepted and followed.
    // Without the rewrite both endpoints would share one priority and split the calls.
    assert_eq!(
        count(&r["locality"]["counts"], "v1"),
        40,
        "grpcio left its own locality: {}",
        r["locality"]
    );

    // 7. The NACK: grpcio fails the call, and the control plane recorded grpcio's own text.
    // grpcio ≥ 1.67 runs one XdsClient — one ADS stream — per channel target (gRFC A71), so
    // there is one record per target, all with our node id.
    assert_eq!(code(&r["nack"]), "UNAVAILABLE", "{}", r["nack"]);
    let lds_nacked = |c: &ClientStatus| {
        c.of(ResourceType::Listener)
            .is_some_and(|t| t.nack.is_some())
    };
    let mut clients: Vec<ClientStatus> = Vec::new();
    tests::eventually(Duration::from_secs(10), || {
        clients = cp
            .client_status()
            .into_iter()
            .filter(|c| c.node.id == "grpcio-interop")
            .collect();
        let nacked = clients.iter().any(lds_nacked);
        async move { nacked }
    })
    .await
    .with_context(|| format!("no LDS NACK recorded: {clients:#?}"))?;
    let nacking: Vec<&ClientStatus> = clients.iter().filter(|c| lds_nacked(c)).collect();
    assert_eq!(nacking.len(), 1, "{nacking:#?}");
    let nack = nacking[0].types[&ResourceType::Listener]
        .nack
        .as_ref()
        .expect("filtered on it");
    assert!(
        nack.message.contains("broken:50055")
            && nack.message.contains("expected at least one HTTP filter"),
        "{nack:?}"
    );
    assert_eq!(
        nack.accepted_version, "",
        "nothing was accepted before: {nack:?}"
    );
    for other in ["hello:50050", "greeter", "faulty:50052", "flaky:50053"] {
        assert!(!nack.message.contains(other), "{other} NACKed: {nack:?}");
    }
    for c in &clients {
        // Recognised as a gRPC client (node metadata GENERATOR, user agent).
        assert_eq!(c.node.generator.as_deref(), Some("grpc"), "{:?}", c.node);
        assert!(c.node.user_agent_name.contains("gRPC"), "{:?}", c.node);
        // Everything else served was accepted: the only NACK is the broken listener's.
        for (ty, t) in &c.types {
            let broken = *ty == ResourceType::Listener && lds_nacked(c);
            assert!(
                (t.nacks > 0) == broken,
                "{ty:?} on stream {}: {t:?}",
                c.stream_id
            );
        }
    }
    for ty in ResourceType::PUSH_ORDER {
        assert!(
            clients
                .iter()
                .any(|c| c.of(ty).is_some_and(|t| t.acked_version.is_some())),
            "no grpcio stream ACKed {ty:?}: {clients:#?}"
        );
    }

    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    cp.shutdown().await;
    Ok(())
}
