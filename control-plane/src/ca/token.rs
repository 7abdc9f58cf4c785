//! Bootstrap tokens: how a workload gets its **first** SVID without anyone else holding its key.
//!
//! Renewal ([`super::server`]) authenticates the caller by its current SVID; a workload that has
//! none yet needs another credential. Istio answers with a bearer JWT: istio-agent sends the
//! pod's Kubernetes service-account token as `authorization: Bearer <jwt>` gRPC metadata on
//! `CreateCertificate`, and istiod's JWT authenticator (`KubeJWTAuthenticator`, istio/istio
//! `security/pkg/server/ca/authenticate/kubeauth`) validates it and signs the CSR for
//! `spiffe://<td>/ns/<namespace>/sa/<service-account>` from the token — never from the CSR
//! (Istio security concepts, <https://istio.io/latest/docs/concepts/security/#pki>: the agent
//! sends the CSR with its credentials, the CA validates those credentials and signs).
//! We have no Kubernetes API server to review tokens, so the control plane mints and verifies
//! its own, with the claims of a projected service-account token reduced to what the CA needs:
//!
//! | claim | value |
//! |-------|-------|
//! | `iss` | the control plane's SPIFFE ID (`spiffe://<td>/ns/istio-system/sa/mesh-control-plane`) |
//! | `aud` | [`TOKEN_AUDIENCE`] (`mesh-ca`; istiod's default audience is `istio-ca`) |
//! | `sub` | the SPIFFE ID the SVID will carry |
//! | `iat`, `exp` | issue and expiry time, at most [`MAX_TOKEN_TTL`] apart |
//! | `jti` | 128 random bits, for single use |
//!
//! The operator mints one with `mesh-control-plane token --namespace NS --service-account SA`
//! and hands it to the workload (a file, an environment variable) together with the trust
//! bundle (`ca-cert.pem`) to verify the endpoint with.
//!
//! # Decisions
//!
//! - **A dedicated signing key** (`token-key.pem`, ECDSA P-256 / ES256, mode 0600, next to the
//!   CA files) rather than the CA key: the CA key signs X.509 certificates and nothing else (no
//!   cross-protocol use of one key), the two rotate independently (deleting `token-key.pem` and
//!   restarting revokes every outstanding token without touching the root peers trust), and an
//!   asymmetric key lets the public half be published later without handing out minting power.
//! - **Single use.** A redeemed token's `jti` goes into an in-memory replay cache, bounded in
//!   time (an entry lives until its token's `exp` plus the skew, at most [`MAX_TOKEN_TTL`]) and
//!   in size ([`REPLAY_CACHE_CAPACITY`]; when full of live entries new tokens are refused with
//!   `UNAVAILABLE` rather than risk a replay). A token leaked after use is worthless. The cost:
//!   if the answer is lost after the CA signed, the workload needs a fresh token. With a CA
//!   directory ([`TokenAuthority::load_or_create`]) every redemption is appended to
//!   [`REPLAY_LOG_FILE`] (`<jti> <exp>` lines, mode 0600, synced) **before** the certificate
//!   is returned, and the unexpired entries are read back on start, so a restart does not
//!   reopen used tokens; when the line cannot be written the token is refused (`UNAVAILABLE`)
//!   rather than redeemed unrecorded. The cache is still per directory: replicas that do not
//!   share one can each redeem a token once within its lifetime — keep lifetimes short. A
//!   token is consumed only when a certificate was signed, so a bad CSR does not burn it.
//! - **Time**: `exp` and `iat` are checked against the wall clock with [`TOKEN_CLOCK_SKEW`]
//!   (one minute) either way, as the CA backdates SVIDs by the same amount.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::KeyPair;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::{CaError, SpiffeId};

/// The audience every bootstrap token carries and the CA requires.
pub const TOKEN_AUDIENCE: &str = "mesh-ca";

/// File name of the token signing key inside a CA directory (mode 0600).
pub const TOKEN_KEY_FILE: &str = "token-key.pem";

/// File name of the replay log inside a CA directory: one `<jti> <exp>` line per redeemed
/// token, compacted to the unexpired ones on start.
pub const REPLAY_LOG_FILE: &str = "token-replay.log";

/// Default token lifetime for `mesh-control-plane token`.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Longest lifetime a token may have (minting refuses more, verification rejects more).
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Tolerance for clock differences on `exp` and `iat`.
pub const TOKEN_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// How many redeemed, unexpired token IDs the replay cache holds.
pub const REPLAY_CACHE_CAPACITY: usize = 10_000;

/// A bootstrap token (a compact JWS). Its `Debug` is redacted and it has no `Display`: read it
/// with [`BootstrapToken::expose`] to hand it to the workload, never to log it.
#[derive(Clone)]
pub struct BootstrapToken(String);

impl BootstrapToken {
    /// The token text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BootstrapToken(<redacted>)")
    }
}

/// The claims of a bootstrap token (none of them secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// Issuer: the control plane's SPIFFE ID.
    pub iss: String,
    /// Audience: [`TOKEN_AUDIENCE`].
    pub aud: String,
    /// Subject: the SPIFFE ID to issue the SVID for.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: u64,
    /// Token ID (hex), the replay-cache key.
    pub jti: String,
}

/// Why a token could not be minted or was refused. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWT, or its header or claims do not parse.
    #[error("bootstrap token is malformed: {0}")]
    Malformed(String),
    /// The signature does not verify with this control plane's token key.
    #[error("bootstrap token signature does not verify: not signed by this control plane")]
    Forged,
    /// Signed with another algorithm than ES256.
    #[error("bootstrap token is not signed with es256")]
    WrongAlgorithm,
    /// `aud` is not [`TOKEN_AUDIENCE`].
    #[error("bootstrap token audience is not {expected}")]
    WrongAudience {
        /// The audience required.
        expected: &'static str,
    },
    /// `iss` is not this control plane.
    #[error("bootstrap token issuer is not {expected}")]
    WrongIssuer {
        /// The issuer required.
        expected: String,
    },
    /// A required claim is absent.
    #[error("bootstrap token has no {0} claim")]
    MissingClaim(String),
    /// `exp` has passed (beyond the clock skew).
    #[error("bootstrap token expired {ago_secs}s ago; mint a new one")]
    Expired {
        /// Seconds since `exp`.
        ago_secs: u64,
    },
    /// `iat` is in the future (beyond the clock skew).
    #[error("bootstrap token is issued in the future (iat {iat})")]
    NotYetValid {
        /// The token's `iat`.
        iat: u64,
    },
    /// `exp - iat` exceeds [`MAX_TOKEN_TTL`], or the requested lifetime is zero.
    #[error("bootstrap token lifetime {secs}s is outside 1s..={}s", MAX_TOKEN_TTL.as_secs())]
    BadLifetime {
        /// The lifetime in seconds.
        secs: u64,
    },
    /// `sub` is not a SPIFFE ID.
    #[error("bootstrap token subject: {0}")]
    InvalidSubject(CaError),
    /// The token's `jti` was redeemed before (tokens are single-use).
    #[error("bootstrap token {jti} was already used; tokens are single-use")]
    Replayed {
        /// The token ID.
        jti: String,
    },
    /// The replay cache is full of unexpired entries.
    #[error("bootstrap token replay cache is full ({capacity} unexpired tokens); retry later")]
    ReplayCacheFull {
        /// The capacity.
        capacity: usize,
    },
    /// Signing the token failed.
    #[error("minting bootstrap token: {0}")]
    Mint(String),
    /// The redemption could not be recorded in the replay log, so the token was not redeemed.
    #[error("bootstrap token {jti} not redeemed: recording it in the replay log failed: {source}")]
    ReplayLog {
        /// The token ID.
        jti: String,
        /// The write error (names the file).
        source: CaError,
    },
}

/// Mints and verifies bootstrap tokens with one ES256 key; keeps the replay cache.
pub struct TokenAuthority {
    issuer: String,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    replay: Mutex<HashMap<String, u64>>,
    capacity: usize,
    /// Where redemptions are recorded, with a CA directory.
    replay_log: Option<std::path::PathBuf>,
}

impl fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuthority")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl TokenAuthority {
    /// A new signing key in memory, for tokens issued by `issuer` (the control plane's ID).
    pub fn generate(issuer: &SpiffeId) -> Result<Self, CaError> {
        let key = KeyPair::generate().map_err(CaError::Sign)?;
        Ok(Self::with_key(&key, issuer))
    }

    /// Loads the key from `dir/token-key.pem`, or creates one there (mode 0600) on first use,
    /// and keeps the replay cache in `dir/token-replay.log` ([`REPLAY_LOG_FILE`]) so used
    /// tokens stay used across restarts.
    pub fn load_or_create(dir: &Path, issuer: &SpiffeId) -> Result<Self, CaError> {
        let authority = Self::load_or_create_key(dir, issuer)?;
        authority.with_replay_log(&dir.join(REPLAY_LOG_FILE), SystemTime::now())
    }

    fn load_or_create_key(dir: &Path, issuer: &SpiffeId) -> Result<Self, CaError> {
        let path = dir.join(TOKEN_KEY_FILE);
        if path.exists() {
            let pem = std::fs::read_to_string(&path).map_err(|source| CaError::Io {
                path: path.clone(),
                source,
            })?;
            return Self::from_pem(&pem, issuer).map_err(|e| match e {
                CaError::InvalidCa { reason, .. } => CaError::InvalidCa {
                    what: path.display().to_string(),
                    reason,
                },
                other => other,
            });
        }
        let key = KeyPair::generate().map_err(CaError::Sign)?;
        std::fs::create_dir_all(dir).map_err(|source| CaError::Io {
            path: dir.to_owned(),
            source,
        })?;
        super::write_private(&path, &key.serialize_pem())?;
        tracing::info!(path = %path.display(), "created a new bootstrap token signing key");
        Ok(Self::with_key(&key, issuer))
    }

    /// Loads the key from PEM (PKCS#8, ECDSA P-256).
    pub fn from_pem(key_pem: &str, issuer: &SpiffeId) -> Result<Self, CaError> {
        let invalid = |reason: String| CaError::InvalidCa {
            what: "token key pem".into(),
            reason,
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| invalid(format!("private key: {e}")))?;
        if !key.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            return Err(invalid("token key must be ecdsa p-256".into()));
        }
        Ok(Self::with_key(&key, issuer))
    }

    fn with_key(key: &KeyPair, issuer: &SpiffeId) -> Self {
        let public = key.public_key_raw();
        let kid = super::hex(&sha2::Sha256::digest(public)[..8]);
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[TOKEN_AUDIENCE]);
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        // Time is checked by `verify` against the caller's clock, with our skew.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Self {
            issuer: issuer.as_str().to_owned(),
            kid,
            encoding: EncodingKey::from_ec_der(&key.serialize_der()),
            decoding: DecodingKey::from_ec_der(public),
            validation,
            replay: Mutex::new(HashMap::new()),
            capacity: REPLAY_CACHE_CAPACITY,
            replay_log: None,
        }
    }

    /// Reads the redemptions recorded at `path` (entries expired at `now` are dropped and the
    /// file rewritten without them) and records every new one there. A missing file is an
    /// empty log; a line that does not parse is an error naming the file and line, since
    /// skipping it could reopen a used token.
    pub fn with_replay_log(mut self, path: &Path, now: SystemTime) -> Result<Self, CaError> {
        let invalid = |reason: String| CaError::InvalidCa {
            what: path.display().to_string(),
            reason,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(CaError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let live_after = unix(now).saturating_sub(TOKEN_CLOCK_SKEW.as_secs());
        let mut live = HashMap::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let parsed = line
                .split_once(' ')
                .and_then(|(jti, exp)| Some((jti, exp.trim().parse::<u64>().ok()?)));
            let Some((jti, exp)) = parsed.filter(|(jti, _)| !jti.is_empty()) else {
                return Err(invalid(format!(
                    "line {}: expected `<jti> <exp>`, got {line:?}",
                    n + 1
                )));
            };
            if exp >= live_after {
                live.insert(jti.to_owned(), exp);
            }
        }
        let compacted: String = live.iter().map(|(j, e)| format!("{j} {e}\n")).collect();
        super::write_private(path, &compacted)?;
        self.replay = Mutex::new(live);
        self.replay_log = Some(path.to_owned());
        Ok(self)
    }

    /// Appends one redemption to the replay log and syncs it.
    fn record(&self, claims: &TokenClaims) -> Result<(), TokenError> {
        use std::io::Write;
        let Some(path) = &self.replay_log else {
            return Ok(());
        };
        let fail = |source| TokenError::ReplayLog {
            jti: claims.jti.clone(),
            source: CaError::Io {
                path: path.clone(),
                source,
            },
        };
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(fail)?;
        f.write_all(format!("{} {}\n", claims.jti, claims.exp).as_bytes())
            .map_err(fail)?;
        f.sync_data().map_err(fail)
    }

    /// Bounds the replay cache to `capacity` unexpired entries (default
    /// [`REPLAY_CACHE_CAPACITY`]).
    pub fn with_replay_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The `iss` this authority mints and requires.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key ID in every token's header: the first 8 bytes of the SHA-256 of the public key.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// Mints a token for `identity`, valid from now for `ttl` (at most [`MAX_TOKEN_TTL`]).
    pub fn mint(
        &self,
        identity: &SpiffeId,
        ttl: Duration,
    ) -> Result<(BootstrapToken, TokenClaims), TokenError> {
        let now = SystemTime::now();
        if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
            return Err(TokenError::BadLifetime {
                secs: ttl.as_secs(),
            });
        }
        self.mint_with_times(identity, now, now + ttl)
    }

    /// Mints a token with explicit `iat` and `exp` (tests use a past window for an expired
    /// token). The lifetime is not checked here; [`TokenAuthority::verify`] checks it.
    pub fn mint_with_times(
        &self,
        identity: &SpiffeId,
        issued_at: SystemTime,
        expires_at: SystemTime,
    ) -> Result<(BootstrapToken, TokenClaims), TokenError> {
        let claims = TokenClaims {
            iss: self.issuer.clone(),
            aud: TOKEN_AUDIENCE.to_owned(),
            sub: identity.as_str().to_owned(),
            exp: unix(expires_at),
            iat: unix(issued_at),
            jti: super::hex(&rand::random::<[u8; 16]>()),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| TokenError::Mint(e.to_string()))?;
        Ok((BootstrapToken(token), claims))
    }

    /// Verifies `token` at `now`: signature (ES256, this key), `aud`, `iss`, `exp` and `iat`
    /// (with [`TOKEN_CLOCK_SKEW`]), lifetime, a SPIFFE ID as `sub`, and that it was not redeemed
    /// yet. Does not consume it: see [`TokenAuthority::consume`].
    pub fn verify(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<(TokenClaims, SpiffeId), TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<TokenClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.into_kind() {
                ErrorKind::InvalidSignature => TokenError::Forged,
                ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
                ErrorKind::InvalidAudience => TokenError::WrongAudience {
                    expected: TOKEN_AUDIENCE,
                },
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer {
                    expected: self.issuer.clone(),
                },
                ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c),
                // The signature is checked before the claims are parsed: a JSON error here
                // is a token this key signed with missing or mistyped claims.
                ErrorKind::Json(e) => TokenError::Malformed(format!("claims: {e}")),
                other => TokenError::Malformed(format!("{other:?}").to_lowercase()),
            })?;
        let claims = data.claims;
        let now = unix(now);
        let skew = TOKEN_CLOCK_SKEW.as_secs();
        if claims.exp.saturating_add(skew) < now {
            return Err(TokenError::Expired {
                ago_secs: now - claims.exp,
            });
        }
        if claims.iat > now.saturating_add(skew) {
            return Err(TokenError::NotYetValid { iat: claims.iat });
        }
        let lifetime = claims.exp.saturating_sub(claims.iat);
        if lifetime == 0 || lifetime > MAX_TOKEN_TTL.as_secs() {
            return Err(TokenError::BadLifetime { secs: lifetime });
        }
        let id = SpiffeId::parse(&claims.sub).map_err(TokenError::InvalidSubject)?;
        if self.lock().contains_key(&claims.jti) {
            return Err(TokenError::Replayed { jti: claims.jti });
        }
        Ok((claims, id))
    }

    /// Marks a verified token as redeemed at `now`. Fails if it was redeemed meanwhile (two
    /// concurrent requests with one token: exactly one wins) or the cache is full.
    pub fn consume(&self, claims: &TokenClaims, now: SystemTime) -> Result<(), TokenError> {
        let now = unix(now);
        let skew = TOKEN_CLOCK_SKEW.as_secs();
        let mut cache = self.lock();
        if cache.contains_key(&claims.jti) {
            return Err(TokenError::Replayed {
                jti: claims.jti.clone(),
            });
        }
        if cache.len() >= self.capacity {
            // Entries whose token would fail the `exp` check anyway can go.
            cache.retain(|_, exp| exp.saturating_add(skew) >= now);
            if cache.len() >= self.capacity {
                return Err(TokenError::ReplayCacheFull {
                    capacity: self.capacity,
                });
            }
        }
        // Recorded before it counts, under the lock: of two concurrent redemptions exactly one
        // is written, and a redemption that could not be written does not happen.
        self.record(claims)?;
        cache.insert(claims.jti.clone(), claims.exp);
        Ok(())
    }

    /// [`TokenAuthority::verify`] then [`TokenAuthority::consume`].
    pub fn redeem(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<(TokenClaims, SpiffeId), TokenError> {
        let (claims, id) = self.verify(token, now)?;
        self.consume(&claims, now)?;
        Ok((claims, id))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // A panic while holding the lock cannot leave the map half-updated (single calls).
        self.replay.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
