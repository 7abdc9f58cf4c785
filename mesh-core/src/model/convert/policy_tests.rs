use envoy_types::pb::envoy::config::cluster::v3::{
    circuit_breakers::{thresholds::RetryBudget as RetryBudgetProto, Thresholds},
    Cluster as ClusterProto,
};
use envoy_types::pb::envoy::config::route::v3::{
    retry_policy::{RetryBackOff, RetryHostPredicate},
    route::Action,
    route_action::{ClusterSpecifier, MaxStreamDuration},
    Route as RouteProto, RouteConfiguration as RouteConfigProto, RouteMatch,
    VirtualHost as VirtualHostProto,
};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{Any, UInt32Value};

use super::*;
use crate::model::{Cluster, ErrorKind, RouteConfiguration};

fn d(ms: i64) -> DurationProto {
    DurationProto {
        seconds: ms / 1000,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

fn rc(action: RouteActionProto, vhost_retry: Option<RetryPolicyProto>) -> RouteConfigProto {
    let mut action = action;
    action.cluster_specifier = Some(ClusterSpecifier::Cluster("c".into()));
    RouteConfigProto {
        name: "rc".into(),
        virtual_hosts: vec![VirtualHostProto {
            name: "vh".into(),
            domains: vec!["*".into()],
            retry_policy: vhost_retry,
            routes: vec![RouteProto {
                r#match: Some(RouteMatch {
                    path_specifier: Some(
                        envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier::Prefix(
                            "/".into(),
                        ),
                    ),
                    ..Default::default()
                }),
                action: Some(Action::Route(action)),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn policy_of(p: RouteConfigProto) -> RoutePolicy {
    RouteConfiguration::try_from(p).unwrap().virtual_hosts[0].routes[0]
        .policy
        .clone()
}

fn err_field(p: RouteConfigProto) -> String {
    let e = RouteConfiguration::try_from(p).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    e.field
}

#[test]
fn timeout_defaults_and_zero_disables() {
    let p = policy_of(rc(RouteActionProto::default(), None));
    assert_eq!(p.timeout, Some(Duration::from_secs(15)));
    assert!(p.retry.is_none());
    let p = policy_of(rc(
        RouteActionProto {
            timeout: Some(d(0)),
            max_stream_duration: Some(MaxStreamDuration {
                max_stream_duration: Some(d(2500)),
                grpc_timeout_header_max: Some(d(0)),
                ..Default::default()
            }),
            ..Default::default()
        },
        None,
    ));
    assert_eq!(p.timeout, None);
    assert_eq!(p.max_stream_duration, Some(Duration::from_millis(2500)));
    assert_eq!(p.grpc_timeout_header_max, Some(Duration::ZERO));
    let field = err_field(rc(
        RouteActionProto {
            timeout: Some(d(-1000)),
            ..Default::default()
        },
        None,
    ));
    assert_eq!(field, "virtual_hosts[0].routes[0].route.timeout");
}

fn previous_hosts() -> RetryHostPredicate {
    RetryHostPredicate {
        name: "envoy.retry_host_predicates.previous_hosts".into(),
        config_type: Some(ConfigType::TypedConfig(Any {
            type_url: format!("type.googleapis.com/{PREVIOUS_HOSTS}"),
            value: vec![],
        })),
    }
}

#[test]
fn retry_policy_as_istiod_emits_it() {
    let rp = RetryPolicyProto {
        retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
            .into(),
        num_retries: Some(UInt32Value { value: 2 }),
        per_try_timeout: Some(d(500)),
        retriable_status_codes: vec![503],
        retry_host_predicate: vec![previous_hosts()],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    };
    let p = policy_of(rc(
        RouteActionProto {
            retry_policy: Some(rp),
            ..Default::default()
        },
        None,
    ));
    let r = p.retry.unwrap();
    assert!(r.retry_on.contains(
        RetryOn::CONNECT_FAILURE | RetryOn::UNAVAILABLE | RetryOn::RETRIABLE_STATUS_CODES
    ));
    assert_eq!(r.num_retries, 2);
    assert_eq!(r.per_try_timeout, Some(Duration::from_millis(500)));
    assert_eq!(&*r.retriable_status_codes, &[503]);
    assert!(r.previous_hosts);
    assert_eq!(r.host_selection_max_attempts, 5);
    assert_eq!(r.backoff, RetryBackoff::default());
    assert_eq!(r.backoff.max, Duration::from_millis(250));
}

#[test]
fn route_policy_overrides_virtual_host_policy() {
    let vh = RetryPolicyProto {
        retry_on: "5xx".into(),
        num_retries: Some(UInt32Value { value: 7 }),
        ..Default::default()
    };
    let p = policy_of(rc(RouteActionProto::default(), Some(vh.clone())));
    assert_eq!(
        p.retry.unwrap().num_retries,
        7,
        "inherited from the virtual host"
    );
    let p = policy_of(rc(
        RouteActionProto {
            retry_policy: Some(RetryPolicyProto {
                retry_on: "reset".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Some(vh),
    ));
    let r = p.retry.unwrap();
    assert_eq!(r.num_retries, 1, "route's own, default 1");
    assert_eq!(r.retry_on, RetryOn::RESET);
}

#[test]
fn invalid_backoff_and_codes_are_rejected_by_field() {
    let with = |b: RetryBackOff| {
        rc(
            RouteActionProto {
                retry_policy: Some(RetryPolicyProto {
                    retry_back_off: Some(b),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None,
        )
    };
    let base = "virtual_hosts[0].routes[0].route.retry_policy.retry_back_off";
    assert_eq!(
        err_field(with(RetryBackOff {
            base_interval: Some(d(0)),
            max_interval: None,
        })),
        format!("{base}.base_interval")
    );
    assert_eq!(
        err_field(with(RetryBackOff {
            base_interval: Some(d(100)),
            max_interval: Some(d(50)),
        })),
        format!("{base}.max_interval")
    );
    // Sub-millisecond values are raised to 1 ms (gRFC A44); max defaults to 10 × base.
    let p = policy_of(with(RetryBackOff {
        base_interval: Some(DurationProto {
            seconds: 0,
            nanos: 10,
        }),
        max_interval: None,
    }));
    let b = p.retry.unwrap().backoff;
    assert_eq!(
        (b.base, b.max),
        (Duration::from_millis(1), Duration::from_millis(10))
    );
    let bad_code = rc(
        RouteActionProto {
            retry_policy: Some(RetryPolicyProto {
                retriable_status_codes: vec![200, 1000],
                ..Default::default()
            }),
            ..Default::default()
        },
        None,
    );
    assert_eq!(
        err_field(bad_code),
        "virtual_hosts[0].routes[0].route.retry_policy.retriable_status_codes[1]"
    );
    // The virtual host's policy is validated too, and named.
    let bad_vh = rc(
        RouteActionProto::default(),
        Some(RetryPolicyProto {
            per_try_timeout: Some(d(-5)),
            ..Default::default()
        }),
    );
    assert_eq!(
        err_field(bad_vh),
        "virtual_hosts[0].retry_policy.per_try_timeout"
    );
}

fn cluster_with(thresholds: Vec<Thresholds>) -> Result<Cluster, ModelError> {
    Cluster::try_from(ClusterProto {
        name: "c".into(),
        cluster_discovery_type: Some(
            envoy_types::pb::envoy::config::cluster::v3::cluster::ClusterDiscoveryType::Type(
                envoy_types::pb::envoy::config::cluster::v3::cluster::DiscoveryType::Eds as i32,
            ),
        ),
        circuit_breakers: Some(CircuitBreakers {
            thresholds,
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[test]
fn circuit_breaker_retry_limits() {
    let c = cluster_with(vec![]).unwrap();
    assert_eq!(c.retry_limits, RetryLimits::default());
    let c = cluster_with(vec![
        Thresholds {
            priority: RoutingPriority::High as i32,
            max_retries: Some(UInt32Value { value: 99 }),
            ..Default::default()
        },
        Thresholds {
            max_retries: Some(UInt32Value { value: 10 }),
            max_requests: Some(UInt32Value { value: 50 }),
            retry_budget: Some(RetryBudgetProto {
                budget_percent: None,
                min_retry_concurrency: Some(UInt32Value { value: 1 }),
                ..Default::default()
            }),
            ..Default::default()
        },
    ])
    .unwrap();
    assert_eq!(c.retry_limits.max_retries, 10, "DEFAULT priority entry");
    assert_eq!(c.retry_limits.max_requests, 50);
    assert_eq!(c.retry_limits_high.max_retries, 99, "HIGH priority entry");
    assert_eq!(c.retry_limits_high.max_requests, 1024, "HIGH default");
    assert_eq!(c.retry_limits_for(Priority::High).max_retries, 99);
    assert_eq!(
        RetryLimits::default().max_requests,
        1024,
        "Envoy's and gRPC's default"
    );
    let b = c.retry_limits.budget.unwrap();
    assert_eq!((b.budget_percent, b.min_retry_concurrency), (20.0, 1));
    let e = cluster_with(vec![Thresholds {
        retry_budget: Some(RetryBudgetProto {
            budget_percent: Some(Percent { value: 120.0 }),
            min_retry_concurrency: None,
            ..Default::default()
        }),
        ..Default::default()
    }])
    .unwrap_err();
    assert_eq!(
        e.field,
        "circuit_breakers.thresholds[0].retry_budget.budget_percent"
    );
}

#[test]
fn unknown_host_predicates_are_ignored() {
    let other = RetryHostPredicate {
        name: "envoy.retry_host_predicates.omit_canary_hosts".into(),
        config_type: Some(ConfigType::TypedConfig(Any {
            type_url: "type.googleapis.com/envoy.extensions.retry.host.omit_canary_hosts.v3.OmitCanaryHostsPredicate".into(),
            value: vec![],
        })),
    };
    let p = policy_of(rc(
        RouteActionProto {
            retry_policy: Some(RetryPolicyProto {
                retry_host_predicate: vec![other],
                ..Default::default()
            }),
            ..Default::default()
        },
        None,
    ));
    assert!(!p.retry.unwrap().previous_hosts);
}

#[test]
fn idle_timeout_is_kept_as_set_and_priority_is_read() {
    let p = policy_of(rc(RouteActionProto::default(), None));
    assert_eq!(p.idle_timeout, None, "unset: the listener's applies");
    assert_eq!(p.priority, Priority::Default);
    let p = policy_of(rc(
        RouteActionProto {
            idle_timeout: Some(d(0)),
            priority: RoutingPriority::High as i32,
            ..Default::default()
        },
        None,
    ));
    assert_eq!(
        p.idle_timeout,
        Some(Duration::ZERO),
        "0 disables on the route"
    );
    assert_eq!(p.priority, Priority::High);
    let field = err_field(rc(
        RouteActionProto {
            idle_timeout: Some(d(-5)),
            ..Default::default()
        },
        None,
    ));
    assert_eq!(field, "virtual_hosts[0].routes[0].route.idle_timeout");
    let field = err_field(rc(
        RouteActionProto {
            priority: 7,
            ..Default::default()
        },
        None,
    ));
    assert_eq!(field, "virtual_hosts[0].routes[0].route.priority");
}
