//! Localities: WorkloadEntry `spec.locality` and ServiceEntry `spec.endpoints[].locality`
//! (istio/api `WorkloadEntry.locality`), and DestinationRule `loadBalancer.localityLbSetting`
//! (istio/api `LocalityLoadBalancerSetting`; XDS-SEMANTICS.md row 18).
//!
//! An endpoint locality is Istio's `region/zone/subzone` string: each part non-empty, fewer parts
//! leave the lower levels empty; a fourth part and beyond are dropped with a warning (Istio's
//! `SplitLocalityLabel` keeps three; Envoy's `Locality` has three levels). An empty string means
//! "no locality".
//!
//! `localityLbSetting` is validated as istiod validates it (`ValidateLocalityLbSetting`): not
//! both `distribute` and `failover`; `distribute[].to` weights in `1..=100` summing to 100 per
//! `from`; `from` / `to` localities with no empty part and at most one `*`, only at the end,
//! none covering another of the same list; `failover` regions (no `/`, no `*`) with `from` ≠
//! `to`; `failover` with a topology label (`topology.kubernetes.io/region`, `…/zone`,
//! `topology.istio.io/subzone`) in `failoverPriority` is refused. Each is a [`ConfigError`]
//! naming the resource and field. How the setting reshapes EDS per client is in
//! [`crate::translate`]'s `locality` module.

use serde_yaml_ng::Value;

use super::yaml::{index, join, Ctx, Fields};
use super::ConfigError;

/// Label Istio gives every endpoint and proxy for its locality's region.
pub const LABEL_REGION: &str = "topology.kubernetes.io/region";
/// Label for the locality's zone.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// Label for the locality's sub-zone.
pub const LABEL_SUBZONE: &str = "topology.istio.io/subzone";

/// A locality (Envoy `core.v3.Locality`); all parts empty means "none".
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locality {
    /// `region`.
    pub region: String,
    /// `zone`.
    pub zone: String,
    /// `sub_zone`.
    pub sub_zone: String,
}

impl Locality {
    /// A locality from its three parts.
    pub fn new(region: &str, zone: &str, sub_zone: &str) -> Self {
        Locality {
            region: region.to_string(),
            zone: zone.to_string(),
            sub_zone: sub_zone.to_string(),
        }
    }

    /// True when no part is set.
    pub fn is_empty(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty() && self.sub_zone.is_empty()
    }
}

impl std::fmt::Display for Locality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [&self.region, &self.zone, &self.sub_zone];
        let n = parts
            .iter()
            .rposition(|p| !p.is_empty())
            .map_or(0, |i| i + 1);
        for (i, p) in parts[..n].iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(p)?;
        }
        Ok(())
    }
}

/// One `distribute[]` entry: from the clients in `from`, send `to[locality]` percent of requests
/// to each destination locality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribute {
    /// `from` (`region/zone/subzone`, `*` wildcard at the end).
    pub from: String,
    /// `to`, in the order written: locality pattern → weight (percent).
    pub to: Vec<(String, u32)>,
}

/// One `failover[]` entry: clients in region `from` fail over to region `to` first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// `from` region.
    pub from: String,
    /// `to` region.
    pub to: String,
}

/// `localityLbSetting`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalityLbSetting {
    /// `enabled` (absent: enabled, as written settings are).
    pub enabled: Option<bool>,
    /// `distribute`.
    pub distribute: Vec<Distribute>,
    /// `failover`.
    pub failover: Vec<Failover>,
    /// `failoverPriority`: label names, or `name=value` to compare against a fixed value.
    pub failover_priority: Vec<String>,
}

impl LocalityLbSetting {
    /// False only for `enabled: false`.
    pub fn is_enabled(&self) -> bool {
        self.enabled != Some(false)
    }
}

/// Splits an Istio locality string into its parts (`None` for an empty part).
fn parts(s: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = s.split('/').collect();
    parts.iter().all(|p| !p.is_empty()).then_some(parts)
}

/// Reads the endpoint locality `key` of `fields` (absent or empty ⇒ none).
pub(crate) fn endpoint_locality(
    ctx: &mut Ctx<'_>,
    fields: &mut Fields<'_>,
    key: &str,
) -> Result<Locality, ConfigError> {
    let path = fields.field(key);
    let Some(s) = fields.string(ctx, key)? else {
        return Ok(Locality::default());
    };
    parse_endpoint_locality(ctx, &path, &s)
}

fn parse_endpoint_locality(
    ctx: &mut Ctx<'_>,
    path: &str,
    s: &str,
) -> Result<Locality, ConfigError> {
    if s.is_empty() {
        return Ok(Locality::default());
    }
    let Some(p) = parts(s) else {
        return Err(ctx.invalid(
            path,
            format!("locality `{s}` has an empty part (expected region/zone/subzone)"),
        ));
    };
    if s.contains('*') {
        return Err(ctx.invalid(
            path,
            format!("locality `{s}`: `*` is only allowed in localityLbSetting"),
        ));
    }
    if p.len() > 3 {
        ctx.warn(
            path,
            format!("locality `{s}` has more than three parts; only region/zone/subzone are used"),
        );
    }
    let get = |i: usize| p.get(i).copied().unwrap_or("");
    Ok(Locality::new(get(0), get(1), get(2)))
}

/// Parses `localityLbSetting` at `path`.
pub(crate) fn parse_setting(
    ctx: &mut Ctx<'_>,
    path: &str,
    v: &Value,
) -> Result<LocalityLbSetting, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let mut out = LocalityLbSetting {
        enabled: f.bool(ctx, "enabled")?,
        ..Default::default()
    };
    for (dpath, dv) in f.list(ctx, "distribute")? {
        let mut d = Fields::of(ctx, dv, &dpath)?;
        let from = d.required_string(ctx, "from")?;
        let to_path = d.field("to");
        let mut to = Vec::new();
        if let Some(tv) = d.take("to") {
            let Value::Mapping(m) = tv else {
                return Err(ctx.invalid(&to_path, "expected a mapping of locality to weight"));
            };
            for (k, w) in m {
                let Value::String(k) = k else {
                    return Err(ctx.invalid(&to_path, "locality keys must be strings"));
                };
                let wpath = join(&to_path, k);
                let w = super::yaml::int(ctx, w, &wpath, 1, 100)?;
                to.push((k.clone(), w as u32));
            }
        }
        let total: u32 = to.iter().map(|(_, w)| w).sum();
        if total != 100 {
            return Err(ctx.invalid(&to_path, format!("total locality weight {total} != 100")));
        }
        validate_patterns(ctx, &to_path, to.iter().map(|(l, _)| l.as_str()))?;
        d.finish(ctx);
        out.distribute.push(Distribute { from, to });
    }
    validate_patterns(
        ctx,
        &join(path, "distribute"),
        out.distribute.iter().map(|d| d.from.as_str()),
    )?;
    for (fpath, fv) in f.list(ctx, "failover")? {
        let mut fo = Fields::of(ctx, fv, &fpath)?;
        let from = fo.required_string(ctx, "from")?;
        let to = fo.required_string(ctx, "to")?;
        fo.finish(ctx);
        if from == to {
            return Err(ctx.invalid(
                &fpath,
                format!("failover `from` and `to` must be different regions (both `{from}`)"),
            ));
        }
        for (k, r) in [("from", &from), ("to", &to)] {
            if r.is_empty() || r.contains('/') || r.contains('*') {
                return Err(ctx.invalid(
                    &join(&fpath, k),
                    format!("`{r}`: failover names a region only (no `/`, no `*`, not empty)"),
                ));
            }
        }
        out.failover.push(Failover { from, to });
    }
    let fp_path = f.field("failoverPriority");
    out.failover_priority = f.strings(ctx, "failoverPriority")?;
    for (i, l) in out.failover_priority.iter().enumerate() {
        let name = l.split('=').next().unwrap_or("");
        if name.is_empty() || l.matches('=').count() > 1 {
            return Err(ctx.invalid(
                &index(&fp_path, i),
                format!("`{l}`: expected a label name or name=value"),
            ));
        }
        if !out.failover.is_empty() && [LABEL_REGION, LABEL_ZONE, LABEL_SUBZONE].contains(&name) {
            return Err(ctx.invalid(
                &index(&fp_path, i),
                format!("can not simultaneously set `failover` and topology label `{name}`"),
            ));
        }
    }
    if !out.distribute.is_empty() && !out.failover.is_empty() {
        return Err(ctx.invalid(
            path,
            "can not simultaneously specify `distribute` and `failover`",
        ));
    }
    f.finish(ctx);
    Ok(out)
}

/// A locality pattern as `[region, zone, subzone]`, absent levels `None` (= any).
fn pattern(s: &str) -> Option<[Option<&str>; 3]> {
    let p: Vec<&str> = s.splitn(3, '/').collect();
    if p.iter().any(|x| x.is_empty()) {
        return None;
    }
    Some([p.first().copied(), p.get(1).copied(), p.get(2).copied()])
}

/// True when every locality `b` matches is matched by `a`.
fn covers(a: &[Option<&str>; 3], b: &[Option<&str>; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| match (x, y) {
        (None | Some("*"), _) => true,
        (Some(x), Some(y)) => x == y,
        (Some(_), None) => false,
    })
}

fn validate_patterns<'a>(
    ctx: &Ctx<'_>,
    path: &str,
    list: impl Iterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    let mut seen: Vec<(&str, [Option<&str>; 3])> = Vec::new();
    for s in list {
        let stars = s.matches('*').count();
        if stars > 1 || (stars == 1 && !s.ends_with('*')) {
            return Err(ctx.invalid(
                path,
                format!("locality `{s}`: at most one `*` wildcard, and only at the end"),
            ));
        }
        let Some(p) = pattern(s) else {
            return Err(ctx.invalid(
                path,
                format!("locality `{s}` must not contain an empty region/zone/subzone"),
            ));
        };
        if let Some((prev, _)) = seen.iter().find(|(_, q)| covers(q, &p) || covers(&p, q)) {
            return Err(ctx.invalid(path, format!("locality `{s}` overlaps `{prev}`")));
        }
        seen.push((s, p));
    }
    Ok(())
}

/// True when the locality `loc` matches the pattern `rule` (Istio's `LocalityMatch`: a missing
/// or `*` level matches anything; a region `*` matches every region).
pub fn matches(loc: &Locality, rule: &str) -> bool {
    let mut p = rule.splitn(3, '/');
    let level = |r: Option<&str>, v: &str, region: bool| match r {
        Some("*") => true,
        None | Some("") => !region,
        Some(r) => r == v,
    };
    level(p.next(), &loc.region, true)
        && level(p.next(), &loc.zone, false)
        && level(p.next(), &loc.sub_zone, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(w: &mut Vec<super::super::Warning>) -> Ctx<'_> {
        Ctx {
            file: "f.yaml".into(),
            line: 1,
            resource: "WorkloadEntry/default/we".into(),
            warnings: w,
        }
    }

    #[test]
    fn endpoint_locality_syntax() {
        let mut w = Vec::new();
        let mut c = ctx(&mut w);
        let p = "spec.locality";
        assert_eq!(
            parse_endpoint_locality(&mut c, p, "us/us-east-1/az-1").unwrap(),
            Locality::new("us", "us-east-1", "az-1")
        );
        assert_eq!(
            parse_endpoint_locality(&mut c, p, "us").unwrap(),
            Locality::new("us", "", "")
        );
        assert!(parse_endpoint_locality(&mut c, p, "").unwrap().is_empty());
        for bad in ["us//a", "/us", "us/", "us/*"] {
            let e = parse_endpoint_locality(&mut c, p, bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("spec.locality"), "{e}");
            assert!(e.contains("WorkloadEntry/default/we"), "{e}");
        }
        let four = parse_endpoint_locality(&mut c, p, "us/e/az/r11").unwrap();
        assert_eq!(four, Locality::new("us", "e", "az"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].field, "spec.locality");
    }

    #[test]
    fn display_and_match() {
        assert_eq!(Locality::new("a", "b", "").to_string(), "a/b");
        assert_eq!(Locality::new("a", "", "").to_string(), "a");
        let l = Locality::new("a", "b", "c");
        assert!(matches(&l, "a"));
        assert!(matches(&l, "a/*"));
        assert!(matches(&l, "*"));
        assert!(matches(&l, "a/b/c"));
        assert!(!matches(&l, "a/x"));
        assert!(!matches(&l, "b/*"));
    }

    #[test]
    fn overlapping_patterns() {
        let p = |s| pattern(s).unwrap();
        assert!(covers(&p("a"), &p("a/b")));
        assert!(covers(&p("a/*"), &p("a/b/c")));
        assert!(covers(&p("*"), &p("x")));
        assert!(!covers(&p("a/b"), &p("a/c")));
        assert!(!covers(&p("a/b"), &p("a")));
    }
}
