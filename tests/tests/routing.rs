//! End to end over real sockets: control plane (Istio YAML) → ADS → mesh client → backends.
//! Weighted split, header canary, prefix and regex routes, and the no-route error.

use std::collections::BTreeMap;

use anyhow::Result;
use mesh_tower::MeshErrorKind;
use tests::{client, control_plane, mesh, ready, service_yaml, split, temp_dir, write, Backend};

const HOST: &str = "svc.test";
const TARGET: &str = "svc.test:8080";
const URI: &str = "http://svc.test:8080";

const ROUTES: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: svc, namespace: test }
spec:
  hosts: [svc.test]
  http:
    - name: testers
      match: [{ headers: { end-user: { exact: experimental } } }]
      route: [{ destination: { host: svc.test, subset: v2 } }]
    - name: items-by-id
      match: [{ uri: { regex: "/items/[0-9]+" } }]
      route: [{ destination: { host: svc.test, subset: v2 } }]
    - name: api
      match: [{ uri: { prefix: /api/ } }]
      route: [{ destination: { host: svc.test, subset: v1 } }]
    - name: split
      match: [{ uri: { prefix: / } }]
      route:
        - { destination: { host: svc.test, subset: v1 }, weight: 90 }
        - { destination: { host: svc.test, subset: v2 }, weight: 10 }
"#;

async fn setup(
    routes: &str,
) -> Result<(
    Backend,
    Backend,
    mesh_control_plane::ControlPlaneHandle,
    tests::Client,
)> {
    let (v1, v2) = (Backend::start("v1").await?, Backend::start("v2").await?);
    let dir = temp_dir("routing");
    write(&dir, "svc.yaml", &service_yaml(HOST, 8080, &[&v1, &v2]));
    write(&dir, "routes.yaml", routes);
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "routing-client")?;
    ready(&m, TARGET).await?;
    Ok((v1, v2, cp, client(&m)))
}

#[tokio::test]
async fn weighted_split_within_binomial_tolerance() -> Result<()> {
    let (_v1, _v2, _cp, mut c) = setup(ROUTES).await?;
    let n = 2000;
    let counts = split(&mut c, &format!("{URI}/reviews"), &[], n).await?;
    let v2 = counts.get("v2").copied().unwrap_or(0);
    // v2 ~ Binomial(2000, 0.1): mean 200, sd 13.4. Accepting 130..=270 is ±5.2 sd, a false
    // failure about once in ten million runs.
    assert!(
        (130..=270).contains(&v2),
        "v2 served {v2} of {n}: {counts:?}"
    );
    assert_eq!(counts.values().sum::<usize>(), n);
    Ok(())
}

#[tokio::test]
async fn header_canary_goes_to_v2_only() -> Result<()> {
    let (_v1, _v2, _cp, mut c) = setup(ROUTES).await?;
    let counts = split(
        &mut c,
        &format!("{URI}/reviews"),
        &[("end-user", "experimental")],
        100,
    )
    .await?;
    assert_eq!(counts, BTreeMap::from([("v2".to_owned(), 100)]));
    // A different value does not match the canary route and falls through to the split.
    let counts = split(
        &mut c,
        &format!("{URI}/reviews"),
        &[("end-user", "other")],
        200,
    )
    .await?;
    assert!(counts.get("v1").copied().unwrap_or(0) > 150, "{counts:?}");
    Ok(())
}

#[tokio::test]
async fn prefix_and_regex_routes() -> Result<()> {
    let (_v1, _v2, _cp, mut c) = setup(ROUTES).await?;
    assert_eq!(
        split(&mut c, &format!("{URI}/items/42"), &[], 50).await?,
        BTreeMap::from([("v2".to_owned(), 50)])
    );
    assert_eq!(
        split(&mut c, &format!("{URI}/api/x"), &[], 50).await?,
        BTreeMap::from([("v1".to_owned(), 50)])
    );
    // The regex is a full match: a trailing segment falls through to the 90/10 split.
    let counts = split(&mut c, &format!("{URI}/items/42/reviews"), &[], 200).await?;
    assert!(counts.get("v1").copied().unwrap_or(0) > 150, "{counts:?}");
    Ok(())
}

#[tokio::test]
async fn no_route_is_a_typed_error_naming_host_and_path() -> Result<()> {
    let only_api = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: svc, namespace: test }
spec:
  hosts: [svc.test]
  http:
    - name: api
      match: [{ uri: { prefix: /api/ } }]
      route: [{ destination: { host: svc.test, subset: v1 } }]
"#;
    let (_v1, _v2, _cp, mut c) = setup(only_api).await?;
    assert_eq!(
        tests::get(&mut c, &format!("{URI}/api/ok"), &[]).await?,
        "v1"
    );
    let err = tests::get(&mut c, &format!("{URI}/elsewhere"), &[])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), MeshErrorKind::NoRoute);
    assert_eq!(err.authority(), Some(TARGET));
    assert!(err.to_string().contains("/elsewhere"), "{err}");
    Ok(())
}
