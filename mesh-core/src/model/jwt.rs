//! The JWT authentication HTTP filter (`envoy.extensions.filters.http.jwt_authn.v3`
//! `JwtAuthentication`), as far as the mesh implements it; evaluated by [`crate::jwt`].

use std::sync::Arc;

use http::HeaderName;

use super::PathMatch;
use crate::jwt::Jwks;

/// `JwtAuthentication`: the providers and the rules saying which requests need which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtAuthentication {
    /// `providers`, sorted by name (requirements refer to them by index).
    pub providers: Arc<[JwtProvider]>,
    /// `rules`, in order: the first whose match fits the request decides; none ⇒ no requirement.
    pub rules: Arc<[JwtRule]>,
    /// `bypass_cors_preflight`: CORS preflight requests pass unauthenticated.
    pub bypass_cors_preflight: bool,
}

/// `JwtProvider`: who issues tokens, for whom, with which keys, and where they are carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtProvider {
    /// The key in `providers`.
    pub name: Arc<str>,
    /// `issuer`: the `iss` a token must carry; empty accepts any.
    pub issuer: Arc<str>,
    /// `audiences`: a token's `aud` must hold one of them; empty accepts any.
    pub audiences: Arc<[Arc<str>]>,
    /// `require_expiration`: a token without `exp` fails.
    pub require_expiration: bool,
    /// `local_jwks`, parsed.
    pub jwks: Arc<Jwks>,
    /// `from_headers`; with `from_params` both empty, the defaults (`Authorization: Bearer …`,
    /// then the `access_token` query parameter) apply.
    pub from_headers: Arc<[JwtHeader]>,
    /// `from_params`: query parameters carrying the token.
    pub from_params: Arc<[Arc<str>]>,
    /// `from_cookies`: cookies (in the `cookie` header) carrying the token, tried after the
    /// headers and query parameters.
    pub from_cookies: Arc<[Arc<str>]>,
    /// `forward`: keep the token header after a successful check (else it is removed).
    pub forward: bool,
    /// `forward_payload_header`: a header to receive the base64url payload after success.
    pub forward_payload_header: Option<HeaderName>,
    /// `claim_to_headers`: claims copied into request headers after success (the headers are
    /// removed from every request first, see [`crate::jwt`]).
    pub claim_to_headers: Arc<[ClaimToHeader]>,
    /// `payload_in_metadata`: the key under which the verified payload is put in the filter's
    /// dynamic metadata (Istio: the issuer).
    pub payload_in_metadata: Option<Arc<str>>,
    /// `clock_skew_seconds` (Envoy's default 60 when 0).
    pub clock_skew_seconds: u64,
}

/// `JwtHeader`: a header carrying a token, after an optional prefix (e.g. `Bearer `).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtHeader {
    /// The header name.
    pub name: HeaderName,
    /// `value_prefix`: text before the token; empty for none.
    pub value_prefix: Arc<str>,
}

/// `JwtClaimToHeader`: the header that receives a claim of a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimToHeader {
    /// `header_name`.
    pub header: HeaderName,
    /// The claim's path: `claim_name` split on `.`, or `claim_path`'s keys.
    pub claim: Arc<[Arc<str>]>,
}

/// `RequirementRule`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtRule {
    /// `match`: the path test (only path matchers are supported).
    pub path: PathMatch,
    /// `requires`; `None` — no requirement, the request passes without verification.
    pub requires: Option<JwtRequirement>,
}

/// `JwtRequirement`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwtRequirement {
    /// `provider_name` or `provider_and_audiences`: a valid token of that provider (an index
    /// into [`JwtAuthentication::providers`]), its audiences replaced when `audiences` is set.
    Provider {
        /// Index into the providers.
        provider: usize,
        /// `provider_and_audiences.audiences`, overriding the provider's.
        audiences: Option<Arc<[Arc<str>]>>,
    },
    /// `requires_any`: one of them.
    Any(Arc<[JwtRequirement]>),
    /// `requires_all`: all of them.
    All(Arc<[JwtRequirement]>),
    /// `allow_missing`: no token at all passes; a token that does not verify fails.
    AllowMissing,
    /// `allow_missing_or_failed`: always passes (verified tokens still yield metadata).
    AllowMissingOrFailed,
}
