//! DestinationRule `trafficPolicy.tls` and `trafficPolicy.portLevelSettings[].tls` (istio/api
//! `destination_rule.proto` `ClientTLSSettings`), for the rule and for each subset.
//!
//! Modes DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL with `sni` and `subjectAltNames`. A proxyless
//! client gets its certificates from certificate provider instances, not from files or SDS
//! (gRFC A29), so `credentialName`, `clientCertificate`, `privateKey`, `caCertificates` and
//! `caCrl` are warned about and not used: the emitted context names the mesh's own provider
//! instance (see `translate::tls`). `insecureSkipVerify` is warned about and never honoured:
//! the mesh always verifies. In `portLevelSettings` only `port` and `tls` are read.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::model::{ClientTls, TlsMode, TlsPolicy};
use super::yaml::{Ctx, Fields};
use super::ConfigError;

/// Reads `tls` and `portLevelSettings` of a `trafficPolicy` mapping.
pub(crate) fn traffic_policy_tls(
    ctx: &mut Ctx<'_>,
    tp: &mut Fields<'_>,
) -> Result<TlsPolicy, ConfigError> {
    let mut out = TlsPolicy::default();
    let path = tp.field("tls");
    if let Some(v) = tp.take("tls") {
        out.tls = Some(client_tls(ctx, v, &path)?);
    }
    let mut ports = BTreeMap::new();
    for (path, v) in tp.list(ctx, "portLevelSettings")? {
        let mut f = Fields::of(ctx, v, &path)?;
        let port_path = f.field("port");
        let Some(pv) = f.take("port") else {
            return Err(ctx.invalid(&port_path, "required"));
        };
        let mut p = Fields::of(ctx, pv, &port_path)?;
        let Some(number) = p.int(ctx, "number", 1, 65535)? else {
            return Err(ctx.invalid(&super::yaml::join(&port_path, "number"), "required"));
        };
        p.finish(ctx);
        let tls_path = f.field("tls");
        if let Some(tv) = f.take("tls") {
            let tls = client_tls(ctx, tv, &tls_path)?;
            if ports.insert(number as u32, tls).is_some() {
                return Err(ctx.invalid(&port_path, format!("duplicate port {number}")));
            }
        }
        f.finish(ctx);
    }
    out.ports = ports;
    Ok(out)
}

fn client_tls(ctx: &mut Ctx<'_>, v: &Value, path: &str) -> Result<ClientTls, ConfigError> {
    let mut f = Fields::of(ctx, v, path)?;
    let mode = match f.string(ctx, "mode")?.as_deref() {
        None | Some("DISABLE") => TlsMode::Disable,
        Some("SIMPLE") => TlsMode::Simple,
        Some("MUTUAL") => TlsMode::Mutual,
        Some("ISTIO_MUTUAL") => TlsMode::IstioMutual,
        Some(other) => {
            return Err(ctx.invalid(
                &f.field("mode"),
                format!("unknown mode `{other}` (DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL)"),
            ))
        }
    };
    let sni = f.string(ctx, "sni")?.filter(|s| !s.is_empty());
    let subject_alt_names = f.strings(ctx, "subjectAltNames")?;
    for key in [
        "credentialName",
        "clientCertificate",
        "privateKey",
        "caCertificates",
        "caCrl",
    ] {
        if f.take(key).is_some() {
            ctx.warn(
                &f.field(key),
                "not supported for proxyless clients (certificates come from the client's \
                 certificate provider instance `default`, gRFC A29); ignored",
            );
        }
    }
    if f.bool(ctx, "insecureSkipVerify")? == Some(true) {
        ctx.warn(
            &f.field("insecureSkipVerify"),
            "not supported: the mesh always verifies the server; ignored",
        );
    }
    f.finish(ctx);
    Ok(ClientTls {
        mode,
        sni,
        subject_alt_names,
    })
}
