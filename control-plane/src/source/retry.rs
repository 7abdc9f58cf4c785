//! VirtualService `http[].retries` (istio/api `HTTPRetry`) and `http[].timeout`.
//!
//! Only what gRPC's xDS clients use is modelled besides `perTryTimeout` (which Envoy uses and
//! gRPC ignores, XDS-SEMANTICS.md row 13): `attempts`, `retryOn`, `perTryTimeout`. The other
//! HTTPRetry fields (`retryRemoteLocalities`, `retryIgnorePreviousHosts`, `backoff`) are warned
//! about and ignored.

use std::time::Duration;

use serde_yaml_ng::Value;

use super::yaml::{Ctx, Fields};
use super::{duration, ConfigError};

/// `retries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retries {
    /// `attempts`: retries after the first try (Envoy `num_retries`); 0 disables retries.
    pub attempts: u32,
    /// `retryOn`: Envoy/gRPC retry conditions (`unavailable`, `cancelled`, `5xx`, …), in order.
    pub retry_on: Vec<String>,
    /// `perTryTimeout`.
    pub per_try_timeout: Option<Duration>,
}

/// Parses `retries` at `path` (`spec.http[i].retries`).
pub(crate) fn parse(ctx: &mut Ctx<'_>, path: &str, v: &Value) -> Result<Retries, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let attempts = f.int(ctx, "attempts", 0, i64::from(i32::MAX))?.unwrap_or(0) as u32;
    let retry_on = f
        .string(ctx, "retryOn")?
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let per_try_timeout = match f.take("perTryTimeout") {
        Some(d) => Some(duration::field(ctx, d, &f.field("perTryTimeout"))?),
        None => None,
    };
    f.finish(ctx);
    Ok(Retries {
        attempts,
        retry_on,
        per_try_timeout,
    })
}

/// Parses `timeout` at `path` (`spec.http[i].timeout`).
pub(crate) fn parse_timeout(ctx: &Ctx<'_>, path: &str, v: &Value) -> Result<Duration, ConfigError> {
    duration::field(ctx, v, path)
}
