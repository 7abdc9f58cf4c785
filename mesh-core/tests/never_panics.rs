//! Never panics, whatever arrives (STYLE.md §14: a decoder comes with a fuzz target, decode →
//! `TryFrom` never panics). The toolchain is stable, so instead of libFuzzer these are seeded,
//! deterministic mutation tests over real inputs (see `support/mutate.rs`; scale up with
//! `MESH_FUZZ_ITERS`, explore with `MESH_FUZZ_SEED`):
//!
//! - xDS resources as the ADS client receives them: every Listener / RouteConfiguration /
//!   Cluster / ClusterLoadAssignment of `shared/fixtures/xds`, encoded with prost, mutated as
//!   bytes, then `Any` → (`Resource` wrapper) → proto → `XdsResource::from_proto`, the steps of
//!   `xds/resources.rs`; plus pure random bytes;
//! - the static source: the fixture texts, mutated, through `decode_resources` and `apply`, then
//!   snapshots built from what loaded and random requests routed through them;
//! - the bootstrap: the INTEROP.md example and Istio's proxyless bootstrap, mutated, through
//!   `Bootstrap::from_json`; every error names a field or is a JSON syntax error.
//!
//! Each test counts what was accepted and what was rejected and asserts both happened, so none
//! passes by never reaching the validator (or never reaching a rejection).

mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use envoy_types::pb::{envoy::service::discovery::v3::Resource, google::protobuf::Any};
use mesh_core::{
    bootstrap::{Bootstrap, BootstrapError},
    cache::ResourceCache,
    model::{
        Cluster, ClusterLoadAssignment, Listener, ModelError, ResourceType, RouteConfiguration,
    },
    source::{self, DecodeOptions, DecodedResource, Format},
};
use prost::Message;
use rand::Rng;
use support::{mutate, mutate::Mutator, probe};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/xds");
const BOOTSTRAP_FIXTURE: &str = "istio/grpcgen__xds_bootstrap.json";
const WRAPPER_URL: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";

/// The fixture files holding xDS resources: `(folder/file, path, text)`.
fn fixture_texts() -> Vec<(String, PathBuf, String)> {
    let mut out = Vec::new();
    for dir in ["envoy-gateway", "istio"] {
        let entries = std::fs::read_dir(Path::new(FIXTURES).join(dir))
            .unwrap_or_else(|e| panic!("{FIXTURES}/{dir}: {e}"));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let key = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
            if Format::from_path(&path).is_none() || key == BOOTSTRAP_FIXTURE {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{key}: {e}"));
            out.push((key, path, text));
        }
    }
    out.sort();
    assert!(out.len() >= 15, "too few fixture files: {}", out.len());
    out
}

fn options_for(path: &Path) -> DecodeOptions {
    DecodeOptions {
        default_type: source::default_type_for(path),
        ..DecodeOptions::default()
    }
}

/// Client-side resources the fixtures lack (their listeners are all server-side, so a mutated
/// fixture listener never gets past `api_listener`): an API listener with RDS and one with an
/// inline route table, routes with every matcher kind, static and EDS clusters.
const CLIENT_SEED: &str = r#"
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: "reviews:9080"
  apiListener:
    apiListener:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      rds: { routeConfigName: reviews-routes, configSource: { ads: {} } }
      httpFilters:
      - name: envoy.filters.http.fault
        typedConfig:
          "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
          delay: { fixedDelay: 0.2s, percentage: { numerator: 5, denominator: HUNDRED } }
          abort: { headerAbort: {}, percentage: { numerator: 250000, denominator: MILLION } }
          maxActiveFaults: 7
          upstreamCluster: v1
          downstreamNodes: [caller]
          headers: [{ name: x-chaos, presentMatch: true }]
      - name: envoy.filters.http.router
        typedConfig: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: "inline:80"
  apiListener:
    apiListener:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      routeConfig:
        name: inline
        virtualHosts:
        - name: all
          domains: ["*"]
          routes: [{ match: { prefix: "" }, route: { cluster: v1 } }]
      httpFilters:
      - name: router
        typedConfig: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
- "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  name: reviews-routes
  virtualHosts:
  - name: reviews
    domains: ["reviews", "reviews:9080", "*.reviews.svc", "reviews.*"]
    routes:
    - name: testers
      match:
        prefix: /api
        caseSensitive: false
        headers:
        - { name: end-user, stringMatch: { exact: jason, ignoreCase: true } }
        - { name: x-range, rangeMatch: { start: -10, end: 10 } }
        - { name: x-present, presentMatch: true, invertMatch: true }
        - { name: x-re, safeRegexMatch: { regex: "a+b*" } }
        queryParameters: [{ name: q, stringMatch: { suffix: z } }]
      route: { cluster: v2 }
    - name: exact
      match: { path: /grpc.Svc/Method, runtimeFraction: { defaultValue: { numerator: 50, denominator: TEN_THOUSAND } } }
      route: { cluster: v1 }
    - name: regex
      match: { safeRegex: { regex: "/r/[0-9]+" } }
      route: { cluster: v1, timeout: 1.5s }
    - name: redirect
      match: { prefix: /old }
      redirect: { pathRedirect: /new }
    - name: split
      match: { prefix: / }
      typedPerFilterConfig:
        envoy.filters.http.fault:
          "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
          config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
            abort: { grpcStatus: 14, percentage: { numerator: 10, denominator: TEN_THOUSAND } }
      route:
        weightedClusters:
          clusters:
          - name: v1
            weight: 90
            typedPerFilterConfig:
              envoy.filters.http.fault:
                "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                abort: { httpStatus: 503, percentage: { numerator: 1, denominator: HUNDRED } }
          - { name: v2, weight: 10 }
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: v1
  type: EDS
  connectTimeout: 0.25s
  lbPolicy: LEAST_REQUEST
  leastRequestLbConfig: { choiceCount: 3 }
  edsClusterConfig: { edsConfig: { ads: {} }, serviceName: v1-eds }
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: v2
  type: STATIC
  loadAssignment:
    clusterName: v2
    endpoints:
    - lbEndpoints:
      - endpoint: { address: { socketAddress: { address: 127.0.0.2, portValue: 9080 } } }
- "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
  clusterName: v1-eds
  endpoints:
  - loadBalancingWeight: 3
    locality: { region: r, zone: z }
    lbEndpoints:
    - endpoint: { address: { socketAddress: { address: 127.0.0.1, portValue: 9080 } } }
      loadBalancingWeight: 2
    - endpoint: { address: { socketAddress: { address: "::1", portValue: 9081 } } }
      healthStatus: DRAINING
  - loadBalancingWeight: 1
    priority: 1
    lbEndpoints:
    - endpoint: { address: { socketAddress: { address: 10.0.0.1, portValue: 80 } } }
"#;

/// How many times each [`CLIENT_SEED`] resource appears in the byte corpus.
const CLIENT_WEIGHT: usize = 20;

/// The seed texts: every fixture file, plus [`CLIENT_SEED`].
fn seed_texts() -> Vec<(String, PathBuf, String)> {
    let mut seeds = fixture_texts();
    seeds.push((
        "client-seed".into(),
        PathBuf::from("client-seed.yaml"),
        CLIENT_SEED.to_owned(),
    ));
    seeds
}

/// Every seed resource, encoded, by type.
fn encoded_corpus() -> BTreeMap<ResourceType, Vec<Vec<u8>>> {
    let mut corpus: BTreeMap<ResourceType, Vec<Vec<u8>>> = BTreeMap::new();
    for (key, path, text) in seed_texts() {
        let format = Format::from_path(&path).unwrap();
        let resources = source::decode_resources_with(&text, format, &options_for(&path))
            .unwrap_or_else(|e| panic!("{key} does not decode: {e}"));
        if key == "client-seed" {
            let cache = ResourceCache::new();
            let errors = source::apply(&cache, resources.clone(), "1");
            assert!(errors.is_empty(), "the client seed is valid: {errors:?}");
        }
        for r in resources {
            let bytes = match &r {
                DecodedResource::Listener(p) => p.encode_to_vec(),
                DecodedResource::RouteConfiguration(p) => p.encode_to_vec(),
                DecodedResource::Cluster(p) => p.encode_to_vec(),
                DecodedResource::ClusterLoadAssignment(p) => p.encode_to_vec(),
            };
            // The client seed's few resources stand for what real clients receive: weight them
            // up against the hundreds of fixture resources so mutations reach deep into them.
            let weight = if key == "client-seed" {
                CLIENT_WEIGHT
            } else {
                1
            };
            let entry = corpus.entry(r.resource_type()).or_default();
            entry.extend(std::iter::repeat_n(bytes, weight));
        }
    }
    for ty in ResourceType::ALL {
        assert!(corpus.contains_key(&ty), "no {ty} in the fixtures");
    }
    corpus
}

/// What became of one received `Any`.
#[derive(Debug)]
enum Received {
    /// Not decodable: wrong type URL, bad bytes (a NACK naming the resource index).
    Undecodable,
    /// A `Resource` wrapper without a body (TTL heartbeat).
    Heartbeat,
    /// Decoded, then rejected by validation.
    Rejected(ModelError),
    /// Decoded and valid.
    Accepted,
}

/// What the ADS client does with one entry of `DiscoveryResponse.resources` of type `ty`
/// (`xds/resources.rs`, `decode` and `apply_typed`; that module is crate-private, so its steps
/// are repeated here with the same public pieces): unwrap a `Resource`, check the type URL,
/// decode the proto, validate it, store it.
fn receive(ty: ResourceType, any: &Any, cache: &ResourceCache) -> Received {
    let inner;
    let any = if any.type_url.rsplit('/').next() == WRAPPER_URL.rsplit('/').next() {
        let Ok(wrapper) = Resource::decode(any.value.as_slice()) else {
            return Received::Undecodable;
        };
        match wrapper.resource {
            Some(a) => {
                inner = a;
                &inner
            }
            None => return Received::Heartbeat,
        }
    } else {
        any
    };
    if ResourceType::from_type_url(&any.type_url) != Some(ty) {
        return Received::Undecodable;
    }
    let Ok(decoded) = DecodedResource::from_encoded(&any.type_url, &any.value) else {
        return Received::Undecodable;
    };
    let result = match decoded {
        DecodedResource::Listener(p) => store::<Listener>(cache, p),
        DecodedResource::RouteConfiguration(p) => store::<RouteConfiguration>(cache, p),
        DecodedResource::Cluster(p) => store::<Cluster>(cache, p),
        DecodedResource::ClusterLoadAssignment(p) => store::<ClusterLoadAssignment>(cache, p),
    };
    match result {
        Ok(()) => Received::Accepted,
        Err(e) => Received::Rejected(e),
    }
}

fn store<R: mesh_core::cache::Cached>(
    cache: &ResourceCache,
    proto: R::Proto,
) -> Result<(), ModelError> {
    let name = R::proto_name(&proto).to_owned();
    match R::from_proto(proto) {
        Ok(v) => {
            assert_eq!(v.name(), name, "the model keeps the wire name");
            cache.accept::<R>(&name, v, "1");
            Ok(())
        }
        Err(e) => {
            cache.reject::<R>(&name, e.clone());
            Err(e)
        }
    }
}

fn check_rejection(ty: ResourceType, e: &ModelError, input: &str) {
    assert_eq!(e.resource_type, ty, "{input}: {e}");
    assert!(!e.reason.is_empty(), "{input}: {e}");
}

#[derive(Debug, Default)]
struct Counts {
    accepted: usize,
    rejected: usize,
    undecodable: usize,
    heartbeats: usize,
    /// `(accepted, rejected)` per type.
    by_type: BTreeMap<ResourceType, (usize, usize)>,
}

impl Counts {
    fn add(&mut self, ty: ResourceType, r: Received, input: &str) {
        let per_type = self.by_type.entry(ty).or_default();
        match r {
            Received::Accepted => {
                self.accepted += 1;
                per_type.0 += 1;
            }
            Received::Rejected(e) => {
                check_rejection(ty, &e, input);
                self.rejected += 1;
                per_type.1 += 1;
            }
            Received::Undecodable => self.undecodable += 1,
            Received::Heartbeat => self.heartbeats += 1,
        }
    }
}

/// Mutated fixture resources, bare and in `Resource` wrappers, as the ADS client receives them.
#[test]
fn mutated_xds_resources_never_panic() {
    let corpus = encoded_corpus();
    let types: Vec<ResourceType> = corpus.keys().copied().collect();
    let mut m = Mutator::new(1);
    let cache = ResourceCache::new();
    let mut counts = Counts::default();
    let iterations = mutate::iterations(20_000);
    for i in 0..iterations {
        let ty = types[m.index(types.len())];
        let same = &corpus[&ty];
        let input = &same[m.index(same.len())];
        // Mostly splice within the type; sometimes across types.
        let other_ty = if m.rng().random_bool(0.8) {
            ty
        } else {
            types[m.index(types.len())]
        };
        let others = &corpus[&other_ty];
        let other = &others[m.index(others.len())];
        let bytes = m.proto(input, other);
        let type_url = if m.rng().random_bool(0.1) {
            // gRFC A30: the v2 spelling is accepted as v3.
            ty.type_url().replace(
                ty.type_url().rsplit('/').next().unwrap(),
                match ty {
                    ResourceType::Listener => "envoy.api.v2.Listener",
                    ResourceType::RouteConfiguration => "envoy.api.v2.RouteConfiguration",
                    ResourceType::Cluster => "envoy.api.v2.Cluster",
                    ResourceType::ClusterLoadAssignment => "envoy.api.v2.ClusterLoadAssignment",
                },
            )
        } else {
            ty.type_url().to_owned()
        };
        let any = if m.rng().random_bool(0.25) {
            let wrapper = Resource {
                name: "r".into(),
                resource: Some(Any {
                    type_url,
                    value: bytes,
                }),
                ..Default::default()
            }
            .encode_to_vec();
            // Sometimes the wrapper itself is damaged too.
            let wrapper = if m.rng().random_bool(0.3) {
                m.proto(&wrapper, other)
            } else {
                wrapper
            };
            Any {
                type_url: WRAPPER_URL.into(),
                value: wrapper,
            }
        } else {
            Any {
                type_url,
                value: bytes,
            }
        };
        counts.add(ty, receive(ty, &any, &cache), &format!("iteration {i}"));
    }
    eprintln!("{iterations} mutated resources: {counts:?}");
    // Every type's validator is reached, and both accepts and rejects mutated input.
    for ty in ResourceType::ALL {
        let (accepted, rejected) = counts.by_type.get(&ty).copied().unwrap_or_default();
        assert!(accepted > 0 && rejected > 0, "{ty}: {counts:?}");
    }
    assert!(counts.undecodable > 0, "{counts:?}");
}

/// Pure random bytes under every type URL, bare and wrapped.
#[test]
fn random_bytes_never_panic() {
    let mut m = Mutator::new(2);
    let cache = ResourceCache::new();
    let mut counts = Counts::default();
    let iterations = mutate::iterations(20_000);
    for i in 0..iterations {
        let ty = ResourceType::ALL[m.index(4)];
        let value = m.random_bytes(512);
        let any = if m.rng().random_bool(0.5) {
            Any {
                type_url: ty.type_url().into(),
                value,
            }
        } else {
            Any {
                type_url: WRAPPER_URL.into(),
                value,
            }
        };
        counts.add(ty, receive(ty, &any, &cache), &format!("iteration {i}"));
    }
    eprintln!("{iterations} random inputs: {counts:?}");
    // Random bytes are mostly not protobuf; some are (an empty message, stray fields) and
    // then validation runs and rejects them (no name, no api_listener…).
    assert!(counts.undecodable > 0, "{counts:?}");
    assert!(counts.rejected + counts.accepted > 0, "{counts:?}");
}

/// Mutated fixture texts through the static source into a cache, then snapshots and requests.
#[test]
fn mutated_static_source_text_never_panics() {
    let fixtures = seed_texts();
    // Texts over 64 KiB (Istio's 250 KB authz dump) cost ~0.1 s each to parse in a debug
    // build; they get a few iterations, the rest go to the small files.
    let (small, large): (Vec<_>, Vec<_>) = fixtures
        .iter()
        .partition(|(_, _, text)| text.len() < 64 * 1024);
    let mut m = Mutator::new(3);
    let iterations = mutate::iterations(1_500);
    let (mut syntax, mut decode, mut loaded, mut invalid, mut valid) = (0, 0, 0, 0, 0);
    let (mut snapshots, mut routed, mut refused) = (0, 0, 0);
    for i in 0..iterations {
        let pool = if i % 100 == 99 && !large.is_empty() {
            &large
        } else {
            &small
        };
        let (key, path, text) = pool[m.index(pool.len())];
        let (_, _, other) = &fixtures[m.index(fixtures.len())];
        let format = Format::from_path(path).unwrap();
        let mutated = if m.rng().random_bool(0.5) {
            m.text(text, other)
        } else {
            // A tree mutation keeps the text parseable, so the proto decoder behind is reached.
            let tree = parse_tree(text, format);
            let other_tree = parse_tree(other, Format::Yaml);
            let mutated = m.json(&tree, &other_tree);
            match format {
                Format::Json => serde_json::to_string_pretty(&mutated).unwrap(),
                Format::Yaml => serde_yaml_ng::to_string(&mutated).unwrap(),
            }
        };
        let resources = match source::decode_resources_with(&mutated, format, &options_for(path)) {
            Ok(r) => r,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                match e {
                    source::SourceError::Syntax { .. } => syntax += 1,
                    _ => decode += 1,
                }
                continue;
            }
        };
        loaded += 1;
        let cache = ResourceCache::new();
        let count = resources.len();
        let errors = source::apply(&cache, resources, "1");
        for e in &errors {
            assert!(!e.reason.is_empty(), "{key} iteration {i}: {e}");
        }
        invalid += errors.len();
        valid += count - errors.len();
        let (built, r) = probe::build_and_route(&cache, &mut m, 4);
        snapshots += built;
        routed += r.routed;
        refused += r.refused;
    }
    eprintln!(
        "{iterations} mutated texts: {syntax} syntax errors, {decode} decode errors, {loaded} \
         loaded ({valid} valid resources, {invalid} invalid); {snapshots} snapshots, \
         {routed} requests routed, {refused} refused"
    );
    assert!(
        syntax > 0 && decode > 0 && loaded > 0,
        "every outcome happens"
    );
    assert!(valid > 0 && invalid > 0, "validation accepts and rejects");
    assert!(
        snapshots > 0 && routed > 0 && refused > 0,
        "routing is reached"
    );
}

/// A fixture text as a JSON tree (YAML is a superset of JSON, so `Yaml` reads both).
fn parse_tree(text: &str, format: Format) -> serde_json::Value {
    match format {
        Format::Json => serde_json::from_str(text).expect("fixture json parses"),
        Format::Yaml => serde_yaml_ng::from_str(text).expect("fixture yaml parses"),
    }
}

/// The INTEROP.md example bootstrap (also in `tests/bootstrap.rs`).
const INTEROP_BOOTSTRAP: &str = r#"{
  "xds_servers": [{"server_uri": "127.0.0.1:15010", "channel_creds": [{"type": "insecure"}],
                   "server_features": ["ignore_resource_deletion"]}],
  "node": {"id": "client-1", "cluster": "demo", "locality": {"region": "r1", "zone": "z1"},
           "metadata": {"app": "demo"}},
  "certificate_providers": {"default": {"plugin_name": "file_watcher", "config": {
      "certificate_file": "cert.pem", "private_key_file": "key.pem",
      "ca_certificate_file": "ca.pem", "refresh_interval": "600s"}}},
  "server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s"
}"#;

/// Mutated bootstraps: parse or fail with an error naming a field (or the JSON syntax).
#[test]
fn mutated_bootstrap_never_panics() {
    let istio = std::fs::read_to_string(Path::new(FIXTURES).join(BOOTSTRAP_FIXTURE))
        .unwrap_or_else(|e| panic!("{BOOTSTRAP_FIXTURE}: {e}"));
    let seeds = [INTEROP_BOOTSTRAP, istio.as_str()];
    for s in seeds {
        Bootstrap::from_json(s).expect("the seeds parse");
    }
    let mut m = Mutator::new(4);
    let iterations = mutate::iterations(10_000);
    let (mut ok, mut json, mut field) = (0, 0, 0);
    let mut fields: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..iterations {
        let input = seeds[m.index(2)];
        let other = seeds[m.index(2)];
        let mutated = if m.rng().random_bool(0.5) {
            m.text(input, other)
        } else {
            let tree = serde_json::from_str(input).unwrap();
            let other = serde_json::from_str(other).unwrap();
            m.json(&tree, &other).to_string()
        };
        match Bootstrap::from_json(&mutated) {
            Ok(b) => {
                ok += 1;
                assert!(!b.xds_servers.is_empty());
                let _ = b.node.to_proto();
                let _ = b.client_listener_name("a:1");
            }
            Err(BootstrapError::Json(_)) => json += 1,
            Err(BootstrapError::Field { field: f, kind }) => {
                assert!(!f.is_empty(), "iteration {i}: {kind} names no field");
                let shown = BootstrapError::Field {
                    field: f.clone(),
                    kind,
                }
                .to_string();
                assert!(shown.starts_with(&f), "iteration {i}: {shown}");
                field += 1;
                *fields.entry(f).or_default() += 1;
            }
            Err(e) => panic!("iteration {i}: unexpected error kind {e}"),
        }
    }
    eprintln!("{iterations} mutated bootstraps: {ok} ok, {json} json errors, {field} field errors");
    eprintln!("fields named: {fields:?}");
    assert!(ok > 0 && json > 0 && field > 0, "every outcome happens");
    assert!(fields.len() >= 5, "errors name many different fields");
}

/// The stand-in lookup really stands in only for what is missing (so routing over fixtures
/// uses the fixtures' own clusters where they exist).
#[test]
fn fallback_lookup_prefers_the_cache() {
    use mesh_core::snapshot::ResourceLookup;
    let cache = ResourceCache::new();
    let (_, path, text) = fixture_texts()
        .into_iter()
        .find(|(k, _, _)| k == "envoy-gateway/http-route-weighted-backend.clusters.yaml")
        .expect("fixture present");
    let resources =
        source::decode_resources_with(&text, Format::Yaml, &options_for(&path)).unwrap();
    let names: Vec<String> = resources.iter().map(|r| r.name().to_owned()).collect();
    assert!(source::apply(&cache, resources, "1").is_empty());
    let lookup = probe::FallbackLookup { cache: &cache };
    for n in &names {
        let from_cache: Arc<Cluster> = cache.get(n).unwrap();
        assert!(Arc::ptr_eq(&lookup.cluster(n).unwrap(), &from_cache));
    }
    assert_eq!(&*lookup.cluster("absent").unwrap().name, "absent");
}
