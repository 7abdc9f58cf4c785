//! VirtualService `http[].fault` (istio/api `virtual_service.proto` `HTTPFaultInjection`):
//! a fixed delay and/or an abort, each applied to a percentage of requests.
//!
//! Percentages follow istiod (`pilot/pkg/networking/core/route` `TranslateFault`): `percentage`
//! (a double in [0, 100]) is kept as parts per million; the deprecated integer `percent` of a
//! delay as whole percent. A fault without a percentage applies to **no** request (Istio API doc:
//! "If not specified, no request will be aborted"), which is warned about because it is rarely
//! what was meant. `exponentialDelay` is not supported by istiod either: warned, delay dropped.

use std::time::Duration;

use serde_yaml_ng::Value;

use super::yaml::{join, string, Ctx, Fields};
use super::{duration, ConfigError};

/// `fault`: what to inject on a route. At least one of the two is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `delay` (fixed delay only).
    pub delay: Option<FaultDelay>,
    /// `abort`.
    pub abort: Option<FaultAbort>,
}

/// `fault.delay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultDelay {
    /// `fixedDelay`.
    pub fixed_delay: Duration,
    /// Share of requests delayed, in parts per million (`None`: no request).
    pub per_million: Option<u32>,
}

/// `fault.abort`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultAbort {
    /// The status the request fails with.
    pub status: AbortStatus,
    /// Share of requests aborted, in parts per million (`None`: no request).
    pub per_million: Option<u32>,
}

/// `fault.abort.httpStatus` or `fault.abort.grpcStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortStatus {
    /// An HTTP status in [200, 599]; gRPC clients map it to a gRPC code (gRFC A33).
    Http(u32),
    /// A gRPC status code (0–16).
    Grpc(u32),
}

/// gRPC status names as Istio accepts them for `grpcStatus`, indexed by code.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Parses `fault` at `path` (`spec.http[i].fault`); `None` when nothing injectable remains.
pub(crate) fn parse(
    ctx: &mut Ctx<'_>,
    path: &str,
    v: &Value,
) -> Result<Option<Fault>, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let delay = match f.take("delay") {
        Some(d) => delay(ctx, &join(path, "delay"), d)?,
        None => None,
    };
    let abort = match f.take("abort") {
        Some(a) => Some(abort(ctx, &join(path, "abort"), a)?),
        None => None,
    };
    f.finish(ctx);
    if delay.is_none() && abort.is_none() {
        ctx.warn(path, "no `delay` or `abort` to inject; fault ignored");
        return Ok(None);
    }
    Ok(Some(Fault { delay, abort }))
}

fn delay(ctx: &mut Ctx<'_>, path: &str, v: &Value) -> Result<Option<FaultDelay>, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let mut per_million = percentage(ctx, &mut f)?;
    if let Some(p) = f.int(ctx, "percent", 0, 100)? {
        if per_million.is_none() {
            per_million = Some(p as u32 * 10_000);
        }
    }
    let fixed = match f.take("fixedDelay") {
        Some(d) => Some(duration::field(ctx, d, &f.field("fixedDelay"))?),
        None => None,
    };
    let exponential = f.has("exponentialDelay");
    f.ignore(&["exponentialDelay"]);
    f.finish(ctx);
    let Some(fixed_delay) = fixed else {
        if exponential {
            ctx.warn(
                &join(path, "exponentialDelay"),
                "exponential delays are not supported (nor by istiod); delay ignored",
            );
            return Ok(None);
        }
        return Err(ctx.invalid(&join(path, "fixedDelay"), "required"));
    };
    if per_million.is_none() {
        ctx.warn(path, "no `percentage`: no request will be delayed");
    }
    Ok(Some(FaultDelay {
        fixed_delay,
        per_million,
    }))
}

fn abort(ctx: &mut Ctx<'_>, path: &str, v: &Value) -> Result<FaultAbort, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let per_million = percentage(ctx, &mut f)?;
    let http = f.int(ctx, "httpStatus", 200, 599)?;
    let grpc_path = f.field("grpcStatus");
    let grpc = match f.take("grpcStatus") {
        Some(g) => Some(grpc_code(ctx, &grpc_path, g)?),
        None => None,
    };
    let other = ["http2Error"].iter().any(|k| f.has(k));
    f.finish(ctx);
    let status = match (http, grpc) {
        (Some(h), None) => AbortStatus::Http(h as u32),
        (None, Some(g)) => AbortStatus::Grpc(g),
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(path, "only one of `httpStatus`, `grpcStatus` may be set"))
        }
        (None, None) if other => {
            return Err(ctx.invalid(
                path,
                "only `httpStatus` and `grpcStatus` aborts are supported",
            ))
        }
        (None, None) => {
            return Err(ctx.invalid(path, "one of `httpStatus`, `grpcStatus` is required"))
        }
    };
    if per_million.is_none() {
        ctx.warn(path, "no `percentage`: no request will be aborted");
    }
    Ok(FaultAbort {
        status,
        per_million,
    })
}

/// `percentage: { value: <double in [0, 100]> }` as parts per million (istiod: value × 10 000).
fn percentage(ctx: &mut Ctx<'_>, f: &mut Fields<'_>) -> Result<Option<u32>, ConfigError> {
    let path = f.field("percentage");
    let Some(v) = f.take("percentage") else {
        return Ok(None);
    };
    let mut p = Fields::of(ctx, v, &path)?;
    let vpath = p.field("value");
    let value = match p.take("value") {
        None => 0.0,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(other) => string(ctx, other, &vpath)?
            .trim()
            .parse::<f64>()
            .unwrap_or(f64::NAN),
    };
    p.finish(ctx);
    if !(0.0..=100.0).contains(&value) {
        return Err(ctx.invalid(&vpath, "must be a number in [0, 100]"));
    }
    Ok(Some((value * 10_000.0).round() as u32))
}

fn grpc_code(ctx: &Ctx<'_>, path: &str, v: &Value) -> Result<u32, ConfigError> {
    let s = string(ctx, v, path)?;
    let name = s.trim().to_ascii_uppercase();
    if let Some(code) = GRPC_CODES.iter().position(|c| *c == name) {
        return Ok(code as u32);
    }
    match name.parse::<u32>() {
        Ok(code) if code <= 16 => Ok(code),
        _ => Err(ctx.invalid(
            path,
            format!("`{s}` is not a gRPC status (e.g. `UNAVAILABLE`, `NOT_FOUND`)"),
        )),
    }
}
