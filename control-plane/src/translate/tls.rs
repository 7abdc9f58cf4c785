//! DestinationRule `tls` → the cluster's `transport_socket`, in istiod's proxyless form
//! (istio/istio `pilot/pkg/networking/grpcgen/cds.go` `applyTLS`, `grpcgen.go`
//! `buildCommonTLSContext`; gRFC A29).
//!
//! What istiod does, and where this control plane differs:
//! - **ISTIO_MUTUAL** — as istiod: transport socket `envoy.transport_sockets.tls` with an
//!   `UpstreamTlsContext` whose identity is certificate provider instance `default` /
//!   certificate `default` and whose roots are instance `default` / certificate `ROOTCA`, sent
//!   in both the current fields (`tls_certificate_provider_instance`, the validation context's
//!   `ca_certificate_provider_instance`) and the deprecated ones older gRPC clients read
//!   (`tls_certificate_certificate_provider_instance`,
//!   `validation_context_certificate_provider_instance`), as istiod does since it began
//!   sending both. `match_subject_alt_names` are exact matches on the destination's service
//!   accounts as SPIFFE IDs (`spiffe://<trust domain>/ns/<ns>/sa/<sa>`, from its
//!   WorkloadEntries; istiod: `push.ServiceAccounts[host][port]`), sorted. **Differs**:
//!   the rule's `subjectAltNames`, when set, replace them (what istiod's Envoy generator does
//!   for ISTIO_MUTUAL; grpcgen ignores them), and its `sni` is sent (grpcgen sends none).
//! - **SIMPLE / MUTUAL** — istiod's grpcgen emits nothing for them (a TODO): the client would
//!   then connect in plaintext. **Differs**: this control plane emits the same context with
//!   the rule's `sni` and `subjectAltNames` (MUTUAL with the `default` identity, SIMPLE without
//!   a client certificate), roots from instance `default` — a proxyless client has no other
//!   way to name certificates (file paths and `credentialName` are warned about at load).
//! - **DISABLE**, or no `tls`: no transport socket (plaintext), as istiod.
//! - **No auto-mTLS**, as istiod's grpcgen: without an explicit mode nothing is emitted, so
//!   gRPC clients that were not built with xDS credentials keep working.
//!
//! The effective settings for a cluster are Istio's `MergeTrafficPolicy`: the subset's
//! `portLevelSettings` for the port, else the subset's `tls`, else the rule's port-level, else
//! the rule's `tls`.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{transport_socket::ConfigType, TransportSocket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::{
        CertificateProviderInstance, CombinedCertificateValidationContext, ValidationContextType,
    },
    CertificateProviderPluginInstance, CertificateValidationContext, CommonTlsContext,
    UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};

use super::peer_authn::{CERTIFICATE_PROVIDER_INSTANCE, ROOT_CERTIFICATE_NAME};
use super::to_any;
use crate::registry::Service;
use crate::source::model::{ClientTls, DestinationRule, TlsMode};

/// The trust domain the SPIFFE IDs of service accounts are written in: Istio's default
/// (`meshConfig.trustDomain`), which the control plane's CA uses unless told otherwise.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// The transport socket name gRPC insists on (grpc-go `securityConfigFromCluster`).
const TRANSPORT_SOCKET_NAME: &str = "envoy.transport_sockets.tls";

/// The TLS settings that apply to the cluster of `subset` (empty: the default cluster) on
/// `port` (Istio `MergeTrafficPolicy`).
pub(crate) fn effective<'d>(
    dr: Option<&'d DestinationRule>,
    subset: &str,
    port: u32,
) -> Option<&'d ClientTls> {
    let dr = dr?;
    let from_subset = dr
        .subsets
        .iter()
        .find(|s| !subset.is_empty() && s.name == subset)
        .and_then(|s| s.tls.for_port(port));
    from_subset.or_else(|| dr.tls.for_port(port))
}

/// Sets `c.transport_socket` for `tls` towards `svc`; ISTIO_MUTUAL without `subjectAltNames`
/// expects the SPIFFE IDs of the service's accounts in `trust_domain`.
pub(crate) fn apply(c: &mut Cluster, tls: Option<&ClientTls>, svc: &Service, trust_domain: &str) {
    let Some(tls) = tls else { return };
    let (identity, sans) = match tls.mode {
        TlsMode::Disable => return,
        TlsMode::Simple => (false, tls.subject_alt_names.clone()),
        TlsMode::Mutual => (true, tls.subject_alt_names.clone()),
        TlsMode::IstioMutual if !tls.subject_alt_names.is_empty() => {
            (true, tls.subject_alt_names.clone())
        }
        TlsMode::IstioMutual => (true, service_accounts(svc, trust_domain)),
    };
    let ctx = UpstreamTlsContext {
        common_tls_context: Some(common_tls_context(identity, &sans)),
        sni: tls.sni.clone().unwrap_or_default(),
        ..Default::default()
    };
    c.transport_socket = Some(TransportSocket {
        name: TRANSPORT_SOCKET_NAME.into(),
        config_type: Some(ConfigType::TypedConfig(to_any(&ctx))),
    });
}

/// The SPIFFE IDs of the service's workloads, sorted and without duplicates.
fn service_accounts(svc: &Service, trust_domain: &str) -> Vec<String> {
    let mut ids: Vec<String> = svc
        .endpoints
        .iter()
        .filter_map(|e| e.service_account.as_deref())
        .map(|sa| format!("spiffe://{trust_domain}/ns/{}/sa/{sa}", svc.namespace))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// istiod's `buildCommonTLSContext`: identity (when `identity`) and roots from provider
/// instance `default`, in the current and the deprecated fields, SANs matched exactly. Shared
/// by the client's `UpstreamTlsContext` and the server's `DownstreamTlsContext`
/// (`translate::peer_authn`, which passes no SANs: gRPC refuses them on servers).
#[allow(deprecated)] // the deprecated instance fields are what older gRPC clients read
pub(crate) fn common_tls_context(identity: bool, sans: &[String]) -> CommonTlsContext {
    let plugin = |cert: &str| CertificateProviderPluginInstance {
        instance_name: CERTIFICATE_PROVIDER_INSTANCE.into(),
        certificate_name: cert.into(),
    };
    let legacy = |cert: &str| CertificateProviderInstance {
        instance_name: CERTIFICATE_PROVIDER_INSTANCE.into(),
        certificate_name: cert.into(),
    };
    CommonTlsContext {
        tls_certificate_provider_instance: identity.then(|| plugin("default")),
        tls_certificate_certificate_provider_instance: identity.then(|| legacy("default")),
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_subject_alt_names: sans
                        .iter()
                        .map(|s| StringMatcher {
                            match_pattern: Some(MatchPattern::Exact(s.clone())),
                            ignore_case: false,
                        })
                        .collect(),
                    ca_certificate_provider_instance: Some(plugin(ROOT_CERTIFICATE_NAME)),
                    ..Default::default()
                }),
                validation_context_certificate_provider_instance: Some(legacy(
                    ROOT_CERTIFICATE_NAME,
                )),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}
