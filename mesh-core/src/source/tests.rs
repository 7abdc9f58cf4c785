use prost::Message;

use super::*;
use crate::cache::ResourceStatus;
use crate::model::{ErrorKind, HttpFilterConfig, LbPolicy};

const CLUSTER_JSON: &str = r#"{
  "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  "name": "outbound|80||a.default.svc.cluster.local",
  "type": "EDS",
  "connectTimeout": "1.5s",
  "edsClusterConfig": {"edsConfig": {"ads": {}}, "serviceName": "a"},
  "lbPolicy": "LEAST_REQUEST"
}"#;

#[test]
fn single_resource_json() {
    let rs = decode_resources(CLUSTER_JSON, Format::Json).unwrap();
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].resource_type(), ResourceType::Cluster);
    assert_eq!(rs[0].name(), "outbound|80||a.default.svc.cluster.local");
    let cache = ResourceCache::new();
    assert!(apply(&cache, rs, "v1").is_empty());
    let c = cache
        .get::<Cluster>("outbound|80||a.default.svc.cluster.local")
        .unwrap();
    assert_eq!(c.eds_service_name(), Some("a"));
    assert_eq!(c.lb_policy, LbPolicy::LeastRequest { choice_count: 2 });
    assert_eq!(c.connect_timeout, std::time::Duration::from_millis(1500));
}

#[test]
fn list_and_discovery_response_and_yaml_documents() {
    let list = format!("[{CLUSTER_JSON}, {CLUSTER_JSON}]");
    assert_eq!(decode_resources(&list, Format::Json).unwrap().len(), 2);
    let dr = format!(r#"{{"versionInfo": "1", "resources": [{CLUSTER_JSON}]}}"#);
    assert_eq!(decode_resources(&dr, Format::Json).unwrap().len(), 1);
    let yaml = "\
'@type': type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
cluster_name: a
endpoints:
- lb_endpoints:
  - endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}
---
'@type': type.googleapis.com/envoy.config.route.v3.RouteConfiguration
name: r
virtual_hosts:
- name: vh
  domains: ['*']
  routes:
  - match: {prefix: /}
    route: {cluster: a}
";
    let rs = decode_resources(yaml, Format::Yaml).unwrap();
    assert_eq!(rs.len(), 2);
    let cache = ResourceCache::new();
    assert!(apply(&cache, rs, "v1").is_empty());
    let cla = cache.get::<ClusterLoadAssignment>("a").unwrap();
    assert_eq!(cla.localities[0].endpoints[0].address.port(), 80);
    assert!(cache.get::<RouteConfiguration>("r").is_some());
}

#[test]
fn config_dump_tree_is_walked() {
    let dump = format!(
        r#"{{"configs": [
          {{"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "dynamic_active_clusters": [{{"version_info": "1", "cluster": {CLUSTER_JSON}}}]}},
          {{"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "dynamic_listeners": [{{"name": "l", "active_state": {{"listener": {{
              "@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "l"}}}}}}]}}
        ]}}"#
    );
    let rs = decode_resources(&dump, Format::Json).unwrap();
    let kinds: Vec<_> = rs.iter().map(DecodedResource::resource_type).collect();
    assert_eq!(kinds, vec![ResourceType::Cluster, ResourceType::Listener]);
}

const LISTENER_WITH_UNKNOWN_ANYS: &str = r#"{
  "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
  "name": "svc:80",
  "apiListener": {"apiListener": {
    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    "rds": {"configSource": {"ads": {}}, "routeConfigName": "svc"},
    "httpFilters": [
      {"name": "istio.stats", "isOptional": true,
       "typedConfig": {"@type": "type.googleapis.com/stats.PluginConfig", "disableHostHeaderFallback": true}},
      {"name": "wrapped", "isOptional": true,
       "typedConfig": {"@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
         "typeUrl": "type.googleapis.com/io.istio.http.peer_metadata.Config",
         "value": {"upstream_discovery": [{"@type": "not.a.real.Type"}]}}},
      {"name": "envoy.filters.http.router",
       "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    ]
  }}
}"#;

#[test]
fn unknown_anys_are_carried_opaquely() {
    let rs = decode_resources(LISTENER_WITH_UNKNOWN_ANYS, Format::Json).unwrap();
    let DecodedResource::Listener(proto) = rs[0].clone() else {
        panic!("not a listener")
    };
    let l = Listener::try_from(proto).unwrap();
    assert_eq!(l.rds_name(), Some("svc"));
    let HttpFilterConfig::Skipped(stats) = &l.http_filters[0].config else {
        panic!("{:?}", l.http_filters[0])
    };
    assert_eq!(&*stats.type_url, "type.googleapis.com/stats.PluginConfig");
    let body: serde_json::Value = serde_json::from_slice(&stats.value).unwrap();
    assert_eq!(body["disableHostHeaderFallback"], true);
    // The TypedStruct is in the pool: encoded as protobuf, its Struct content untouched.
    let HttpFilterConfig::Skipped(ts) = &l.http_filters[1].config else {
        panic!("{:?}", l.http_filters[1])
    };
    assert!(ts.type_url.ends_with("udpa.type.v1.TypedStruct"));
    assert_eq!(l.http_filters[2].config, HttpFilterConfig::Router);
}

#[test]
fn decode_errors_name_the_json_path() {
    let bad = r#"[{"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "ok"},
      {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "c",
       "edsClusterConfig": {"serviceName": 5}}]"#;
    match decode_resources(bad, Format::Json) {
        Err(SourceError::Decode {
            index,
            name,
            json_path,
            resource_type,
            ..
        }) => {
            assert_eq!((index, name.as_str()), (1, "c"));
            assert_eq!(resource_type, ResourceType::Cluster);
            assert_eq!(json_path, "$[1].edsClusterConfig.serviceName");
        }
        other => panic!("{other:?}"),
    }
    let typo = r#"{"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "c", "nmae": 1}"#;
    assert!(matches!(
        decode_resources(typo, Format::Json),
        Err(SourceError::Decode { json_path, .. }) if json_path == "$.nmae"
    ));
    let lenient = DecodeOptions {
        ignore_unknown_fields: true,
        ..Default::default()
    };
    assert!(decode_resources_with(typo, Format::Json, &lenient).is_ok());
    assert!(matches!(
        decode_resources("{", Format::Json),
        Err(SourceError::Syntax { .. })
    ));
}

#[test]
fn objects_without_type_need_a_default() {
    let text = "- name: c\n  type: EDS\n";
    assert!(matches!(
        decode_resources(text, Format::Yaml),
        Err(SourceError::NoType { index: 0, .. })
    ));
    let opts = DecodeOptions {
        default_type: Some(ResourceType::Cluster),
        ..Default::default()
    };
    let rs = decode_resources_with(text, Format::Yaml, &opts).unwrap();
    assert_eq!(rs[0].name(), "c");
    assert_eq!(
        default_type_for(Path::new("x/a.b.clusters.yaml")),
        Some(ResourceType::Cluster)
    );
    assert_eq!(default_type_for(Path::new("x/routes.yaml")), None);
}

#[test]
fn apply_rejects_invalid_by_name_and_keeps_the_rest() {
    let text = r#"[
      {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "good", "type": "EDS"},
      {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "bad", "type": "EDS",
       "lbPolicy": "CLUSTER_PROVIDED"}]"#;
    let cache = ResourceCache::new();
    let errors = apply(&cache, decode_resources(text, Format::Json).unwrap(), "1");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].kind, errors[0].field.as_str()),
        (ErrorKind::Unsupported, "lb_policy")
    );
    assert!(cache.get::<Cluster>("good").is_some());
    let bad = cache.entry::<Cluster>("bad").unwrap();
    assert!(bad.value.is_none());
    assert!(matches!(bad.status, ResourceStatus::Nacked(_)));
}

#[test]
fn in_process_anys() {
    let DecodedResource::Cluster(proto) = decode_resources(CLUSTER_JSON, Format::Json)
        .unwrap()
        .remove(0)
    else {
        panic!()
    };
    let any = prost_types::Any {
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        value: proto.encode_to_vec(),
    };
    let cache = ResourceCache::new();
    assert!(apply_any(&cache, &[any], "1").unwrap().is_empty());
    assert_eq!(cache.names(ResourceType::Cluster).len(), 1);
    let bogus = prost_types::Any {
        type_url: "type.googleapis.com/google.protobuf.Empty".into(),
        value: vec![],
    };
    assert!(matches!(
        apply_any(&cache, &[bogus], "1"),
        Err(SourceError::Any { .. })
    ));
}

#[test]
fn static_source_reads_files() {
    let dir = std::env::temp_dir().join(format!("mesh-core-source-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("demo.clusters.yaml");
    std::fs::write(
        &path,
        "- name: c\n  type: EDS\n- name: d\n  type: STRICT_DNS\n",
    )
    .unwrap();
    let src = StaticSource::from_file(&path).unwrap();
    assert!(src.cache().get::<Cluster>("c").is_some());
    assert_eq!(src.errors().len(), 1);
    assert_eq!(&*src.errors()[0].resource, "d");
    assert!(matches!(
        StaticSource::from_file(dir.join("x.txt")),
        Err(SourceError::UnknownFormat { .. })
    ));
    assert!(matches!(
        StaticSource::from_file(dir.join("missing.json")),
        Err(SourceError::Io { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
