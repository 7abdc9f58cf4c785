//! DestinationRule `connectionPool` limits and `outlierDetection` → the cluster's
//! `circuit_breakers` and `outlier_detection`, as istiod's sidecar translation does
//! (istio/istio `pilot/pkg/networking/core/cluster_traffic_policy.go`).
//!
//! istiod's proxyless generator (`grpcgen/cds.go`) emits neither outlier detection
//! (istio/api#3001) nor pool limits other than `http2MaxRequests` (istio/istio#58052). We emit
//! them: gRPC clients implement outlier detection (gRFC A50) and ignore what they do not read —
//! gRPC reads only success rate and failure percentage, which Istio's mapping leaves disabled
//! (`enforcing_success_rate: 0`), so for gRPC clients this is a no-op and for this mesh's own
//! clients it is Envoy's consecutive-failure ejection. The mapping:
//! - `consecutive5xxErrors` → `consecutive_5xx`, enforcing 100 (0 when the count is 0);
//! - `consecutiveGatewayErrors` → `consecutive_gateway_failure`, enforcing 100 likewise;
//! - `splitExternalLocalOriginErrors` + `consecutiveLocalOriginFailures` → the local-origin
//!   pair, enforcing 100;
//! - `interval`, `baseEjectionTime`, `maxEjectionPercent` (when > 0) as they are;
//! - `enforcing_success_rate: 0` always (Istio does not expose success rate);
//! - `minHealthPercent` → `common_lb_config.healthy_panic_threshold`, set to 0 when absent (as
//!   istiod does: panic mode off unless asked for).
//!
//! Pool limits land in one DEFAULT-priority threshold with `max_requests`; limits left unset
//! take Envoy's defaults (1024; `max_retries` 3), not the 2^32−1 istiod gives sidecars.

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    circuit_breakers::Thresholds, cluster::CommonLbConfig, CircuitBreakers, Cluster,
    OutlierDetection,
};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{Duration as PbDuration, UInt32Value};

use crate::source::model::{OutlierPolicy, Resilience};

/// Sets `circuit_breakers` (when any limit is given) and `outlier_detection` on `c`.
pub(super) fn apply(c: &mut Cluster, max_requests: Option<u32>, r: &Resilience) {
    let u = |v: Option<u32>| v.map(|value| UInt32Value { value });
    if max_requests.is_some()
        || r.max_connections.is_some()
        || r.max_pending_requests.is_some()
        || r.max_retries.is_some()
    {
        // DEFAULT priority, as istiod emits (gRFC A32 reads only this one).
        c.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![Thresholds {
                max_requests: u(max_requests),
                max_connections: u(r.max_connections),
                max_pending_requests: u(r.max_pending_requests),
                max_retries: u(r.max_retries),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    if let Some(od) = &r.outlier_detection {
        c.outlier_detection = Some(outlier_detection(od));
        // istiod sets the threshold whenever outlierDetection is present, to
        // `minHealthPercent` or 0 when unset: panic mode is off by default ("not typically
        // applicable in k8s environments with few pods per service").
        let pct = od.min_health_percent.unwrap_or(0);
        let common = c
            .common_lb_config
            .get_or_insert_with(CommonLbConfig::default);
        common.healthy_panic_threshold = Some(Percent {
            value: f64::from(pct),
        });
    }
}

fn outlier_detection(p: &OutlierPolicy) -> OutlierDetection {
    let u = |value: u32| Some(UInt32Value { value });
    let enforce = |count: u32| u(if count > 0 { 100 } else { 0 });
    let d = |d: Duration| PbDuration {
        seconds: d.as_secs().min(i64::MAX as u64) as i64,
        // Below 1e9, so it fits.
        nanos: d.subsec_nanos() as i32,
    };
    let mut out = OutlierDetection {
        enforcing_success_rate: u(0),
        interval: p.interval.map(d),
        base_ejection_time: p.base_ejection_time.map(d),
        max_ejection_percent: p.max_ejection_percent.filter(|m| *m > 0).and_then(u),
        ..Default::default()
    };
    if let Some(n) = p.consecutive_5xx_errors {
        out.consecutive_5xx = u(n);
        out.enforcing_consecutive_5xx = enforce(n);
    }
    if let Some(n) = p.consecutive_gateway_errors {
        out.consecutive_gateway_failure = u(n);
        out.enforcing_consecutive_gateway_failure = enforce(n);
    }
    if p.split_external_local_origin_errors {
        out.split_external_local_origin_errors = true;
        if let Some(n) = p.consecutive_local_origin_failures {
            out.consecutive_local_origin_failure = u(n);
            out.enforcing_consecutive_local_origin_failure = enforce(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_mapping() {
        let mut c = Cluster::default();
        let r = Resilience {
            max_connections: Some(2),
            max_pending_requests: Some(1),
            max_retries: None,
            outlier_detection: Some(OutlierPolicy {
                consecutive_5xx_errors: Some(3),
                consecutive_gateway_errors: Some(0),
                split_external_local_origin_errors: true,
                consecutive_local_origin_failures: Some(2),
                interval: Some(Duration::from_millis(200)),
                base_ejection_time: Some(Duration::from_secs(1)),
                max_ejection_percent: Some(50),
                min_health_percent: Some(0),
            }),
        };
        apply(&mut c, None, &r);
        let t = &c.circuit_breakers.as_ref().unwrap().thresholds[0];
        assert_eq!(t.max_connections.unwrap().value, 2);
        assert_eq!(t.max_pending_requests.unwrap().value, 1);
        assert!(t.max_requests.is_none() && t.max_retries.is_none());
        let od = c.outlier_detection.as_ref().unwrap();
        assert_eq!(od.consecutive_5xx.unwrap().value, 3);
        assert_eq!(od.enforcing_consecutive_5xx.unwrap().value, 100);
        assert_eq!(od.enforcing_consecutive_gateway_failure.unwrap().value, 0);
        assert_eq!(
            od.enforcing_consecutive_local_origin_failure.unwrap().value,
            100
        );
        assert_eq!(od.enforcing_success_rate.unwrap().value, 0);
        assert_eq!(od.interval.unwrap().nanos, 200_000_000);
        assert_eq!(od.max_ejection_percent.unwrap().value, 50);
        let panic = c.common_lb_config.as_ref().unwrap();
        assert_eq!(panic.healthy_panic_threshold.unwrap().value, 0.0);

        // minHealthPercent unset: still 0 (istiod), and a locality setting already there stays.
        let mut c = Cluster {
            common_lb_config: Some(CommonLbConfig {
                locality_config_specifier: Some(
                    envoy_types::pb::envoy::config::cluster::v3::cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(Default::default()),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut unset = r.clone();
        if let Some(od) = unset.outlier_detection.as_mut() {
            od.min_health_percent = None;
        }
        apply(&mut c, None, &unset);
        let common = c.common_lb_config.as_ref().unwrap();
        assert_eq!(common.healthy_panic_threshold.unwrap().value, 0.0);
        assert!(common.locality_config_specifier.is_some());

        let mut none = Cluster::default();
        apply(&mut none, None, &Resilience::default());
        assert!(none.circuit_breakers.is_none() && none.outlier_detection.is_none());
    }
}
