//! DestinationRule `trafficPolicy.outlierDetection` and the connection-pool limits beyond
//! `http2MaxRequests` (istio/api `networking/v1alpha3/destination_rule.proto`).
//!
//! Validation follows Istio's (`pkg/config/validation`): percentages within `0..=100`,
//! durations at least 1 ms, counts non-negative. A `0` count in `connectionPool` means "unset"
//! (proto3 default), as in Istio.

use std::time::Duration;

use serde_yaml_ng::Value;

use super::duration;
use super::yaml::{Ctx, Fields};
use super::ConfigError;

/// Resilience settings of one `trafficPolicy` besides the load balancer and `http2MaxRequests`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resilience {
    /// `connectionPool.tcp.maxConnections` → `circuit_breakers` `max_connections`.
    pub max_connections: Option<u32>,
    /// `connectionPool.http.http1MaxPendingRequests` → `max_pending_requests`.
    pub max_pending_requests: Option<u32>,
    /// `connectionPool.http.maxRetries` → `max_retries`.
    pub max_retries: Option<u32>,
    /// `outlierDetection` → the cluster's `outlier_detection`.
    pub outlier_detection: Option<OutlierPolicy>,
}

impl Resilience {
    /// Istio's subset override: a subset's `outlierDetection` replaces the rule's as a whole;
    /// each pool limit it sets replaces the rule's.
    pub fn or(&self, rule: &Resilience) -> Resilience {
        Resilience {
            max_connections: self.max_connections.or(rule.max_connections),
            max_pending_requests: self.max_pending_requests.or(rule.max_pending_requests),
            max_retries: self.max_retries.or(rule.max_retries),
            outlier_detection: self
                .outlier_detection
                .clone()
                .or_else(|| rule.outlier_detection.clone()),
        }
    }
}

/// `trafficPolicy.outlierDetection`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// `consecutive5xxErrors` (the deprecated `consecutiveErrors` is read into it too).
    pub consecutive_5xx_errors: Option<u32>,
    /// `consecutiveGatewayErrors`.
    pub consecutive_gateway_errors: Option<u32>,
    /// `consecutiveLocalOriginFailures`.
    pub consecutive_local_origin_failures: Option<u32>,
    /// `splitExternalLocalOriginErrors`.
    pub split_external_local_origin_errors: bool,
    /// `interval`.
    pub interval: Option<Duration>,
    /// `baseEjectionTime`.
    pub base_ejection_time: Option<Duration>,
    /// `maxEjectionPercent`.
    pub max_ejection_percent: Option<u32>,
    /// `minHealthPercent` → Envoy `common_lb_config.healthy_panic_threshold`.
    pub min_health_percent: Option<u32>,
}

/// Reads `tcp.maxConnections` from a `connectionPool` (the caller reads `http`).
pub(crate) fn tcp_pool(
    ctx: &mut Ctx<'_>,
    v: &Value,
    path: &str,
    out: &mut Resilience,
) -> Result<(), ConfigError> {
    let mut tcp = Fields::of(ctx, v, path)?;
    out.max_connections = count(tcp.int(ctx, "maxConnections", 0, i64::from(i32::MAX))?);
    tcp.finish(ctx);
    Ok(())
}

/// Reads `http1MaxPendingRequests` and `maxRetries` from `connectionPool.http`.
pub(crate) fn http_pool(
    ctx: &Ctx<'_>,
    http: &mut Fields<'_>,
    out: &mut Resilience,
) -> Result<(), ConfigError> {
    let max = i64::from(i32::MAX);
    out.max_pending_requests = count(http.int(ctx, "http1MaxPendingRequests", 0, max)?);
    out.max_retries = count(http.int(ctx, "maxRetries", 0, max)?);
    Ok(())
}

fn count(v: Option<i64>) -> Option<u32> {
    // In range 0..=i32::MAX (checked by the caller); 0 is proto3's "unset".
    v.filter(|n| *n > 0).map(|n| n as u32)
}

/// Parses `outlierDetection` at `path`.
pub(crate) fn outlier_detection(
    ctx: &mut Ctx<'_>,
    v: &Value,
    path: &str,
) -> Result<OutlierPolicy, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let u32max = i64::from(u32::MAX);
    let deprecated = f.int(ctx, "consecutiveErrors", 0, u32max)?;
    let mut out = OutlierPolicy {
        consecutive_5xx_errors: f
            .int(ctx, "consecutive5xxErrors", 0, u32max)?
            .or(deprecated)
            .map(|n| n as u32),
        consecutive_gateway_errors: f
            .int(ctx, "consecutiveGatewayErrors", 0, u32max)?
            .map(|n| n as u32),
        consecutive_local_origin_failures: f
            .int(ctx, "consecutiveLocalOriginFailures", 0, u32max)?
            .map(|n| n as u32),
        split_external_local_origin_errors: f
            .bool(ctx, "splitExternalLocalOriginErrors")?
            .unwrap_or(false),
        max_ejection_percent: f.int(ctx, "maxEjectionPercent", 0, 100)?.map(|n| n as u32),
        min_health_percent: f.int(ctx, "minHealthPercent", 0, 100)?.map(|n| n as u32),
        ..Default::default()
    };
    for (key, slot) in [
        ("interval", &mut out.interval),
        ("baseEjectionTime", &mut out.base_ejection_time),
    ] {
        let p = f.field(key);
        if let Some(dv) = f.take(key) {
            let d = duration::field(ctx, dv, &p)?;
            if d < Duration::from_millis(1) {
                return Err(ctx.invalid(&p, "must be at least 1ms"));
            }
            *slot = Some(d);
        }
    }
    if out.consecutive_local_origin_failures.is_some() && !out.split_external_local_origin_errors {
        ctx.warn(
            &f.field("consecutiveLocalOriginFailures"),
            "has no effect without splitExternalLocalOriginErrors",
        );
    }
    f.finish(ctx);
    Ok(out)
}
