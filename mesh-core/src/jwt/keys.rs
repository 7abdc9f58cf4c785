//! JSON Web Key Sets (RFC 7517) parsed once, at config time, into verifying keys.
//!
//! Key import is `jsonwebtoken`'s (`DecodingKey::from_jwk`, ring underneath); what this module
//! adds is the checks Envoy's JWKS loader makes before a key is used (`jwt_verify_lib`'s `Jwks`):
//! RSA keys of at least 2048 bits, EC keys on P-256 / P-384 with coordinates of the curve's size,
//! keys whose `use` is not `sig` skipped, and the algorithms each key may verify pinned by its
//! type, curve and optional `alg` — so a token can never pick an algorithm its key was not made
//! for (no `alg` confusion: HMAC is refused outright, a local JWKS being public data).

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Why a JWKS was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not a JSON object with a `keys` array.
    #[error("not a jwks (a json object with a `keys` array): {0}")]
    NotJwks(String),
    /// A key is unusable; `index` is its position in `keys`.
    #[error("keys[{index}]: {reason}")]
    Key {
        /// Position in `keys`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The algorithms a key verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Family {
    fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Family::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Family::P256 => alg == ES256,
            Family::P384 => alg == ES384,
            Family::Ed25519 => alg == EdDSA,
        }
    }
}

/// One verifying key.
struct Key {
    kid: Option<Box<str>>,
    /// The key's `alg`, when it names one.
    alg: Option<Algorithm>,
    family: Family,
    key: DecodingKey,
}

/// A parsed JWKS: the verifying keys, and the text they came from (compared for equality, so a
/// resource that did not change compares equal).
pub struct Jwks {
    source: Box<str>,
    keys: Box<[Key]>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field(
                "kids",
                &self
                    .keys
                    .iter()
                    .map(|k| k.kid.as_deref())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl PartialEq for Jwks {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Jwks {}

fn b64_len(field: &str, v: &str) -> Result<usize, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v.trim_end_matches('='))
        .map(|b| b.len())
        .map_err(|e| format!("`{field}` is not base64url: {e}"))
}

fn key_algorithm(a: KeyAlgorithm) -> Result<Algorithm, String> {
    Ok(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        other => {
            return Err(format!(
                "`alg` {other:?} is not an asymmetric signing algorithm"
            ))
        }
    })
}

/// `Ok(None)`: a key to skip (not for signatures).
fn key(v: &Value) -> Result<Option<Key>, String> {
    let jwk: Jwk = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Ok(None);
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = b64_len("n", &p.n)?;
            b64_len("e", &p.e)?;
            if n < 256 {
                return Err(format!(
                    "rsa modulus of {} bits; at least 2048 required",
                    n * 8
                ));
            }
            Family::Rsa
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (family, size) = match p.curve {
                EllipticCurve::P256 => (Family::P256, 32),
                EllipticCurve::P384 => (Family::P384, 48),
                ref c => return Err(format!("curve {c:?} not supported (P-256, P-384)")),
            };
            if b64_len("x", &p.x)? != size || b64_len("y", &p.y)? != size {
                return Err(format!("`x` and `y` must be {size} bytes for this curve"));
            }
            family
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 || b64_len("x", &p.x)? != 32 {
                return Err("an OKP key must be an Ed25519 key of 32 bytes".into());
            }
            Family::Ed25519
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (`oct`) keys are not supported".into())
        }
    };
    let alg = jwk.common.key_algorithm.map(key_algorithm).transpose()?;
    if let Some(a) = alg {
        if !family.allows(a) {
            return Err(format!("`alg` {a:?} does not fit the key type"));
        }
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    Ok(Some(Key {
        kid: jwk.common.key_id.map(Into::into),
        alg,
        family,
        key,
    }))
}

impl Jwks {
    /// Parses a JWKS document (RFC 7517 §5). Every key must be usable; keys whose `use` is not
    /// `sig` are skipped. An empty `keys` array is accepted and verifies nothing.
    pub fn parse(text: &str) -> Result<Jwks, JwksError> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| JwksError::NotJwks(e.to_string()))?;
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Err(JwksError::NotJwks("no `keys` array".into()));
        };
        let mut keys = Vec::with_capacity(list.len());
        for (index, v) in list.iter().enumerate() {
            if let Some(k) = key(v).map_err(|reason| JwksError::Key { index, reason })? {
                keys.push(k);
            }
        }
        Ok(Jwks {
            source: text.into(),
            keys: keys.into(),
        })
    }

    /// Keeps the keys [`Jwks::parse`] would accept and reports the others, as Envoy's
    /// `jwt_verify_lib` loads a fetched JWKS (`Jwks::createFromJwksCore`: a key that cannot be
    /// extracted is skipped; the set fails only when no valid key is left). Returns the JWKS text
    /// holding the usable keys (and those skipped for not being `sig` keys), and one
    /// [`JwksError::Key`] per dropped key — its `index` in the original `keys`, the reason
    /// naming its `kid` when it has one. Fails when the document is no JWKS, or when it has keys
    /// and none of them can verify.
    pub fn usable_keys(text: &str) -> Result<(String, Vec<JwksError>), JwksError> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| JwksError::NotJwks(e.to_string()))?;
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Err(JwksError::NotJwks("no `keys` array".into()));
        };
        let mut kept = Vec::with_capacity(list.len());
        let mut dropped = Vec::new();
        let mut verifying = 0;
        for (index, v) in list.iter().enumerate() {
            match key(v) {
                Ok(k) => {
                    verifying += usize::from(k.is_some());
                    kept.push(v.clone());
                }
                Err(reason) => {
                    let reason = match v.get("kid").and_then(Value::as_str) {
                        Some(kid) => format!("kid `{kid}`: {reason}"),
                        None => reason,
                    };
                    dropped.push(JwksError::Key { index, reason });
                }
            }
        }
        if verifying == 0 && !dropped.is_empty() {
            let first = dropped.swap_remove(0);
            return Err(JwksError::NotJwks(format!("no usable key ({first})")));
        }
        if dropped.is_empty() {
            return Ok((text.to_owned(), dropped));
        }
        let text = serde_json::json!({ "keys": kept }).to_string();
        Ok((text, dropped))
    }

    /// How many verifying keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when it holds no verifying key (every token fails).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `signature` (base64url) over `message` (`header.payload`) with the keys a token
    /// of algorithm `alg` and key id `kid` may use: with a `kid`, keys of that id or with none
    /// (Envoy); always only keys whose type and `alg` fit `alg`. `Err` when no key fits.
    pub(crate) fn verify(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        message: &[u8],
        signature: &str,
    ) -> Result<bool, &'static str> {
        let mut tried = false;
        for k in self.keys.iter() {
            let kid_ok = match (kid, &k.kid) {
                (Some(want), Some(have)) => **have == *want,
                _ => true,
            };
            if !kid_ok || !k.family.allows(alg) || k.alg.is_some_and(|a| a != alg) {
                continue;
            }
            tried = true;
            // The family check above guarantees the key kind fits `alg`.
            if jsonwebtoken::crypto::verify(signature, message, &k.key, alg).unwrap_or(false) {
                return Ok(true);
            }
        }
        if tried {
            Ok(false)
        } else {
            Err("no key in the jwks matches the token's kid and alg")
        }
    }
}
