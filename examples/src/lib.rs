//! Support code shared by the examples, the end-to-end tests and the benches: a real HTTP
//! backend on loopback, the `helloworld.Greeter` gRPC service ([`greeter`]), and metrics exposed
//! for Prometheus ([`metrics`]).

pub mod demo;
pub mod greeter;
pub mod metrics;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{net::TcpListener, task::JoinHandle};

/// A backend answering every request with its name (body and `x-backend` header), over
/// HTTP/1.1 or HTTP/2 (auto-detected), on a real loopback socket. It can be told to misbehave
/// ([`Backend::misbehave`], [`Backend::fail_first`]).
#[derive(Debug)]
pub struct Backend {
    name: Arc<str>,
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    behavior: Arc<Mutex<Behavior>>,
    task: JoinHandle<()>,
}

/// How a misbehaving backend treats a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehavior {
    /// Answer with this status (still with the `x-backend` header).
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Close the connection without answering (the client sees a reset).
    Close,
}

#[derive(Debug, Default)]
struct Behavior {
    /// Applied to every request while set.
    always: Option<Misbehavior>,
    /// Applied to the next `count` requests, before `always`.
    first: Option<(u64, Misbehavior)>,
}

impl Behavior {
    fn next(&mut self) -> Option<Misbehavior> {
        if let Some((n, m)) = &mut self.first {
            if *n > 0 {
                *n -= 1;
                return Some(*m);
            }
        }
        self.always
    }
}

impl Backend {
    /// Starts a backend on `127.0.0.1:0`.
    pub async fn start(name: &str) -> std::io::Result<Backend> {
        Backend::start_on(name, "127.0.0.1:0".parse().expect("literal address")).await
    }

    /// Starts a backend on the given address.
    pub async fn start_on(name: &str, addr: SocketAddr) -> std::io::Result<Backend> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let name: Arc<str> = name.into();
        let served = Arc::new(AtomicU64::new(0));
        let behavior = Arc::new(Mutex::new(Behavior::default()));
        let task = tokio::spawn(serve(
            listener,
            name.clone(),
            served.clone(),
            behavior.clone(),
        ));
        Ok(Backend {
            name,
            addr,
            served,
            behavior,
            task,
        })
    }

    /// Misbehaves on every request from now on (`None`: behave again).
    pub fn misbehave(&self, how: Option<Misbehavior>) {
        self.behavior
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .always = how;
    }

    /// Misbehaves on the next `n` requests, then goes back to its standing behaviour.
    pub fn fail_first(&self, n: u64, how: Misbehavior) {
        self.behavior
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first = Some((n, how));
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests served so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Returned by the service to make hyper drop the connection without a response.
#[derive(Debug)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closed on command")
    }
}

impl std::error::Error for Closed {}

async fn serve(
    listener: TcpListener,
    name: Arc<str>,
    served: Arc<AtomicU64>,
    behavior: Arc<Mutex<Behavior>>,
) {
    let body = Bytes::from(name.to_string());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (name, body, served, behavior) =
            (name.clone(), body.clone(), served.clone(), behavior.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (name, body, served) = (name.clone(), body.clone(), served.clone());
                let how = behavior.lock().unwrap_or_else(|e| e.into_inner()).next();
                async move {
                    // Drain the request body so keep-alive works for requests with bodies.
                    let _ = req.into_body().collect().await;
                    served.fetch_add(1, Ordering::Relaxed);
                    let mut status = 200;
                    match how {
                        None => {}
                        Some(Misbehavior::Status(s)) => status = s,
                        Some(Misbehavior::Delay(d)) => tokio::time::sleep(d).await,
                        Some(Misbehavior::Close) => return Err(Closed),
                    }
                    let resp = Response::builder()
                        .status(status)
                        .header("x-backend", &*name)
                        .body(Full::new(body))
                        .expect("static response parts");
                    Ok::<_, Closed>(resp)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
