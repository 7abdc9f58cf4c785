//! Config changes reach connected clients; the control plane can stop and come back under
//! steady load without a single failed request.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Result;
use tests::{
    client, control_plane, eventually, get, mesh, ready, service_yaml, temp_dir, write, Backend,
};

const TARGET: &str = "svc.test:8080";
const URI: &str = "http://svc.test:8080/";

fn routes(v1: u32, v2: u32) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{ name: svc, namespace: test }}
spec:
  hosts: [svc.test]
  http:
    - name: split
      route:
        - {{ destination: {{ host: svc.test, subset: v1 }}, weight: {v1} }}
        - {{ destination: {{ host: svc.test, subset: v2 }}, weight: {v2} }}
"#
    )
}

#[tokio::test]
async fn a_config_change_reaches_a_connected_client() -> Result<()> {
    let (v1, v2) = (Backend::start("v1").await?, Backend::start("v2").await?);
    let dir = temp_dir("change");
    write(
        &dir,
        "svc.yaml",
        &service_yaml("svc.test", 8080, &[&v1, &v2]),
    );
    write(&dir, "routes.yaml", &routes(100, 0));
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "change-client")?;
    ready(&m, TARGET).await?;
    let mut c = client(&m);
    for _ in 0..20 {
        assert_eq!(get(&mut c, URI, &[]).await?, "v1");
    }

    write(&dir, "routes.yaml", &routes(0, 100));
    let mut watch = m.target(TARGET).watch();
    tokio::time::timeout(Duration::from_secs(10), watch.changed()).await??;
    for _ in 0..20 {
        assert_eq!(
            get(&mut c, URI, &[]).await?,
            "v2",
            "after the change every request goes to v2"
        );
    }
    Ok(())
}

#[tokio::test]
async fn control_plane_restart_under_load_loses_no_request() -> Result<()> {
    let (v1, v2) = (Backend::start("v1").await?, Backend::start("v2").await?);
    let dir = temp_dir("restart");
    write(
        &dir,
        "svc.yaml",
        &service_yaml("svc.test", 8080, &[&v1, &v2]),
    );
    write(&dir, "routes.yaml", &routes(50, 50));
    // Find a free port, then pin the control plane to it so the client can reconnect to the
    // same address after the restart.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let ads = format!("127.0.0.1:{port}");
    let cp = control_plane(&dir, &ads).await?;
    let m = mesh(&cp, "restart-client")?;
    ready(&m, TARGET).await?;

    // Steady load: 4 workers sending back to back until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (mut c, stop, ok, failed) = (client(&m), stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match get(&mut c, URI, &[]).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("request failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let served_before = |ok: &AtomicU64| ok.load(Ordering::Relaxed);
    eventually(Duration::from_secs(5), || async {
        served_before(&ok) > 200
    })
    .await?;

    // Control plane down: the client keeps routing on its last good config.
    cp.shutdown().await;
    let at_stop = ok.load(Ordering::Relaxed);
    eventually(Duration::from_secs(5), || async {
        ok.load(Ordering::Relaxed) > at_stop + 500
    })
    .await?;

    // Back up on the same port, with a changed config: the client re-syncs and follows it.
    write(&dir, "routes.yaml", &routes(0, 100));
    let cp = control_plane(&dir, &ads).await?;
    let v2_before = v2.served();
    let v1_now = || v1.served();
    eventually(Duration::from_secs(20), || async {
        // Re-synced once v1 stops receiving traffic while v2 keeps serving.
        let a = v1_now();
        tokio::time::sleep(Duration::from_millis(200)).await;
        v1_now() == a && v2.served() > v2_before
    })
    .await?;
    assert!(
        cp.client_status()
            .iter()
            .any(|s| s.node.id == "restart-client" && s.connected),
        "client reconnected"
    );

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed across the restart"
    );
    assert!(ok.load(Ordering::Relaxed) > 1000);
    Ok(())
}
