//! The Istio dialect with no control-plane process: the control-plane crate used as a library
//! translates the YAML, the static source loads the protos into the mesh's cache, and requests
//! route over real sockets.

use anyhow::Result;
use mesh_core::{
    cache::ResourceCache,
    mesh::Mesh,
    source::{apply, DecodedResource},
};
use tests::{client, get, service_yaml, split, Backend};

#[tokio::test]
async fn istio_yaml_routes_in_process() -> Result<()> {
    let (v1, v2) = (Backend::start("v1").await?, Backend::start("v2").await?);
    let yaml = format!(
        "{}---\n{}",
        service_yaml("svc.test", 8080, &[&v1, &v2]),
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: svc, namespace: test }
spec:
  hosts: [svc.test]
  http:
    - match: [{ headers: { end-user: { exact: jason } } }]
      route: [{ destination: { host: svc.test, subset: v2 } }]
    - route: [{ destination: { host: svc.test, subset: v1 } }]
"#
    );
    let (config, warnings) = mesh_control_plane::load_str("inline.yaml", &yaml)?;
    assert!(warnings.is_empty(), "{warnings:?}");
    let xds = mesh_control_plane::translate(&config);

    let cache = ResourceCache::new();
    let resources = (xds.listeners.iter().cloned().map(DecodedResource::from))
        .chain(xds.routes.iter().cloned().map(DecodedResource::from))
        .chain(xds.clusters.iter().cloned().map(DecodedResource::from))
        .chain(xds.endpoints.iter().cloned().map(DecodedResource::from))
        .collect();
    let errors = apply(&cache, resources, "in-process");
    assert!(errors.is_empty(), "{errors:?}");

    let mesh = Mesh::from_cache(cache);
    let mut c = client(&mesh);
    assert_eq!(
        get(&mut c, "http://svc.test:8080/", &[("end-user", "jason")]).await?,
        "v2"
    );
    let counts = split(&mut c, "http://svc.test:8080/", &[], 50).await?;
    assert_eq!(counts.get("v1"), Some(&50), "{counts:?}");
    Ok(())
}
