//! ADS over a real socket with a raw tonic client: subscribe, ACK, NACK, push, no re-send,
//! stale nonces, shutdown and restart on the same port.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use mesh_control_plane::{load_str, ControlPlane, ControlPlaneHandle, MeshConfig, ResourceType};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const NAME: &str = "greeter.default.svc.cluster.local:50051";
const CLUSTER: &str = "outbound|50051||greeter.default.svc.cluster.local";

fn config(endpoint: &str) -> MeshConfig {
    let yaml = format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{ name: greeter }}
spec:
  hosts: [greeter.default.svc.cluster.local]
  ports: [{{ number: 50051, name: grpc, protocol: GRPC }}]
  endpoints: [{{ address: "{endpoint}" }}]
"#
    );
    load_str("greeter.yaml", &yaml).unwrap().0
}

async fn start(config: MeshConfig, port: u16) -> ControlPlaneHandle {
    ControlPlane::builder()
        .config(config)
        .listen_addr(([127, 0, 0, 1], port).into())
        .admin_addr(([127, 0, 0, 1], 0).into())
        .start()
        .await
        .expect("control plane starts")
}

struct Client {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

impl Client {
    async fn connect(cp: &ControlPlaneHandle) -> Self {
        let mut grpc =
            AggregatedDiscoveryServiceClient::connect(format!("http://{}", cp.ads_addr()))
                .await
                .expect("connect");
        let (tx, rx) = mpsc::channel(16);
        let rx = grpc
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("stream")
            .into_inner();
        Client { tx, rx }
    }

    async fn send(
        &self,
        type_url: &str,
        names: &[&str],
        version: &str,
        nonce: &str,
        nack: Option<&str>,
    ) {
        let req = DiscoveryRequest {
            node: Some(Node {
                id: "test-node".into(),
                cluster: "test".into(),
                user_agent_name: "raw-tonic".into(),
                ..Default::default()
            }),
            type_url: type_url.into(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            version_info: version.into(),
            response_nonce: nonce.into(),
            error_detail: nack.map(|m| RpcStatus {
                code: 3,
                message: m.into(),
                details: vec![],
            }),
            ..Default::default()
        };
        self.tx.send(req).await.expect("request sent");
    }

    async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(5), self.rx.message())
            .await
            .expect("response within 5s")
            .expect("stream ok")
            .expect("stream open")
    }

    async fn ack(&self, resp: &DiscoveryResponse, names: &[&str]) {
        self.send(&resp.type_url, names, &resp.version_info, &resp.nonce, None)
            .await;
    }

    /// Nothing arrives for `ms` milliseconds.
    async fn silent(&mut self, ms: u64) {
        if let Ok(msg) = tokio::time::timeout(Duration::from_millis(ms), self.rx.message()).await {
            panic!("unexpected message: {msg:?}");
        }
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn endpoint_address(resp: &DiscoveryResponse) -> String {
    let cla = ClusterLoadAssignment::decode(resp.resources[0].value.as_slice()).unwrap();
    format!("{:?}", cla.endpoints[0].lb_endpoints[0])
}

#[tokio::test]
async fn subscribe_ack_nack_push_and_no_resend() {
    let cp = start(config("10.0.0.1"), 0).await;
    let mut c = Client::connect(&cp).await;

    // LDS by exact name → the listener.
    c.send(LDS, &[NAME], "", "", None).await;
    let lds = c.recv().await;
    assert_eq!(lds.type_url, LDS);
    assert_eq!(lds.resources.len(), 1);
    let l = Listener::decode(lds.resources[0].value.as_slice()).unwrap();
    assert_eq!(l.name, NAME);
    assert!(!lds.version_info.is_empty() && !lds.nonce.is_empty());
    c.ack(&lds, &[NAME]).await;

    // RDS, then NACK it: recorded with its message; no re-send.
    c.send(RDS, &[NAME], "", "", None).await;
    let rds = c.recv().await;
    assert_eq!(rds.resources.len(), 1);
    c.send(RDS, &[NAME], "", &rds.nonce, Some("route is bad: field x"))
        .await;

    // CDS wildcard + EDS for the default cluster.
    c.send(CDS, &[], "", "", None).await;
    let cds = c.recv().await;
    assert_eq!(cds.resources.len(), 1);
    c.ack(&cds, &[]).await;
    c.send(EDS, &[CLUSTER], "", "", None).await;
    let eds = c.recv().await;
    assert!(endpoint_address(&eds).contains("10.0.0.1"));
    c.ack(&eds, &[CLUSTER]).await;
    c.silent(200).await;

    let status = cp.client_status();
    assert_eq!(status.len(), 1);
    let client = &status[0];
    assert!(client.connected);
    assert_eq!(client.node.id, "test-node");
    assert_eq!(client.node.user_agent_name, "raw-tonic");
    assert_eq!(
        client
            .of(ResourceType::Listener)
            .unwrap()
            .acked_version
            .as_deref(),
        Some(lds.version_info.as_str())
    );
    let rds_status = client.of(ResourceType::Route).unwrap();
    let nack = rds_status.nack.as_ref().expect("nack recorded");
    assert_eq!(nack.message, "route is bad: field x");
    assert_eq!(nack.rejected_version, rds.version_info);
    assert_eq!(nack.accepted_version, "");
    assert_eq!(rds_status.acked_version, None);
    assert!(client.of(ResourceType::Cluster).unwrap().wildcard);

    // /debug/config shows the NACK text.
    let debug = http_get(cp.admin_addr().unwrap(), "/debug/config").await;
    assert!(debug.contains("route is bad: field x"), "{debug}");
    assert!(debug.contains(NAME));

    // Same config again: nothing is re-sent.
    cp.set_config(config("10.0.0.1"));
    c.silent(300).await;

    // Endpoint change: only EDS is pushed.
    cp.set_config(config("10.0.0.2"));
    let eds2 = c.recv().await;
    assert_eq!(eds2.type_url, EDS);
    assert!(endpoint_address(&eds2).contains("10.0.0.2"));
    assert_ne!(eds2.version_info, eds.version_info);
    c.ack(&eds2, &[CLUSTER]).await;
    c.silent(300).await;

    // A stale nonce is ignored, even with a new name in it.
    c.send(
        LDS,
        &[NAME, "greeter:50051"],
        &lds.version_info,
        "bogus",
        None,
    )
    .await;
    c.silent(300).await;

    // A new name (short alias) is answered at once with the full LDS set.
    c.send(
        LDS,
        &[NAME, "greeter:50051"],
        &lds.version_info,
        &lds.nonce,
        None,
    )
    .await;
    let lds2 = c.recv().await;
    let mut names: Vec<String> = lds2
        .resources
        .iter()
        .map(|a| Listener::decode(a.value.as_slice()).unwrap().name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["greeter.default.svc.cluster.local:50051", "greeter:50051"]
    );
    c.ack(&lds2, &[NAME, "greeter:50051"]).await;

    // Unknown names are simply absent.
    c.send(
        LDS,
        &[NAME, "nope:1"],
        &lds2.version_info,
        &lds2.nonce,
        None,
    )
    .await;
    let lds3 = c.recv().await;
    assert_eq!(lds3.resources.len(), 1);

    cp.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_streams_and_restart_reuses_the_port() {
    let cp = start(config("10.0.0.1"), 0).await;
    let port = cp.ads_addr().port();
    let mut c = Client::connect(&cp).await;
    c.send(LDS, &[NAME], "", "", None).await;
    let _ = c.recv().await;

    tokio::time::timeout(Duration::from_secs(10), cp.shutdown())
        .await
        .expect("shutdown completes");
    let end = tokio::time::timeout(Duration::from_secs(5), c.rx.message())
        .await
        .expect("stream ends");
    match end {
        Ok(None) => {}
        Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status}"),
        Ok(Some(msg)) => panic!("unexpected message {msg:?}"),
    }

    let cp = start(config("10.0.0.3"), port).await;
    assert_eq!(cp.ads_addr().port(), port);
    let mut c = Client::connect(&cp).await;
    c.send(EDS, &[CLUSTER], "", "", None).await;
    let eds = c.recv().await;
    assert!(endpoint_address(&eds).contains("10.0.0.3"));
    cp.shutdown().await;
}

#[tokio::test]
async fn many_clients_all_get_pushed() {
    let cp = start(config("10.0.0.1"), 0).await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut c = Client::connect(&cp).await;
        c.send(EDS, &[CLUSTER], "", "", None).await;
        let r = c.recv().await;
        c.ack(&r, &[CLUSTER]).await;
        clients.push(c);
    }
    eventually("8 connected clients", || {
        cp.client_status().iter().filter(|c| c.connected).count() == 8
    })
    .await;
    cp.set_config(config("10.0.0.9"));
    for c in &mut clients {
        let r = c.recv().await;
        assert!(endpoint_address(&r).contains("10.0.0.9"));
    }
    drop(clients);
    eventually("clients disconnected", || {
        cp.client_status().iter().all(|c| !c.connected)
    })
    .await;
    cp.shutdown().await;
}

/// Minimal HTTP/1.0 GET (the admin server closes the connection after the response).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("admin answers")
        .unwrap();
    out
}
