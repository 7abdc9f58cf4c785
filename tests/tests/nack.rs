//! Invalid xDS served by the real control plane: the client NACKs exactly the bad resource,
//! naming its field; the control plane records the NACK; everything valid still applies and
//! traffic keeps flowing — including on the last good version of a resource that turns bad.

use std::time::Duration;

use anyhow::{Context, Result};
use envoy_types::pb::envoy::{
    config::route::v3::{
        route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier,
    },
    r#type::matcher::v3::RegexMatcher,
};
use mesh_control_plane::{translate, ResourceType, XdsResources};
use mesh_core::mesh::TargetError;
use tests::{client, control_plane, get, mesh, ready, service_yaml, temp_dir, write, Backend};

/// Sets every weighted-cluster weight of the route configuration `name` to 0.
fn zero_weights(xds: &mut XdsResources, name: &str) -> Result<()> {
    let rc = xds
        .routes
        .iter_mut()
        .find(|r| r.name == name)
        .context("route config")?;
    let route = rc.virtual_hosts[0].routes.first_mut().context("a route")?;
    let Some(Action::Route(action)) = &mut route.action else {
        anyhow::bail!("not a route action")
    };
    let Some(ClusterSpecifier::WeightedClusters(w)) = &mut action.cluster_specifier else {
        anyhow::bail!("not weighted")
    };
    for c in &mut w.clusters {
        c.weight = Some(envoy_types::pb::google::protobuf::UInt32Value { value: 0 });
    }
    Ok(())
}

/// Replaces the first route's path match with a regex that does not compile.
fn bad_regex(xds: &mut XdsResources, name: &str) -> Result<()> {
    let rc = xds
        .routes
        .iter_mut()
        .find(|r| r.name == name)
        .context("route config")?;
    let m = rc.virtual_hosts[0].routes[0]
        .r#match
        .as_mut()
        .context("match")?;
    m.path_specifier = Some(PathSpecifier::SafeRegex(RegexMatcher {
        regex: "/items/(unclosed".into(),
        ..Default::default()
    }));
    Ok(())
}

fn split_vs(host: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: {name}, namespace: test }}\n\
         spec:\n  hosts: [{host}]\n  http:\n    - name: split\n      route:\n        \
         - {{ destination: {{ host: {host}, subset: v1 }}, weight: 50 }}\n        \
         - {{ destination: {{ host: {host}, subset: v2 }}, weight: 50 }}\n",
        name = host.replace('.', "-")
    )
}

#[tokio::test]
async fn invalid_resources_are_nacked_by_name_while_the_rest_applies() -> Result<()> {
    let (v1, v2) = (Backend::start("v1").await?, Backend::start("v2").await?);
    let dir = temp_dir("nack");
    for host in ["good.test", "zero.test", "regex.test"] {
        write(
            &dir,
            &format!("{host}.yaml"),
            &format!(
                "{}---\n{}",
                service_yaml(host, 8080, &[&v1, &v2]),
                split_vs(host)
            ),
        );
    }
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "nack-client")?;
    ready(&m, "good.test:8080").await?;
    let mut c = client(&m);
    get(&mut c, "http://good.test:8080/", &[]).await?;

    // Serve the same config with two broken route configurations.
    let mut xds = translate(&mesh_control_plane::load_dir(&dir)?.0);
    zero_weights(&mut xds, "zero.test:8080")?;
    bad_regex(&mut xds, "regex.test:8080")?;
    cp.set_resources(xds);

    for (target, field) in [
        ("zero.test:8080", "weighted_clusters"),
        ("regex.test:8080", "safe_regex"),
    ] {
        let err = tokio::time::timeout(Duration::from_secs(10), m.target(target).ready())
            .await?
            .unwrap_err();
        let TargetError::Dependency {
            resource_type, why, ..
        } = &err
        else {
            panic!("{target}: {err}")
        };
        assert_eq!(
            *resource_type,
            mesh_core::model::ResourceType::RouteConfiguration
        );
        assert!(why.contains(field), "{target}: {err}");
    }
    // The valid sibling still routes.
    for _ in 0..20 {
        get(&mut c, "http://good.test:8080/", &[]).await?;
    }
    // The control plane recorded the client's NACK, naming the resource and field.
    let status = cp.client_status();
    let nack = status
        .iter()
        .filter(|s| s.node.id == "nack-client")
        .filter_map(|s| s.of(ResourceType::Route)?.nack.clone())
        .next_back()
        .context("a NACK recorded")?;
    assert!(
        nack.message.contains("regex.test:8080") || nack.message.contains("zero.test:8080"),
        "{}",
        nack.message
    );
    Ok(())
}

#[tokio::test]
async fn a_resource_turning_bad_keeps_its_last_good_version() -> Result<()> {
    let (v1, v2) = (Backend::start("v1").await?, Backend::start("v2").await?);
    let dir = temp_dir("lkg");
    write(
        &dir,
        "svc.yaml",
        &service_yaml("svc.test", 8080, &[&v1, &v2]),
    );
    write(&dir, "vs.yaml", &split_vs("svc.test"));
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "lkg-client")?;
    ready(&m, "svc.test:8080").await?;
    let mut c = client(&m);

    let mut xds = translate(&mesh_control_plane::load_dir(&dir)?.0);
    zero_weights(&mut xds, "svc.test:8080")?;
    cp.set_resources(xds);
    tests::eventually(Duration::from_secs(10), || async {
        let entry = m
            .cache()
            .entry::<mesh_core::model::RouteConfiguration>("svc.test:8080");
        matches!(
            entry.map(|e| e.status),
            Some(mesh_core::cache::ResourceStatus::Nacked(_))
        )
    })
    .await?;
    // Still served from the last good version: both subsets keep getting traffic.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..100 {
        seen.insert(get(&mut c, "http://svc.test:8080/", &[]).await?);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    Ok(())
}
