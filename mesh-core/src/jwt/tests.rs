//! Keys are generated per run (ring for P-256, the `rsa` crate for RSA-2048): no token or key is
//! written down, so nothing here can pass by accident of a fixed fixture.

use std::sync::{Arc, OnceLock};

use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, Uri};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::model::{JwtAuthentication, JwtHeader, JwtProvider, JwtRequirement, JwtRule, PathMatch};

const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://issuer.example";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A signing key and its public JWK.
struct TestKey {
    alg: Algorithm,
    kid: String,
    enc: EncodingKey,
    jwk: Value,
}

fn ec_key(kid: &str) -> TestKey {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    TestKey {
        alg: Algorithm::ES256,
        kid: kid.into(),
        enc: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
    }
}

/// RSA-2048 generation is slow: two keys per test binary, shared.
fn rsa_key(which: usize) -> &'static TestKey {
    static KEYS: OnceLock<[TestKey; 2]> = OnceLock::new();
    &KEYS.get_or_init(|| {
        let gen = |kid: &str| {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::traits::PublicKeyParts;
            let k = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
            TestKey {
                alg: Algorithm::RS256,
                kid: kid.into(),
                enc: EncodingKey::from_rsa_der(k.to_pkcs1_der().unwrap().as_bytes()),
                jwk: json!({"kty": "RSA", "alg": "RS256", "kid": kid,
                            "n": b64(&k.n().to_bytes_be()), "e": b64(&k.e().to_bytes_be())}),
            }
        };
        [gen("rsa-1"), gen("rsa-2")]
    })[which]
}

fn sign(k: &TestKey, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(k.alg);
    h.kid = kid.map(str::to_owned).or(Some(k.kid.clone()));
    jsonwebtoken::encode(&h, claims, &k.enc).unwrap()
}

fn claims(iss: &str, aud: Value) -> Value {
    json!({"iss": iss, "sub": "alice", "aud": aud, "exp": NOW + 600, "iat": NOW,
           "groups": ["admin", "dev"], "tier": "gold", "nested": {"level": 3}})
}

fn provider(name: &str, iss: &str, jwks: &[&Value]) -> JwtProvider {
    let doc = json!({"keys": jwks}).to_string();
    JwtProvider {
        name: name.into(),
        issuer: iss.into(),
        audiences: vec![Arc::from("api")].into(),
        require_expiration: false,
        jwks: Arc::new(Jwks::parse(&doc).unwrap()),
        from_headers: Arc::from([]),
        from_params: Arc::from([]),
        from_cookies: Arc::from([]),
        forward: false,
        forward_payload_header: None,
        claim_to_headers: Arc::from([]),
        payload_in_metadata: Some(iss.into()),
        clock_skew_seconds: DEFAULT_CLOCK_SKEW_SECONDS,
    }
}

/// Istio's single-provider shape: `origins-0 OR allow_missing` on every path.
fn istio(providers: Vec<JwtProvider>) -> JwtAuthn {
    let n = providers.len();
    let one = |i| JwtRequirement::Provider {
        provider: i,
        audiences: None,
    };
    let requires = if n == 1 {
        JwtRequirement::Any(vec![one(0), JwtRequirement::AllowMissing].into())
    } else {
        let mut or: Vec<_> = (0..n).map(one).collect();
        or.push(JwtRequirement::All(
            (0..n)
                .map(|i| JwtRequirement::Any(vec![one(i), JwtRequirement::AllowMissing].into()))
                .collect(),
        ));
        JwtRequirement::Any(or.into())
    };
    JwtAuthn::new(
        "envoy.filters.http.jwt_authn",
        Arc::new(JwtAuthentication {
            providers: providers.into(),
            rules: vec![JwtRule {
                path: PathMatch::Prefix("/".into()),
                requires: Some(requires),
            }]
            .into(),
            bypass_cors_preflight: true,
        }),
    )
}

fn run(a: &JwtAuthn, uri: &str, token: Option<&str>, now: u64) -> Result<Option<Value>, JwtError> {
    let mut h = HeaderMap::new();
    if let Some(t) = token {
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    a.authenticate(&Method::GET, &uri.parse::<Uri>().unwrap(), &mut h, now)
}

fn kind(r: Result<Option<Value>, JwtError>) -> JwtErrorKind {
    r.expect_err("should be refused").kind
}

#[test]
fn rs256_and_es256_tokens_verify_and_give_istio_metadata() {
    let ec = ec_key("ec-1");
    let a = istio(vec![provider(
        "origins-0",
        ISS,
        &[&rsa_key(0).jwk, &ec.jwk],
    )]);
    for key in [rsa_key(0), &ec] {
        let t = sign(key, None, &claims(ISS, json!("api")));
        let md = run(&a, "/x", Some(&t), NOW).unwrap().expect("metadata");
        let authn = &md[ISTIO_AUTHN_NAMESPACE];
        assert_eq!(
            authn["request.auth.principal"],
            json!(format!("{ISS}/alice"))
        );
        assert_eq!(authn["request.auth.audiences"], json!("api"));
        assert_eq!(
            authn["request.auth.claims"]["groups"],
            json!(["admin", "dev"])
        );
        assert_eq!(authn["request.auth.claims"]["tier"], json!(["gold"]));
        assert_eq!(
            authn["request.auth.claims"]["nested"]["level"],
            json!(["3"])
        );
        assert_eq!(md[JWT_AUTHN_NAMESPACE][ISS]["sub"], json!("alice"));
    }
}

#[test]
fn verified_token_header_is_removed_unless_forwarded() {
    let ec = ec_key("k");
    let t = sign(&ec, None, &claims(ISS, json!("api")));
    for forward in [false, true] {
        let mut p = provider("p", ISS, &[&ec.jwk]);
        p.forward = forward;
        p.forward_payload_header = Some(http::HeaderName::from_static("x-jwt-payload"));
        let a = istio(vec![p]);
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {t}").parse().unwrap());
        a.authenticate(&Method::GET, &Uri::from_static("/"), &mut h, NOW)
            .unwrap()
            .unwrap();
        assert_eq!(h.contains_key("authorization"), forward);
        let payload = h["x-jwt-payload"].to_str().unwrap();
        assert_eq!(payload, t.split('.').nth(1).unwrap());
    }
}

#[test]
fn forged_signature_is_bad_signature() {
    let real = ec_key("k");
    let forger = ec_key("k");
    let a = istio(vec![provider("origins-0", ISS, &[&real.jwk])]);
    let forged = sign(&forger, None, &claims(ISS, json!("api")));
    let e = run(&a, "/", Some(&forged), NOW).unwrap_err();
    assert_eq!(e.kind, JwtErrorKind::BadSignature);
    assert_eq!(&*e.provider, "origins-0");
    // The payload of a genuine token with its signature swapped for another's.
    let good = sign(&real, None, &claims(ISS, json!("api")));
    let mut parts: Vec<&str> = good.split('.').collect();
    let other = sign(&real, None, &claims(ISS, json!(["api", "more"])));
    parts[2] = other.split('.').nth(2).unwrap();
    assert_eq!(
        kind(run(&a, "/", Some(&parts.join(".")), NOW)),
        JwtErrorKind::BadSignature
    );
    // An RSA key with the same kid as the EC key: the alg pins the key type.
    let rsa = sign(rsa_key(1), Some("k"), &claims(ISS, json!("api")));
    assert_eq!(
        kind(run(&a, "/", Some(&rsa), NOW)),
        JwtErrorKind::BadSignature
    );
}

#[test]
fn kid_selects_the_key() {
    let (k1, k2) = (ec_key("one"), ec_key("two"));
    let a = istio(vec![provider("p", ISS, &[&k1.jwk, &k2.jwk])]);
    let c = claims(ISS, json!("api"));
    assert!(run(&a, "/", Some(&sign(&k2, None, &c)), NOW).is_ok());
    let wrong_kid = sign(&k2, Some("one"), &c);
    assert_eq!(
        kind(run(&a, "/", Some(&wrong_kid), NOW)),
        JwtErrorKind::BadSignature
    );
    let e = run(&a, "/", Some(&sign(&k2, Some("three"), &c)), NOW).unwrap_err();
    assert_eq!(e.kind, JwtErrorKind::BadSignature);
    assert!(e.detail.contains("kid"), "{e}");
}

#[test]
fn exp_and_nbf_honour_the_clock_skew() {
    let k = ec_key("k");
    let a = istio(vec![provider("p", ISS, &[&k.jwk])]);
    let mut c = claims(ISS, json!("api"));
    c["exp"] = json!(NOW);
    let t = sign(&k, None, &c);
    assert!(
        run(&a, "/", Some(&t), NOW + 60).is_ok(),
        "within the 60 s skew"
    );
    assert_eq!(
        kind(run(&a, "/", Some(&t), NOW + 61)),
        JwtErrorKind::Expired
    );
    let mut c = claims(ISS, json!("api"));
    c["nbf"] = json!(NOW + 100);
    let t = sign(&k, None, &c);
    assert_eq!(kind(run(&a, "/", Some(&t), NOW)), JwtErrorKind::NotYetValid);
    assert!(run(&a, "/", Some(&t), NOW + 40).is_ok());
    let mut c = claims(ISS, json!("api"));
    c["exp"] = json!("tomorrow");
    assert_eq!(
        kind(run(&a, "/", Some(&sign(&k, None, &c)), NOW)),
        JwtErrorKind::Malformed
    );
}

#[test]
fn audience_and_issuer_are_checked() {
    let k = ec_key("k");
    let a = istio(vec![provider("p", ISS, &[&k.jwk])]);
    let t = |iss: &str, aud: Value| sign(&k, None, &claims(iss, aud));
    assert_eq!(
        kind(run(&a, "/", Some(&t(ISS, json!("other"))), NOW)),
        JwtErrorKind::Audience
    );
    assert!(run(&a, "/", Some(&t(ISS, json!(["x", "api"]))), NOW).is_ok());
    let mut no_aud = claims(ISS, json!(null));
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        kind(run(&a, "/", Some(&sign(&k, None, &no_aud)), NOW)),
        JwtErrorKind::Audience
    );
    let e = run(&a, "/", Some(&t("https://evil", json!("api"))), NOW).unwrap_err();
    assert_eq!(e.kind, JwtErrorKind::Issuer);
    assert!(e.detail.contains("https://evil"), "{e}");
}

#[test]
fn absent_token_passes_allow_missing_but_not_a_required_provider() {
    let k = ec_key("k");
    let a = istio(vec![provider("p", ISS, &[&k.jwk])]);
    assert_eq!(run(&a, "/", None, NOW), Ok(None));
    let strict = JwtAuthn::new(
        "jwt",
        Arc::new(JwtAuthentication {
            providers: vec![provider("p", ISS, &[&k.jwk])].into(),
            rules: vec![
                JwtRule {
                    path: PathMatch::Prefix("/public".into()),
                    requires: None,
                },
                JwtRule {
                    path: PathMatch::Prefix("/".into()),
                    requires: Some(JwtRequirement::Provider {
                        provider: 0,
                        audiences: None,
                    }),
                },
            ]
            .into(),
            bypass_cors_preflight: false,
        }),
    );
    assert_eq!(
        kind(run(&strict, "/private", None, NOW)),
        JwtErrorKind::Missing
    );
    assert_eq!(run(&strict, "/public/x", None, NOW), Ok(None));
}

#[test]
fn malformed_none_and_hmac_tokens_are_refused() {
    let k = ec_key("k");
    let a = istio(vec![provider("p", ISS, &[&k.jwk])]);
    assert_eq!(
        kind(run(&a, "/", Some("abc"), NOW)),
        JwtErrorKind::Malformed
    );
    assert_eq!(
        kind(run(&a, "/", Some("a.b.c.d"), NOW)),
        JwtErrorKind::Malformed
    );
    let body = b64(claims(ISS, json!("api")).to_string().as_bytes());
    let none = format!("{}.{body}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    assert_eq!(
        kind(run(&a, "/", Some(&none), NOW)),
        JwtErrorKind::Malformed
    );
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(ISS, json!("api")),
        &EncodingKey::from_secret(b"public-key-bytes"),
    )
    .unwrap();
    assert_eq!(
        kind(run(&a, "/", Some(&hs), NOW)),
        JwtErrorKind::BadSignature
    );
}

#[test]
fn several_providers_share_the_authorization_header() {
    let (ka, kb) = (ec_key("a"), ec_key("b"));
    let a = istio(vec![
        provider("origins-0", "https://a", &[&ka.jwk]),
        provider("origins-1", "https://b", &[&kb.jwk]),
    ]);
    let md = run(
        &a,
        "/",
        Some(&sign(&kb, None, &claims("https://b", json!("api")))),
        NOW,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        md[ISTIO_AUTHN_NAMESPACE]["request.auth.principal"],
        json!("https://b/alice")
    );
    let unknown = sign(&kb, None, &claims("https://c", json!("api")));
    assert_eq!(
        kind(run(&a, "/", Some(&unknown), NOW)),
        JwtErrorKind::Issuer
    );
    // Issuer b's name, a's key: the specific failure is reported, not the issuer mismatch.
    let forged = sign(&ka, Some("b"), &claims("https://b", json!("api")));
    let e = run(&a, "/", Some(&forged), NOW).unwrap_err();
    assert_eq!(
        (e.kind, &*e.provider),
        (JwtErrorKind::BadSignature, "origins-1")
    );
    assert_eq!(run(&a, "/", None, NOW), Ok(None));
}

#[test]
fn custom_header_prefix_and_query_parameter_locations() {
    let k = ec_key("k");
    let mut p = provider("p", ISS, &[&k.jwk]);
    p.from_headers = vec![JwtHeader {
        name: http::HeaderName::from_static("x-token"),
        value_prefix: "Token ".into(),
    }]
    .into();
    p.from_params = vec![Arc::from("jwt")].into();
    let a = istio(vec![p]);
    let t = sign(&k, None, &claims(ISS, json!("api")));
    let mut h = HeaderMap::new();
    h.insert("x-token", format!("Token {t}").parse().unwrap());
    assert!(a
        .authenticate(&Method::GET, &Uri::from_static("/"), &mut h, NOW)
        .unwrap()
        .is_some());
    let uri: Uri = format!("/q?a=1&jwt={t}").parse().unwrap();
    assert!(a
        .authenticate(&Method::GET, &uri, &mut HeaderMap::new(), NOW)
        .unwrap()
        .is_some());
    // The default Authorization location is not consulted when locations are configured.
    assert_eq!(run(&a, "/", Some(&t), NOW), Ok(None));
}

#[test]
fn cookie_location() {
    let k = ec_key("k");
    let mut p = provider("p", ISS, &[&k.jwk]);
    p.from_cookies = vec![Arc::from("session")].into();
    let a = istio(vec![p]);
    let t = sign(&k, None, &claims(ISS, json!("api")));
    let auth = |cookies: &[&str]| {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(http::header::COOKIE, c.parse().unwrap());
        }
        a.authenticate(&Method::GET, &Uri::from_static("/"), &mut h, NOW)
    };
    // Among other cookies, in a second `cookie` header, quoted.
    assert!(auth(&[&format!("a=1; session={t}; b=2")])
        .unwrap()
        .is_some());
    assert!(auth(&["a=1", &format!("session=\"{t}\"")])
        .unwrap()
        .is_some());
    // Absent, empty, a similar name, malformed pairs: no token (passes as missing).
    for c in [
        "a=1",
        "session=",
        "sessionx=abc; xsession=abc",
        ";;=; session",
        "==",
    ] {
        assert_eq!(auth(&[c]).map(|v| v.is_some()), Ok(false), "{c}");
    }
    // A bad token in the cookie is refused, not ignored.
    assert!(auth(&["session=not.a.jwt"]).is_err());
    // Not in the Authorization header when only a cookie is configured.
    assert_eq!(run(&a, "/", Some(&t), NOW), Ok(None));
}

#[test]
fn cors_preflight_bypasses_authentication() {
    let k = ec_key("k");
    let a = istio(vec![provider("p", ISS, &[&k.jwk])]);
    let mut h = HeaderMap::new();
    h.insert("authorization", "Bearer garbage".parse().unwrap());
    h.insert("origin", "https://app".parse().unwrap());
    h.insert("access-control-request-method", "POST".parse().unwrap());
    let r = a.authenticate(&Method::OPTIONS, &Uri::from_static("/"), &mut h, NOW);
    assert_eq!(r, Ok(None));
    let r = a.authenticate(&Method::GET, &Uri::from_static("/"), &mut h, NOW);
    assert_eq!(kind(r), JwtErrorKind::Malformed);
}

#[test]
fn jwks_rejects_unusable_keys() {
    let err = |doc: Value| Jwks::parse(&doc.to_string()).unwrap_err().to_string();
    assert!(err(json!({"nokeys": []})).contains("keys"));
    assert!(Jwks::parse("{").is_err());
    let short = json!({"kty": "RSA", "n": b64(&[0xff; 128]), "e": "AQAB"});
    assert!(err(json!({"keys": [short]})).contains("2048"));
    let oct = json!({"kty": "oct", "k": b64(b"secret")});
    assert!(err(json!({"keys": [oct]})).contains("keys[0]"));
    let bad_ec = json!({"kty": "EC", "crv": "P-256", "x": b64(&[1; 31]), "y": b64(&[1; 32])});
    assert!(err(json!({"keys": [bad_ec]})).contains("32 bytes"));
    let mismatch = json!({"kty": "EC", "crv": "P-256", "alg": "RS256",
                          "x": b64(&[1; 32]), "y": b64(&[1; 32])});
    assert!(err(json!({"keys": [mismatch]})).contains("alg"));
    let enc = json!({"kty": "EC", "crv": "P-256", "use": "enc",
                     "x": b64(&[1; 32]), "y": b64(&[1; 32])});
    assert_eq!(
        Jwks::parse(&json!({"keys": [enc]}).to_string())
            .unwrap()
            .len(),
        0
    );
    let j = Jwks::parse(&json!({"keys": [rsa_key(0).jwk]}).to_string()).unwrap();
    assert_eq!(j.len(), 1);
}

#[test]
fn usable_keys_drop_what_parse_refuses_and_keep_the_rest() {
    let good = ec_key("good");
    let short = json!({"kty": "RSA", "kid": "old", "n": b64(&[0xff; 128]), "e": "AQAB"});
    let oct = json!({"kty": "oct", "k": b64(b"secret")});
    let doc = json!({"keys": [short, good.jwk, oct]}).to_string();
    assert!(Jwks::parse(&doc).is_err(), "parse refuses the whole set");
    let (text, dropped) = Jwks::usable_keys(&doc).unwrap();
    let kept = Jwks::parse(&text).unwrap();
    assert_eq!(kept.len(), 1);
    let dropped: Vec<String> = dropped.iter().map(ToString::to_string).collect();
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    assert!(
        dropped[0].contains("keys[0]") && dropped[0].contains("kid `old`"),
        "{dropped:?}"
    );
    assert!(dropped[1].contains("keys[2]"), "{dropped:?}");
    // Nothing usable left: an error; no keys at all is a valid (empty) set.
    let all_bad = json!({"keys": [oct]}).to_string();
    assert!(Jwks::usable_keys(&all_bad)
        .unwrap_err()
        .to_string()
        .contains("no usable key"));
    assert_eq!(Jwks::usable_keys(r#"{"keys": []}"#).unwrap().1.len(), 0);
    assert!(Jwks::usable_keys("[]").is_err());
}

#[test]
fn garbage_tokens_are_refused_never_panic() {
    use rand::{Rng, SeedableRng};
    let k = ec_key("k");
    let a = istio(vec![
        provider("ec", ISS, &[&k.jwk]),
        provider("rsa", "https://rsa", &[&rsa_key(0).jwk]),
    ]);
    // Headers naming every algorithm family against both key types, with random bodies and
    // signatures; 2000 cases, seeded so a failure reproduces.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let algs = [
        "RS256", "PS512", "ES256", "ES384", "EdDSA", "HS256", "none", "XX",
    ];
    for i in 0..2000 {
        let alg = algs[i % algs.len()];
        let kid = if rng.random_bool(0.5) { "k" } else { "rsa-1" };
        let header = b64(format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#).as_bytes());
        let iss = if rng.random_bool(0.5) {
            ISS
        } else {
            "https://rsa"
        };
        let body = b64(claims(iss, json!("api")).to_string().as_bytes());
        let sig_len = rng.random_range(0..600);
        let sig: Vec<u8> = (0..sig_len).map(|_| rng.random()).collect();
        let token = match i % 4 {
            0 => format!("{header}.{body}.{}", b64(&sig)),
            1 => format!("{header}.{}.{}", b64(&sig), b64(&sig)),
            2 => String::from_utf8_lossy(&sig).replace(['\r', '\n'], ""),
            _ => format!("{header}.{body}.{}==", b64(&sig)),
        };
        let mut h = HeaderMap::new();
        let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) else {
            continue;
        };
        h.insert("authorization", v);
        if token.trim().is_empty() {
            // Nothing after the prefix is no token: it may be missing.
            assert_eq!(
                a.authenticate(&Method::GET, &Uri::from_static("/"), &mut h, NOW),
                Ok(None)
            );
            continue;
        }
        let r = a.authenticate(&Method::GET, &Uri::from_static("/"), &mut h, NOW);
        assert!(r.is_err(), "{token}: {r:?}");
    }
}

fn with_headers(a: &JwtAuthn, uri: &str, h: &mut HeaderMap) -> Result<Option<Value>, JwtError> {
    a.authenticate(&Method::GET, &uri.parse::<Uri>().unwrap(), h, NOW)
}

fn cookie_provider(ec: &TestKey) -> JwtProvider {
    let mut p = provider("origins-0", ISS, &[&ec.jwk]);
    p.from_cookies = vec![Arc::from("session"), Arc::from("auth")].into();
    p
}

#[test]
fn token_in_a_cookie() {
    let ec = ec_key("k");
    let a = istio(vec![cookie_provider(&ec)]);
    let t = sign(&ec, None, &claims(ISS, json!("api")));
    let cases = [
        vec![format!("session={t}")],
        vec![format!("a=b; session={t}; c=d")],
        vec![format!("a=b;session=\"{t}\"")],
        // The second configured name, and the token on a later `cookie` line.
        vec!["theme=dark".to_string(), format!("x=1; auth={t}")],
    ];
    for lines in cases {
        let mut h = HeaderMap::new();
        for l in &lines {
            h.append("cookie", HeaderValue::from_str(l).unwrap());
        }
        let md = with_headers(&a, "/", &mut h).unwrap();
        let md = md.unwrap_or_else(|| panic!("{lines:?}: not verified"));
        assert_eq!(
            md[ISTIO_AUTHN_NAMESPACE]["request.auth.principal"],
            json!(format!("{ISS}/alice"))
        );
        // Envoy removes only header tokens: the cookie stays.
        assert_eq!(h.get_all("cookie").iter().count(), lines.len());
    }
    // A bad token in the cookie is refused, not ignored.
    let forged = sign(&ec_key("k"), None, &claims(ISS, json!("api")));
    let mut h = HeaderMap::new();
    h.insert("cookie", format!("session={forged}").parse().unwrap());
    assert_eq!(
        with_headers(&a, "/", &mut h).unwrap_err().kind,
        JwtErrorKind::BadSignature
    );
    // Without the default locations: a bearer token is not looked at.
    assert!(run(&a, "/", Some(&t), NOW).unwrap().is_none());
}

#[test]
fn malformed_cookie_headers_hold_no_token_and_never_panic() {
    let ec = ec_key("k");
    let a = istio(vec![cookie_provider(&ec)]);
    for line in [
        &b""[..],
        b";;;",
        b"=",
        b"session",
        b"session=",
        b"session=\"\"",
        b"sessionx=abc",
        b" =session; ==; session ",
        b"SESSION=abc",
    ] {
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_bytes(line).unwrap());
        assert!(
            with_headers(&a, "/", &mut h).unwrap().is_none(),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    // Non-text in the named cookie is a malformed token, not a missing one.
    let mut h = HeaderMap::new();
    h.insert(
        "cookie",
        HeaderValue::from_bytes(b"session=\xff\xfe.a.b").unwrap(),
    );
    assert_eq!(
        with_headers(&a, "/", &mut h).unwrap_err().kind,
        JwtErrorKind::Malformed
    );
    // A header location wins over a cookie.
    let mut p = cookie_provider(&ec);
    p.from_headers = vec![JwtHeader {
        name: http::HeaderName::from_static("x-token"),
        value_prefix: "".into(),
    }]
    .into();
    let a = istio(vec![p]);
    let good = sign(&ec, None, &claims(ISS, json!("api")));
    let mut h = HeaderMap::new();
    h.insert("x-token", HeaderValue::from_static("garbage"));
    h.insert("cookie", format!("session={good}").parse().unwrap());
    assert_eq!(
        with_headers(&a, "/", &mut h).unwrap_err().kind,
        JwtErrorKind::Malformed
    );
}

fn claims_provider(ec: &TestKey) -> JwtProvider {
    let mut p = provider("origins-0", ISS, &[&ec.jwk]);
    let c = |h: &'static str, path: &str| crate::model::ClaimToHeader {
        header: http::HeaderName::from_static(h),
        claim: path.split('.').map(Arc::from).collect(),
    };
    p.claim_to_headers = vec![
        c("x-sub", "sub"),
        c("x-level", "nested.level"),
        c("x-ratio", "ratio"),
        c("x-round", "round"),
        c("x-admin", "admin"),
        c("x-groups", "groups"),
        c("x-nested", "nested"),
        c("x-absent", "nope.nothing"),
        c("x-empty", "empty"),
        c("x-evil", "evil"),
    ]
    .into();
    p
}

#[test]
fn claims_are_copied_to_headers_after_verification() {
    let ec = ec_key("k");
    let a = istio(vec![claims_provider(&ec)]);
    let mut c = claims(ISS, json!("api"));
    c["ratio"] = json!(0.5);
    c["round"] = json!(2.0);
    c["admin"] = json!(true);
    c["empty"] = json!("");
    c["evil"] = json!("a\r\nx-injected: 1");
    let t = sign(&ec, None, &c);
    let mut h = HeaderMap::new();
    h.insert("authorization", format!("Bearer {t}").parse().unwrap());
    // Client-supplied values never survive.
    h.insert("x-sub", HeaderValue::from_static("mallory"));
    h.append("x-sub", HeaderValue::from_static("mallory-2"));
    h.insert("x-absent", HeaderValue::from_static("forged"));
    with_headers(&a, "/", &mut h).unwrap().unwrap();
    let get = |n: &str| {
        h.get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("x-sub"), ["alice"]);
    assert_eq!(get("x-level"), ["3"]);
    assert_eq!(get("x-ratio"), ["0.5"]);
    assert_eq!(get("x-round"), ["2"]);
    assert_eq!(get("x-admin"), ["true"]);
    let std = base64::engine::general_purpose::STANDARD;
    assert_eq!(get("x-groups"), [std.encode(r#"["admin","dev"]"#)]);
    assert_eq!(get("x-nested"), [std.encode(r#"{"level":3}"#)]);
    for absent in ["x-absent", "x-empty", "x-evil", "x-injected"] {
        assert!(!h.contains_key(absent), "{absent}");
    }
}

#[test]
fn claim_headers_are_removed_when_no_token_verifies() {
    let ec = ec_key("k");
    let mut p = claims_provider(&ec);
    p.from_params = vec![Arc::from("jwt")].into();
    let a = JwtAuthn::new(
        "f",
        Arc::new(JwtAuthentication {
            providers: vec![p].into(),
            rules: vec![
                // `/open` has no requirement: the filter still sanitizes.
                JwtRule {
                    path: PathMatch::Prefix("/open".into()),
                    requires: None,
                },
                JwtRule {
                    path: PathMatch::Prefix("/".into()),
                    requires: Some(JwtRequirement::Any(
                        vec![
                            JwtRequirement::Provider {
                                provider: 0,
                                audiences: None,
                            },
                            JwtRequirement::AllowMissing,
                        ]
                        .into(),
                    )),
                },
            ]
            .into(),
            bypass_cors_preflight: true,
        }),
    );
    let forged = sign(&ec_key("k"), None, &claims(ISS, json!("api")));
    for (uri, refused) in [
        ("/open/a".to_string(), false),
        ("/a".to_string(), false),
        (format!("/a?jwt={forged}"), true),
    ] {
        let mut h = HeaderMap::new();
        h.insert("x-sub", HeaderValue::from_static("mallory"));
        assert_eq!(with_headers(&a, &uri, &mut h).is_err(), refused, "{uri}");
        assert!(!h.contains_key("x-sub"), "{uri}");
    }
}
