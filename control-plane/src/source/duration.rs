//! Istio duration strings (`5s`, `100ms`, `1.5s`, `1m30s`): the Go `time.ParseDuration` form the
//! Istio CRDs validate (`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`, plus `us`/`µs`/`ns`), which is also
//! what `kubectl` round-trips for `google.protobuf.Duration` fields.

use std::time::Duration;

use serde_yaml_ng::Value;

use super::yaml::{string, Ctx};
use super::ConfigError;

/// Parses a duration string; `None` when it is not one.
pub(crate) fn parse(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().ok().filter(|v: &f64| v.is_finite())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit = match unit {
            "h" => 3_600e9,
            "m" => 60e9,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        let nanos = value * nanos_per_unit;
        if nanos > u64::MAX as f64 {
            return None;
        }
        total = total.checked_add(Duration::from_nanos(nanos.round() as u64))?;
        rest = tail;
    }
    Some(total)
}

/// Reads the duration at `path`, naming the field when it is not one.
pub(crate) fn field(ctx: &Ctx<'_>, v: &Value, path: &str) -> Result<Duration, ConfigError> {
    let s = string(ctx, v, path)?;
    parse(&s).ok_or_else(|| {
        ctx.invalid(
            path,
            format!("`{s}` is not a duration (e.g. `5s`, `100ms`, `1m30s`)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
        for bad in ["", "5", "s", "5x", "-1s", "1..2s", "1e3s"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
