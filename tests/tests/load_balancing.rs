//! Load balancing end to end: real backends on loopback, the mesh layer over a pooled
//! HTTP/1.1 client, resources in the mesh's cache (as a static file or the in-process
//! control plane would supply them).
//!
//! - RING_HASH with a header hash policy: every request of one user lands on one backend,
//!   and different users spread over the backends.
//! - Priority failover: with half of P0 unhealthy, P0 keeps 70 % of requests (Envoy's
//!   overprovisioning factor 1.4), P1 takes the rest; with all of P0 unhealthy, P1 takes all.
//! - The same stickiness configured the Istio way: a DestinationRule `consistentHash` (maglev)
//!   through the real control plane over ADS.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::Result;
use mesh_core::{cache::ResourceCache, mesh::Mesh, model::*};
use tests::{
    client, control_plane, eventually, mesh, ready, service_yaml, split, temp_dir, write, Backend,
};

const TARGET: &str = "svc.test:8080";

fn route_config(hash_policy: Vec<HashPolicy>) -> RouteConfiguration {
    RouteConfiguration {
        name: "rc".into(),
        virtual_hosts: Arc::new([VirtualHost {
            name: "vh".into(),
            domains: Arc::new(["*".into()]),
            routes: Arc::new([Route {
                name: "main".into(),
                matcher: RouteMatch::prefix("/"),
                action: RouteAction::Cluster("c".into()),
                policy: RoutePolicy::default(),
                hash_policy: hash_policy.into(),
            }]),
            retry_policy: None,
        }]),
    }
}

fn endpoints(priorities: &[&[(&Backend, HealthStatus)]]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: "c".into(),
        localities: priorities
            .iter()
            .enumerate()
            .map(|(p, eps)| LocalityEndpoints {
                locality: Locality {
                    zone: format!("zone-{p}").into(),
                    ..Locality::default()
                },
                weight: Some(1),
                priority: p as u32,
                endpoints: eps
                    .iter()
                    .map(|(b, health)| Endpoint {
                        health: *health,
                        ..Endpoint::healthy(b.addr())
                    })
                    .collect(),
            })
            .collect(),
        overprovisioning_factor: ClusterLoadAssignment::DEFAULT_OVERPROVISIONING_FACTOR,
        drop_overloads: Default::default(),
    }
}

fn mesh_with(policy: LbPolicy, hash: Vec<HashPolicy>, cla: ClusterLoadAssignment) -> Mesh {
    let cache = ResourceCache::new();
    cache.accept(
        TARGET,
        Listener {
            name: TARGET.into(),
            route_source: RouteSource::Inline(Arc::new(route_config(hash))),
            http_filters: Arc::new([]),
            stream_idle_timeout: None,
        },
        "1",
    );
    cache.accept("c", Cluster::eds("c", policy), "1");
    cache.accept("c", cla, "1");
    Mesh::from_cache(cache)
}

async fn backends(n: usize) -> Result<Vec<Backend>> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(Backend::start(&format!("b{i}")).await?);
    }
    Ok(out)
}

#[tokio::test]
async fn header_hash_keeps_each_user_on_one_backend() -> Result<()> {
    let bs = backends(4).await?;
    let healthy: Vec<_> = bs.iter().map(|b| (b, HealthStatus::Healthy)).collect();
    let hash = vec![HashPolicy {
        source: HashSource::Header {
            name: "x-user".into(),
            rewrite: None,
        },
        terminal: false,
    }];
    let m = mesh_with(LbPolicy::ring_hash(), hash, endpoints(&[&healthy]));
    ready(&m, TARGET).await?;
    let mut c = client(&m);
    let uri = format!("http://{TARGET}/profile");
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for user in 0..20 {
        let user = format!("user-{user}");
        let got = split(&mut c, &uri, &[("x-user", &user)], 5).await?;
        assert_eq!(got.len(), 1, "{user} spread over {got:?}");
        owner.insert(user, got.into_keys().next().unwrap_or_default());
    }
    // Backend ports differ per run, and so do the ring points: 20 users all landing on one of
    // 4 equal backends has probability 4 × 4^-20 ≈ 4e-12.
    let used: std::collections::BTreeSet<_> = owner.values().collect();
    assert!(used.len() >= 2, "every user on {used:?}");
    // Without the header a request gets a random hash: it reaches several backends.
    let random = split(&mut c, &uri, &[], 40).await?;
    // P(all 40 on one of 4 equal backends) = 4 × 4^-40: not a flake.
    assert!(random.len() >= 2, "{random:?}");
    Ok(())
}

#[tokio::test]
async fn priority_failover_with_overprovisioning() -> Result<()> {
    let bs = backends(3).await?;
    let (h, u) = (HealthStatus::Healthy, HealthStatus::Unhealthy);
    // P0: b0 healthy, b1 unhealthy (50 % → 70 % of requests); P1: b2.
    let m = mesh_with(
        LbPolicy::RoundRobin,
        vec![],
        endpoints(&[&[(&bs[0], h), (&bs[1], u)], &[(&bs[2], h)]]),
    );
    ready(&m, TARGET).await?;
    let mut c = client(&m);
    let uri = format!("http://{TARGET}/");
    let n = 1_000;
    let got = split(&mut c, &uri, &[], n).await?;
    assert!(!got.contains_key("b1"), "unhealthy backend used: {got:?}");
    let p0 = got.get("b0").copied().unwrap_or(0);
    // Binomial(1000, 0.7): σ ≈ 14.5; ±110 is > 7σ.
    assert!((590..=810).contains(&p0), "P0 got {p0} of {n}: {got:?}");

    // All of P0 unhealthy: P1 takes everything once the update is applied.
    m.cache().accept(
        "c",
        endpoints(&[&[(&bs[0], u), (&bs[1], u)], &[(&bs[2], h)]]),
        "2",
    );
    let load = || {
        m.lookup(TARGET).and_then(|t| {
            t.snapshot()
                .as_ref()
                .map(|s| s.clusters()["c"].balancer().priority_load())
        })
    };
    assert_eq!(load(), Some(vec![70, 30]));
    eventually(Duration::from_secs(5), || {
        let l = load();
        async move { l == Some(vec![0, 100]) }
    })
    .await?;
    let got = split(&mut c, &uri, &[], 50).await?;
    assert_eq!(got.get("b2"), Some(&50), "{got:?}");
    Ok(())
}

#[tokio::test]
async fn destination_rule_consistent_hash_over_ads() -> Result<()> {
    let bs = backends(3).await?;
    let host = "sticky.test";
    let dir = temp_dir("lb");
    let refs: Vec<&Backend> = bs.iter().collect();
    // The helper's DestinationRule (subsets) plus the load balancer on the rule.
    let yaml = service_yaml(host, 8080, &refs).replace(
        "spec:\n  host: sticky.test\n",
        "spec:\n  host: sticky.test\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: { httpHeaderName: x-user, maglev: { tableSize: 1009 } }\n",
    );
    assert!(yaml.contains("consistentHash"), "{yaml}");
    write(&dir, "svc.yaml", &yaml);
    let cp = control_plane(&dir, "127.0.0.1:0").await?;
    let m = mesh(&cp, "lb-client")?;
    let target = format!("{host}:8080");
    ready(&m, &target).await?;
    let mut c = client(&m);
    let uri = format!("http://{target}/");
    let mut used = std::collections::BTreeSet::new();
    for user in 0..12 {
        let user = format!("user-{user}");
        let got = split(&mut c, &uri, &[("x-user", &user)], 4).await?;
        assert_eq!(got.len(), 1, "{user} spread over {got:?}");
        used.extend(got.into_keys());
    }
    // Backend ports differ per run, and so does the table: 12 users all landing on one of 3
    // equal backends has probability 3 × 3^-12 ≈ 6e-6.
    assert!(used.len() >= 2, "{used:?}");
    Ok(())
}
