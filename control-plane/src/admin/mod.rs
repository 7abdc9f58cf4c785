//! Admin HTTP server (hyper 1, HTTP/1.1), on istiod's monitoring port by default:
//! - `GET /healthz` — 200 while the process runs;
//! - `GET /ready` — 200 once a configuration loaded successfully, 503 before;
//! - `GET /debug/config` — JSON: served resources with versions, the last load error and the
//!   warnings, and per ADS client its node and ACK/NACK records (with the client's error text).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::ads::status::ClientStatus;
use crate::control_plane::Shared;
use crate::translate::ResourceType;

/// Accepts admin connections until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        let stop = async {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        tokio::select! {
            _ = stop => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let shared = shared.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let resp = handle(&shared, &req);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
}

fn response(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn handle<B>(shared: &Shared, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        );
    }
    match req.uri().path() {
        "/healthz" => response(StatusCode::OK, "text/plain", "ok\n"),
        "/ready" => {
            if shared.status().ready {
                response(StatusCode::OK, "text/plain", "ready\n")
            } else {
                response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "no configuration loaded yet\n",
                )
            }
        }
        "/debug/config" => {
            let body = serde_json::to_vec_pretty(&debug_config(shared)).unwrap_or_default();
            response(StatusCode::OK, "application/json", body)
        }
        _ => response(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

fn age_seconds(at: Instant) -> f64 {
    Instant::now().saturating_duration_since(at).as_secs_f64()
}

/// The `/debug/config` document.
pub(crate) fn debug_config(shared: &Shared) -> Value {
    let snapshot = shared.snapshots.borrow().clone();
    let status = shared.status().clone();
    let mut resources = Map::new();
    for ty in ResourceType::PUSH_ORDER {
        let items: Vec<Value> = snapshot
            .versions(ty)
            .into_iter()
            .map(|(name, version)| json!({ "name": name, "version": version }))
            .collect();
        resources.insert(
            ty.short_name().to_string(),
            json!({
                "type_url": ty.type_url(),
                "version": snapshot.type_version(ty),
                "resources": items,
            }),
        );
    }
    resources.insert(
        "listener_aliases".into(),
        json!(snapshot.resources().listener_aliases),
    );
    let config = status.config.as_ref().map(|c| {
        json!({
            "virtual_services": c.virtual_services.iter().map(|r| r.meta.id()).collect::<Vec<_>>(),
            "destination_rules": c.destination_rules.iter().map(|r| r.meta.id()).collect::<Vec<_>>(),
            "service_entries": c.service_entries.iter().map(|r| r.meta.id()).collect::<Vec<_>>(),
            "workload_entries": c.workload_entries.iter().map(|r| r.meta.id()).collect::<Vec<_>>(),
        })
    });
    let warnings: Vec<Value> = status
        .warnings
        .iter()
        .map(|w| {
            json!({
                "file": w.file, "line": w.line, "resource": w.resource,
                "field": w.field, "message": w.message, "text": w.to_string(),
            })
        })
        .collect();
    let last_error = status.last_error.as_ref().map(|(e, at)| {
        json!({
            "message": e.to_string(),
            "file": e.file(),
            "line": e.line(),
            "field": e.field(),
            "age_seconds": age_seconds(*at),
        })
    });
    let clients: Vec<Value> = shared.clients.snapshot().iter().map(client_json).collect();
    json!({
        "ready": status.ready,
        "generation": status.generation,
        "last_error": last_error,
        "warnings": warnings,
        "config": config,
        "resources": resources,
        "clients": clients,
    })
}

fn client_json(c: &ClientStatus) -> Value {
    let mut types = Map::new();
    for (ty, t) in &c.types {
        let nack = t.nack.as_ref().map(|n| {
            json!({
                "message": n.message,
                "code": n.code,
                "accepted_version": n.accepted_version,
                "rejected_version": n.rejected_version,
                "nonce": n.nonce,
                "age_seconds": age_seconds(n.at),
            })
        });
        types.insert(
            ty.short_name().to_string(),
            json!({
                "subscribed": t.subscribed,
                "wildcard": t.wildcard,
                "sent_version": t.sent_version,
                "sent_nonce": t.sent_nonce,
                "responses": t.responses,
                "acked_version": t.acked_version,
                "nacks": t.nacks,
                "last_nack": nack,
            }),
        );
    }
    json!({
        "stream_id": c.stream_id,
        "connected": c.connected,
        "connected_seconds": age_seconds(c.connected_at),
        "node": {
            "id": c.node.id,
            "cluster": c.node.cluster,
            "user_agent_name": c.node.user_agent_name,
            "user_agent_version": c.node.user_agent_version,
            "generator": c.node.generator,
            "locality": c.node.locality,
            "client_features": c.node.client_features,
        },
        "types": types,
    })
}
