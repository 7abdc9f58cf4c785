//! YAML loading: errors name file, line and field; unknown fields are warnings.

use mesh_control_plane::{load_dir, load_str, ConfigError};

const SE: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: greeter }
spec:
  hosts: [greeter]
  ports: [{ number: 50051, name: grpc }]
"#;

#[test]
fn malformed_yaml_names_file_and_line() {
    let text = format!("{SE}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: [oops\n");
    let err = load_str("mesh/bad.yaml", &text).unwrap_err();
    match &err {
        ConfigError::Yaml { file, line, .. } => {
            assert_eq!(file, "mesh/bad.yaml");
            // The broken flow sequence starts on line 11 of the file; the parser reports it at
            // the end of the document at the latest.
            assert!((11..=12).contains(line), "line {line}");
        }
        other => panic!("expected a yaml error, got {other:?}"),
    }
    assert!(err.to_string().starts_with("mesh/bad.yaml:"));
}

#[test]
fn unknown_fields_are_warnings_naming_the_field() {
    let text = format!(
        "{SE}---\n{}",
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: greeter, namespace: default }
spec:
  hosts: [greeter]
  http:
  - route: [{ destination: { host: greeter } }]
    mirror: { host: greeter }
    corsPolicy: { allowOrigins: [{ exact: x }] }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: greeter }
spec:
  host: greeter
  trafficPolicy:
    connectionPool: { tcp: { maxConnections: 10, connectTimeout: 1s }, http: { http2MaxRequests: 10 } }
"#
    );
    let (config, warnings) = load_str("w.yaml", &text).unwrap();
    assert_eq!(config.virtual_services.len(), 1);
    let fields: Vec<(&str, &str)> = warnings
        .iter()
        .map(|w| (w.resource.as_str(), w.field.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("VirtualService/default/greeter", "spec.http[0].mirror"),
            ("VirtualService/default/greeter", "spec.http[0].corsPolicy"),
            (
                "DestinationRule/default/greeter",
                "spec.trafficPolicy.connectionPool.tcp.connectTimeout"
            ),
        ]
    );
    assert_eq!(warnings[0].file, "w.yaml");
    assert_eq!(warnings[0].line, 8);
    assert!(warnings[0].to_string().contains("spec.http[0].mirror"));
}

fn invalid(text: &str) -> (usize, String) {
    match load_str("x.yaml", text).unwrap_err() {
        ConfigError::Invalid { line, field, .. } => (line, field),
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn invalid_resources_name_line_and_field() {
    let vs = |body: &str| {
        format!(
            "{SE}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: v }}\nspec:\n{body}"
        )
    };
    assert_eq!(invalid(&vs("  http: []\n")), (8, "spec.hosts".to_string()));
    assert_eq!(
        invalid(&vs(
            "  hosts: [greeter]\n  http:\n  - route:\n    - { destination: { host: greeter }, weight: -1 }\n    - { destination: { host: greeter }, weight: 2 }\n"
        )),
        (8, "spec.http[0].route[0].weight".to_string())
    );
    assert_eq!(
        invalid(&vs(
            "  hosts: [greeter]\n  http:\n  - route: [{ destination: { host: greeter, subset: v9 } }]\n"
        )),
        (8, "spec.http[0].route[0].destination.subset".to_string())
    );
    // Regression (found by `tests/tests/never_panics.rs`): a destination the registry cannot
    // back used to translate into a route to a cluster nobody serves, so the mesh library could
    // never build the target. Each is now a load error naming the field.
    assert_eq!(
        invalid(&vs(
            "  hosts: [greeter]\n  http:\n  - route: [{ destination: { host: greeter, port: { number: 50052 } } }]\n"
        )),
        (8, "spec.http[0].route[0].destination.port.number".to_string())
    );
    assert_eq!(
        invalid(&vs(
            "  hosts: [greeter]\n  http:\n  - route: [{ destination: { host: greeter }, weight: 50 }, { destination: { host: elsewhere }, weight: 50 }]\n"
        )),
        (8, "spec.http[0].route[1].destination.host".to_string())
    );
    assert_eq!(
        invalid(&vs(
            "  hosts: [greeter]\n  http:\n  - match: [{ uri: { regex: \"(\" } }]\n    route: [{ destination: { host: greeter } }]\n"
        )),
        (8, "spec.http[0].match[0].uri.regex".to_string())
    );
    let rule = |extra: &str| {
        vs(&format!(
            "  hosts: [greeter]\n  http:\n  - route: [{{ destination: {{ host: greeter }} }}]\n    {extra}\n"
        ))
    };
    for (extra, field) in [
        (
            "fault: { abort: { httpStatus: 600 } }",
            "spec.http[0].fault.abort.httpStatus",
        ),
        (
            "fault: { abort: { grpcStatus: NOPE } }",
            "spec.http[0].fault.abort.grpcStatus",
        ),
        (
            "fault: { abort: { httpStatus: 503, grpcStatus: UNAVAILABLE } }",
            "spec.http[0].fault.abort",
        ),
        (
            "fault: { abort: { httpStatus: 503, percentage: { value: 101 } } }",
            "spec.http[0].fault.abort.percentage.value",
        ),
        (
            "fault: { delay: { fixedDelay: soon } }",
            "spec.http[0].fault.delay.fixedDelay",
        ),
        (
            "fault: { delay: { percentage: { value: 5 } } }",
            "spec.http[0].fault.delay.fixedDelay",
        ),
        ("retries: { attempts: -1 }", "spec.http[0].retries.attempts"),
        (
            "retries: { attempts: 2, perTryTimeout: 1 }",
            "spec.http[0].retries.perTryTimeout",
        ),
        ("timeout: forever", "spec.http[0].timeout"),
    ] {
        assert_eq!(invalid(&rule(extra)), (8, field.to_string()), "{extra}");
    }
    // Regression (found by `tests/tests/never_panics.rs`): a host with a `*` inside (or any
    // non-DNS character) used to load and translate into a route configuration whose domain
    // every client rejects.
    for host in ["a.c*m", "*.a", "a..b", "-a", "a b", "a_b"] {
        assert_eq!(
            invalid(&SE.replace("hosts: [greeter]", &format!("hosts: [greeter, \"{host}\"]"))),
            (1, "spec.hosts[1]".to_string()),
            "{host}"
        );
    }
    assert_eq!(
        invalid("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: s }\nspec:\n  hosts: [a]\n"),
        (1, "spec.ports".to_string())
    );
}

#[test]
fn fault_without_percentage_is_a_warning_and_loads() {
    let text = format!(
        "{SE}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: v }}\nspec:\n  hosts: [greeter]\n  http:\n  - route: [{{ destination: {{ host: greeter }} }}]\n    fault: {{ abort: {{ grpcStatus: \"14\" }}, delay: {{ exponentialDelay: 1s }} }}\n"
    );
    let (config, warnings) = load_str("f.yaml", &text).unwrap();
    let fields: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.http[0].fault.delay.exponentialDelay",
            "spec.http[0].fault.abort"
        ]
    );
    let fault = config.virtual_services[0].http[0].fault.clone().unwrap();
    assert!(fault.delay.is_none());
    let abort = fault.abort.unwrap();
    assert_eq!(
        abort.status,
        mesh_control_plane::source::model::AbortStatus::Grpc(14)
    );
    assert_eq!(abort.per_million, None);
}

#[test]
fn other_kinds_are_skipped_with_a_warning() {
    let text = format!("apiVersion: v1\nkind: Service\nmetadata: {{ name: x }}\n---\n{SE}");
    let (config, warnings) = load_str("k.yaml", &text).unwrap();
    assert_eq!(config.service_entries.len(), 1);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].field, "kind");
}

#[test]
fn load_dir_reads_yaml_files_in_order() {
    let dir = std::env::temp_dir().join(format!("mesh-cp-source-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), SE).unwrap();
    std::fs::write(
        dir.join("b.yml"),
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: { name: w }\nspec: { address: 10.1.1.1 }\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not yaml: [").unwrap();
    let (config, warnings) = load_dir(&dir).unwrap();
    assert_eq!(config.service_entries.len(), 1);
    assert_eq!(config.workload_entries.len(), 1);
    assert!(warnings.is_empty());
    std::fs::write(dir.join("c.yaml"), "kind: [").unwrap();
    let err = load_dir(&dir).unwrap_err();
    assert!(err.file().ends_with("c.yaml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Regression (found by `tests/tests/never_panics.rs`): a host name as an endpoint address used
/// to load, and the EDS resource carrying it was then NACKed by every client (mesh-core and gRPC
/// parse socket addresses as IPs), taking the whole cluster's endpoints down. Every service is
/// resolved STATIC, so a non-IP address is now a load error naming the field.
#[test]
fn endpoint_addresses_must_be_ip_addresses() {
    let we = format!(
        "{SE}---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{ name: w }}\n\
         spec: {{ address: greeter.example.com }}\n"
    );
    let err = load_str("mesh/we.yaml", &we).unwrap_err();
    assert_eq!(err.field(), Some("spec.address"), "{err}");
    assert!(err.to_string().contains("not an IP address"), "{err}");

    let inline = SE.replace(
        "ports: [{ number: 50051, name: grpc }]",
        "ports: [{ number: 50051, name: grpc }]\n  endpoints: [{ address: 10.0.0.1 }, { address: \"db:5432\" }]",
    );
    let err = load_str("mesh/se.yaml", &inline).unwrap_err();
    assert_eq!(err.field(), Some("spec.endpoints[1].address"), "{err}");

    for ok in ["10.0.0.1", "\"::1\"", "\"2001:db8::7\""] {
        let text = SE.replace(
            "ports: [{ number: 50051, name: grpc }]",
            &format!(
                "ports: [{{ number: 50051, name: grpc }}]\n  endpoints: [{{ address: {ok} }}]"
            ),
        );
        load_str("mesh/ok.yaml", &text).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

/// Never panics: every prefix of a real config, and every line dropped in turn, either loads
/// (and translates) or is a typed error. Seeds: the test fixture, the README's example and the
/// quickstart's `examples/mesh`. Random mutations, and the client-side check of what is
/// translated, are in `tests/tests/never_panics.rs`.
#[test]
fn truncated_and_mangled_inputs_never_panic() {
    let readme = include_str!("../README.md");
    let start = readme.find("```yaml\n").expect("yaml block") + "```yaml\n".len();
    let len = readme[start..].find("```").expect("end of block");
    let seeds = [
        include_str!("fixtures/reviews.yaml"),
        &readme[start..start + len],
        include_str!("../../examples/mesh/reviews.yaml"),
        include_str!("../../examples/mesh/reviews-routes.yaml"),
    ];
    for text in seeds {
        let mut boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        boundaries.push(text.len());
        for &end in &boundaries {
            if let Ok((config, _)) = load_str("t.yaml", &text[..end]) {
                let _ = mesh_control_plane::translate(&config);
            }
        }
        let lines: Vec<&str> = text.lines().collect();
        for skip in 0..lines.len() {
            let mangled: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, l)| *l)
                .collect();
            if let Ok((config, _)) = load_str("t.yaml", &mangled.join("\n")) {
                let _ = mesh_control_plane::translate(&config);
            }
        }
    }
}

#[test]
fn outlier_detection_and_pool_limits_are_read_and_validated() {
    let dr = |tp: &str| {
        format!(
            "{SE}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
             metadata: {{ name: greeter }}\nspec:\n  host: greeter\n  trafficPolicy: {tp}\n\
             \x20 subsets:\n  - name: v1\n    labels: {{ v: '1' }}\n    trafficPolicy: {{ outlierDetection: {{ consecutive5xxErrors: 7 }} }}\n"
        )
    };
    let text = dr("{ connectionPool: { tcp: { maxConnections: 4 }, http: { http1MaxPendingRequests: 2, maxRetries: 5 } }, \
         outlierDetection: { consecutive5xxErrors: 3, consecutiveGatewayErrors: 2, \
         splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 1, \
         interval: 200ms, baseEjectionTime: 1s, maxEjectionPercent: 50, minHealthPercent: 0 } }");
    let (config, warnings) = load_str("o.yaml", &text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let r = &config.destination_rules[0].resilience;
    assert_eq!(
        (r.max_connections, r.max_pending_requests, r.max_retries),
        (Some(4), Some(2), Some(5))
    );
    let od = r.outlier_detection.as_ref().unwrap();
    assert_eq!(od.consecutive_5xx_errors, Some(3));
    assert_eq!(od.consecutive_gateway_errors, Some(2));
    assert!(od.split_external_local_origin_errors);
    assert_eq!(od.consecutive_local_origin_failures, Some(1));
    assert_eq!(od.interval, Some(std::time::Duration::from_millis(200)));
    assert_eq!(
        od.base_ejection_time,
        Some(std::time::Duration::from_secs(1))
    );
    assert_eq!(
        (od.max_ejection_percent, od.min_health_percent),
        (Some(50), Some(0))
    );
    let sub = &config.destination_rules[0].subsets[0].resilience;
    assert_eq!(
        sub.outlier_detection
            .as_ref()
            .unwrap()
            .consecutive_5xx_errors,
        Some(7)
    );

    for (tp, field) in [
        (
            "{ outlierDetection: { maxEjectionPercent: 101 } }",
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
        ),
        (
            "{ outlierDetection: { interval: 0s } }",
            "spec.trafficPolicy.outlierDetection.interval",
        ),
        (
            "{ outlierDetection: { baseEjectionTime: soon } }",
            "spec.trafficPolicy.outlierDetection.baseEjectionTime",
        ),
        (
            "{ outlierDetection: { consecutive5xxErrors: -1 } }",
            "spec.trafficPolicy.outlierDetection.consecutive5xxErrors",
        ),
        (
            "{ connectionPool: { tcp: { maxConnections: -1 } } }",
            "spec.trafficPolicy.connectionPool.tcp.maxConnections",
        ),
    ] {
        assert_eq!(invalid(&dr(tp)).1, field, "{tp}");
    }
}
