//! The one place where a mesh failure becomes a `tonic::Status`.
//!
//! gRPC semantics, not Envoy's: where Envoy answers a routing failure with an HTTP status
//! (404 for no route, 503 for no healthy upstream), a gRPC client fails the call with a status
//! code. gRPC's xDS client fails RPCs it cannot route or send with `UNAVAILABLE` (gRFC A27/A31:
//! resolver and picker errors; XDS-SEMANTICS rows 10 and 41: a non-forwarding route action
//! fails matching RPCs with `UNAVAILABLE`), and never lets a code that came from the control
//! plane (a NACK's `INVALID_ARGUMENT`, a missing resource's `NOT_FOUND`) reach a call (gRFC A54).
//! So:
//!
//! | mesh error kind | code |
//! |---|---|
//! | `no_target`, `no_route`, `unsupported_route`, `no_healthy_endpoint`, `connect` | `UNAVAILABLE` |
//! | `tls` (handshake or verification failed, or the cluster's TLS settings are unusable: gRPC fails such RPCs as a connection failure) | `UNAVAILABLE` |
//! | `upstream` (the request failed after it was sent) | what a plain tonic `Channel` gives for the same transport error (e.g. `CANCELLED` for an h2 `CANCEL`, `INTERNAL` for a protocol error, per gRPC's PROTOCOL-HTTP2 mapping); `UNAVAILABLE` when tonic recognises none (the connection broke) |
//! | `missing_authority` (cannot happen through [`crate::MeshChannel`], which always sets it) | `INTERNAL` |
//! | `fault_abort` with `grpc_status` | that code (above 16: `UNKNOWN`; `OK` is returned as a status with code `OK`, which a unary call reports as is — gRFC A33 notes the same edge) |
//! | `fault_abort` with `http_status` | gRPC's HTTP→gRPC mapping (gRFC A33): 400 `INTERNAL`, 401 `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`, 404 `UNIMPLEMENTED`, 429/502/503/504 `UNAVAILABLE`, anything else (200 included) `UNKNOWN` |
//!
//! The message is the `MeshError`'s full `Display` text — kind, host, path, route, cluster,
//! endpoint and cause — so the caller sees why, and the `MeshError` itself is the status's
//! `source` for code that wants the kind (`status.source()` → `downcast_ref::<MeshError>()`).

use std::{error::Error, fmt, sync::Arc};

use mesh_core::snapshot::FaultStatus;
use mesh_tower::{MeshError, MeshErrorKind};
use tonic::{Code, Status};

/// Maps a mesh failure to the status the call fails with (see the module docs).
pub(crate) fn from_mesh_error(err: MeshError) -> Status {
    let err = Arc::new(err);
    let code = match err.kind() {
        MeshErrorKind::NoTarget
        | MeshErrorKind::NoRoute
        | MeshErrorKind::UnsupportedRoute
        | MeshErrorKind::NoHealthyEndpoint
        // gRFC A27: a call dropped by xds_cluster_impl fails UNAVAILABLE.
        | MeshErrorKind::DropOverload
        | MeshErrorKind::Connect
        | MeshErrorKind::Tls(_) => Code::Unavailable,
        MeshErrorKind::Upstream => transport_code(&err),
        MeshErrorKind::MissingAuthority => Code::Internal,
        // The route's timeout (or per-try timeout) ran out: the call's deadline, as gRPC
        // reports a deadline it enforces itself.
        MeshErrorKind::Timeout | MeshErrorKind::PerTryTimeout => Code::DeadlineExceeded,
        MeshErrorKind::FaultAbort(FaultStatus::Grpc(c)) => match i32::try_from(c) {
            Ok(c @ 0..=16) => Code::from_i32(c),
            _ => Code::Unknown,
        },
        MeshErrorKind::FaultAbort(FaultStatus::Http(s)) => code_for_http(s),
        // Retry budget / circuit-breaker overflow: UNAVAILABLE, not retried (gRFC A32).
        // A kind added later: a failure to route or send, which gRPC reports as UNAVAILABLE.
        _ => Code::Unavailable,
    };
    let mut status = Status::new(code, err.to_string());
    status.set_source(err);
    status
}

/// gRPC's HTTP→gRPC status mapping, as fault aborts use it (gRFC A33).
pub(crate) fn code_for_http(status: u16) -> Code {
    match status {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// The code tonic's own channel would give for the transport error under `err`; tonic
/// recognises hyper timeouts and cancellations and h2 reset reasons in the source chain.
fn transport_code(err: &Arc<MeshError>) -> Code {
    match Status::try_from_error(Box::new(Cause(err.clone()))) {
        Ok(s) if s.code() != Code::Unknown && s.code() != Code::Ok => s.code(),
        _ => Code::Unavailable,
    }
}

/// Lets tonic walk a shared `MeshError`'s source chain (`try_from_error` takes ownership).
#[derive(Debug)]
struct Cause(Arc<MeshError>);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

#[cfg(test)]
mod tests {
    //! Every kind, produced by the real `MeshLayer` (over a `tower-test` mock, or the real
    //! HTTP/2 client for `connect`), mapped here.

    use std::time::Duration;

    use http::{Request, Response};
    use mesh_core::{
        cache::ResourceCache,
        mesh::Mesh,
        model::{
            Cluster, ClusterDiscovery, ClusterLoadAssignment, Endpoint, HealthStatus, LbPolicy,
            Listener, Locality, LocalityEndpoints, PathMatch, Route, RouteAction,
            RouteConfiguration, RouteMatch, RouteSource, VirtualHost,
        },
    };
    use mesh_tower::MeshLayer;
    use tower::{Layer, ServiceExt};
    use tower_test::mock;

    use super::*;

    #[test]
    fn http_fault_statuses_map_as_grpc_does() {
        for (http, code) in [
            (400, Code::Internal),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (429, Code::Unavailable),
            (503, Code::Unavailable),
            (200, Code::Unknown),
            (418, Code::Unknown),
        ] {
            assert_eq!(code_for_http(http), code, "{http}");
        }
    }

    fn route(name: &str, prefix: &str, action: RouteAction) -> Route {
        Route {
            hash_policy: Default::default(),
            name: name.into(),
            matcher: RouteMatch {
                path: PathMatch::Prefix(prefix.into()),
                case_sensitive: true,
                headers: Arc::new([]),
                query_params: Arc::new([]),
                fraction_per_million: None,
            },
            action,
            policy: Default::default(),
        }
    }

    /// Listener `svc:80`: `/old` redirects (unsupported), `/greet` goes to cluster `c` with one
    /// endpoint at `endpoint`; listener `gone:80` does not exist.
    fn cache(endpoint: std::net::SocketAddr, health: HealthStatus) -> ResourceCache {
        let cache = ResourceCache::new();
        let rc = RouteConfiguration {
            name: "rc".into(),
            virtual_hosts: Arc::new([VirtualHost {
                name: "vh".into(),
                domains: Arc::new(["svc:80".into()]),
                routes: Arc::new([
                    route("old", "/old", RouteAction::Unsupported("redirect".into())),
                    route("greet", "/greet", RouteAction::Cluster("c".into())),
                ]),
                retry_policy: None,
            }]),
        };
        let listener = Listener {
            name: "svc:80".into(),
            route_source: RouteSource::Inline(Arc::new(rc)),
            http_filters: Arc::new([]),
            stream_idle_timeout: None,
        };
        cache.accept("svc:80", listener, "1");
        cache.remove::<Listener>("gone:80");
        let cluster = Cluster {
            // No panic mode (as gRPC): an unhealthy endpoint is never picked.
            lb_common: mesh_core::model::CommonLbConfig {
                healthy_panic_threshold_ppm: 0,
                ..Default::default()
            },
            transport: Default::default(),
            name: "c".into(),
            discovery: ClusterDiscovery::Eds {
                service_name: "c".into(),
            },
            lb_policy: LbPolicy::RoundRobin,
            connect_timeout: Duration::from_secs(1),
            retry_limits: Default::default(),
            retry_limits_high: Default::default(),
            connection_limits: Default::default(),
            outlier_detection: None,
        };
        cache.accept("c", cluster, "1");
        let endpoints = LocalityEndpoints {
            locality: Locality::default(),
            weight: Some(1),
            priority: 0,
            endpoints: Arc::new([Endpoint {
                address: endpoint,
                health,
                weight: 1,
            }]),
        };
        let cla = ClusterLoadAssignment {
            overprovisioning_factor: 140,
            drop_overloads: Default::default(),
            cluster_name: "c".into(),
            localities: Arc::new([endpoints]),
        };
        cache.accept("c", cla, "1");
        cache
    }

    type Handle = mock::Handle<Request<&'static str>, Response<&'static str>>;

    fn layer(health: HealthStatus) -> MeshLayer {
        MeshLayer::new(Mesh::from_cache(cache(([10, 0, 0, 7], 80).into(), health)))
            .ready_timeout(Duration::from_secs(1))
    }

    async fn fail(layer: &MeshLayer, uri: &'static str) -> (MeshError, Handle) {
        let (inner, handle) = mock::pair();
        let err = layer
            .layer(inner)
            .oneshot(Request::get(uri).body("").unwrap())
            .await
            .unwrap_err();
        (err, handle)
    }

    /// Maps `err` and checks the code, that the message is the error's full text, and that the
    /// error rides along as the source.
    fn check(err: MeshError, kind: MeshErrorKind, code: Code) -> Status {
        assert_eq!(err.kind(), kind, "{err}");
        let text = err.to_string();
        let status = from_mesh_error(err);
        assert_eq!(status.code(), code, "{kind}: {status:?}");
        assert_eq!(status.message(), text);
        let source = status.source().and_then(|s| s.downcast_ref::<MeshError>());
        assert_eq!(source.map(MeshError::kind), Some(kind));
        status
    }

    #[tokio::test]
    async fn routing_failures_are_unavailable_with_the_mesh_explanation() {
        let layer = layer(HealthStatus::Healthy);
        let (err, _) = fail(&layer, "http://svc:80/other.Service/Call").await;
        let s = check(err, MeshErrorKind::NoRoute, Code::Unavailable);
        assert!(
            s.message().contains("host svc:80 path /other.Service/Call"),
            "{s:?}"
        );

        let (err, _) = fail(&layer, "http://svc:80/old").await;
        let s = check(err, MeshErrorKind::UnsupportedRoute, Code::Unavailable);
        assert!(s.message().contains("route old"), "{s:?}");

        let (err, _) = fail(&layer, "/greet").await;
        check(err, MeshErrorKind::MissingAuthority, Code::Internal);

        let (err, _) = fail(&self::layer(HealthStatus::Unhealthy), "http://svc:80/greet").await;
        let s = check(err, MeshErrorKind::NoHealthyEndpoint, Code::Unavailable);
        assert!(s.message().contains("cluster c"), "{s:?}");
    }

    #[tokio::test]
    async fn a_listener_that_does_not_exist_is_unavailable_not_not_found() {
        // gRFC A54: the control plane's verdict does not become the call's code.
        let (err, _) = fail(&layer(HealthStatus::Healthy), "http://gone:80/greet").await;
        let s = check(err, MeshErrorKind::NoTarget, Code::Unavailable);
        assert!(s.message().contains("listener does not exist"), "{s:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_that_never_warms_is_unavailable() {
        let (err, _) = fail(&layer(HealthStatus::Healthy), "http://never:80/greet").await;
        let s = check(err, MeshErrorKind::NoTarget, Code::Unavailable);
        assert!(s.message().contains("not ready after 1s"), "{s:?}");
    }

    #[tokio::test]
    async fn a_broken_exchange_is_unavailable_naming_the_endpoint() {
        let (inner, mut handle) = mock::pair::<Request<&'static str>, Response<&'static str>>();
        handle.allow(1);
        let call = tokio::spawn(
            layer(HealthStatus::Healthy)
                .layer(inner)
                .oneshot(Request::get("http://svc:80/greet").body("").unwrap()),
        );
        let (_req, send) = handle.next_request().await.unwrap();
        send.send_error(std::io::Error::other("connection reset"));
        let err = call.await.unwrap().unwrap_err();
        let s = check(err, MeshErrorKind::Upstream, Code::Unavailable);
        assert!(s.message().contains("endpoint 10.0.0.7:80"), "{s:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable() {
        // A loopback port with nothing listening: bind, note the port, close.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mesh = Mesh::from_cache(cache(closed, HealthStatus::Healthy));
        let client = MeshLayer::new(mesh).layer(mesh_tower::client::http2::<String>());
        let req = Request::post("http://svc:80/greet")
            .body(String::new())
            .unwrap();
        let err = client.oneshot(req).await.unwrap_err();
        let s = check(err, MeshErrorKind::Connect, Code::Unavailable);
        assert!(s.message().contains(&format!("endpoint {closed}")), "{s:?}");
    }

    /// A cluster whose TLS context names an instance the client was not given fails every
    /// call with UNAVAILABLE, naming the cluster and the instance.
    #[tokio::test]
    async fn a_tls_failure_is_unavailable() {
        use mesh_core::model::{CertificateProviderInstance, UpstreamTls, UpstreamTransport};
        let cache = cache(([127, 0, 0, 1], 9).into(), HealthStatus::Healthy);
        let tls = UpstreamTls {
            sni: None,
            alpn_protocols: Arc::new([]),
            identity: Some(CertificateProviderInstance::new("default", "default")),
            roots: CertificateProviderInstance::new("default", "ROOTCA"),
            match_subject_alt_names: Arc::new([]),
        };
        let cluster = Cluster {
            transport: UpstreamTransport::Tls(Arc::new(tls)),
            ..Cluster::eds("c", LbPolicy::RoundRobin)
        };
        cache.accept("c", cluster, "2");
        let client =
            MeshLayer::new(Mesh::from_cache(cache)).layer(mesh_tower::client::http2::<String>());
        let req = Request::post("http://svc:80/greet")
            .body(String::new())
            .unwrap();
        let err = client.oneshot(req).await.unwrap_err();
        let missing = MeshErrorKind::Tls(mesh_tower::TlsReason::MissingProvider);
        let s = check(err, missing, Code::Unavailable);
        assert!(s.message().contains("cluster c"), "{s:?}");
        assert!(s.message().contains("`default`"), "{s:?}");
    }
}
