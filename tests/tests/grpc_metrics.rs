//! gRFC A66 metrics on `MeshChannel`, end to end: control plane → ADS → a `MeshChannel` with
//! `with_metrics` → a real tonic greeter that fails attempts on request (`x-fail-first`), the
//! VirtualService retrying UNAVAILABLE; the OpenTelemetry SDK exports to a Prometheus registry,
//! scraped over loopback HTTP after the traffic.
//!
//! Each call's attempts are known exactly (the greeter counts them per key), so every count
//! below is exact: 10 plain calls (10 attempts OK); one call whose first attempt fails (2
//! attempts, call OK); one whose 3 allowed attempts all fail (call UNAVAILABLE); one cut by its
//! deadline. A channel without metrics on the same provider records nothing.

use std::time::Duration;

use anyhow::Result;
use examples::{
    greeter::{
        GreeterBackend, GreeterClient, HelloRequest, DELAY_HEADER, FAIL_FIRST_HEADER, KEY_HEADER,
    },
    metrics::Prometheus,
};
use mesh_grpc::{ClientMetrics, MeshChannel};
use tests::{
    control_plane, mesh,
    prometheus::{samples, value},
    temp_dir, write,
};
use tonic::Code;

const TARGET: &str = "xds:///svc.test:50051";
const METHOD: &str = "helloworld.Greeter/SayHello";

async fn call(
    channel: &MeshChannel,
    fail_first: Option<(&str, u32)>,
) -> Result<String, tonic::Status> {
    call_with(channel, fail_first, None).await
}

/// A call, optionally failing its first attempts, or answered after `slow` with `slow` / 20 as
/// the caller's deadline.
async fn call_with(
    channel: &MeshChannel,
    fail_first: Option<(&str, u32)>,
    slow: Option<Duration>,
) -> Result<String, tonic::Status> {
    let mut req = tonic::Request::new(HelloRequest { name: "m".into() });
    if let Some(d) = slow {
        let ms = d.as_millis().to_string();
        req.metadata_mut()
            .insert(DELAY_HEADER, ms.parse().expect("ascii"));
        req.set_timeout(d / 20);
    }
    if let Some((key, n)) = fail_first {
        let meta = req.metadata_mut();
        meta.insert(KEY_HEADER, key.parse().expect("ascii"));
        meta.insert(FAIL_FIRST_HEADER, n.to_string().parse().expect("ascii"));
    }
    let reply = GreeterClient::new(channel.clone()).say_hello(req).await?;
    Ok(reply.into_inner().message)
}

#[tokio::test]
async fn call_and_attempt_instruments_follow_a66() -> Result<()> {
    let g = GreeterBackend::start("g1").await?;
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{ name: svc, namespace: test }}\n\
         spec:\n  hosts: [svc.test]\n  ports: [{{ number: 50051, name: grpc, protocol: GRPC }}]\n  \
         resolution: STATIC\n  endpoints: [{{ address: 127.0.0.1, ports: {{ grpc: {} }} }}]\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: svc, namespace: test }}\n\
         spec:\n  hosts: [svc.test]\n  http:\n  - retries: {{ attempts: 2, retryOn: unavailable }}\n    \
         route: [{{ destination: {{ host: svc.test }} }}]\n",
        g.addr().port()
    );
    let dir = temp_dir("grpc-metrics");
    write(&dir, "svc.yaml", &yaml);
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "grpc-metrics")?;

    let prom = Prometheus::new()?;
    let metrics = ClientMetrics::from_provider(&prom.provider);
    let channel = MeshChannel::new(&m, TARGET)?.with_metrics(&metrics);
    channel.wait_ready(Duration::from_secs(10)).await?;
    let plain = MeshChannel::new(&m, TARGET)?;

    for _ in 0..10 {
        assert_eq!(call(&channel, None).await?, "hello m from g1");
    }
    assert_eq!(call(&channel, Some(("once", 1))).await?, "hello m from g1");
    assert_eq!(g.attempts("once"), 2);
    let err = call(&channel, Some(("always", 9))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(g.attempts("always"), 3, "1 attempt + 2 retries");
    // The caller's deadline (100 ms) cuts the answer (2 s): the call is DEADLINE_EXCEEDED, its
    // attempt abandoned, CANCELLED (see mesh_grpc::metrics on why not DEADLINE_EXCEEDED).
    let err = call_with(&channel, None, Some(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    // Not measured: the channel without metrics.
    call(&plain, None).await?;

    let (addr, server) = prom.serve("127.0.0.1:0".parse()?).await?;
    let text = examples::metrics::scrape(addr).await?;
    server.abort();
    let all = samples(&text)?;
    let base = [("grpc_method", METHOD), ("grpc_target", TARGET)];
    let with = |status: &'static str| {
        let mut v = base.to_vec();
        v.push(("grpc_status", status));
        v
    };
    let check = |name: &str, attrs: &[(&str, &str)], want: f64| {
        let got = value(&all, name, attrs).map_err(|e| anyhow::anyhow!("{e}\n{text}"))?;
        anyhow::ensure!(got == want, "{name} {attrs:?}: {got}, want {want}\n{text}");
        anyhow::Ok(())
    };
    check("grpc_client_attempt_started_total", &base, 16.0)?;
    check(
        "grpc_client_attempt_duration_seconds_count",
        &with("CANCELLED"),
        1.0,
    )?;
    check(
        "grpc_client_call_duration_seconds_count",
        &with("DEADLINE_EXCEEDED"),
        1.0,
    )?;
    check(
        "grpc_client_attempt_duration_seconds_count",
        &with("OK"),
        11.0,
    )?;
    check(
        "grpc_client_attempt_duration_seconds_count",
        &with("UNAVAILABLE"),
        4.0,
    )?;
    check("grpc_client_call_duration_seconds_count", &with("OK"), 11.0)?;
    check(
        "grpc_client_call_duration_seconds_count",
        &with("UNAVAILABLE"),
        1.0,
    )?;
    // A66's latency buckets: 100 s is the last finite boundary, and every call fell under it.
    let mut le = with("OK");
    le.push(("le", "100"));
    check("grpc_client_call_duration_seconds_bucket", &le, 11.0)?;
    cp.shutdown().await;
    Ok(())
}
