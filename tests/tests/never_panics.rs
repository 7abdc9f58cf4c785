//! Never panics, across the control plane and the client (STYLE.md §14), as seeded mutation
//! tests on stable Rust (`mesh-core/tests/support/mutate.rs`; scale up with `MESH_FUZZ_ITERS`,
//! explore with `MESH_FUZZ_SEED`):
//!
//! mutated Istio YAML (control-plane/README.md's example, `examples/mesh/*.yaml`, the control
//! plane's test fixture, a fault / retries / timeout config) → `mesh_control_plane::load_str` → for every config that loads,
//! `translate` → every translated resource through mesh-core's `from_proto` → a snapshot per
//! listener (and alias) → random requests routed.
//!
//! Beyond "no panic", one invariant: **the control plane never emits a resource our own client
//! rejects for a config it accepted**, and never a listener whose routes, clusters or endpoints
//! it does not also serve (every snapshot builds from the translated set alone).
//!
//! The control plane's own exhaustive prefix / dropped-line test is in
//! `control-plane/tests/source.rs` (`truncated_and_mangled_inputs_never_panic`); this one adds
//! random mutations and the client side.

#[path = "../../mesh-core/tests/support/mod.rs"]
mod support;

use std::{collections::BTreeMap, sync::Arc};

use mesh_control_plane::{load_str, translate};
use mesh_core::{
    cache::ResourceCache,
    model::{Cluster, ClusterLoadAssignment, Listener, RouteConfiguration, XdsResource},
    snapshot::Snapshot,
};
use rand::Rng;
use support::{mutate, mutate::Mutator, probe};

/// Fault injection, retries and timeouts (translated into the fault filter and route policies),
/// which the other seeds do not use.
const POLICY: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: greeter }
spec:
  hosts: [greeter.default.svc.cluster.local]
  ports: [{ number: 50051, name: grpc, protocol: GRPC }, { number: 8080, name: http }]
  endpoints: [{ address: 127.0.0.1 }, { address: "::1", ports: { http: 8081 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: greeter }
spec:
  hosts: [greeter]
  http:
  - name: faulty
    match: [{ headers: { x-fault: { exact: "1" } } }, { uri: { regex: "/a.*" }, ignoreUriCase: true }]
    fault:
      delay: { fixedDelay: 1.5s, percentage: { value: 10.5 } }
      abort: { grpcStatus: UNAVAILABLE, percentage: { value: 100 } }
    route: [{ destination: { host: greeter } }]
  - name: resilient
    match: [{ queryParams: { debug: { prefix: "y" } }, uri: { exact: /x } }]
    retries: { attempts: 3, retryOn: "unavailable,cancelled", perTryTimeout: 250ms }
    timeout: 2s
    route:
    - { destination: { host: greeter, port: { number: 8080 } }, weight: 60 }
    - { destination: { host: greeter }, weight: 40 }
  - name: abort-http
    fault: { abort: { httpStatus: 503, percentage: { value: 0.5 } } }
    route: [{ destination: { host: greeter } }]
"#;

/// The seed configs: `(name, yaml)`.
fn seeds() -> Vec<(&'static str, String)> {
    let readme = include_str!("../../control-plane/README.md");
    let start = readme.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
    let len = readme[start..].find("```").expect("end of block");
    let examples = format!(
        "{}\n---\n{}",
        include_str!("../../examples/mesh/reviews.yaml"),
        include_str!("../../examples/mesh/reviews-routes.yaml")
    );
    let seeds = vec![
        (
            "control-plane/README.md",
            readme[start..start + len].to_owned(),
        ),
        ("examples/mesh", examples),
        (
            "control-plane/tests/fixtures/reviews.yaml",
            include_str!("../../control-plane/tests/fixtures/reviews.yaml").to_owned(),
        ),
        ("policy", POLICY.to_owned()),
    ];
    for (name, text) in &seeds {
        let (config, _) = load_str(name, text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!translate(&config).listeners.is_empty(), "{name}");
    }
    seeds
}

/// Splits a multi-document YAML text into its documents.
fn documents(text: &str) -> Vec<&str> {
    text.split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .collect()
}

/// One mutation of a seed: text-level, tree-level on one document, or a document-level edit
/// (drop one, duplicate one, borrow one from another seed).
fn mutate_config(m: &mut Mutator, text: &str, other: &str) -> String {
    let mut docs: Vec<String> = documents(text).into_iter().map(str::to_owned).collect();
    match m.rng().random_range(0..10) {
        0..=3 => return m.text(text, other),
        4..=7 => {
            let i = m.index(docs.len());
            let tree: serde_json::Value =
                serde_yaml_ng::from_str(&docs[i]).expect("seed documents parse");
            let others = documents(other);
            let other_tree: serde_json::Value =
                serde_yaml_ng::from_str(others[m.index(others.len())]).expect("seeds parse");
            docs[i] = serde_yaml_ng::to_string(&m.json(&tree, &other_tree)).expect("serializes");
        }
        8 => {
            let i = m.index(docs.len());
            if m.rng().random_bool(0.5) {
                docs.remove(i);
            } else {
                docs.insert(i, docs[i].clone());
            }
        }
        _ => {
            let others = documents(other);
            let d = others[m.index(others.len())].to_owned();
            let at = m.rng().random_range(0..=docs.len());
            docs.insert(at, d);
        }
    }
    docs.join("\n---\n")
}

#[derive(Debug, Default)]
struct Counts {
    load_errors: usize,
    loaded: usize,
    resources: usize,
    snapshots: usize,
    routed: usize,
    refused: usize,
}

/// Converts one translated resource with mesh-core's validator; a rejection is a control-plane
/// bug (it accepted the config), reported with the input that caused it.
fn convert<R: XdsResource>(proto: R::Proto, yaml: &str) -> R
where
    R::Proto: std::fmt::Debug,
{
    let shown = format!("{proto:?}");
    R::from_proto(proto).unwrap_or_else(|e| {
        panic!("the control plane emitted a resource mesh-core rejects: {e}\n{shown}\n--- from config:\n{yaml}")
    })
}

/// Translates a loaded config, validates everything with the client's model, builds every
/// target's snapshot from that set alone and routes random requests through it.
fn check_translation(
    config: &mesh_control_plane::MeshConfig,
    yaml: &str,
    m: &mut Mutator,
    counts: &mut Counts,
) {
    let xds = translate(config);
    let cache = ResourceCache::new();
    for p in &xds.routes {
        let r: RouteConfiguration = convert(p.clone(), yaml);
        cache.accept(&p.name, r, "1");
    }
    for p in &xds.clusters {
        let c: Cluster = convert(p.clone(), yaml);
        cache.accept(&p.name, c, "1");
    }
    for p in &xds.endpoints {
        let e: ClusterLoadAssignment = convert(p.clone(), yaml);
        cache.accept(&p.cluster_name, e, "1");
    }
    let names = xds
        .listeners
        .iter()
        .map(|l| l.name.clone())
        .chain(xds.listener_aliases.keys().cloned());
    let mut listeners = BTreeMap::new();
    for name in names {
        let proto = xds
            .listener(&name)
            .unwrap_or_else(|| panic!("alias `{name}` names no listener\n{yaml}"));
        let l: Listener = convert(proto, yaml);
        listeners.insert(name, Arc::new(l));
    }
    counts.resources +=
        listeners.len() + xds.routes.len() + xds.clusters.len() + xds.endpoints.len();
    for (name, listener) in listeners {
        let snapshot = Snapshot::build(name.as_str().into(), listener, &cache, None)
            .unwrap_or_else(|missing| {
                panic!("listener `{name}`: the control plane does not serve {missing:?}\n{yaml}")
            });
        counts.snapshots += 1;
        let mut r = probe::Routed::default();
        for _ in 0..3 {
            probe::route_one(&snapshot, m, &mut r);
        }
        counts.routed += r.routed;
        counts.refused += r.refused;
    }
}

#[test]
fn mutated_control_plane_configs_never_panic_and_translate_to_valid_xds() {
    let seeds = seeds();
    let mut m = Mutator::new(5);
    let mut counts = Counts::default();
    let iterations = mutate::iterations(1_500);
    for i in 0..iterations {
        let (name, text) = &seeds[m.index(seeds.len())];
        let (_, other) = &seeds[m.index(seeds.len())];
        let yaml = mutate_config(&mut m, text, other);
        match load_str(name, &yaml) {
            Ok((config, _warnings)) => {
                counts.loaded += 1;
                check_translation(&config, &yaml, &mut m, &mut counts);
            }
            Err(e) => {
                assert!(
                    e.to_string().starts_with(name),
                    "iteration {i}: error does not name the file: {e}"
                );
                counts.load_errors += 1;
            }
        }
    }
    eprintln!("{iterations} mutated configs: {counts:?}");
    assert!(counts.loaded > 0 && counts.load_errors > 0, "{counts:?}");
    assert!(counts.snapshots > 0 && counts.routed > 0, "{counts:?}");
}
