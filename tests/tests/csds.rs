//! CSDS on the client (gRFC A40): a real mesh client on a real control plane, its
//! `ClientStatusDiscoveryService` served by tonic on loopback and read with the generated CSDS
//! client — ACKED with versions after warm-up, NACKED with the offending field after the
//! control plane serves a broken route configuration, REQUESTED for a name not (yet) served.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result};
use envoy_types::pb::envoy::{
    admin::v3::ClientResourceStatus,
    config::{core::v3::Node, route::v3::route_match::PathSpecifier},
    r#type::matcher::v3::RegexMatcher,
    service::status::v3::{
        client_config::GenericXdsConfig,
        client_status_discovery_service_client::ClientStatusDiscoveryServiceClient,
        ClientStatusRequest,
    },
};
use mesh_control_plane::translate;
use mesh_grpc::csds::CsdsService;
use tests::{control_plane, mesh, ready, service_yaml, temp_dir, write, Backend};
use tonic::transport::Channel;

const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// Serves `svc` on an ephemeral loopback port; the address.
async fn serve(svc: CsdsService) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc.into_server())
            .serve_with_incoming(accepted(listener)),
    );
    Ok(addr)
}

/// The listener's accepted connections, as tonic's `serve_with_incoming` takes them.
fn accepted(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    })
}

/// The generic xDS configs the client reports, checking the node on the way.
async fn fetch(
    client: &mut ClientStatusDiscoveryServiceClient<Channel>,
) -> Result<Vec<GenericXdsConfig>> {
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        client.fetch_client_status(ClientStatusRequest::default()),
    )
    .await??
    .into_inner();
    anyhow::ensure!(resp.config.len() == 1, "one client config: {resp:?}");
    let config = resp.config.into_iter().next().context("config")?;
    let node = config.node.context("node included")?;
    anyhow::ensure!(node.id == "csds-client", "node id {}", node.id);
    Ok(config.generic_xds_configs)
}

fn find<'a>(configs: &'a [GenericXdsConfig], ty: &str, name: &str) -> Option<&'a GenericXdsConfig> {
    configs.iter().find(|g| g.type_url == ty && g.name == name)
}

fn status_of(configs: &[GenericXdsConfig], ty: &str, name: &str) -> Option<ClientResourceStatus> {
    find(configs, ty, name).and_then(|g| ClientResourceStatus::try_from(g.client_status).ok())
}

/// Polls CSDS every 50 ms (at most `within`) until `cond` holds; the last answer.
async fn until(
    client: &mut ClientStatusDiscoveryServiceClient<Channel>,
    within: Duration,
    cond: impl Fn(&[GenericXdsConfig]) -> bool,
) -> Result<Vec<GenericXdsConfig>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let configs = fetch(client).await?;
        if cond(&configs) {
            return Ok(configs);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("condition not met within {within:?}: {configs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn csds_reports_acked_nacked_and_requested_resources() -> Result<()> {
    let v1 = Backend::start("v1").await?;
    let dir = temp_dir("csds");
    for host in ["good.test", "bad.test"] {
        write(
            &dir,
            &format!("{host}.yaml"),
            &service_yaml(host, 8080, &[&v1]),
        );
    }
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "csds-client")?;
    ready(&m, "good.test:8080").await?;
    ready(&m, "bad.test:8080").await?;

    let node = Node {
        id: "csds-client".into(),
        ..Default::default()
    };
    let addr = serve(CsdsService::new(m.clone(), node)).await?;
    let mut client = ClientStatusDiscoveryServiceClient::connect(format!("http://{addr}")).await?;

    // Warm: every resource of the target is ACKED, with the version that delivered it.
    let configs = fetch(&mut client).await?;
    let target = "good.test:8080";
    let cluster = "outbound|8080||good.test";
    for (ty, name) in [(LDS, target), (RDS, target), (CDS, cluster), (EDS, cluster)] {
        let g = find(&configs, ty, name).with_context(|| format!("{ty} {name}: {configs:#?}"))?;
        assert_eq!(g.client_status, ClientResourceStatus::Acked as i32, "{g:?}");
        assert!(!g.version_info.is_empty(), "{g:?}");
        assert!(g.error_state.is_none(), "{g:?}");
        assert!(g.last_updated.is_some(), "{g:?}");
        // The resource as received, typed: a status tool can decode it.
        let raw = g.xds_config.as_ref().context("xds_config")?;
        assert_eq!(raw.type_url, ty, "{g:?}");
    }
    let listener = find(&configs, LDS, target)
        .and_then(|g| g.xds_config.as_ref())
        .context("listener config")?;
    let listener =
        <envoy_types::pb::envoy::config::listener::v3::Listener as prost::Message>::decode(
            listener.value.as_slice(),
        )?;
    assert_eq!(listener.name, target);
    let acked_rds_version = find(&configs, RDS, "bad.test:8080")
        .context("bad.test route")?
        .version_info
        .clone();

    // Break one route configuration: NACKED naming the field; the rest stays ACKED.
    let mut xds = translate(&mesh_control_plane::load_dir(&dir)?.0);
    let rc = xds
        .routes
        .iter_mut()
        .find(|r| r.name == "bad.test:8080")
        .context("route config")?;
    rc.virtual_hosts[0].routes[0]
        .r#match
        .as_mut()
        .context("match")?
        .path_specifier = Some(PathSpecifier::SafeRegex(RegexMatcher {
        regex: "/items/(unclosed".into(),
        ..Default::default()
    }));
    cp.set_resources(xds);
    let configs = until(&mut client, Duration::from_secs(10), |c| {
        status_of(c, RDS, "bad.test:8080") == Some(ClientResourceStatus::Nacked)
    })
    .await?;
    let bad = find(&configs, RDS, "bad.test:8080").context("bad route")?;
    let details = &bad.error_state.as_ref().context("error_state")?.details;
    assert!(details.contains("safe_regex"), "{details}");
    assert!(details.contains("bad.test:8080"), "{details}");
    // The last accepted version (and its config) is kept alongside the NACK, and the error
    // names the rejected version and when it was rejected.
    assert_eq!(bad.version_info, acked_rds_version);
    assert!(bad.xds_config.is_some(), "{bad:?}");
    let failure = bad.error_state.as_ref().context("error_state")?;
    assert!(!failure.version_info.is_empty(), "{failure:?}");
    assert_ne!(failure.version_info, acked_rds_version, "{failure:?}");
    assert!(failure.last_update_attempt.is_some(), "{failure:?}");
    for (ty, name) in [(LDS, target), (RDS, target), (LDS, "bad.test:8080")] {
        assert_eq!(
            status_of(&configs, ty, name),
            Some(ClientResourceStatus::Acked),
            "{ty} {name}: {configs:#?}"
        );
    }

    // A name the control plane does not serve: REQUESTED until the 15 s does-not-exist timer.
    let started = tokio::time::Instant::now();
    let _missing = m.target("missing.test:8080");
    let configs = until(&mut client, Duration::from_secs(5), |c| {
        find(c, LDS, "missing.test:8080").is_some()
    })
    .await?;
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        status_of(&configs, LDS, "missing.test:8080"),
        Some(ClientResourceStatus::Requested)
    );

    // The streaming method answers each request on the stream.
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let requests =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    tx.send(ClientStatusRequest::default()).await?;
    let mut answers = tokio::time::timeout(
        Duration::from_secs(5),
        client.stream_client_status(requests),
    )
    .await??
    .into_inner();
    for _ in 0..2 {
        let answer = tokio::time::timeout(Duration::from_secs(5), answers.message())
            .await??
            .context("an answer per request")?;
        let g = &answer.config[0].generic_xds_configs;
        assert_eq!(status_of(g, LDS, target), Some(ClientResourceStatus::Acked));
        let _ = tx.send(ClientStatusRequest::default()).await;
    }
    Ok(())
}
