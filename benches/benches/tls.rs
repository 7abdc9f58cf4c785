//! mTLS cost on loopback, same run: full handshakes per second (mTLS vs plain TCP connect,
//! each followed by one request so the server's client-certificate check is included), and
//! warm keep-alive HTTP/1.1 throughput through `mesh_tower::tls` vs plaintext.
//!
//! ```text
//! cargo bench -p benches --bench tls
//! ```
//!
//! Sequential on purpose (one connection, one request at a time): it isolates the per-request
//! TLS cost from scheduling. Rounds alternate plain / mTLS so load changes hit both sides.

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

async fn server(acceptor: MeshTlsAcceptor) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
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
                        let size = if req.uri().path() == "/64k" {
                            64 * 1024
                        } else {
                            1024
                        };
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![b'x'; size]))))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http1_only()
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
    handshake_http1(c.connect("127.0.0.1", addr.port()).await?).await
}

async fn request(sender: &mut Sender, path: &str) -> anyhow::Result<usize> {
    sender.ready().await?;
    let req = Request::get(path)
        .header("host", "bench")
        .body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    Ok(resp.into_body().collect().await?.to_bytes().len())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let ca = Ca::generate("cluster.local")?;
        let tls_addr = server(MeshTlsAcceptor::new(identity(&ca, "server")?, PeerAuthMode::Strict)).await?;
        let plain_addr = server(MeshTlsAcceptor::new(identity(&ca, "server")?, PeerAuthMode::Disable)).await?;
        let connector = MeshTlsConnector::new(
            identity(&ca, "client")?,
            vec!["spiffe://cluster.local/ns/default/sa/server".into()],
        )
        .without_resumption();

        // Warm-up: one of each.
        request(&mut plain_conn(plain_addr).await?, "/").await?;
        request(&mut tls_conn(&connector, tls_addr).await?, "/").await?;

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

        for path in ["/", "/64k"] {
            let mut plain = plain_conn(plain_addr).await?;
            let mut tls = tls_conn(&connector, tls_addr).await?;
            let (mut plain_rates, mut tls_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let t = Instant::now();
                for _ in 0..REQUESTS {
                    request(&mut plain, path).await?;
                }
                let pr = REQUESTS as f64 / t.elapsed().as_secs_f64();
                let t = Instant::now();
                for _ in 0..REQUESTS {
                    request(&mut tls, path).await?;
                }
                let tr = REQUESTS as f64 / t.elapsed().as_secs_f64();
                plain_rates.push(pr);
                tls_rates.push(tr);
                ratios.push(tr / pr);
            }
            let body = if path == "/" { "1 KiB" } else { "64 KiB" };
            println!(
                "warm keep-alive, {body} response, {REQUESTS} sequential requests per round: plain {:.0} req/s, mTLS {:.0} req/s, ratio median {:.3} {:?}",
                median(plain_rates),
                median(tls_rates),
                median(ratios.clone()),
                ratios.iter().map(|r| (r * 1000.0).round() / 1000.0).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        anyhow::Ok(())
    })
}
