use envoy_types::pb::envoy::config::rbac::v3::{permission, principal};
use prost::Message;

use super::*;
use crate::source::{load_str, ConfigError};
use crate::translate::translate;

const WORKLOADS: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: demo}
spec:
  hosts: [reviews.demo.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: demo}
spec:
  address: 10.0.0.1
  ports: {http: 8080}
  labels: {app: reviews, version: v1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings, namespace: other}
spec:
  address: 10.0.0.2
  ports: {grpc: 50051}
  labels: {app: ratings}
"#;

const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: demo}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin/*"], notPorts: ["15021"]}}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow-frontend, namespace: demo}
spec:
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/demo/sa/frontend"]
        notNamespaces: ["untrusted-*"]
    to: [{operation: {methods: ["GET"], hosts: ["*.demo"]}}]
    when:
    - key: request.headers[X-Env]
      values: ["prod"]
    - key: destination.port
      values: ["8080"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-deny, namespace: istio-system}
spec:
  action: DENY
  rules:
  - from: [{source: {ipBlocks: ["192.168.0.0/16"]}}]
"#;

fn load(extra: &str) -> Result<crate::source::MeshConfig, ConfigError> {
    load_str("test.yaml", &format!("{WORKLOADS}---{extra}")).map(|(c, _)| c)
}

fn hcm_filters(l: &Listener) -> Vec<HttpFilter> {
    let Some(filter::ConfigType::TypedConfig(any)) = &l.filter_chains[0].filters[0].config_type
    else {
        panic!("no hcm");
    };
    HttpConnectionManager::decode(any.value.as_slice())
        .unwrap()
        .http_filters
}

fn rules(f: &HttpFilter) -> RbacRules {
    let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("no config");
    };
    RbacFilter::decode(any.value.as_slice())
        .unwrap()
        .rules
        .unwrap()
}

#[test]
fn policies_become_deny_then_allow_filters_per_selected_workload() {
    let xds = translate(&load(POLICIES).unwrap());
    // reviews-v1 (demo, selected by all three) and ratings (other: root policy only).
    let reviews = xds
        .listener("xds.istio.io/grpc/lds/inbound/10.0.0.1:8080")
        .expect("reviews inbound listener");
    let names: Vec<String> = hcm_filters(&reviews).into_iter().map(|f| f.name).collect();
    assert_eq!(names, [DENY_FILTER, ALLOW_FILTER, ROUTER_FILTER]);
    let f = hcm_filters(&reviews);
    let deny = rules(&f[0]);
    let mut deny_names: Vec<&String> = deny.policies.keys().collect();
    deny_names.sort();
    assert_eq!(
        deny_names,
        [
            "ns[demo]-policy[deny-admin]-rule[0]",
            "ns[istio-system]-policy[mesh-deny]-rule[0]"
        ]
    );
    let allow = rules(&f[1]);
    assert_eq!(allow.action, Action::Allow as i32);
    let p = &allow.policies["ns[demo]-policy[allow-frontend]-rule[0]"];
    // One and_ids with principals, notNamespaces and the header condition.
    let Some(principal::Identifier::AndIds(ids)) = &p.principals[0].identifier else {
        panic!("and_ids");
    };
    assert_eq!(ids.ids.len(), 3);
    let Some(permission::Rule::AndRules(perms)) = &p.permissions[0].rule else {
        panic!("and_rules");
    };
    // hosts, methods, destination.port condition.
    assert_eq!(perms.rules.len(), 3);
    // The gRPC-template name serves the same listener.
    let alias = xds
        .listener("grpc/server?xds.resource.listening_address=10.0.0.1:8080")
        .unwrap();
    assert_eq!(alias.filter_chains, reviews.filter_chains);
    let ratings = xds
        .listener("xds.istio.io/grpc/lds/inbound/10.0.0.2:50051")
        .unwrap();
    let names: Vec<String> = hcm_filters(&ratings).into_iter().map(|f| f.name).collect();
    assert_eq!(names, [DENY_FILTER, ROUTER_FILTER]);
}

#[test]
fn no_policy_allows_all_and_empty_allow_denies_all() {
    // Without policies every workload still gets its inbound listener, with the router alone:
    // an xDS-enabled server can serve, and everything is allowed.
    let xds = translate(&load("").unwrap());
    let l = xds
        .listener("xds.istio.io/grpc/lds/inbound/10.0.0.2:50051")
        .expect("inbound listener without policies");
    let names: Vec<String> = hcm_filters(&l).iter().map(|f| f.name.clone()).collect();
    assert_eq!(names, [ROUTER_FILTER]);
    let allow_nothing = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: other}
spec: {}
"#;
    let xds = translate(&load(allow_nothing).unwrap());
    let l = xds
        .listener("xds.istio.io/grpc/lds/inbound/10.0.0.2:50051")
        .unwrap();
    let f = hcm_filters(&l);
    assert_eq!(f[0].name, ALLOW_FILTER);
    assert!(
        rules(&f[0]).policies.is_empty(),
        "ALLOW with no policy denies all"
    );
    // A workload the namespace-scoped policy does not select: router only.
    let other = xds
        .listener("xds.istio.io/grpc/lds/inbound/10.0.0.1:8080")
        .expect("listener of an unselected workload");
    let names: Vec<String> = hcm_filters(&other).iter().map(|f| f.name.clone()).collect();
    assert_eq!(names, [ROUTER_FILTER]);
}

fn invalid(yaml: &str) -> (String, String) {
    match load(yaml) {
        Err(ConfigError::Invalid {
            field,
            message,
            resource,
            ..
        }) => {
            assert!(resource.starts_with("AuthorizationPolicy/"), "{resource}");
            (field, message)
        }
        other => panic!("expected an invalid resource, got {other:?}"),
    }
}

#[test]
fn validation_names_the_field() {
    let head = "\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: demo}\nspec:\n";
    let (field, msg) = invalid(&format!(
        "{head}  rules: [{{to: [{{operation: {{paths: [\"/a\", \"/x/*/y\"]}}}}]}}]\n"
    ));
    assert_eq!(field, "spec.rules[0].to[0].operation.paths[1]");
    assert!(msg.contains("prefix, a suffix"), "{msg}");
    let (field, _) = invalid(&format!(
        "{head}  rules: [{{from: [{{source: {{notIpBlocks: [\"10.0.0.0/40\"]}}}}]}}]\n"
    ));
    assert_eq!(field, "spec.rules[0].from[0].source.notIpBlocks[0]");
    let (field, _) = invalid(&format!(
        "{head}  rules: [{{to: [{{operation: {{ports: [\"0\"]}}}}]}}]\n"
    ));
    assert_eq!(field, "spec.rules[0].to[0].operation.ports[0]");
    let (field, msg) = invalid(&format!(
        "{head}  rules: [{{when: [{{key: \"experimental.envoy.filters.a[b]\", values: [x]}}]}}]\n"
    ));
    assert_eq!(field, "spec.rules[0].when[0].key");
    assert!(msg.contains("unsupported condition key"), "{msg}");
    let (field, _) = invalid(&format!("{head}  action: CUSTOM\n"));
    assert_eq!(field, "spec.action");
    let (field, _) = invalid(&format!(
        "{head}  targetRefs: [{{kind: Service, name: reviews}}]\n"
    ));
    assert_eq!(field, "spec.targetRefs");
    for bad in ["a/b/c", "/b", "a/", "ns/*"] {
        let (field, msg) = invalid(&format!(
            "{head}  rules: [{{from: [{{source: {{notServiceAccounts: [\"{bad}\"]}}}}]}}]\n"
        ));
        assert_eq!(field, "spec.rules[0].from[0].source");
        assert!(
            msg.contains("`namespace/name`") && msg.contains(bad),
            "{msg}"
        );
    }
    let (field, _) = invalid(&format!("{head}  rules: [{{from: [{{source: {{}}}}]}}]\n"));
    assert_eq!(field, "spec.rules[0].from[0].source");
    let (field, _) = invalid(&format!(
        "{head}  rules: [{{when: [{{key: \"request.headers[grpc-timeout]\", values: [x]}}]}}]\n"
    ));
    assert_eq!(field, "spec.rules[0].when[0].key");
}

#[test]
fn audit_is_skipped_with_a_warning() {
    let yaml = format!(
        "{WORKLOADS}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: audit, namespace: demo}}\nspec: {{action: AUDIT, rules: [{{}}]}}\n"
    );
    let (config, warnings) = load_str("t.yaml", &yaml).unwrap();
    assert!(config.authorization_policies.is_empty());
    assert!(
        warnings.iter().any(|w| w.field == "spec.action"),
        "{warnings:?}"
    );
}

#[test]
fn istio_value_encodings() {
    let m = |s: &StringMatcher| s.match_pattern.clone().unwrap();
    assert_eq!(
        m(&wildcard("td/ns/a/sa/b", "spiffe://", false)),
        MatchPattern::Exact("spiffe://td/ns/a/sa/b".into())
    );
    assert_eq!(
        m(&wildcard("/admin/*", "", false)),
        MatchPattern::Prefix("/admin/".into())
    );
    assert_eq!(
        m(&wildcard("*.json", "", false)),
        MatchPattern::Suffix(".json".into())
    );
    let MatchPattern::SafeRegex(re) = m(&wildcard("*-sa", "spiffe://", false)) else {
        panic!("regex");
    };
    assert_eq!(re.regex, "spiffe://.*\\-sa");
    // istiod's serviceAccountRegex: any trust domain, optional segments before `sa/`.
    let Some(principal::Identifier::Authenticated(a)) = service_account("demo/web.v1").identifier
    else {
        panic!("authenticated");
    };
    let MatchPattern::SafeRegex(re) = m(a.principal_name.as_ref().unwrap()) else {
        panic!("regex");
    };
    assert_eq!(re.regex, "spiffe://.+/ns/demo/(.+/|)sa/web\\.v1(/.+)?");
    let re = regex::Regex::new(&format!("^(?:{})$", re.regex)).unwrap();
    assert!(re.is_match("spiffe://cluster.local/ns/demo/sa/web.v1"));
    assert!(re.is_match("spiffe://other.td/ns/demo/x/y/sa/web.v1"));
    assert!(!re.is_match("spiffe://cluster.local/ns/demo/sa/web.v1-admin"));
    assert!(!re.is_match("spiffe://cluster.local/ns/prod/sa/web.v1"));
    assert_eq!(
        policy_name("demo", "deny-admin", 2),
        "ns[demo]-policy[deny-admin]-rule[2]"
    );
}
