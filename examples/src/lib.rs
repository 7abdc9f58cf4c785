//! Support code shared by the examples, the end-to-end tests and the benches: a real HTTP
//! backend on loopback, and the `helloworld.Greeter` gRPC service ([`greeter`]).

pub mod greeter;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
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
/// HTTP/1.1 or HTTP/2 (auto-detected), on a real loopback socket.
#[derive(Debug)]
pub struct Backend {
    name: Arc<str>,
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    task: JoinHandle<()>,
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
        let task = tokio::spawn(serve(listener, name.clone(), served.clone()));
        Ok(Backend {
            name,
            addr,
            served,
            task,
        })
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

async fn serve(listener: TcpListener, name: Arc<str>, served: Arc<AtomicU64>) {
    let body = Bytes::from(name.to_string());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (name, body, served) = (name.clone(), body.clone(), served.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (name, body, served) = (name.clone(), body.clone(), served.clone());
                async move {
                    // Drain the request body so keep-alive works for requests with bodies.
                    let _ = req.into_body().collect().await;
                    served.fetch_add(1, Ordering::Relaxed);
                    let resp = Response::builder()
                        .header("x-backend", &*name)
                        .body(Full::new(body))
                        .expect("static response parts");
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
