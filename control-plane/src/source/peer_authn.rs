//! `PeerAuthentication` (`security.istio.io/v1`, `v1beta1`; istio/api
//! `security/v1beta1/peer_authentication.proto`): which mTLS mode a workload's ports accept.
//!
//! Supported: `selector.matchLabels` (absent ⇒ namespace-wide; in [`ROOT_NAMESPACE`] ⇒
//! mesh-wide), `mtls.mode` (`UNSET`, `DISABLE`, `PERMISSIVE`, `STRICT`; absent ⇒ `UNSET`) and
//! `portLevelMtls` (`port → {mode}`, only with a selector, as Istio's validation requires).
//! Refused, naming the field: an unknown mode, `portLevelMtls` without a selector, a port out of
//! range, `targetRef(s)`, and any other field of `mtls` or of a port entry.
//!
//! How the modes combine ([`effective_mode`], Istio's `authn` policy applier): the workload-level
//! policy (a selector matching the workload's labels) wins over the namespace-wide one, which
//! wins over the mesh-wide one; `UNSET` inherits from the next level, and Istio's default at the
//! top is `PERMISSIVE`. A port listed in the workload policy's `portLevelMtls` takes that mode
//! (`UNSET` there inherits the workload's). When several policies tie on a level, Istio takes the
//! oldest; we take the first in load order.

use serde_yaml_ng::Value;

use super::authz::ROOT_NAMESPACE;
use super::model::{Labels, Meta};
use super::yaml::{join, Ctx, Fields};
use super::ConfigError;

/// A `PeerAuthentication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuthentication {
    /// Identity and origin.
    pub meta: Meta,
    /// `selector.matchLabels`; `None` selects every workload of the namespace (of the mesh, in
    /// the root namespace).
    pub selector: Option<Labels>,
    /// `mtls.mode`.
    pub mode: MtlsMode,
    /// `portLevelMtls`: workload port → mode.
    pub port_level: std::collections::BTreeMap<u32, MtlsMode>,
}

/// `PeerAuthentication.MutualTLS.Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MtlsMode {
    /// Inherit from the parent level.
    Unset,
    /// Plaintext only.
    Disable,
    /// mTLS and plaintext.
    Permissive,
    /// mTLS only.
    Strict,
}

impl MtlsMode {
    /// `self`, or `parent` when `self` is `UNSET`.
    pub fn or(self, parent: MtlsMode) -> MtlsMode {
        match self {
            MtlsMode::Unset => parent,
            m => m,
        }
    }
}

/// Parses the `spec` of a PeerAuthentication.
pub(crate) fn parse(
    ctx: &mut Ctx<'_>,
    meta: Meta,
    mut spec: Fields<'_>,
) -> Result<PeerAuthentication, ConfigError> {
    for key in ["targetRef", "targetRefs"] {
        if spec.has(key) {
            return Err(ctx.invalid(
                &spec.field(key),
                "targetRef(s) not supported; select workloads with `selector.matchLabels`",
            ));
        }
    }
    let selector = match spec.take("selector") {
        Some(v) => {
            let mut f = Fields::of(ctx, v, "spec.selector")?;
            let labels = f.string_map(ctx, "matchLabels")?;
            f.finish_strict(ctx)?;
            Some(labels)
        }
        None => None,
    };
    let mode = match spec.take("mtls") {
        Some(v) => mode_of(ctx, v, "spec.mtls")?,
        None => MtlsMode::Unset,
    };
    let mut port_level = std::collections::BTreeMap::new();
    if let Some(v) = spec.take("portLevelMtls") {
        let path = "spec.portLevelMtls";
        if selector.is_none() {
            return Err(ctx.invalid(path, "portLevelMtls requires a workload `selector`"));
        }
        let Value::Mapping(map) = v else {
            return Err(ctx.invalid(path, "expected a mapping of port to {mode}"));
        };
        for (k, pv) in map {
            let key = match k {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return Err(ctx.invalid(path, "keys must be port numbers")),
            };
            let p = join(path, &key);
            let port = key
                .parse::<u32>()
                .ok()
                .filter(|p| (1..=65535).contains(p))
                .ok_or_else(|| ctx.invalid(&p, format!("`{key}` is not a port (1-65535)")))?;
            port_level.insert(port, mode_of(ctx, pv, &p)?);
        }
    }
    spec.finish_strict(ctx)?;
    Ok(PeerAuthentication {
        meta,
        selector,
        mode,
        port_level,
    })
}

fn mode_of(ctx: &Ctx<'_>, v: &Value, path: &str) -> Result<MtlsMode, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let mode = match f.string(ctx, "mode")?.as_deref() {
        None | Some("UNSET") => MtlsMode::Unset,
        Some("DISABLE") => MtlsMode::Disable,
        Some("PERMISSIVE") => MtlsMode::Permissive,
        Some("STRICT") => MtlsMode::Strict,
        Some(other) => {
            return Err(ctx.invalid(
                &join(path, "mode"),
                format!("unknown mode `{other}` (UNSET, DISABLE, PERMISSIVE or STRICT)"),
            ))
        }
    };
    f.finish_strict(ctx)?;
    Ok(mode)
}

/// The mode of port `port` of a workload in `namespace` with `labels`, from `policies`; `None`
/// when no policy says anything (every level `UNSET` or absent — Istio then uses its default,
/// PERMISSIVE; see the translator for what is emitted).
pub fn effective_mode(
    policies: &[PeerAuthentication],
    namespace: &str,
    labels: &Labels,
    port: u32,
) -> Option<MtlsMode> {
    let workload = policies.iter().find(|p| {
        p.meta.namespace == namespace
            && p.selector
                .as_ref()
                .is_some_and(|s| crate::registry::labels_match(labels, s))
    });
    let ns = policies
        .iter()
        .find(|p| p.meta.namespace == namespace && p.selector.is_none());
    let mesh = policies
        .iter()
        .find(|p| p.meta.namespace == ROOT_NAMESPACE && p.selector.is_none());
    let mut mode = MtlsMode::Unset;
    for p in [mesh, ns].into_iter().flatten() {
        mode = p.mode.or(mode);
    }
    if let Some(w) = workload {
        mode = w.mode.or(mode);
        if let Some(m) = w.port_level.get(&port) {
            mode = m.or(mode);
        }
    }
    (mode != MtlsMode::Unset).then_some(mode)
}
