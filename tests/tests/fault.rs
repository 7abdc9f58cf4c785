//! Fault injection end to end (Envoy fault filter, gRFC A33; XDS-SEMANTICS.md row 14): real
//! backends on loopback, the real pooled HTTP/1.1 client under the full mesh stack, and tonic's
//! greeter over a `MeshChannel`. Faults come from Istio YAML through the real control plane
//! (VirtualService `fault`), or — for what Istio cannot express (header-driven faults,
//! `max_active_faults`) — from Envoy protos through the model's own conversion.
//!
//! Statistical checks use n draws of an independent Bernoulli(p) per request (the layer takes a
//! fresh random number per request) and accept |X − np| ≤ 6.5σ, σ = √(np(1−p)): the chance of a
//! false failure is below 1e-10 per check, so they cannot flake in practice; a broken share (say
//! 0 %, 100 % or the wrong denominator) is off by far more than 6.5σ.

use std::{collections::HashMap, time::Duration};

use anyhow::{Context, Result};
use bytes::Bytes;
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener as ListenerProto};
use envoy_types::pb::envoy::config::route::v3::{
    route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier, Route as RouteProto,
    RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
    fault_delay::FaultDelaySecifier, FaultDelay,
};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    fault_abort::{ErrorType, HeaderAbort},
    FaultAbort, HttpFault,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter::ConfigType, HttpConnectionManager,
    HttpFilter,
};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent::DenominatorType, FractionalPercent};
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, UInt32Value};
use examples::greeter::{GreeterBackend, GreeterClient, HelloRequest};
use http::Request;
use http_body_util::Full;
use mesh_core::{
    cache::ResourceCache,
    mesh::Mesh,
    model::{Cluster, ClusterLoadAssignment, Endpoint, LbPolicy, Listener},
    snapshot::FaultStatus,
};
use mesh_grpc::MeshChannel;
use mesh_tower::{
    client::{http1, HttpClient},
    error_response::{ErrorHeader, ErrorResponseLayer, HEADER},
    retry::ReplayBody,
    MeshErrorKind, MeshStack, MeshStackLayer,
};
use prost::Message;
use tests::{control_plane, mesh, ready, service_yaml, temp_dir, write, Backend};
use tokio::time::Instant;
use tonic::Code;
use tower::{Layer, ServiceExt};

const HOST: &str = "svc.test";
const TARGET: &str = "svc.test:8080";

type Stack = MeshStack<HttpClient<ReplayBody<Full<Bytes>>>>;

fn stack(m: &Mesh) -> Stack {
    MeshStackLayer::new(m.clone())
        .ready_timeout(Duration::from_secs(10))
        .layer(http1())
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut r = Request::get(format!("http://{TARGET}{path}"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::default()).expect("request")
}

/// Asserts `hits` of `n` Bernoulli(`p`) draws is within 6.5σ of `n·p` (see the module docs).
fn assert_share(hits: usize, n: usize, p: f64) {
    let mean = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (hits as f64 - mean).abs() <= 6.5 * sigma,
        "{hits} of {n}, expected {mean} ± {:.0}",
        6.5 * sigma
    );
}

/// A backend, a control plane serving `svc.test:8080` with VirtualService rules `http`, and a
/// warm mesh.
async fn istio(http: &str) -> Result<(Backend, mesh_control_plane::ControlPlaneHandle, Mesh)> {
    let backend = Backend::start("b0").await?;
    let dir = temp_dir("fault");
    write(&dir, "svc.yaml", &service_yaml(HOST, 8080, &[&backend]));
    write(
        &dir,
        "vs.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: svc, namespace: test }}\n\
             spec:\n  hosts: [{HOST}]\n  http:\n{http}"
        ),
    );
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "fault-client")?;
    ready(&m, TARGET).await?;
    Ok((backend, cp, m))
}

#[tokio::test]
async fn istio_abort_fails_every_request_before_sending() -> Result<()> {
    let (backend, _cp, m) = istio(
        "    - name: broken\n      match: [{ uri: { prefix: /broken } }]\n      \
         fault: { abort: { httpStatus: 418, percentage: { value: 100 } } }\n      \
         route: [{ destination: { host: svc.test } }]\n    \
         - name: fine\n      route: [{ destination: { host: svc.test } }]\n",
    )
    .await?;
    let svc = stack(&m);
    for _ in 0..20 {
        let err = svc.clone().oneshot(get("/broken", &[])).await.unwrap_err();
        assert_eq!(
            err.kind(),
            MeshErrorKind::FaultAbort(FaultStatus::Http(418))
        );
        assert_eq!(err.route_name(), Some("broken"));
        assert!(
            err.cluster_name().is_some_and(|c| c.contains(HOST)),
            "{err}"
        );
    }
    assert_eq!(
        backend.served(),
        0,
        "aborted requests never reach the backend"
    );
    // As an HTTP answer: the configured status, explained.
    let resp = ErrorResponseLayer::new()
        .layer(svc.clone())
        .oneshot(get("/broken", &[]))
        .await?;
    assert_eq!(resp.status(), 418);
    let h = ErrorHeader::parse(resp.headers()[HEADER].to_str()?).context("parseable")?;
    assert_eq!(
        (h.kind.as_str(), h.status.as_deref()),
        ("fault_abort", Some("http:418"))
    );
    // The route without a fault is untouched.
    assert_eq!(svc.oneshot(get("/ok", &[])).await?.status(), 200);
    assert_eq!(backend.served(), 1);
    Ok(())
}

#[tokio::test]
async fn istio_half_abort_is_about_half() -> Result<()> {
    let (backend, _cp, m) = istio(
        "    - name: flaky\n      fault: { abort: { httpStatus: 503, percentage: { value: 50 } } }\n      \
         route: [{ destination: { host: svc.test } }]\n",
    )
    .await?;
    let svc = stack(&m);
    let n = 600;
    let mut aborted = 0;
    for _ in 0..n {
        match svc.clone().oneshot(get("/", &[])).await {
            Ok(r) => assert_eq!(r.status(), 200),
            Err(e) if e.kind() == MeshErrorKind::FaultAbort(FaultStatus::Http(503)) => aborted += 1,
            Err(e) => panic!("unexpected failure: {e}"),
        }
    }
    // p = 0.5, n = 600: σ ≈ 12.2, so 300 ± 80.
    assert_share(aborted, n, 0.5);
    assert_eq!(backend.served() as usize, n - aborted);
    Ok(())
}

#[tokio::test]
async fn istio_delay_holds_the_request_back() -> Result<()> {
    let (backend, _cp, m) = istio(
        "    - name: slow\n      fault: { delay: { fixedDelay: 400ms, percentage: { value: 100 } } }\n      \
         timeout: 200ms\n      route: [{ destination: { host: svc.test } }]\n",
    )
    .await?;
    let start = Instant::now();
    // The 200 ms route timeout does not include the 400 ms delay (Envoy: the fault filter runs
    // before the router).
    let resp = stack(&m).oneshot(get("/", &[])).await?;
    let took = start.elapsed();
    assert_eq!(resp.status(), 200);
    // At least the delay; the upper bound only guards against a hang (real time, loaded CI).
    assert!(
        (Duration::from_millis(400)..Duration::from_secs(10)).contains(&took),
        "{took:?}"
    );
    assert_eq!(backend.served(), 1);
    Ok(())
}

/// A greeter service `greeter.test:50051` with VirtualService rules `http`, and a ready channel.
async fn greeter(
    http: &str,
) -> Result<(
    GreeterBackend,
    mesh_control_plane::ControlPlaneHandle,
    MeshChannel,
)> {
    let g = GreeterBackend::start("v1").await?;
    let dir = temp_dir("fault-grpc");
    write(
        &dir,
        "greeter.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{ name: greeter, namespace: test }}\n\
             spec:\n  hosts: [greeter.test]\n  ports: [{{ number: 50051, name: grpc, protocol: GRPC }}]\n  \
             resolution: STATIC\n  endpoints: [{{ address: 127.0.0.1, ports: {{ grpc: {p} }} }}]\n---\n\
             apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: greeter, namespace: test }}\n\
             spec:\n  hosts: [greeter.test]\n  http:\n{http}",
            p = g.addr().port()
        ),
    );
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "fault-grpc-client")?;
    let channel = MeshChannel::new(&m, "xds:///greeter.test:50051")?;
    channel.wait_ready(Duration::from_secs(10)).await?;
    Ok((g, cp, channel))
}

async fn hello(client: &mut GreeterClient<MeshChannel>, fault: &str) -> Result<(), tonic::Status> {
    let mut req = tonic::Request::new(HelloRequest { name: "t".into() });
    req.metadata_mut()
        .insert("x-fault", fault.parse().expect("ascii"));
    client.say_hello(req).await.map(drop)
}

#[tokio::test]
async fn grpc_aborts_through_mesh_channel() -> Result<()> {
    let (g, _cp, channel) = greeter(
        "    - name: grpc-status\n      match: [{ headers: { x-fault: { exact: grpc } } }]\n      \
         fault: { abort: { grpcStatus: RESOURCE_EXHAUSTED, percentage: { value: 100 } } }\n      \
         route: [{ destination: { host: greeter.test } }]\n    \
         - name: http-status\n      match: [{ headers: { x-fault: { exact: http } } }]\n      \
         fault: { abort: { httpStatus: 404, percentage: { value: 100 } } }\n      \
         route: [{ destination: { host: greeter.test } }]\n    \
         - name: plain\n      route: [{ destination: { host: greeter.test } }]\n",
    )
    .await?;
    let mut client = GreeterClient::new(channel);
    // grpc_status passes through; http_status 404 maps to UNIMPLEMENTED (gRFC A33).
    for (fault, code) in [
        ("grpc", Code::ResourceExhausted),
        ("http", Code::Unimplemented),
    ] {
        let status = hello(&mut client, fault).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains("fault_abort"),
            "{}",
            status.message()
        );
    }
    assert_eq!(g.served(), 0, "aborted calls never reach the greeter");
    hello(&mut client, "none").await?;
    assert_eq!(g.served(), 1);
    Ok(())
}

#[tokio::test]
async fn grpc_delay_counts_against_the_callers_deadline() -> Result<()> {
    let (g, _cp, channel) = greeter(
        "    - name: slow\n      match: [{ headers: { x-fault: { exact: slow } } }]\n      \
         fault: { delay: { fixedDelay: 5s, percentage: { value: 100 } } }\n      \
         route: [{ destination: { host: greeter.test } }]\n    \
         - name: brief\n      match: [{ headers: { x-fault: { exact: brief } } }]\n      \
         fault: { delay: { fixedDelay: 200ms, percentage: { value: 100 } } }\n      \
         route: [{ destination: { host: greeter.test } }]\n",
    )
    .await?;
    let mut client = GreeterClient::new(channel);
    let call = |fault: &'static str| {
        let mut req = tonic::Request::new(HelloRequest { name: "t".into() });
        req.metadata_mut()
            .insert("x-fault", fault.parse().expect("ascii"));
        req.set_timeout(Duration::from_millis(500));
        req
    };
    // gRFC A33: the 5 s delay runs on the call's 500 ms deadline, which ends it.
    let start = Instant::now();
    let status = client.say_hello(call("slow")).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    // Real time: at least the deadline, and far below the 5 s delay.
    assert!(
        (Duration::from_millis(500)..Duration::from_secs(4)).contains(&took),
        "{took:?}"
    );
    assert_eq!(g.served(), 0);
    // A delay shorter than the deadline: the call goes through after it.
    let start = Instant::now();
    client.say_hello(call("brief")).await?;
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(g.served(), 1);
    Ok(())
}

// --- Envoy resources (not expressible in Istio YAML), through the model's conversion. ---

fn to_any<M: Message>(type_name: &str, m: &M) -> Any {
    Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: m.encode_to_vec(),
    }
}

const HTTP_FAULT: &str = "envoy.extensions.filters.http.fault.v3.HTTPFault";

/// Listener `svc.test:8080` (fault filter `fault` before the router, inline routes: `/` → `c`)
/// and cluster `c` on `backend`; `route_fault` is the route's override.
fn envoy_mesh(backend: &Backend, route_fault: &HttpFault) -> Result<Mesh> {
    let route = RouteProto {
        name: "main".into(),
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster("c".into())),
            ..Default::default()
        })),
        typed_per_filter_config: HashMap::from([(
            "fault".to_string(),
            to_any(HTTP_FAULT, route_fault),
        )]),
        ..Default::default()
    };
    let filter = |name: &str, any: Any| HttpFilter {
        name: name.into(),
        config_type: Some(ConfigType::TypedConfig(any)),
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        http_filters: vec![
            filter("fault", to_any(HTTP_FAULT, &HttpFault::default())),
            filter(
                "router",
                to_any(
                    "envoy.extensions.filters.http.router.v3.Router",
                    &Router::default(),
                ),
            ),
        ],
        route_specifier: Some(RouteSpecifier::RouteConfig(RouteConfiguration {
            name: "rc".into(),
            virtual_hosts: vec![VirtualHost {
                name: "vh".into(),
                domains: vec!["*".into()],
                routes: vec![route],
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    };
    let listener = ListenerProto {
        name: TARGET.into(),
        api_listener: Some(ApiListener {
            api_listener: Some(to_any(
                "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                &hcm,
            )),
        }),
        ..Default::default()
    };
    let cache = ResourceCache::new();
    cache.accept(TARGET, Listener::try_from(listener)?, "1");
    cache.accept("c", Cluster::eds("c", LbPolicy::RoundRobin), "1");
    let eps = [Endpoint::healthy(backend.addr())];
    cache.accept("c", ClusterLoadAssignment::single_locality("c", eps), "1");
    Ok(Mesh::from_cache(cache))
}

fn per_hundred(numerator: u32) -> Option<FractionalPercent> {
    Some(FractionalPercent {
        numerator,
        denominator: DenominatorType::Hundred as i32,
    })
}

#[tokio::test]
async fn header_abort_is_capped_by_the_configured_percentage() -> Result<()> {
    let backend = Backend::start("b0").await?;
    let fault = HttpFault {
        abort: Some(FaultAbort {
            percentage: per_hundred(30),
            error_type: Some(ErrorType::HeaderAbort(HeaderAbort {})),
            ..Default::default()
        }),
        ..Default::default()
    };
    let m = envoy_mesh(&backend, &fault)?;
    ready(&m, TARGET).await?;
    let svc = stack(&m);
    // No header: header_abort has nothing to inject.
    for _ in 0..20 {
        assert_eq!(svc.clone().oneshot(get("/", &[])).await?.status(), 200);
    }
    // The caller asks for 100 %; the config caps it at 30 %.
    let asks = [
        ("x-envoy-fault-abort-request", "503"),
        ("x-envoy-fault-abort-request-percentage", "100"),
    ];
    let n = 600;
    let mut aborted = 0;
    for _ in 0..n {
        match svc.clone().oneshot(get("/", &asks)).await {
            Ok(r) => assert_eq!(r.status(), 200),
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    MeshErrorKind::FaultAbort(FaultStatus::Http(503)),
                    "{e}"
                );
                aborted += 1;
            }
        }
    }
    // p = 0.3, n = 600: σ ≈ 11.2, so 180 ± 73 — and far from the 600 an uncapped header gives.
    assert_share(aborted, n, 0.3);
    Ok(())
}

#[tokio::test]
async fn max_active_faults_lets_the_rest_through_undelayed() -> Result<()> {
    let backend = Backend::start("b0").await?;
    let fault = HttpFault {
        delay: Some(FaultDelay {
            percentage: per_hundred(100),
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(PbDuration {
                seconds: 3,
                nanos: 0,
            })),
        }),
        max_active_faults: Some(UInt32Value { value: 2 }),
        ..Default::default()
    };
    let m = envoy_mesh(&backend, &fault)?;
    ready(&m, TARGET).await?;
    let svc = stack(&m);
    let start = Instant::now();
    let calls = (0..10).map(|_| {
        let svc = svc.clone();
        async move {
            let resp = svc.oneshot(get("/", &[])).await;
            (resp.map(|r| r.status()), start.elapsed())
        }
    });
    let results = futures::future::join_all(calls).await;
    let mut delayed = 0;
    for (status, took) in &results {
        assert_eq!(status.as_ref().ok().copied(), Some(http::StatusCode::OK));
        // The delayed ones wait 3 s; the others go straight through (milliseconds on loopback;
        // only "not 3 s" is asserted, so a slow machine cannot fail it).
        if *took >= Duration::from_secs(3) {
            delayed += 1;
        }
    }
    assert_eq!(delayed, 2, "{results:?}");
    let snap = m.lookup(TARGET).context("target")?.snapshot();
    let stats = snap
        .as_ref()
        .as_ref()
        .context("warm")?
        .fault_stats("main")
        .context("per-route counters")?
        .clone();
    assert_eq!(
        (stats.delays_injected(), stats.overflows(), stats.active()),
        (2, 8, 0)
    );
    assert_eq!(backend.served(), 10);
    Ok(())
}
