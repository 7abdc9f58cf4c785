//! A cluster's `outlier_detection` and connection-pool `circuit_breakers` thresholds (Envoy
//! `outlier_detection.proto`, `circuit_breaker.proto`; gRFC A50; XDS-SEMANTICS.md rows 16–17).
//!
//! - Unset fields take Envoy's defaults (see [`OutlierDetection`]).
//! - Percentages (`max_ejection_percent`, every `enforcing_*`, `failure_percentage_threshold`)
//!   above 100 are invalid (Envoy's `lte: 100`, gRFC A50 NACKs them).
//! - `interval`, `base_ejection_time` and `max_ejection_time` must be positive and
//!   well-formed (Envoy's `gt: {}`); `max_ejection_time` below `base_ejection_time` is invalid
//!   (Envoy rejects it); when only `base_ejection_time` is set above the 300 s default cap, the
//!   cap is raised to it (gRFC A50: `max(base, max)`).
//! - Fields not implemented (`max_ejection_time_jitter`, `enforcing_local_origin_success_rate`,
//!   `enforcing_failure_percentage_local_origin`, `monitors`, `always_eject_one_host`,
//!   `detect_degraded_hosts`, `successful_active_health_check_uneject_host`) are ignored, as
//!   gRPC ignores everything but success rate and failure percentage.
//! - Thresholds: the first entry per priority (DEFAULT, HIGH) wins, as Envoy builds one resource
//!   manager per priority; `max_connections` and `max_pending_requests` default to 1024.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, OutlierDetection as OutlierProto,
};
use envoy_types::pb::envoy::config::core::v3::RoutingPriority;
use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};

use super::{Ctx, Path};
use crate::model::{ConnectionLimits, Consecutive, ModelError, OutlierDetection, PoolLimits};

pub(super) fn outlier_detection(
    cx: &Ctx<'_>,
    path: &Path,
    proto: Option<&OutlierProto>,
) -> Result<Option<OutlierDetection>, ModelError> {
    let Some(p) = proto else { return Ok(None) };
    let d = OutlierDetection::default();
    let u32_or = |v: &Option<UInt32Value>, default: u32| v.as_ref().map_or(default, |v| v.value);
    let pct = |name: &str, v: &Option<UInt32Value>, default: u32| -> Result<u32, ModelError> {
        let value = u32_or(v, default);
        if value > 100 {
            return Err(cx.invalid(&path.field(name), format!("{value} is above 100")));
        }
        Ok(value)
    };
    let dur = |name: &str, v: &Option<PbDuration>, default: Duration| -> Result<_, ModelError> {
        v.as_ref()
            .map_or(Ok(default), |v| positive(cx, &path.field(name), v))
    };
    let base = dur(
        "base_ejection_time",
        &p.base_ejection_time,
        d.base_ejection_time,
    )?;
    let max_ejection_time = match &p.max_ejection_time {
        None => d.max_ejection_time.max(base),
        Some(v) => {
            let max = positive(cx, &path.field("max_ejection_time"), v)?;
            if max < base {
                return Err(cx.invalid(
                    &path.field("max_ejection_time"),
                    format!("{max:?} is below base_ejection_time {base:?}"),
                ));
            }
            max
        }
    };
    Ok(Some(OutlierDetection {
        interval: dur("interval", &p.interval, d.interval)?,
        base_ejection_time: base,
        max_ejection_time,
        max_ejection_percent: pct(
            "max_ejection_percent",
            &p.max_ejection_percent,
            d.max_ejection_percent,
        )?,
        consecutive_5xx: Consecutive {
            threshold: u32_or(&p.consecutive_5xx, d.consecutive_5xx.threshold),
            enforcing: pct(
                "enforcing_consecutive_5xx",
                &p.enforcing_consecutive_5xx,
                d.consecutive_5xx.enforcing,
            )?,
        },
        consecutive_gateway_failure: Consecutive {
            threshold: u32_or(
                &p.consecutive_gateway_failure,
                d.consecutive_gateway_failure.threshold,
            ),
            enforcing: pct(
                "enforcing_consecutive_gateway_failure",
                &p.enforcing_consecutive_gateway_failure,
                d.consecutive_gateway_failure.enforcing,
            )?,
        },
        split_external_local_origin_errors: p.split_external_local_origin_errors,
        consecutive_local_origin_failure: Consecutive {
            threshold: u32_or(
                &p.consecutive_local_origin_failure,
                d.consecutive_local_origin_failure.threshold,
            ),
            enforcing: pct(
                "enforcing_consecutive_local_origin_failure",
                &p.enforcing_consecutive_local_origin_failure,
                d.consecutive_local_origin_failure.enforcing,
            )?,
        },
        success_rate: crate::model::SuccessRate {
            minimum_hosts: u32_or(&p.success_rate_minimum_hosts, d.success_rate.minimum_hosts),
            request_volume: u32_or(
                &p.success_rate_request_volume,
                d.success_rate.request_volume,
            ),
            stdev_factor: u32_or(&p.success_rate_stdev_factor, d.success_rate.stdev_factor),
            enforcing: pct(
                "enforcing_success_rate",
                &p.enforcing_success_rate,
                d.success_rate.enforcing,
            )?,
        },
        failure_percentage: crate::model::FailurePercentage {
            threshold: pct(
                "failure_percentage_threshold",
                &p.failure_percentage_threshold,
                d.failure_percentage.threshold,
            )?,
            minimum_hosts: u32_or(
                &p.failure_percentage_minimum_hosts,
                d.failure_percentage.minimum_hosts,
            ),
            request_volume: u32_or(
                &p.failure_percentage_request_volume,
                d.failure_percentage.request_volume,
            ),
            enforcing: pct(
                "enforcing_failure_percentage",
                &p.enforcing_failure_percentage,
                d.failure_percentage.enforcing,
            )?,
        },
    }))
}

fn positive(cx: &Ctx<'_>, path: &Path, d: &PbDuration) -> Result<Duration, ModelError> {
    if d.seconds < 0 || d.nanos < 0 || (d.seconds == 0 && d.nanos == 0) {
        return Err(cx.invalid(path, "must be positive"));
    }
    if d.nanos >= 1_000_000_000 {
        return Err(cx.invalid(path, "nanos out of range"));
    }
    // Both non-negative and nanos < 1e9, so the casts are exact.
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// `max_connections` / `max_pending_requests` for priorities DEFAULT and HIGH.
pub(super) fn connection_limits(cb: Option<&CircuitBreakers>) -> ConnectionLimits {
    let mut limits = ConnectionLimits::default();
    let Some(cb) = cb else { return limits };
    let first = |prio: RoutingPriority| cb.thresholds.iter().find(|t| t.priority == prio as i32);
    for (prio, slot) in [
        (RoutingPriority::Default, &mut limits.default),
        (RoutingPriority::High, &mut limits.high),
    ] {
        let Some(t) = first(prio) else { continue };
        let d = PoolLimits::default();
        *slot = PoolLimits {
            max_connections: t
                .max_connections
                .as_ref()
                .map_or(d.max_connections, |v| v.value),
            max_pending_requests: t
                .max_pending_requests
                .as_ref()
                .map_or(d.max_pending_requests, |v| v.value),
        };
    }
    limits
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::{
        circuit_breakers::Thresholds,
        cluster::{ClusterDiscoveryType, DiscoveryType},
        Cluster as ClusterProto,
    };

    use super::*;
    use crate::model::{Cluster, ErrorKind};

    fn with(od: OutlierProto) -> ClusterProto {
        ClusterProto {
            name: "c".into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            outlier_detection: Some(od),
            ..Default::default()
        }
    }

    fn secs(s: i64) -> Option<PbDuration> {
        Some(PbDuration {
            seconds: s,
            nanos: 0,
        })
    }

    fn u(v: u32) -> Option<UInt32Value> {
        Some(UInt32Value { value: v })
    }

    #[test]
    fn absent_is_none_and_empty_takes_envoy_defaults() {
        let mut p = with(OutlierProto::default());
        let c = Cluster::try_from(p.clone()).unwrap();
        let od = c.outlier_detection.expect("present");
        assert_eq!(od, OutlierDetection::default());
        assert_eq!(od.interval, Duration::from_secs(10));
        assert_eq!(od.consecutive_5xx.threshold, 5);
        assert_eq!(od.consecutive_5xx.enforcing, 100);
        assert_eq!(od.consecutive_gateway_failure.enforcing, 0);
        assert_eq!(od.success_rate.stdev_factor, 1900);
        assert_eq!(od.failure_percentage.enforcing, 0);
        assert_eq!(od.max_ejection_time, Duration::from_secs(300));
        p.outlier_detection = None;
        assert_eq!(Cluster::try_from(p).unwrap().outlier_detection, None);
    }

    #[test]
    fn fields_are_read() {
        let c = Cluster::try_from(with(OutlierProto {
            consecutive_5xx: u(3),
            interval: secs(1),
            base_ejection_time: secs(2),
            max_ejection_percent: u(50),
            consecutive_gateway_failure: u(2),
            enforcing_consecutive_gateway_failure: u(100),
            split_external_local_origin_errors: true,
            consecutive_local_origin_failure: u(4),
            failure_percentage_threshold: u(60),
            enforcing_failure_percentage: u(100),
            ..Default::default()
        }))
        .unwrap();
        let od = c.outlier_detection.unwrap();
        assert_eq!(od.consecutive_5xx.threshold, 3);
        assert_eq!(od.interval, Duration::from_secs(1));
        assert_eq!(od.base_ejection_time, Duration::from_secs(2));
        assert_eq!(od.max_ejection_percent, 50);
        assert_eq!(
            od.consecutive_gateway_failure,
            Consecutive {
                threshold: 2,
                enforcing: 100
            }
        );
        assert!(od.split_external_local_origin_errors);
        assert_eq!(od.consecutive_local_origin_failure.threshold, 4);
        assert_eq!(od.failure_percentage.threshold, 60);
        assert_eq!(od.failure_percentage.enforcing, 100);
    }

    #[test]
    fn ejection_cap_follows_base() {
        let od = |base, max| {
            Cluster::try_from(with(OutlierProto {
                base_ejection_time: secs(base),
                max_ejection_time: max,
                ..Default::default()
            }))
        };
        let c = od(600, None).unwrap().outlier_detection.unwrap();
        assert_eq!(
            c.max_ejection_time,
            Duration::from_secs(600),
            "raised to base"
        );
        let e = od(60, secs(10)).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_str()),
            (ErrorKind::Invalid, "outlier_detection.max_ejection_time")
        );
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases: Vec<(OutlierProto, &str)> = vec![
            (
                OutlierProto {
                    max_ejection_percent: u(101),
                    ..Default::default()
                },
                "outlier_detection.max_ejection_percent",
            ),
            (
                OutlierProto {
                    enforcing_consecutive_5xx: u(200),
                    ..Default::default()
                },
                "outlier_detection.enforcing_consecutive_5xx",
            ),
            (
                OutlierProto {
                    failure_percentage_threshold: u(101),
                    ..Default::default()
                },
                "outlier_detection.failure_percentage_threshold",
            ),
            (
                OutlierProto {
                    interval: secs(0),
                    ..Default::default()
                },
                "outlier_detection.interval",
            ),
            (
                OutlierProto {
                    base_ejection_time: secs(-1),
                    ..Default::default()
                },
                "outlier_detection.base_ejection_time",
            ),
        ];
        for (od, field) in cases {
            let e = Cluster::try_from(with(od)).unwrap_err();
            assert_eq!((e.kind, e.field.as_str()), (ErrorKind::Invalid, field));
            assert_eq!(e.resource.as_ref(), "c");
        }
    }

    #[test]
    fn thresholds_per_priority() {
        let mut p = with(OutlierProto::default());
        p.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![
                Thresholds {
                    priority: RoutingPriority::High as i32,
                    max_connections: u(7),
                    ..Default::default()
                },
                Thresholds {
                    priority: RoutingPriority::Default as i32,
                    max_pending_requests: u(3),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let c = Cluster::try_from(p).unwrap();
        assert_eq!(
            c.connection_limits.default,
            PoolLimits {
                max_connections: 1024,
                max_pending_requests: 3
            }
        );
        assert_eq!(c.connection_limits.high.max_connections, 7);
        assert_eq!(c.connection_limits.high.max_pending_requests, 1024);
    }
}
