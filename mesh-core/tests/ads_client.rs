//! The ADS client against a real, scripted, in-test ADS server on `127.0.0.1:0` (STYLE.md §12).
//!
//! Server and client share the test's current-thread runtime and talk over loopback. The
//! protocol exchanges run on the real clock (they take milliseconds); the parts that are about
//! time (the 15 s does-not-exist timer, a long outage) pause the clock *after* the exchange they
//! depend on and `advance` it. A paused clock cannot be kept across socket I/O: tokio
//! auto-advances to the next timer whenever the runtime parks, even while bytes are in flight
//! on loopback, so the does-not-exist timer would fire before the server had read the request.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::{
                cluster::{ClusterDiscoveryType, DiscoveryType},
                Cluster as ClusterProto,
            },
            core::v3::{
                config_source::ConfigSourceSpecifier, AggregatedConfigSource, ConfigSource,
            },
            endpoint::v3::ClusterLoadAssignment as ClaProto,
            listener::v3::{ApiListener, Listener as ListenerProto},
        },
        extensions::filters::network::http_connection_manager::v3::{
            http_connection_manager::RouteSpecifier, http_filter::ConfigType,
            HttpConnectionManager, HttpFilter, Rds,
        },
        service::discovery::v3::{
            aggregated_discovery_service_server::{
                AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
            },
            DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
            Resource,
        },
    },
    google::protobuf::Any,
};
use mesh_core::{
    bootstrap::Bootstrap,
    cache::{ResourceCache, ResourceStatus},
    model::{Cluster, ClusterLoadAssignment, Listener, ResourceType},
    xds::{XdsClient, XdsStatus},
};
use prost::Message;
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

// ----- the scripted server ----------------------------------------------------------------------

type ResponseTx = mpsc::UnboundedSender<Result<DiscoveryResponse, Status>>;

#[derive(Clone)]
struct Ads {
    requests: mpsc::UnboundedSender<DiscoveryRequest>,
    /// The response side of the newest stream.
    current: Arc<Mutex<Option<ResponseTx>>>,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.current.lock().unwrap() = Some(tx);
        let mut inbound = request.into_inner();
        let requests = self.requests.clone();
        tokio::spawn(async move {
            while let Ok(Some(r)) = inbound.message().await {
                if requests.send(r).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        _: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented("delta"))
    }
}

struct TestServer {
    addr: SocketAddr,
    ads: Ads,
    requests: mpsc::UnboundedReceiver<DiscoveryRequest>,
    shutdown: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl TestServer {
    async fn start() -> TestServer {
        let (tx, requests) = mpsc::unbounded_channel();
        let mut server = TestServer {
            addr: "127.0.0.1:0".parse().unwrap(),
            ads: Ads {
                requests: tx,
                current: Arc::default(),
            },
            requests,
            shutdown: None,
        };
        server.serve().await;
        server
    }

    /// Listens on `self.addr` (a fresh port the first time, the same one after a kill).
    async fn serve(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let svc = AggregatedDiscoveryServiceServer::new(self.ads.clone());
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
        });
        self.shutdown = Some((stop_tx, task));
    }

    /// Ends the current stream, stops accepting and closes every connection.
    async fn kill(&mut self) {
        let (stop, task) = self.shutdown.take().expect("server running");
        self.ads.current.lock().unwrap().take();
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("server shuts down")
            .unwrap();
    }

    async fn restart(&mut self) {
        self.serve().await;
    }

    fn bootstrap(&self) -> Bootstrap {
        Bootstrap::from_json(&format!(
            r#"{{"xds_servers": [{{"server_uri": "{}", "channel_creds": [{{"type": "insecure"}}],
                 "server_features": ["xds_v3"]}}],
                 "node": {{"id": "test-node", "cluster": "test", "metadata": {{"GENERATOR": "grpc"}}}}}}"#,
            self.addr
        ))
        .unwrap()
    }

    async fn next_request(&mut self) -> DiscoveryRequest {
        tokio::time::timeout(Duration::from_secs(60), self.requests.recv())
            .await
            .expect("a request within 60 s")
            .expect("request channel open")
    }

    /// The next request of `ty` whose name set is exactly `names` (earlier ones are
    /// intermediate subscription states and skipped).
    async fn request_for(&mut self, ty: ResourceType, names: &[&str]) -> DiscoveryRequest {
        loop {
            let r = self.next_request().await;
            if r.type_url == ty.type_url() && sorted(&r.resource_names) == sorted_strs(names) {
                return r;
            }
        }
    }

    async fn no_request_for(&mut self, wait: Duration) {
        if let Ok(r) = tokio::time::timeout(wait, self.requests.recv()).await {
            panic!("unexpected request {r:?}");
        }
    }

    fn respond(&self, ty: ResourceType, version: &str, nonce: &str, resources: Vec<Any>) {
        self.respond_raw(DiscoveryResponse {
            version_info: version.into(),
            resources,
            type_url: ty.type_url().into(),
            nonce: nonce.into(),
            ..Default::default()
        });
    }

    fn respond_raw(&self, response: DiscoveryResponse) {
        let current = self.ads.current.lock().unwrap();
        current
            .as_ref()
            .expect("a stream")
            .send(Ok(response))
            .expect("stream open");
    }
}

fn sorted(names: &[String]) -> Vec<String> {
    let mut v = names.to_vec();
    v.sort();
    v
}

fn sorted_strs(names: &[&str]) -> Vec<String> {
    sorted(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

// ----- resources ------------------------------------------------------------------------------

fn any(ty: ResourceType, m: &impl Message) -> Any {
    Any {
        type_url: ty.type_url().into(),
        value: m.encode_to_vec(),
    }
}

fn ads_source() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

fn cluster(name: &str) -> Any {
    any(
        ResourceType::Cluster,
        &ClusterProto {
            name: name.into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            ..Default::default()
        },
    )
}

/// A cluster every validator rejects: STATIC without a `load_assignment`.
fn bad_cluster(name: &str) -> Any {
    any(
        ResourceType::Cluster,
        &ClusterProto {
            name: name.into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
            ..Default::default()
        },
    )
}

fn listener(name: &str) -> Any {
    let hcm = HttpConnectionManager {
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(ConfigType::TypedConfig(Any {
                type_url: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                    .into(),
                value: vec![],
            })),
            ..Default::default()
        }],
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads_source()),
            route_config_name: format!("{name}-routes"),
        })),
        ..Default::default()
    };
    any(
        ResourceType::Listener,
        &ListenerProto {
            name: name.into(),
            api_listener: Some(ApiListener {
                api_listener: Some(Any {
                    type_url: "type.googleapis.com/envoy.extensions.filters.network.\
                               http_connection_manager.v3.HttpConnectionManager"
                        .into(),
                    value: hcm.encode_to_vec(),
                }),
            }),
            ..Default::default()
        },
    )
}

fn endpoints(name: &str) -> Any {
    any(
        ResourceType::ClusterLoadAssignment,
        &ClaProto {
            cluster_name: name.into(),
            ..Default::default()
        },
    )
}

fn start_client(server: &TestServer) -> (XdsClient, ResourceCache) {
    let cache = ResourceCache::new();
    let client = XdsClient::start(&server.bootstrap(), cache.clone()).unwrap();
    (client, cache)
}

async fn wait_status(client: &XdsClient, what: impl Fn(&XdsStatus) -> bool) -> XdsStatus {
    let mut rx = client.status_changes();
    let status = tokio::time::timeout(Duration::from_secs(120), rx.wait_for(|s| what(s)))
        .await
        .expect("status reached within 120 s")
        .expect("client running");
    status.clone()
}

// ----- tests ----------------------------------------------------------------------------------

#[tokio::test]
async fn first_request_carries_node_and_acks_carry_version_and_nonce() {
    let mut server = TestServer::start().await;
    let (client, cache) = start_client(&server);
    let _c1 = client.subscribe(ResourceType::Cluster, "c1");

    let first = server.request_for(ResourceType::Cluster, &["c1"]).await;
    assert_eq!(first.version_info, "");
    assert_eq!(first.response_nonce, "");
    assert!(first.error_detail.is_none());
    let node = first.node.expect("node on the first request");
    assert_eq!(node.id, "test-node");
    assert_eq!(node.cluster, "test");
    assert_eq!(node.user_agent_name, "mesh-core");
    assert!(node
        .client_features
        .contains(&"xds.config.resource-in-sotw".to_string()));
    assert!(node.metadata.unwrap().fields.contains_key("GENERATOR"));

    // An unrequested resource rides along and is ignored.
    server.respond(
        ResourceType::Cluster,
        "v1",
        "n1",
        vec![cluster("c1"), cluster("unrequested")],
    );
    let ack = server.next_request().await;
    assert_eq!(ack.type_url, ResourceType::Cluster.type_url());
    assert_eq!(
        (ack.version_info.as_str(), ack.response_nonce.as_str()),
        ("v1", "n1")
    );
    assert_eq!(ack.resource_names, vec!["c1"]);
    assert!(ack.error_detail.is_none());
    assert!(
        ack.node.is_none(),
        "node only on the first request of a stream"
    );

    let entry = cache.entry::<Cluster>("c1").unwrap();
    assert_eq!(entry.status, ResourceStatus::Acked);
    assert_eq!(&*entry.version, "v1");
    assert!(entry.value.is_some());
    assert!(cache.entry::<Cluster>("unrequested").is_none());

    let status = wait_status(&client, |s| s.connected).await;
    let cds = &status.types[&ResourceType::Cluster];
    assert_eq!(
        (&*cds.acked_version, &*cds.nonce, cds.acks),
        ("v1", "n1", 1)
    );

    // A later subscription lists the full set with the last version and nonce.
    let _c2 = client.subscribe(ResourceType::Cluster, "c2");
    let r = server
        .request_for(ResourceType::Cluster, &["c1", "c2"])
        .await;
    assert_eq!(
        (r.version_info.as_str(), r.response_nonce.as_str()),
        ("v1", "n1")
    );
}

#[tokio::test]
async fn invalid_resource_is_nacked_while_valid_sibling_applies() {
    let mut server = TestServer::start().await;
    let (client, cache) = start_client(&server);
    let _subs = [
        client.subscribe(ResourceType::Cluster, "good"),
        client.subscribe(ResourceType::Cluster, "bad"),
    ];
    server
        .request_for(ResourceType::Cluster, &["bad", "good"])
        .await;

    server.respond(
        ResourceType::Cluster,
        "1",
        "n1",
        vec![cluster("good"), cluster("bad")],
    );
    let ack = server.next_request().await;
    assert!(ack.error_detail.is_none());
    assert_eq!(ack.version_info, "1");

    // Version 2: `bad` turns invalid, `good` is still fine.
    server.respond(
        ResourceType::Cluster,
        "2",
        "n2",
        vec![cluster("good"), bad_cluster("bad")],
    );
    let nack = server.next_request().await;
    let detail = nack.error_detail.expect("a NACK");
    assert_eq!(detail.code, 3, "INVALID_ARGUMENT");
    assert!(detail.message.contains("`bad`"), "{}", detail.message);
    assert!(!detail.message.contains("`good`"), "{}", detail.message);
    assert_eq!(
        nack.version_info, "1",
        "NACK carries the last accepted version"
    );
    assert_eq!(nack.response_nonce, "n2");

    let good = cache.entry::<Cluster>("good").unwrap();
    assert_eq!((good.status, &*good.version), (ResourceStatus::Acked, "2"));
    let bad = cache.entry::<Cluster>("bad").unwrap();
    assert!(matches!(bad.status, ResourceStatus::Nacked(_)));
    assert!(bad.value.is_some(), "the last good value is kept");
    assert_eq!(&*bad.version, "1");

    let status = client.status();
    let cds = &status.types[&ResourceType::Cluster];
    assert_eq!(&*cds.acked_version, "1");
    let last = cds.last_nack.as_ref().unwrap();
    assert_eq!((&*last.version, &*last.nonce), ("2", "n2"));

    // Garbage bytes and a duplicate name are NACKed too, without disturbing `good`.
    let garbage = Any {
        type_url: ResourceType::Cluster.type_url().into(),
        value: vec![0xff; 7],
    };
    server.respond(
        ResourceType::Cluster,
        "3",
        "n3",
        vec![garbage, cluster("good"), cluster("good")],
    );
    let nack = server.next_request().await;
    let message = nack.error_detail.expect("a NACK").message;
    assert!(message.contains("resource index 0"), "{message}");
    assert!(message.contains("more than once"), "{message}");
    assert_eq!(nack.version_info, "1");
    assert!(cache.get::<Cluster>("good").is_some());

    // Fixed: ACKed, statuses clean.
    server.respond(
        ResourceType::Cluster,
        "4",
        "n4",
        vec![cluster("good"), cluster("bad")],
    );
    let ack = server.next_request().await;
    assert!(ack.error_detail.is_none());
    assert_eq!(ack.version_info, "4");
    assert_eq!(
        cache.entry::<Cluster>("bad").unwrap().status,
        ResourceStatus::Acked
    );
    assert!(client.status().types[&ResourceType::Cluster]
        .last_nack
        .is_none());
}

#[tokio::test]
async fn resource_wrappers_and_v2_type_urls_are_accepted() {
    let mut server = TestServer::start().await;
    let (client, cache) = start_client(&server);
    let _s = client.subscribe(ResourceType::ClusterLoadAssignment, "e1");
    server
        .request_for(ResourceType::ClusterLoadAssignment, &["e1"])
        .await;
    let mut inner = endpoints("e1");
    inner.type_url = "type.googleapis.com/envoy.api.v2.ClusterLoadAssignment".into();
    let wrapped = Any {
        type_url: "type.googleapis.com/envoy.service.discovery.v3.Resource".into(),
        value: Resource {
            name: "e1".into(),
            version: "r1".into(),
            resource: Some(inner),
            ..Default::default()
        }
        .encode_to_vec(),
    };
    server.respond(
        ResourceType::ClusterLoadAssignment,
        "1",
        "n1",
        vec![wrapped],
    );
    let ack = server.next_request().await;
    assert!(ack.error_detail.is_none(), "{:?}", ack.error_detail);
    assert!(cache.get::<ClusterLoadAssignment>("e1").is_some());
}

#[tokio::test]
async fn listener_missing_from_lds_response_is_removed_but_endpoints_are_not() {
    let mut server = TestServer::start().await;
    let (client, cache) = start_client(&server);
    let _l = [
        client.subscribe(ResourceType::Listener, "a:80"),
        client.subscribe(ResourceType::Listener, "b:80"),
    ];
    server
        .request_for(ResourceType::Listener, &["a:80", "b:80"])
        .await;
    server.respond(
        ResourceType::Listener,
        "1",
        "l1",
        vec![listener("a:80"), listener("b:80")],
    );
    assert!(server.next_request().await.error_detail.is_none());
    assert!(cache.get::<Listener>("b:80").is_some());

    server.respond(ResourceType::Listener, "2", "l2", vec![listener("a:80")]);
    let ack = server.next_request().await;
    assert_eq!(ack.version_info, "2");
    let b = cache.entry::<Listener>("b:80").unwrap();
    assert_eq!(b.status, ResourceStatus::DoesNotExist);
    assert!(b.value.is_none());
    assert!(cache.get::<Listener>("a:80").is_some());

    // EDS responses are per resource: absence says nothing.
    let _e = [
        client.subscribe(ResourceType::ClusterLoadAssignment, "x"),
        client.subscribe(ResourceType::ClusterLoadAssignment, "y"),
    ];
    server
        .request_for(ResourceType::ClusterLoadAssignment, &["x", "y"])
        .await;
    server.respond(
        ResourceType::ClusterLoadAssignment,
        "1",
        "e1",
        vec![endpoints("x"), endpoints("y")],
    );
    assert!(server.next_request().await.error_detail.is_none());
    server.respond(
        ResourceType::ClusterLoadAssignment,
        "2",
        "e2",
        vec![endpoints("x")],
    );
    assert_eq!(server.next_request().await.version_info, "2");
    let y = cache.entry::<ClusterLoadAssignment>("y").unwrap();
    assert_eq!(y.status, ResourceStatus::Acked);
    assert!(y.value.is_some());
}

#[tokio::test]
async fn unanswered_resource_does_not_exist_after_15_seconds() {
    let mut server = TestServer::start().await;
    let (client, cache) = start_client(&server);
    let _ghost = client.subscribe(ResourceType::Listener, "ghost:80");
    assert_eq!(
        cache.entry::<Listener>("ghost:80").unwrap().status,
        ResourceStatus::Requested,
        "subscribing marks the resource requested at once"
    );
    server
        .request_for(ResourceType::Listener, &["ghost:80"])
        .await;

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(14)).await;
    assert_eq!(
        cache.entry::<Listener>("ghost:80").unwrap().status,
        ResourceStatus::Requested
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    tokio::task::yield_now().await;
    let mut changes = cache.subscribe_changes();
    tokio::time::timeout(
        Duration::from_secs(1),
        changes.wait_for(|_| {
            cache.entry::<Listener>("ghost:80").unwrap().status == ResourceStatus::DoesNotExist
        }),
    )
    .await
    .expect("does-not-exist after 15 s")
    .unwrap();
    tokio::time::resume();

    // It may still show up later; the server must send it once it exists (xds_protocol).
    server.respond(
        ResourceType::Listener,
        "1",
        "n1",
        vec![listener("ghost:80")],
    );
    assert!(server.next_request().await.error_detail.is_none());
    assert_eq!(
        cache.entry::<Listener>("ghost:80").unwrap().status,
        ResourceStatus::Acked
    );
}

#[tokio::test]
async fn reconnects_and_resubscribes_with_last_versions_keeping_the_cache() {
    let mut server = TestServer::start().await;
    let (client, cache) = start_client(&server);
    let _subs = [
        client.subscribe(ResourceType::Listener, "l:80"),
        client.subscribe(ResourceType::Cluster, "c"),
    ];
    server.request_for(ResourceType::Listener, &["l:80"]).await;
    server.request_for(ResourceType::Cluster, &["c"]).await;
    server.respond(ResourceType::Listener, "lv1", "ln1", vec![listener("l:80")]);
    assert_eq!(server.next_request().await.version_info, "lv1");
    server.respond(ResourceType::Cluster, "cv1", "cn1", vec![cluster("c")]);
    assert_eq!(server.next_request().await.version_info, "cv1");
    wait_status(&client, |s| s.connected && s.streams == 1).await;

    server.kill().await;
    let status = wait_status(&client, |s| !s.connected).await;
    assert!(status.last_error.is_some());
    // Several failed reconnects (backoff grows) and well past the does-not-exist timeout:
    // the cache keeps serving the last good config.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(40)).await;
    tokio::time::resume();
    assert!(!client.status().connected);
    for (name, ok) in [
        ("l:80", cache.get::<Listener>("l:80").is_some()),
        ("c", cache.get::<Cluster>("c").is_some()),
    ] {
        assert!(ok, "{name} kept while disconnected");
    }

    server.restart().await;
    let mut by_type = std::collections::BTreeMap::new();
    let mut first = true;
    while by_type.len() < 2 {
        let r = server.next_request().await;
        assert_eq!(
            r.node.is_some(),
            first,
            "node on the first request of the new stream"
        );
        first = false;
        by_type.insert(r.type_url.clone(), r);
    }
    let lds = &by_type[ResourceType::Listener.type_url()];
    assert_eq!(lds.resource_names, vec!["l:80"]);
    assert_eq!(
        (lds.version_info.as_str(), lds.response_nonce.as_str()),
        ("lv1", "")
    );
    let cds = &by_type[ResourceType::Cluster.type_url()];
    assert_eq!(cds.resource_names, vec!["c"]);
    assert_eq!(
        (cds.version_info.as_str(), cds.response_nonce.as_str()),
        ("cv1", "")
    );
    wait_status(&client, |s| s.connected && s.streams == 2).await;

    // The new stream works as before.
    server.respond(ResourceType::Cluster, "cv2", "cn2", vec![cluster("c")]);
    let ack = server.request_for(ResourceType::Cluster, &["c"]).await;
    assert_eq!(
        (ack.version_info.as_str(), ack.response_nonce.as_str()),
        ("cv2", "cn2")
    );
    assert!(cache.get::<Listener>("l:80").is_some());
}

#[tokio::test]
async fn dropping_the_last_subscription_unsubscribes() {
    let mut server = TestServer::start().await;
    let (client, cache) = start_client(&server);
    let x1 = client.subscribe(ResourceType::ClusterLoadAssignment, "x");
    let x2 = client.subscribe(ResourceType::ClusterLoadAssignment, "x");
    let y = client.subscribe(ResourceType::ClusterLoadAssignment, "y");
    server
        .request_for(ResourceType::ClusterLoadAssignment, &["x", "y"])
        .await;
    server.respond(
        ResourceType::ClusterLoadAssignment,
        "1",
        "n1",
        vec![endpoints("x"), endpoints("y")],
    );
    server.next_request().await;
    assert!(cache.get::<ClusterLoadAssignment>("x").is_some());

    drop(x1);
    server.no_request_for(Duration::from_millis(300)).await;
    assert!(cache.get::<ClusterLoadAssignment>("x").is_some());

    drop(x2);
    let r = server
        .request_for(ResourceType::ClusterLoadAssignment, &["y"])
        .await;
    assert_eq!(
        (r.version_info.as_str(), r.response_nonce.as_str()),
        ("1", "n1")
    );
    assert!(
        cache.entry::<ClusterLoadAssignment>("x").is_none(),
        "forgotten"
    );

    // Dropping the last name sends an empty set: "unsubscribe all", not wildcard.
    drop(y);
    let r = server
        .request_for(ResourceType::ClusterLoadAssignment, &[])
        .await;
    assert!(r.resource_names.is_empty());
    assert!(cache.entry::<ClusterLoadAssignment>("y").is_none());
}

#[tokio::test]
async fn does_not_exist_timer_waits_for_a_connection() {
    let mut server = TestServer::start().await;
    server.kill().await;
    let (client, cache) = start_client(&server);
    let _l = client.subscribe(ResourceType::Listener, "l:80");
    wait_status(&client, |s| s.last_error.is_some()).await;

    // A minute without a server: the request was never sent, so nothing is concluded (A57).
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(60)).await;
    tokio::time::resume();
    let entry = cache.entry::<Listener>("l:80").unwrap();
    assert_eq!(entry.status, ResourceStatus::Requested);
    assert!(!client.status().connected);

    server.restart().await;
    server.request_for(ResourceType::Listener, &["l:80"]).await;
    server.respond(ResourceType::Listener, "1", "n1", vec![listener("l:80")]);
    assert!(server.next_request().await.error_detail.is_none());
    assert!(cache.get::<Listener>("l:80").is_some());
}

#[tokio::test]
async fn unsolicited_types_are_ignored_and_unknown_types_nacked() {
    let mut server = TestServer::start().await;
    let (client, cache) = start_client(&server);
    let _c = client.subscribe(ResourceType::Cluster, "c");
    server.request_for(ResourceType::Cluster, &["c"]).await;

    // LDS was never requested: no answer (an empty LDS request would mean wildcard).
    server.respond(ResourceType::Listener, "1", "x1", vec![listener("l:80")]);
    server.no_request_for(Duration::from_millis(300)).await;
    assert!(cache.entry::<Listener>("l:80").is_none());

    let unknown = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
    server.respond_raw(DiscoveryResponse {
        version_info: "1".into(),
        type_url: unknown.into(),
        nonce: "u1".into(),
        ..Default::default()
    });
    let nack = server.next_request().await;
    assert_eq!(
        (nack.type_url.as_str(), nack.response_nonce.as_str()),
        (unknown, "u1")
    );
    assert!(nack.error_detail.is_some());
}
