//! gRPC resilience through `MeshChannel`, end to end: Istio YAML → control plane → ADS →
//! `MeshChannel` → a tonic-generated client → a real tonic greeter on loopback that misbehaves
//! on request (`x-fail-first`, `x-delay-ms`; see `examples::greeter`).
//!
//! What a gRPC user expects (XDS-SEMANTICS.md rows 11, 12, 16; gRFC A6/A31/A44/A32):
//! - `retries` with `retryOn: unavailable` retries a trailers-only UNAVAILABLE and the call
//!   succeeds; `attempts: 0` leaves the backend's status untouched (its code and message — no
//!   mesh or control-plane code leaks into the call); a host with no VirtualService gets
//!   istiod's default policy (2 retries on UNAVAILABLE/CANCELLED).
//! - the VirtualService `timeout` (→ `max_stream_duration`) caps the call, and never extends
//!   the caller's own, shorter deadline: both fail DEADLINE_EXCEEDED.
//! - a full `max_requests` breaker fails the call at once with UNAVAILABLE naming the limit.

use std::time::{Duration, Instant};

use anyhow::Result;
use examples::greeter::{
    GreeterBackend, GreeterClient, HelloRequest, DELAY_HEADER, FAIL_FIRST_HEADER, KEY_HEADER,
};
use mesh_control_plane::ControlPlaneHandle;
use mesh_grpc::MeshChannel;
use mesh_tower::{MeshError, MeshErrorKind, OverflowLimit};
use tests::{control_plane, mesh, temp_dir, write};
use tonic::Code;

/// One greeter behind `svc.test:50051`, plus `extra` YAML (VirtualService, DestinationRule).
async fn setup(extra: &str) -> Result<(GreeterBackend, ControlPlaneHandle, MeshChannel)> {
    let g = GreeterBackend::start("g1").await?;
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{ name: svc, namespace: test }}\n\
         spec:\n  hosts: [svc.test]\n  ports: [{{ number: 50051, name: grpc, protocol: GRPC }}]\n  \
         resolution: STATIC\n  endpoints: [{{ address: 127.0.0.1, ports: {{ grpc: {} }} }}]\n{extra}",
        g.addr().port()
    );
    let dir = temp_dir("grpc-resilience");
    write(&dir, "svc.yaml", &yaml);
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let channel = MeshChannel::new(&mesh(&cp, "grpc-resilience")?, "xds:///svc.test:50051")?;
    channel.wait_ready(Duration::from_secs(10)).await?;
    Ok((g, cp, channel))
}

fn vs(http: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: svc, namespace: test }}\n\
         spec:\n  hosts: [svc.test]\n  http:\n  - {http}\n    route: [{{ destination: {{ host: svc.test }} }}]\n"
    )
}

/// One `SayHello` with the given request metadata.
async fn call(
    channel: &MeshChannel,
    meta: &[(&'static str, &str)],
    deadline: Option<Duration>,
) -> Result<String, tonic::Status> {
    let mut req = tonic::Request::new(HelloRequest {
        name: "test".into(),
    });
    for (k, v) in meta {
        req.metadata_mut()
            .insert(*k, v.parse().expect("ascii metadata"));
    }
    if let Some(d) = deadline {
        req.set_timeout(d);
    }
    let reply = GreeterClient::new(channel.clone()).say_hello(req).await?;
    Ok(reply.into_inner().message)
}

fn flaky(key: &str, failures: u32) -> Vec<(&'static str, String)> {
    vec![
        (KEY_HEADER, key.to_owned()),
        (FAIL_FIRST_HEADER, failures.to_string()),
    ]
}

fn as_meta<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn unavailable_is_retried_by_policy_and_by_istiod_default() -> Result<()> {
    // The VirtualService's policy: 3 retries on UNAVAILABLE; 2 failures then success.
    let (g, _cp, ch) = setup(&vs("retries: { attempts: 3, retryOn: unavailable }")).await?;
    for i in 0..3 {
        let key = format!("vs{i}");
        let answer = call(&ch, &as_meta(&flaky(&key, 2)), None).await?;
        assert_eq!(answer, "hello test from g1");
        assert_eq!(g.attempts(&key), 3, "two failed attempts, then the answer");
    }
    // Three failures exceed nothing here (4 attempts allowed); four do: the last failure stands.
    let err = call(&ch, &as_meta(&flaky("vs-out", 4)), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(g.attempts("vs-out"), 4, "1 attempt + num_retries 3");

    // No VirtualService at all: istiod's default (2 retries on unavailable) applies.
    let (g, _cp, ch) = setup("").await?;
    let answer = call(&ch, &as_meta(&flaky("default", 2)), None).await?;
    assert_eq!(answer, "hello test from g1");
    assert_eq!(g.attempts("default"), 3);
    Ok(())
}

#[tokio::test]
async fn without_retries_the_backends_own_status_reaches_the_caller() -> Result<()> {
    let (g, _cp, ch) = setup(&vs("retries: { attempts: 0 }")).await?;
    let err = call(&ch, &as_meta(&flaky("once", 1)), None)
        .await
        .unwrap_err();
    assert_eq!(g.attempts("once"), 1, "no retry");
    // The backend's code and text, not a mesh error: nothing of the mesh leaks into it.
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(err.message(), "g1: failing attempt 1 of once");
    assert!(
        std::error::Error::source(&err)
            .and_then(|e| e.downcast_ref::<MeshError>())
            .is_none(),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn route_timeout_caps_the_call_and_never_extends_a_shorter_deadline() -> Result<()> {
    let (_g, _cp, ch) = setup(&vs("timeout: 300ms")).await?;
    let slow = [(DELAY_HEADER, "3000")];

    // The route's 300 ms caps the caller's 10 s deadline.
    let start = Instant::now();
    let err = call(&ch, &slow, Some(Duration::from_secs(10)))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        (Duration::from_millis(250)..Duration::from_millis(2500)).contains(&took),
        "capped at ~300 ms, took {took:?}"
    );
    let kind = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<MeshError>())
        .map(MeshError::kind);
    assert_eq!(kind, Some(MeshErrorKind::Timeout), "{err:?}");

    // The caller's own 100 ms deadline, shorter than the route's, is the one that holds.
    let start = Instant::now();
    let err = call(&ch, &slow, Some(Duration::from_millis(100)))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(took < Duration::from_millis(250), "took {took:?}");

    // A fast call under the same route is unaffected.
    assert_eq!(call(&ch, &[], None).await?, "hello test from g1");
    Ok(())
}

#[tokio::test]
async fn full_breaker_fails_fast_with_unavailable_naming_the_limit() -> Result<()> {
    let dr = "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: svc, namespace: test }\n\
              spec:\n  host: svc.test\n  trafficPolicy: { connectionPool: { http: { http2MaxRequests: 1 } } }\n";
    let (g, _cp, ch) = setup(dr).await?;
    let held = {
        let ch = ch.clone();
        tokio::spawn(async move { call(&ch, &[(DELAY_HEADER, "1500")], None).await })
    };
    // Bounded wait until the slow call holds the only slot.
    let mut overflowed = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        match call(&ch, &[], None).await {
            Err(e) => {
                overflowed = Some((e, start.elapsed()));
                break;
            }
            Ok(_) => continue,
        }
    }
    let (err, took) = overflowed.expect("a call overflowed the breaker within 1 s");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("max_requests"), "{}", err.message());
    let kind = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<MeshError>())
        .map(MeshError::kind);
    assert_eq!(
        kind,
        Some(MeshErrorKind::Overflow(OverflowLimit::MaxRequests))
    );
    assert!(took < Duration::from_millis(500), "fails fast: {took:?}");
    // The held call completes normally, and the slot frees.
    assert_eq!(held.await??, "hello test from g1");
    assert_eq!(call(&ch, &[], None).await?, "hello test from g1");
    assert!(g.served() >= 2);
    Ok(())
}
