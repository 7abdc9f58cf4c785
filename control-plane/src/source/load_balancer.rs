//! DestinationRule `trafficPolicy.loadBalancer` (istio/api `LoadBalancerSettings`;
//! XDS-SEMANTICS.md rows 18, 21, 22 and the §1d table).
//!
//! - `simple`: ROUND_ROBIN, LEAST_REQUEST (`LEAST_CONN` is its old name), RANDOM; PASSTHROUGH
//!   (original destination) has no meaning for an in-process client: warned, ROUND_ROBIN used.
//! - `consistentHash`: exactly one key — `httpHeaderName`, `httpCookie {name, path, ttl}`,
//!   `useSourceIp`, `httpQueryParameterName` — and at most one of `ringHash
//!   {minimumRingSize}` / `maglev {tableSize}` (a prime), or the deprecated top-level
//!   `minimumRingSize`. Default: ring hash with Envoy's default size, as istiod emits.
//!   `httpCookie.ttl` only matters for generating the cookie, which the mesh client does not
//!   do. gRPC clients hash only on headers (gRFC A42): cookie, source-IP and query keys give
//!   them a random hash per request.
//! - `localityLbSetting` (parsed and validated in [`super::locality`]): `enabled` (absent ⇒
//!   true) → locality-weighted balancing on the cluster (`locality_weighted_lb_config`);
//!   `distribute`, `failover` and `failoverPriority` reshape EDS per client from the locality
//!   and labels its ADS `Node` carries, as istiod does (see `translate::locality`).
//! - `warmup {duration, minimumPercent, aggression}` or the older `warmupDurationSecs` (slow
//!   start; `warmup` wins when both are set): istiod emits it as the cluster's
//!   `slow_start_config` for ROUND_ROBIN and LEAST_REQUEST and ignores it for other policies,
//!   which is warned here. `minimumPercent` within 0..=100, `aggression` above 0.
//! - `simple` + `consistentHash` together (a oneof) are invalid.

use std::time::Duration;

use serde_yaml_ng::Value;

use super::yaml::{join, Ctx, Fields};
use super::{duration, ConfigError};

/// Envoy's largest ring.
const MAX_RING_SIZE: i64 = 8_388_608;
/// Envoy's largest Maglev table.
const MAX_MAGLEV_TABLE: i64 = 5_000_011;

/// The load-balancing policy of a DestinationRule (or subset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LoadBalancer {
    /// `ROUND_ROBIN` (also the default).
    #[default]
    RoundRobin,
    /// `LEAST_REQUEST` (`LEAST_CONN` is accepted as its old name).
    LeastRequest,
    /// `RANDOM`.
    Random,
    /// `consistentHash`.
    ConsistentHash(ConsistentHash),
}

/// `consistentHash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistentHash {
    /// What the route hashes (its `hash_policy`).
    pub key: HashKey,
    /// How the cluster maps hashes to endpoints.
    pub algorithm: HashAlgorithm,
}

/// The hash key of `consistentHash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// `httpHeaderName`.
    Header(String),
    /// `httpCookie`.
    Cookie {
        /// `name`.
        name: String,
        /// `path`.
        path: Option<String>,
        /// `ttl`.
        ttl: Option<Duration>,
    },
    /// `useSourceIp: true`.
    SourceIp,
    /// `httpQueryParameterName`.
    QueryParameter(String),
}

/// `ringHash` / `maglev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// RING_HASH; `minimumRingSize` when set.
    RingHash {
        /// `minimumRingSize`.
        minimum_ring_size: Option<u64>,
    },
    /// MAGLEV; `tableSize` when set (a prime).
    Maglev {
        /// `tableSize`.
        table_size: Option<u64>,
    },
}

/// `warmup` / `warmupDurationSecs`: slow start for new endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warmup {
    /// `duration` (non-zero).
    pub duration: Duration,
    /// `minimumPercent` in parts per million (`None`: Envoy's 10 %).
    pub minimum_ppm: Option<u32>,
    /// `aggression` in thousandths (`None`: 1.0, linear).
    pub aggression_milli: Option<u32>,
}

/// What `trafficPolicy.loadBalancer` yields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// `warmup` / `warmupDurationSecs`, for ROUND_ROBIN and LEAST_REQUEST.
    pub warmup: Option<Warmup>,
    pub load_balancer: Option<LoadBalancer>,
    /// `localityLbSetting.enabled`.
    pub locality_weighted: Option<bool>,
    /// `localityLbSetting`.
    pub locality_lb: Option<super::locality::LocalityLbSetting>,
}

/// Parses `loadBalancer` at `path`.
pub(crate) fn parse(ctx: &mut Ctx<'_>, path: &str, v: &Value) -> Result<Parsed, ConfigError> {
    let mut lb = Fields::of(ctx, v, path)?;
    let mut out = Parsed::default();
    let simple_path = lb.field("simple");
    if let Some(simple) = lb.string(ctx, "simple")? {
        out.load_balancer = match simple.as_str() {
            "ROUND_ROBIN" => Some(LoadBalancer::RoundRobin),
            "LEAST_REQUEST" | "LEAST_CONN" => Some(LoadBalancer::LeastRequest),
            "RANDOM" => Some(LoadBalancer::Random),
            "UNSPECIFIED" => None,
            "PASSTHROUGH" => {
                ctx.warn(
                    &simple_path,
                    "PASSTHROUGH (original destination) has no meaning in-process; using ROUND_ROBIN",
                );
                Some(LoadBalancer::RoundRobin)
            }
            other => {
                return Err(ctx.invalid(&simple_path, format!("unknown load balancer `{other}`")))
            }
        };
    }
    let ch_path = lb.field("consistentHash");
    if let Some(chv) = lb.take("consistentHash") {
        if out.load_balancer.is_some() {
            return Err(ctx.invalid(&ch_path, "`simple` and `consistentHash` are exclusive"));
        }
        out.load_balancer = Some(LoadBalancer::ConsistentHash(consistent_hash(
            ctx, &ch_path, chv,
        )?));
    }
    out.warmup = warmup(ctx, &mut lb)?;
    if out.warmup.is_some()
        && matches!(
            out.load_balancer,
            Some(LoadBalancer::Random | LoadBalancer::ConsistentHash(_))
        )
    {
        ctx.warn(
            &lb.field("warmup"),
            "warmup applies to ROUND_ROBIN and LEAST_REQUEST only; ignored",
        );
        out.warmup = None;
    }
    let loc_path = lb.field("localityLbSetting");
    if let Some(lv) = lb.take("localityLbSetting") {
        let setting = super::locality::parse_setting(ctx, &loc_path, lv)?;
        out.locality_weighted = Some(setting.is_enabled());
        out.locality_lb = Some(setting);
    }
    lb.finish(ctx);
    Ok(out)
}

fn warmup(ctx: &mut Ctx<'_>, lb: &mut Fields<'_>) -> Result<Option<Warmup>, ConfigError> {
    let secs_path = lb.field("warmupDurationSecs");
    let legacy = match lb.take("warmupDurationSecs") {
        Some(v) => Some(duration::field(ctx, v, &secs_path)?),
        None => None,
    };
    let path = lb.field("warmup");
    let Some(v) = lb.take("warmup") else {
        return Ok(legacy.filter(|d| !d.is_zero()).map(|duration| Warmup {
            duration,
            minimum_ppm: None,
            aggression_milli: None,
        }));
    };
    let mut f = Fields::of(ctx, v, &path)?;
    let dpath = f.field("duration");
    let Some(dv) = f.take("duration") else {
        return Err(ctx.invalid(&dpath, "required"));
    };
    let duration = duration::field(ctx, dv, &dpath)?;
    let number =
        |ctx: &Ctx<'_>, f: &mut Fields<'_>, key: &str| -> Result<Option<f64>, ConfigError> {
            let p = f.field(key);
            match f.take(key) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| ctx.invalid(&p, "must be a number")),
            }
        };
    let minimum = number(ctx, &mut f, "minimumPercent")?;
    let aggression = number(ctx, &mut f, "aggression")?;
    f.finish(ctx);
    if let Some(m) = minimum {
        if !(0.0..=100.0).contains(&m) {
            return Err(ctx.invalid(
                &join(&path, "minimumPercent"),
                format!("{m} is not within 0..=100"),
            ));
        }
    }
    if let Some(a) = aggression {
        if !(a > 0.0 && a <= 1000.0) {
            return Err(ctx.invalid(
                &join(&path, "aggression"),
                format!("{a} must be greater than 0"),
            ));
        }
    }
    Ok((!duration.is_zero()).then_some(Warmup {
        duration,
        minimum_ppm: minimum.map(|m| (m * 10_000.0).round() as u32),
        aggression_milli: aggression.map(|a| ((a * 1000.0).round() as u32).max(1)),
    }))
}

fn consistent_hash(
    ctx: &mut Ctx<'_>,
    path: &str,
    v: &Value,
) -> Result<ConsistentHash, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let mut keys = Vec::new();
    if let Some(h) = f.string(ctx, "httpHeaderName")? {
        if h.is_empty() {
            return Err(ctx.invalid(&f.field("httpHeaderName"), "must not be empty"));
        }
        keys.push(HashKey::Header(h));
    }
    let cookie_path = f.field("httpCookie");
    if let Some(cv) = f.take("httpCookie") {
        let mut c = Fields::of(ctx, cv, &cookie_path)?;
        let name = c.required_string(ctx, "name")?;
        let path = c.string(ctx, "path")?.filter(|p| !p.is_empty());
        let ttl_path = c.field("ttl");
        let ttl = c
            .take("ttl")
            .map(|t| duration::field(ctx, t, &ttl_path))
            .transpose()?;
        c.finish(ctx);
        keys.push(HashKey::Cookie { name, path, ttl });
    }
    if f.bool(ctx, "useSourceIp")? == Some(true) {
        keys.push(HashKey::SourceIp);
    }
    if let Some(q) = f.string(ctx, "httpQueryParameterName")? {
        if q.is_empty() {
            return Err(ctx.invalid(&f.field("httpQueryParameterName"), "must not be empty"));
        }
        keys.push(HashKey::QueryParameter(q));
    }
    let key = match <[HashKey; 1]>::try_from(keys) {
        Ok([k]) => k,
        Err(keys) => {
            return Err(ctx.invalid(
                path,
                format!(
                    "exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName is required, found {}",
                    keys.len()
                ),
            ))
        }
    };
    let mut algorithm = None;
    let deprecated = f.int(ctx, "minimumRingSize", 1, MAX_RING_SIZE)?;
    let ring_path = f.field("ringHash");
    if let Some(rv) = f.take("ringHash") {
        let mut r = Fields::of(ctx, rv, &ring_path)?;
        let min = r.int(ctx, "minimumRingSize", 1, MAX_RING_SIZE)?;
        r.finish(ctx);
        algorithm = Some(HashAlgorithm::RingHash {
            minimum_ring_size: min.map(|n| n as u64),
        });
    }
    let maglev_path = f.field("maglev");
    if let Some(mv) = f.take("maglev") {
        if algorithm.is_some() {
            return Err(ctx.invalid(&maglev_path, "`ringHash` and `maglev` are exclusive"));
        }
        let mut m = Fields::of(ctx, mv, &maglev_path)?;
        let size = m.int(ctx, "tableSize", 2, MAX_MAGLEV_TABLE)?;
        if let Some(n) = size {
            if !is_prime(n as u64) {
                return Err(ctx.invalid(&m.field("tableSize"), format!("{n} is not a prime")));
            }
        }
        m.finish(ctx);
        algorithm = Some(HashAlgorithm::Maglev {
            table_size: size.map(|n| n as u64),
        });
    }
    let algorithm = match (algorithm, deprecated) {
        (Some(HashAlgorithm::RingHash { minimum_ring_size }), d) => HashAlgorithm::RingHash {
            minimum_ring_size: minimum_ring_size.or(d.map(|n| n as u64)),
        },
        (Some(m), _) => m,
        (None, d) => HashAlgorithm::RingHash {
            minimum_ring_size: d.map(|n| n as u64),
        },
    };
    f.finish(ctx);
    Ok(ConsistentHash { key, algorithm })
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}
