//! mTLS cost on loopback, same run: full handshakes per second (mTLS vs plain TCP connect,
//! each followed by one request so the server's client-certificate check is included), and
//! warm keep-alive throughput through `mesh_tower::tls` vs plaintext, 1 KiB and 64 KiB
//! responses, three ways:
//! - sequential: one HTTP/1.1 connection, one request at a time (latency-bound: every request
//!   waits for two cross-thread wake-ups, so this mostly measures the TLS cost on the critical
//!   path);
//! - 16 HTTP/1.1 connections, one request in flight on each (CPU-bound on both cores);
//! - one HTTP/2 connection with 16 concurrent streams (how gRPC uses a channel).
//!
//! ```text
//! cargo bench -p benches --bench tls
//! MESH_TLS_BENCH=h2-tls-64k cargo bench -p benches --bench tls   # one case, for perf/strace
//! ```
//!
//! Rounds alternate plain / mTLS so load changes hit both sides; the ratio is taken per round.
//!
//! On loopback both ends share the two cores and no byte ever waits for a wire, so the ratio
//! is CPU cost alone. `benches/tls-netns.sh` runs the server and the client as two processes
//! in two network namespaces joined by a veth pair shaped like a data-centre link (10 Gbit/s,
//! 50 µs each way), with `MESH_TLS_BENCH_SERVE=<ip>` / `MESH_TLS_BENCH_REMOTE=<ip>` and a
//! shared CA directory in `MESH_TLS_BENCH_CA`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_control_plane::ca::{Ca, SpiffeId};
use mesh_tower::tls::{
    CertificateRequest, MeshTlsAcceptor, MeshTlsConnector, PeerAuthMode, WithPeerIdentity,
    WorkloadIdentity,
};
use tokio::net::{TcpListener, TcpStream};

const HANDSHAKES: usize = 300;
const REQUESTS: usize = 5_000;
const ROUNDS: usize = 5;

fn identity(ca: &Ca, sa: &str) -> anyhow::Result<Arc<WorkloadIdentity>> {
    let req = CertificateRequest::generate()?;
    let id = SpiffeId::new("cluster.local", "default", sa)?;
    let svid = ca.sign_csr(req.csr_pem(), &id, None)?;
    Ok(req.into_identity(&svid.cert_chain_pem, &svid.trust_bundle_pem)?)
}

async fn server(
    acceptor: MeshTlsAcceptor,
    bind: std::net::SocketAddr,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok((stream, peer)) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        // Static bodies: the bench measures the transport, not the allocator.
                        let body = if req.uri().path() == "/64k" {
                            Bytes::from_static(&[b'x'; 64 * 1024])
                        } else {
                            Bytes::from_static(&[b'x'; 1024])
                        };
                        Ok::<_, Infallible>(Response::new(Full::new(body)))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), WithPeerIdentity::new(svc, peer))
                    .await;
            });
        }
    });
    Ok(addr)
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn handshake_http1<T>(io: T) -> anyhow::Result<Sender>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn plain_conn(addr: std::net::SocketAddr) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    handshake_http1(TokioIo::new(tcp)).await
}

async fn tls_conn(c: &MeshTlsConnector, addr: std::net::SocketAddr) -> anyhow::Result<Sender> {
    handshake_http1(c.connect(&addr.ip().to_string(), addr.port()).await?).await
}

type H2Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

async fn handshake_h2<T>(io: T) -> anyhow::Result<H2Sender>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn request_h2(sender: &mut H2Sender, path: &str) -> anyhow::Result<usize> {
    sender.ready().await?;
    let req = Request::get(format!("http://bench{path}")).body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    Ok(resp.into_body().collect().await?.to_bytes().len())
}

async fn request(sender: &mut Sender, path: &str) -> anyhow::Result<usize> {
    sender.ready().await?;
    let req = Request::get(path)
        .header("host", "bench")
        .body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    Ok(resp.into_body().collect().await?.to_bytes().len())
}

/// CPU time this process has used so far (every thread, client and server alike), from
/// `/proc/self/task/*/schedstat` (nanoseconds on CPU). Unlike requests/s it barely moves when
/// other work shares the machine, so it is the steadier measure of what mTLS costs.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Throughput and CPU cost of one warm run.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// Requests per second.
    rate: f64,
    /// CPU microseconds per request, client and server together.
    cpu_us: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How requests are driven in one warm case.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    /// One HTTP/1.1 connection, one request at a time.
    Sequential,
    /// `CONCURRENCY` HTTP/1.1 connections, one request in flight on each.
    Http1,
    /// One HTTP/2 connection, `CONCURRENCY` streams in flight.
    Http2,
}

const CONCURRENCY: usize = 16;
/// Ports of the two servers when they run in another process (`MESH_TLS_BENCH_SERVE`).
const REMOTE_PLAIN_PORT: u16 = 18080;
const REMOTE_TLS_PORT: u16 = 18443;

/// The servers and the client side of both transports.
struct Bench {
    plain: std::net::SocketAddr,
    tls: std::net::SocketAddr,
    connector: MeshTlsConnector,
}

impl Bench {
    /// Runs `n` requests for `path` in `shape` over TLS or plaintext; returns requests/s and
    /// CPU per request (connection set-up excluded).
    async fn warm(
        &self,
        shape: Shape,
        tls: bool,
        path: &'static str,
        n: usize,
    ) -> anyhow::Result<Run> {
        let cpu = std::cell::Cell::new(0);
        let (rate, done) = self.warm_rate(shape, tls, path, n, &cpu).await?;
        Ok(Run {
            rate,
            cpu_us: (cpu_ns() - cpu.get()) as f64 / 1e3 / done as f64,
        })
    }

    /// `warm`'s body: records the CPU clock in `cpu` when the timed part starts; returns
    /// requests/s and the number of requests timed.
    async fn warm_rate(
        &self,
        shape: Shape,
        tls: bool,
        path: &'static str,
        n: usize,
        cpu: &std::cell::Cell<u64>,
    ) -> anyhow::Result<(f64, usize)> {
        match shape {
            Shape::Sequential => {
                let mut s = if tls {
                    tls_conn(&self.connector, self.tls).await?
                } else {
                    plain_conn(self.plain).await?
                };
                request(&mut s, path).await?;
                cpu.set(cpu_ns());
                let t = Instant::now();
                for _ in 0..n {
                    request(&mut s, path).await?;
                }
                Ok((n as f64 / t.elapsed().as_secs_f64(), n))
            }
            Shape::Http1 => {
                let mut senders = Vec::new();
                for _ in 0..CONCURRENCY {
                    let mut s = if tls {
                        tls_conn(&self.connector, self.tls).await?
                    } else {
                        plain_conn(self.plain).await?
                    };
                    request(&mut s, path).await?;
                    senders.push(s);
                }
                cpu.set(cpu_ns());
                let t = Instant::now();
                let tasks: Vec<_> = senders
                    .into_iter()
                    .map(|mut s| {
                        tokio::spawn(async move {
                            for _ in 0..n / CONCURRENCY {
                                request(&mut s, path).await?;
                            }
                            anyhow::Ok(())
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await??;
                }
                let done = n / CONCURRENCY * CONCURRENCY;
                Ok((done as f64 / t.elapsed().as_secs_f64(), done))
            }
            Shape::Http2 => {
                let mut s = if tls {
                    let io = self
                        .connector
                        .connect(&self.tls.ip().to_string(), self.tls.port())
                        .await?;
                    anyhow::ensure!(io.is_h2(), "ALPN did not settle on h2");
                    handshake_h2(io).await?
                } else {
                    let tcp = TcpStream::connect(self.plain).await?;
                    tcp.set_nodelay(true)?;
                    handshake_h2(TokioIo::new(tcp)).await?
                };
                request_h2(&mut s, path).await?;
                cpu.set(cpu_ns());
                let t = Instant::now();
                let tasks: Vec<_> = (0..CONCURRENCY)
                    .map(|_| {
                        let mut s = s.clone();
                        tokio::spawn(async move {
                            for _ in 0..n / CONCURRENCY {
                                request_h2(&mut s, path).await?;
                            }
                            anyhow::Ok(())
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await??;
                }
                let done = n / CONCURRENCY * CONCURRENCY;
                Ok((done as f64 / t.elapsed().as_secs_f64(), done))
            }
        }
    }
}

fn shape_name(shape: Shape) -> &'static str {
    match shape {
        Shape::Sequential => "sequential, 1 HTTP/1.1 connection",
        Shape::Http1 => "16 HTTP/1.1 connections",
        Shape::Http2 => "1 HTTP/2 connection x 16 streams",
    }
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Two processes over a real link (`benches/tls-netns.sh`): one serves, one drives,
        // sharing a CA directory. Otherwise both ends run here on loopback.
        let ca_dir = std::env::var_os("MESH_TLS_BENCH_CA");
        let ca = match &ca_dir {
            Some(dir) => Ca::load_or_create(std::path::Path::new(dir), "cluster.local")?,
            None => Ca::generate("cluster.local")?,
        };
        if let Ok(ip) = std::env::var("MESH_TLS_BENCH_SERVE") {
            let ip: std::net::IpAddr = ip.parse()?;
            let strict = MeshTlsAcceptor::new(identity(&ca, "server")?, PeerAuthMode::Strict);
            let plain = MeshTlsAcceptor::new(identity(&ca, "server")?, PeerAuthMode::Disable);
            server(strict, (ip, REMOTE_TLS_PORT).into()).await?;
            server(plain, (ip, REMOTE_PLAIN_PORT).into()).await?;
            println!("serving plain on {ip}:{REMOTE_PLAIN_PORT}, mTLS on {ip}:{REMOTE_TLS_PORT}");
            std::future::pending::<()>().await;
        }
        let remote = std::env::var("MESH_TLS_BENCH_REMOTE").is_ok();
        // CPU is this process's: client and server on loopback, the client alone when remote.
        let cpu_side = if remote { "client CPU" } else { "CPU" };
        let (tls_addr, plain_addr) = match std::env::var("MESH_TLS_BENCH_REMOTE") {
            Ok(ip) => {
                let ip: std::net::IpAddr = ip.parse()?;
                ((ip, REMOTE_TLS_PORT).into(), (ip, REMOTE_PLAIN_PORT).into())
            }
            Err(_) => {
                let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                let strict = MeshTlsAcceptor::new(identity(&ca, "server")?, PeerAuthMode::Strict);
                let plain = MeshTlsAcceptor::new(identity(&ca, "server")?, PeerAuthMode::Disable);
                (server(strict, local).await?, server(plain, local).await?)
            }
        };
        let connector = MeshTlsConnector::new(
            identity(&ca, "client")?,
            vec!["spiffe://cluster.local/ns/default/sa/server".into()],
        )
        .without_resumption();
        let bench = Bench {
            plain: plain_addr,
            tls: tls_addr,
            connector: connector.clone(),
        };

        // Warm-up: one of each.
        request(&mut plain_conn(plain_addr).await?, "/").await?;
        request(&mut tls_conn(&connector, tls_addr).await?, "/").await?;

        // One case only: `MESH_TLS_BENCH={seq|h1|h2}-{plain|tls}[-64k]`.
        if let Ok(only) = std::env::var("MESH_TLS_BENCH") {
            let shape = match only.split('-').next() {
                Some("h1") => Shape::Http1,
                Some("h2") => Shape::Http2,
                _ => Shape::Sequential,
            };
            let path = if only.ends_with("-64k") { "/64k" } else { "/" };
            let run = bench.warm(shape, only.contains("-tls"), path, REQUESTS * ROUNDS).await?;
            println!("{only}: {:.0} req/s, {:.1} µs CPU per request", run.rate, run.cpu_us);
            return Ok(());
        }

        println!("new connection + 1 request ({HANDSHAKES} sequential per round, {ROUNDS} rounds)");
        let (mut plain_rates, mut tls_rates) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let t = Instant::now();
            for _ in 0..HANDSHAKES {
                request(&mut plain_conn(plain_addr).await?, "/").await?;
            }
            plain_rates.push(HANDSHAKES as f64 / t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..HANDSHAKES {
                request(&mut tls_conn(&connector, tls_addr).await?, "/").await?;
            }
            tls_rates.push(HANDSHAKES as f64 / t.elapsed().as_secs_f64());
        }
        let (p, t) = (median(plain_rates.clone()), median(tls_rates.clone()));
        println!(
            "  plain TCP: {p:.0} conn/s   full mTLS: {t:.0} conn/s ({:.0} µs per mTLS connection, +{:.0} µs over plain)",
            1e6 / t,
            1e6 / t - 1e6 / p
        );
        println!("  per round mTLS conn/s: {:?}", tls_rates.iter().map(|r| r.round()).collect::<Vec<_>>());

        println!("warm keep-alive, {REQUESTS} requests per round, {ROUNDS} rounds, mTLS/plain ratio per round");
        for shape in [Shape::Sequential, Shape::Http1, Shape::Http2] {
            for path in ["/", "/64k"] {
                let (mut plain_rates, mut tls_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
                let (mut plain_cpu, mut tls_cpu) = (Vec::new(), Vec::new());
                for _ in 0..ROUNDS {
                    let pr = bench.warm(shape, false, path, REQUESTS).await?;
                    let tr = bench.warm(shape, true, path, REQUESTS).await?;
                    plain_rates.push(pr.rate);
                    tls_rates.push(tr.rate);
                    ratios.push(tr.rate / pr.rate);
                    plain_cpu.push(pr.cpu_us);
                    tls_cpu.push(tr.cpu_us);
                }
                let body = if path == "/" { "1 KiB" } else { "64 KiB" };
                let (pc, tc) = (median(plain_cpu), median(tls_cpu));
                println!(
                    "  {:<36} {body:>6}: plain {:>6.0} req/s, mTLS {:>6.0} req/s, ratio median {:.3} {:?}; {cpu_side}/request plain {pc:.1} µs, mTLS {tc:.1} µs (+{:.1})",
                    shape_name(shape),
                    median(plain_rates),
                    median(tls_rates),
                    median(ratios.clone()),
                    ratios.iter().map(|r| (r * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
                    tc - pc
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        anyhow::Ok(())
    })
}
