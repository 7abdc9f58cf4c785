//! Config directory: readiness, hot reload, and keeping the last good config on errors.

use std::path::PathBuf;
use std::time::Duration;

use mesh_control_plane::{ConfigError, ControlPlane, WatchOptions};

fn se(name: &str, port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{ name: {name} }}\nspec:\n  hosts: [{name}]\n  ports: [{{ number: {port}, name: grpc }}]\n  endpoints: [{{ address: 127.0.0.1 }}]\n"
    )
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mesh-cp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn bad_reload_keeps_previous_config_and_is_reported() {
    let dir = temp_dir("reload");
    std::fs::write(dir.join("bad.yaml"), "kind: [").unwrap();
    let cp = ControlPlane::builder()
        .config_dir(&dir)
        .listen_addr(([127, 0, 0, 1], 0).into())
        .admin_addr(([127, 0, 0, 1], 0).into())
        .watch_options(WatchOptions {
            debounce: Duration::from_millis(20),
            poll_interval: Duration::from_millis(200),
        })
        .start()
        .await
        .unwrap();
    let admin = cp.admin_addr().unwrap();
    assert!(!cp.is_ready());
    assert!(http_get(admin, "/ready").await.starts_with("HTTP/1.0 503"));
    assert!(http_get(admin, "/healthz")
        .await
        .starts_with("HTTP/1.0 200"));

    // Fix it: the watcher picks the change up.
    std::fs::write(dir.join("bad.yaml"), se("a", 1000)).unwrap();
    for _ in 0..200 {
        if cp.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cp.is_ready(), "hot reload did not happen");
    assert!(http_get(admin, "/ready").await.starts_with("HTTP/1.0 200"));
    assert!(cp.resources().listener("a:1000").is_some());

    // Break it again (semantic error): the previous config keeps serving.
    std::fs::write(
        dir.join("vs.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: v }\nspec:\n  hosts: [a]\n  http:\n  - route: [{ destination: { host: a, subset: missing } }]\n",
    )
    .unwrap();
    let err = cp.reload().await.unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { .. }));
    assert!(err.file().ends_with("vs.yaml"));
    assert_eq!(
        err.field(),
        Some("spec.http[0].route[0].destination.subset")
    );
    assert!(cp.is_ready());
    assert!(cp.resources().listener("a:1000").is_some());
    let debug = http_get(admin, "/debug/config").await;
    assert!(
        debug.contains("spec.http[0].route[0].destination.subset"),
        "{debug}"
    );
    assert!(debug.contains("vs.yaml"));

    // A good change replaces the config and clears the error.
    std::fs::remove_file(dir.join("vs.yaml")).unwrap();
    std::fs::write(dir.join("b.yaml"), se("b", 2000)).unwrap();
    cp.reload().await.unwrap();
    assert!(cp.config_status().last_error.is_none());
    assert!(cp.resources().listener("b:2000").is_some());

    cp.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
