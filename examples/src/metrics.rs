//! OpenTelemetry metrics exposed for Prometheus: a meter provider whose reader is the
//! `opentelemetry-prometheus` exporter, and a `/metrics` endpoint serving its registry in the
//! Prometheus text format, on a real socket. Shared by the `metrics` example and the tests.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Registry, TextEncoder};
use tokio::{net::TcpListener, task::JoinHandle};

/// A meter provider exporting to a Prometheus registry.
#[derive(Clone, Debug)]
pub struct Prometheus {
    /// Create meters (`provider.meter("…")`) from this.
    pub provider: SdkMeterProvider,
    /// What `/metrics` serves.
    pub registry: Registry,
}

impl Prometheus {
    /// A provider with the Prometheus exporter as its only reader.
    pub fn new() -> Result<Prometheus> {
        let registry = Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()?;
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        Ok(Prometheus { provider, registry })
    }

    /// The registry in the Prometheus text format (what `/metrics` answers).
    pub fn render(&self) -> Result<String> {
        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }

    /// Serves `GET /metrics` on `addr` (HTTP/1.1); other paths get 404. The task runs until
    /// aborted.
    pub async fn serve(&self, addr: SocketAddr) -> Result<(SocketAddr, JoinHandle<()>)> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let this = Arc::new(self.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let this = this.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let resp = this.answer(req.uri().path());
                        async move { Ok::<_, std::convert::Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok((addr, task))
    }

    fn answer(&self, path: &str) -> Response<Full<Bytes>> {
        let (status, body) = match (path, self.render()) {
            ("/metrics", Ok(text)) => (StatusCode::OK, text),
            ("/metrics", Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")),
            _ => (StatusCode::NOT_FOUND, "try /metrics\n".to_owned()),
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }
}

/// `GET http://{addr}/metrics` over a fresh HTTP/1.1 connection: the body, or an error for a
/// non-200 answer.
pub async fn scrape(addr: SocketAddr) -> Result<String> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let req = Request::get("/metrics")
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    conn.abort();
    let text = String::from_utf8(body.to_vec()).context("metrics are not UTF-8")?;
    anyhow::ensure!(status == StatusCode::OK, "GET /metrics: {status}: {text}");
    Ok(text)
}
