//! JWT request authentication: the Envoy `jwt_authn` HTTP filter
//! (`envoy/extensions/filters/http/jwt_authn/v3/config.proto`) as Istio's RequestAuthentication
//! configures it (istiod `pilot/pkg/security/authn`: one provider per `jwtRules[i]`, named
//! `origins-i`, `payload_in_metadata` = the issuer, one rule `prefix: /` requiring
//! `provider OR allow_missing`). Tokens are RFC 7519 JWTs signed with RFC 7515 JWS, keys an RFC
//! 7517 JWKS ([`Jwks`], parsed once per config).
//!
//! Per request, [`JwtAuthn::authenticate`]: the first rule whose path matches names the
//! requirement (none ⇒ nothing to check). For each provider the requirement consults, the token
//! is taken from its locations and checked in this order, each failure a [`JwtErrorKind`]:
//! compact form and JSON (`malformed`), `iss` equal to the provider's issuer (`issuer`), the
//! signature with a key fitting the token's `kid` and `alg` (`bad_signature`; `alg: none` and
//! HMAC never verify), `exp` / `nbf` against the clock with the provider's skew, Envoy's 60 s by
//! default (`expired`, `not_yet_valid`), and `aud` holding one of the audiences (`audience`).
//!
//! Token locations (Envoy's extractor): `from_headers` (after `value_prefix`), then
//! `from_params`, then `from_cookies` — each named cookie looked up in every `cookie` header line
//! (RFC 6265 `name=value; …`, surrounding double quotes stripped), parsed in place with no
//! allocation; a malformed `cookie` header simply holds no token. With none of them configured,
//! `Authorization: Bearer …` then the `access_token` parameter. Without `forward`, a token taken
//! from a header is removed after it verifies; a parameter or cookie token stays (Envoy too).
//!
//! `claim_to_headers` (Istio `outputClaimToHeaders`) follows Envoy's current semantics: every
//! configured header is first removed from **every** request the filter sees — whatever its path,
//! a CORS preflight, a missing or a refused token — so a client can never supply it; after a
//! token verifies, its claim (a `.`-separated path into nested objects) is written there: strings
//! as is, numbers and booleans as text, arrays and objects as base64 of their JSON (see
//! `claim_value`). A claim that is absent writes nothing: the header is then absent.
//!
//! Requirements follow Envoy: `allow_missing` passes when no provider location holds a token and
//! fails when a token is there but verifies for no provider — so, as in Istio, an absent token
//! passes and an invalid one is refused with 401. (Envoy's `allow_missing` also lets a token
//! whose issuer no provider knows through as if missing; we refuse it with `issuer`: a token
//! the server cannot verify is never silently ignored.)
//!
//! On success the verified payloads become dynamic metadata (a JSON object keyed by filter
//! namespace, what [`crate::authz`] matches): under `envoy.filters.http.jwt_authn`, each
//! provider's `payload_in_metadata` key holds its payload (Envoy), and under `istio_authn` the
//! first verified token gives Istio's request-authentication attributes —
//! `request.auth.principal` = `iss/sub`, `request.auth.audiences`, `request.auth.presenter`
//! (`azp`), `request.auth.claims` (every claim, scalar values as one-element string lists so
//! RBAC's `list_match.one_of` matches them, as Istio's authn filter writes them) and
//! `request.auth.raw_claims`. Time is the caller's (`now` in Unix seconds), so tests control it.

mod keys;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use base64::Engine;
use http::{HeaderMap, Method, Uri};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

pub use keys::{Jwks, JwksError};

use crate::model::{JwtAuthentication, JwtHeader, JwtProvider, JwtRequirement, PathMatch};

/// The dynamic-metadata namespace of the `jwt_authn` filter (Envoy's filter name).
pub const JWT_AUTHN_NAMESPACE: &str = "envoy.filters.http.jwt_authn";
/// The dynamic-metadata namespace of Istio's request-authentication attributes.
pub const ISTIO_AUTHN_NAMESPACE: &str = "istio_authn";
/// Envoy's default `clock_skew_seconds`.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;

/// Why a request failed authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtErrorKind {
    /// A required token is absent.
    Missing,
    /// Not a compact JWS with JSON header and payload, or a claim of the wrong type.
    Malformed,
    /// `iss` is not the provider's issuer.
    Issuer,
    /// `aud` holds none of the audiences.
    Audience,
    /// Past `exp` (plus the clock skew).
    Expired,
    /// Before `nbf` (minus the clock skew).
    NotYetValid,
    /// The signature does not verify with any fitting key (or no key fits).
    BadSignature,
}

impl JwtErrorKind {
    /// The short code used in `x-mesh-error` (`reason=…`).
    pub fn as_str(self) -> &'static str {
        match self {
            JwtErrorKind::Missing => "missing",
            JwtErrorKind::Malformed => "malformed",
            JwtErrorKind::Issuer => "issuer",
            JwtErrorKind::Audience => "audience",
            JwtErrorKind::Expired => "expired",
            JwtErrorKind::NotYetValid => "not_yet_valid",
            JwtErrorKind::BadSignature => "bad_signature",
        }
    }
}

/// A request refused: which provider, why (HTTP 401, gRPC `UNAUTHENTICATED`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("jwt {}: {detail} (provider `{provider}`)", kind.as_str())]
pub struct JwtError {
    /// The provider whose check failed.
    pub provider: Arc<str>,
    /// The reason, as a code.
    pub kind: JwtErrorKind,
    /// A short explanation.
    pub detail: String,
}

/// A `JwtAuthentication` filter ready for requests (see the module docs).
#[derive(Debug)]
pub struct JwtAuthn {
    filter: Arc<str>,
    config: Arc<JwtAuthentication>,
}

/// What a provider made of the request's token.
#[derive(Clone, Debug)]
enum Outcome {
    Missing,
    Ok(Verified),
    Failed(JwtErrorKind, String),
}

#[derive(Clone, Debug)]
struct Verified {
    payload: Arc<Map<String, Value>>,
    /// base64url payload, for `forward_payload_header`.
    encoded_payload: Arc<str>,
    /// The header it came from (to strip unless `forward`).
    header: Option<http::HeaderName>,
}

/// Per request: each provider's token and outcome, computed at most once.
struct Eval<'a> {
    authn: &'a JwtAuthentication,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    now: u64,
    results: Vec<Option<(Option<Arc<str>>, Outcome)>>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
}

/// A value at a location that is not text still counts as a (malformed) token: it must not
/// pass as a missing one.
fn text(t: &[u8]) -> &str {
    std::str::from_utf8(t).unwrap_or("\u{fffd}")
}

fn from_header<'h>(headers: &'h HeaderMap, h: &JwtHeader) -> Option<&'h str> {
    let v = headers.get(&h.name)?.as_bytes().trim_ascii();
    let prefix = h.value_prefix.as_bytes();
    let rest = if prefix.is_empty() {
        v
    } else if v.len() >= prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix) {
        &v[prefix.len()..]
    } else {
        return None;
    };
    let t = rest.trim_ascii();
    if t.is_empty() {
        return None;
    }
    Some(text(t))
}

fn from_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name && !v.is_empty()).then_some(v)
    })
}

/// The value of cookie `name` in the request's `cookie` headers (RFC 6265 §5.4: `name=value`
/// pairs separated by `;`, every `cookie` header line considered, the first pair named `name`
/// wins), without its surrounding double quotes as Envoy strips them. Pairs without `=` and
/// other garbage are skipped; an empty value counts as no cookie. No allocation.
fn from_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let name = name.as_bytes();
    for line in headers.get_all(http::header::COOKIE) {
        for pair in line.as_bytes().split(|&b| b == b';') {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if pair[..eq].trim_ascii() != name {
                continue;
            }
            let mut v = pair[eq + 1..].trim_ascii();
            if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
                v = &v[1..v.len() - 1];
            }
            return (!v.is_empty()).then(|| text(v));
        }
    }
    None
}

/// The token in `p`'s locations, and the header it came from (`None` for a query parameter or a
/// cookie: Envoy removes only header tokens when not forwarding). Envoy's order: headers, then
/// query parameters, then cookies; with no location configured, `Authorization: Bearer …` then
/// the `access_token` parameter.
fn extract<'h>(
    p: &JwtProvider,
    headers: &'h HeaderMap,
    query: Option<&'h str>,
) -> Option<(&'h str, Option<http::HeaderName>)> {
    if p.from_headers.is_empty() && p.from_params.is_empty() && p.from_cookies.is_empty() {
        let auth = JwtHeader {
            name: http::header::AUTHORIZATION,
            value_prefix: "Bearer ".into(),
        };
        return from_header(headers, &auth)
            .map(|t| (t, Some(auth.name)))
            .or_else(|| from_param(query, "access_token").map(|t| (t, None)));
    }
    for h in p.from_headers.iter() {
        if let Some(t) = from_header(headers, h) {
            return Some((t, Some(h.name.clone())));
        }
    }
    p.from_params
        .iter()
        .find_map(|n| from_param(query, n))
        .or_else(|| p.from_cookies.iter().find_map(|n| from_cookie(headers, n)))
        .map(|t| (t, None))
}

/// The header value Envoy copies for a claim (`claim_to_headers`): strings as they are, numbers
/// as integers when integral (Envoy holds them as doubles) and in shortest form otherwise,
/// booleans as `true` / `false`, and arrays or objects as their JSON, base64-encoded (standard
/// alphabet, padded). `None` — no header — for a missing claim, `null`, an empty string, or a
/// value a header cannot carry (control characters).
fn claim_value(payload: &Map<String, Value>, path: &[Arc<str>]) -> Option<http::HeaderValue> {
    let (first, rest) = path.split_first()?;
    let mut v = payload.get(&**first)?;
    for key in rest {
        v = v.as_object()?.get(&**key)?;
    }
    let text = match v {
        Value::String(s) if s.is_empty() => return None,
        Value::String(s) => return http::HeaderValue::from_bytes(s.as_bytes()).ok(),
        Value::Bool(b) => {
            return Some(http::HeaderValue::from_static(if *b {
                "true"
            } else {
                "false"
            }))
        }
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => (f as i64).to_string(),
            (_, _, Some(f)) => f.to_string(),
            _ => return None,
        },
        Value::Array(_) | Value::Object(_) => {
            base64::engine::general_purpose::STANDARD.encode(v.to_string())
        }
        Value::Null => return None,
    };
    http::HeaderValue::from_str(&text).ok()
}

/// A failed check: its kind and a short explanation.
type Failure = (JwtErrorKind, String);

fn fail<T>(kind: JwtErrorKind, detail: impl Into<String>) -> Result<T, Failure> {
    Err((kind, detail.into()))
}

fn numeric(payload: &Map<String, Value>, claim: &str) -> Result<Option<u64>, Failure> {
    match payload.get(claim) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            match n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)) {
                Some(v) => Ok(Some(v)),
                None => fail(JwtErrorKind::Malformed, format!("`{claim}` is not a time")),
            }
        }
        Some(_) => fail(
            JwtErrorKind::Malformed,
            format!("`{claim}` is not a number"),
        ),
    }
}

/// Checks one token for provider `p` (see the module docs for the order).
fn verify(
    p: &JwtProvider,
    audiences: &[Arc<str>],
    token: &str,
    now: u64,
) -> Result<(Map<String, Value>, Arc<str>), Failure> {
    use JwtErrorKind::*;
    let mut parts = token.split('.');
    let (Some(h), Some(pl), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return fail(Malformed, "not a compact jws (three dot-separated parts)");
    };
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| (Malformed, format!("bad header: {e}")))?;
    let raw = b64()
        .decode(pl)
        .map_err(|_| (Malformed, "payload is not base64url".to_string()))?;
    let payload: Map<String, Value> = serde_json::from_slice(&raw)
        .map_err(|_| (Malformed, "payload is not a json object".to_string()))?;
    if !p.issuer.is_empty() {
        match payload.get("iss") {
            Some(Value::String(iss)) if **iss == *p.issuer => {}
            Some(Value::String(iss)) => {
                return fail(Issuer, format!("issuer `{iss}` is not `{}`", p.issuer))
            }
            _ => return fail(Issuer, "no `iss` claim"),
        }
    }
    if matches!(
        header.alg,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return fail(BadSignature, "hmac tokens are not accepted");
    }
    let message = &token[..h.len() + 1 + pl.len()];
    match p
        .jwks
        .verify(header.alg, header.kid.as_deref(), message.as_bytes(), sig)
    {
        Ok(true) => {}
        Ok(false) => return fail(BadSignature, "signature does not verify"),
        Err(why) => return fail(BadSignature, why),
    }
    let skew = p.clock_skew_seconds;
    match numeric(&payload, "exp")? {
        Some(exp) if now > exp.saturating_add(skew) => {
            return fail(Expired, format!("expired at {exp}, now {now}"))
        }
        None if p.require_expiration => return fail(Malformed, "no `exp` claim"),
        _ => {}
    }
    if let Some(nbf) = numeric(&payload, "nbf")? {
        if now.saturating_add(skew) < nbf {
            return fail(NotYetValid, format!("not valid before {nbf}, now {now}"));
        }
    }
    if !audiences.is_empty() {
        let ok = match payload.get("aud") {
            Some(Value::String(a)) => audiences.iter().any(|x| **x == **a),
            Some(Value::Array(v)) => v
                .iter()
                .filter_map(Value::as_str)
                .any(|a| audiences.iter().any(|x| **x == *a)),
            _ => false,
        };
        if !ok {
            return fail(Audience, "audience not allowed");
        }
    }
    Ok((payload, Arc::from(pl)))
}

impl Outcome {
    /// Ranks failures to report: a specific failure beats an issuer mismatch (another provider's
    /// token), which beats a missing token.
    fn rank(&self) -> u8 {
        match self {
            Outcome::Ok(_) => 3,
            Outcome::Failed(JwtErrorKind::Issuer, _) => 1,
            Outcome::Failed(..) => 2,
            Outcome::Missing => 0,
        }
    }
}

/// A requirement's result: which provider it is about and what happened.
type Res = (Arc<str>, Outcome);

impl Eval<'_> {
    fn provider(&mut self, i: usize) -> (Option<Arc<str>>, Outcome) {
        if let Some(r) = &self.results[i] {
            return r.clone();
        }
        let p = &self.authn.providers[i];
        let r = self.check(p, &p.audiences);
        self.results[i] = Some(r.clone());
        r
    }

    fn check(&self, p: &JwtProvider, audiences: &[Arc<str>]) -> (Option<Arc<str>>, Outcome) {
        match extract(p, self.headers, self.query) {
            None => (None, Outcome::Missing),
            Some((token, header)) => {
                let out = match verify(p, audiences, token, self.now) {
                    Ok((payload, encoded_payload)) => Outcome::Ok(Verified {
                        payload: Arc::new(payload),
                        encoded_payload,
                        header,
                    }),
                    Err((k, d)) => Outcome::Failed(k, d),
                };
                (Some(token.into()), out)
            }
        }
    }

    fn eval(&mut self, req: &JwtRequirement) -> Res {
        let providers = self.authn.providers.clone();
        match req {
            JwtRequirement::Provider {
                provider,
                audiences: None,
            } => (
                providers[*provider].name.clone(),
                self.provider(*provider).1,
            ),
            JwtRequirement::Provider {
                provider,
                audiences: Some(a),
            } => {
                let p = &providers[*provider];
                (p.name.clone(), self.check(p, a).1)
            }
            JwtRequirement::Any(list) => {
                let mut best: Option<Res> = None;
                for r in list.iter() {
                    let res = self.eval(r);
                    if best.as_ref().is_none_or(|b| res.1.rank() > b.1.rank()) {
                        best = Some(res);
                    }
                }
                best.unwrap_or_else(|| ("".into(), Outcome::Missing))
            }
            JwtRequirement::All(list) => {
                let mut last = None;
                for r in list.iter() {
                    let res = self.eval(r);
                    if !matches!(res.1, Outcome::Ok(_)) {
                        return res;
                    }
                    last = Some(res);
                }
                last.unwrap_or_else(|| ("".into(), Outcome::Ok(self.empty())))
            }
            JwtRequirement::AllowMissing => self.allow_missing(),
            JwtRequirement::AllowMissingOrFailed => {
                for i in 0..providers.len() {
                    self.provider(i);
                }
                ("".into(), Outcome::Ok(self.empty()))
            }
        }
    }

    fn empty(&self) -> Verified {
        Verified {
            payload: Arc::new(Map::new()),
            encoded_payload: "".into(),
            header: None,
        }
    }

    /// Passes when no provider found a token, or every token found verified for some provider.
    fn allow_missing(&mut self) -> Res {
        let n = self.authn.providers.len();
        for i in 0..n {
            self.provider(i);
        }
        let mut worst: Option<Res> = None;
        for i in 0..n {
            let Some((Some(token), out @ Outcome::Failed(..))) = &self.results[i] else {
                continue;
            };
            let verified_elsewhere = self
                .results
                .iter()
                .any(|r| matches!(r, Some((Some(t), Outcome::Ok(_))) if t == token));
            if !verified_elsewhere && worst.as_ref().is_none_or(|w| out.rank() > w.1.rank()) {
                worst = Some((self.authn.providers[i].name.clone(), out.clone()));
            }
        }
        worst.unwrap_or_else(|| ("".into(), Outcome::Ok(self.empty())))
    }
}

fn path_matches(m: &PathMatch, path: &str) -> bool {
    match m {
        PathMatch::Prefix(p) => path.starts_with(&**p),
        PathMatch::Exact(p) => path == &**p,
        PathMatch::Regex(r) => r.is_match(path),
    }
}

/// Istio's view of claims: scalars as one-element string lists, lists of scalars as string
/// lists, objects recursively.
fn istio_claims(v: &Value) -> Value {
    fn scalar(v: &Value) -> Option<Value> {
        match v {
            Value::String(s) => Some(Value::String(s.clone())),
            Value::Bool(_) | Value::Number(_) => Some(Value::String(v.to_string())),
            _ => None,
        }
    }
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), istio_claims(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().filter_map(scalar).collect()),
        other => Value::Array(scalar(other).into_iter().collect()),
    }
}

fn istio_authn(payload: &Map<String, Value>) -> Value {
    let s = |k: &str| payload.get(k).and_then(Value::as_str);
    let mut out = Map::new();
    if let (Some(iss), Some(sub)) = (s("iss"), s("sub")) {
        out.insert(
            "request.auth.principal".into(),
            Value::String(format!("{iss}/{sub}")),
        );
    }
    let aud = match payload.get("aud") {
        Some(Value::String(a)) => Some(a.clone()),
        Some(Value::Array(v)) => v.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    if let Some(a) = aud {
        out.insert("request.auth.audiences".into(), Value::String(a));
    }
    if let Some(azp) = s("azp") {
        out.insert("request.auth.presenter".into(), Value::String(azp.into()));
    }
    out.insert(
        "request.auth.claims".into(),
        istio_claims(&Value::Object(payload.clone())),
    );
    out.insert(
        "request.auth.raw_claims".into(),
        Value::String(Value::Object(payload.clone()).to_string()),
    );
    Value::Object(out)
}

impl JwtAuthn {
    /// The filter named `filter` (the name appears in errors) with `config`.
    pub fn new(filter: &str, config: Arc<JwtAuthentication>) -> Self {
        JwtAuthn {
            filter: filter.into(),
            config,
        }
    }

    /// The filter's name.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The configuration.
    pub fn config(&self) -> &JwtAuthentication {
        &self.config
    }

    /// Authenticates a request at `now` (Unix seconds). `Ok(None)`: nothing verified (no rule,
    /// or an allowed missing token). `Ok(Some(metadata))`: the dynamic metadata to attach (see
    /// the module docs); token headers of verified providers without `forward` are removed from
    /// `headers` and `forward_payload_header`s added. `Err`: refuse the request with 401.
    pub fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        now: u64,
    ) -> Result<Option<Value>, JwtError> {
        let cfg = &*self.config;
        // Envoy sanitizes `claim_to_headers` headers on every request the filter sees, whatever
        // the path or outcome: only a verified claim can set them.
        for p in cfg.providers.iter() {
            for c in p.claim_to_headers.iter() {
                headers.remove(&c.header);
            }
        }
        let path = uri.path();
        let Some(rule) = cfg.rules.iter().find(|r| path_matches(&r.path, path)) else {
            return Ok(None);
        };
        let Some(req) = &rule.requires else {
            return Ok(None);
        };
        if cfg.bypass_cors_preflight
            && method == Method::OPTIONS
            && headers.contains_key(http::header::ORIGIN)
            && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return Ok(None);
        }
        let mut eval = Eval {
            authn: cfg,
            headers,
            query: uri.query(),
            now,
            results: vec![None; cfg.providers.len()],
        };
        let (provider, outcome) = eval.eval(req);
        match outcome {
            Outcome::Ok(_) => {}
            Outcome::Missing => {
                return Err(JwtError {
                    provider,
                    kind: JwtErrorKind::Missing,
                    detail: "jwt is missing".into(),
                })
            }
            Outcome::Failed(kind, detail) => {
                return Err(JwtError {
                    provider,
                    kind,
                    detail,
                })
            }
        }
        let results = std::mem::take(&mut eval.results);
        let mut jwt_ns = Map::new();
        let mut istio = None;
        let mut edits = Vec::new();
        for (p, r) in cfg.providers.iter().zip(results) {
            let Some((_, Outcome::Ok(v))) = r else {
                continue;
            };
            if let Some(key) = &p.payload_in_metadata {
                jwt_ns.insert(key.to_string(), Value::Object((*v.payload).clone()));
            }
            if istio.is_none() {
                istio = Some(istio_authn(&v.payload));
            }
            edits.push((p, v));
        }
        for (p, v) in edits {
            if let (false, Some(h)) = (p.forward, &v.header) {
                headers.remove(h);
            }
            if let Some(h) = &p.forward_payload_header {
                if let Ok(val) = http::HeaderValue::from_str(&v.encoded_payload) {
                    headers.insert(h.clone(), val);
                }
            }
            for c in p.claim_to_headers.iter() {
                if let Some(val) = claim_value(&v.payload, &c.claim) {
                    headers.append(c.header.clone(), val);
                }
            }
        }
        let Some(istio) = istio else {
            return Ok(None);
        };
        let mut md = Map::new();
        md.insert(JWT_AUTHN_NAMESPACE.into(), Value::Object(jwt_ns));
        md.insert(ISTIO_AUTHN_NAMESPACE.into(), istio);
        Ok(Some(Value::Object(md)))
    }
}
