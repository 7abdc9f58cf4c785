use std::time::{Duration, SystemTime};

use super::*;
use crate::ca::server::{control_plane_id, DEFAULT_CONTROL_PLANE_NAMESPACE};

fn issuer() -> SpiffeId {
    control_plane_id("cluster.local", DEFAULT_CONTROL_PLANE_NAMESPACE).unwrap()
}

fn greeter() -> SpiffeId {
    SpiffeId::new("cluster.local", "default", "greeter").unwrap()
}

#[test]
fn minted_token_verifies_with_its_claims() {
    let auth = TokenAuthority::generate(&issuer()).unwrap();
    let (token, claims) = auth.mint(&greeter(), Duration::from_secs(600)).unwrap();
    assert_eq!(claims.sub, greeter().as_str());
    assert_eq!(claims.aud, TOKEN_AUDIENCE);
    assert_eq!(claims.iss, issuer().as_str());
    assert_eq!(claims.exp - claims.iat, 600);
    assert_eq!(claims.jti.len(), 32);
    let header = jsonwebtoken::decode_header(token.expose()).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(auth.key_id()));
    let (verified, id) = auth.verify(token.expose(), SystemTime::now()).unwrap();
    assert_eq!(verified, claims);
    assert_eq!(id, greeter());
}

#[test]
fn tokens_are_single_use() {
    let auth = TokenAuthority::generate(&issuer()).unwrap();
    let (token, _) = auth.mint(&greeter(), Duration::from_secs(60)).unwrap();
    let now = SystemTime::now();
    // Verifying alone does not consume.
    auth.verify(token.expose(), now).unwrap();
    auth.redeem(token.expose(), now).unwrap();
    let err = auth.redeem(token.expose(), now).unwrap_err();
    assert!(matches!(err, TokenError::Replayed { .. }), "{err}");
    assert!(err.to_string().contains("already used"), "{err}");
}

#[test]
fn replay_cache_is_bounded_in_size_and_time() {
    let auth = TokenAuthority::generate(&issuer())
        .unwrap()
        .with_replay_capacity(2);
    let now = SystemTime::now();
    let mint = |ttl| auth.mint(&greeter(), Duration::from_secs(ttl)).unwrap().0;
    let (a, b, c) = (mint(60), mint(60), mint(60));
    auth.redeem(a.expose(), now).unwrap();
    auth.redeem(b.expose(), now).unwrap();
    // Full of live entries: refuse rather than forget one.
    let err = auth.redeem(c.expose(), now).unwrap_err();
    assert!(
        matches!(err, TokenError::ReplayCacheFull { capacity: 2 }),
        "{err}"
    );
    // Once a and b are past exp + skew they are dropped and c fits; a is then refused as
    // expired, not accepted as new.
    let later = now + Duration::from_secs(60) + TOKEN_CLOCK_SKEW + Duration::from_secs(2);
    let (fresh, claims) = auth
        .mint_with_times(&greeter(), later, later + Duration::from_secs(60))
        .unwrap();
    auth.redeem(fresh.expose(), later).unwrap();
    assert!(auth.lock().contains_key(&claims.jti));
    assert_eq!(auth.lock().len(), 1, "expired entries were dropped");
    let err = auth.redeem(a.expose(), later).unwrap_err();
    assert!(matches!(err, TokenError::Expired { .. }), "{err}");
}

#[test]
fn expiry_and_issue_time_allow_the_skew_only() {
    let auth = TokenAuthority::generate(&issuer()).unwrap();
    let now = SystemTime::now();
    let (token, _) = auth
        .mint_with_times(
            &greeter(),
            now - Duration::from_secs(120),
            now - Duration::from_secs(30),
        )
        .unwrap();
    // 30 s past exp: inside the 60 s skew.
    auth.verify(token.expose(), now).unwrap();
    let err = auth
        .verify(token.expose(), now + Duration::from_secs(40))
        .unwrap_err();
    assert!(matches!(err, TokenError::Expired { ago_secs: 70 }), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");

    let (future, _) = auth
        .mint_with_times(
            &greeter(),
            now + Duration::from_secs(300),
            now + Duration::from_secs(600),
        )
        .unwrap();
    let err = auth.verify(future.expose(), now).unwrap_err();
    assert!(matches!(err, TokenError::NotYetValid { .. }), "{err}");
}

#[test]
fn lifetime_is_bounded() {
    let auth = TokenAuthority::generate(&issuer()).unwrap();
    let err = auth
        .mint(&greeter(), MAX_TOKEN_TTL + Duration::from_secs(1))
        .unwrap_err();
    assert!(matches!(err, TokenError::BadLifetime { .. }), "{err}");
    assert!(auth.mint(&greeter(), Duration::ZERO).is_err());
    let now = SystemTime::now();
    let (long, _) = auth
        .mint_with_times(&greeter(), now, now + Duration::from_secs(7 * 24 * 3600))
        .unwrap();
    let err = auth.verify(long.expose(), now).unwrap_err();
    assert!(matches!(err, TokenError::BadLifetime { .. }), "{err}");
}

#[test]
fn forged_wrong_audience_issuer_and_garbage_are_refused() {
    let key_pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let auth = TokenAuthority::from_pem(&key_pem, &issuer()).unwrap();
    let now = SystemTime::now();

    let other = TokenAuthority::generate(&issuer()).unwrap();
    let (forged, _) = other.mint(&greeter(), Duration::from_secs(60)).unwrap();
    let err = auth.verify(forged.expose(), now).unwrap_err();
    assert!(matches!(err, TokenError::Forged), "{err}");

    let elsewhere = SpiffeId::new("cluster.local", "other", "mesh-control-plane").unwrap();
    let (foreign_iss, _) = TokenAuthority::from_pem(&key_pem, &elsewhere)
        .unwrap()
        .mint(&greeter(), Duration::from_secs(60))
        .unwrap();
    let err = auth.verify(foreign_iss.expose(), now).unwrap_err();
    assert!(matches!(err, TokenError::WrongIssuer { .. }), "{err}");

    // Same key, other audience.
    let mut claims = auth.mint(&greeter(), Duration::from_secs(60)).unwrap().1;
    claims.aud = "kubernetes.default.svc".into();
    let token = sign(&auth, &claims, Algorithm::ES256);
    let err = auth.verify(&token, now).unwrap_err();
    assert!(matches!(err, TokenError::WrongAudience { .. }), "{err}");

    // HS256 with the public key as secret (the classic algorithm confusion).
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"anything"),
    )
    .unwrap();
    let err = auth.verify(&hs, now).unwrap_err();
    assert!(matches!(err, TokenError::WrongAlgorithm), "{err}");

    for garbage in ["", "a.b", "not.a.jwt", "a.b.c.d"] {
        let err = auth.verify(garbage, now).unwrap_err();
        assert!(
            matches!(err, TokenError::Malformed(_)),
            "{garbage:?}: {err}"
        );
    }

    // A token this key signed whose subject is no SPIFFE ID.
    let mut bad_sub = auth.mint(&greeter(), Duration::from_secs(60)).unwrap().1;
    bad_sub.sub = "greeter".into();
    let err = auth
        .verify(&sign(&auth, &bad_sub, Algorithm::ES256), now)
        .unwrap_err();
    assert!(matches!(err, TokenError::InvalidSubject(_)), "{err}");
}

#[test]
fn key_persists_and_debug_is_redacted() {
    let dir = std::env::temp_dir().join(format!("mesh-token-test-{}", rand::random::<u64>()));
    let auth = TokenAuthority::load_or_create(&dir, &issuer()).unwrap();
    let again = TokenAuthority::load_or_create(&dir, &issuer()).unwrap();
    assert_eq!(auth.key_id(), again.key_id());
    let (token, _) = auth.mint(&greeter(), Duration::from_secs(60)).unwrap();
    again.verify(token.expose(), SystemTime::now()).unwrap();
    let key = std::fs::read_to_string(dir.join(TOKEN_KEY_FILE)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(TOKEN_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let printed = format!("{auth:?} {auth:#?} {token:?} {token:#?}");
    assert!(printed.contains("<redacted>"));
    assert!(!printed.contains(token.expose()), "{printed}");
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!printed.contains(&body[..24]), "{printed}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn sign(auth: &TokenAuthority, claims: &TokenClaims, alg: Algorithm) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(auth.key_id().to_owned());
    jsonwebtoken::encode(&header, claims, &auth.encoding).unwrap()
}

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("mesh-token-test-{}", rand::random::<u64>()))
}

#[test]
fn a_used_token_stays_used_across_a_restart() {
    let dir = temp_dir();
    let now = SystemTime::now();
    let auth = TokenAuthority::load_or_create(&dir, &issuer()).unwrap();
    let (token, claims) = auth.mint(&greeter(), Duration::from_secs(60)).unwrap();
    let (other, _) = auth.mint(&greeter(), Duration::from_secs(60)).unwrap();
    auth.redeem(token.expose(), now).unwrap();

    // A new process on the same directory: the redeemed token is refused, a fresh one works.
    let restarted = TokenAuthority::load_or_create(&dir, &issuer()).unwrap();
    let err = restarted.redeem(token.expose(), now).unwrap_err();
    assert!(
        matches!(err, TokenError::Replayed { ref jti } if *jti == claims.jti),
        "{err}"
    );
    restarted.redeem(other.expose(), now).unwrap();
    let log = std::fs::read_to_string(dir.join(REPLAY_LOG_FILE)).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(REPLAY_LOG_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_replay_log_drops_expired_entries_and_names_a_bad_line() {
    let dir = temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(REPLAY_LOG_FILE);
    let now = SystemTime::now();
    let t = unix(now);
    std::fs::write(&path, format!("old {}\nlive {}\n\n", t - 3600, t + 60)).unwrap();
    let auth = TokenAuthority::generate(&issuer())
        .unwrap()
        .with_replay_log(&path, now)
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("live {}\n", t + 60)
    );
    assert!(auth.lock().contains_key("live") && !auth.lock().contains_key("old"));

    std::fs::write(&path, format!("live {}\ngarbage\n", t + 60)).unwrap();
    let err = TokenAuthority::generate(&issuer())
        .unwrap()
        .with_replay_log(&path, now)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(REPLAY_LOG_FILE) && err.contains("line 2"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_redemption_that_cannot_be_recorded_does_not_happen() {
    let dir = temp_dir();
    let auth = TokenAuthority::load_or_create(&dir, &issuer()).unwrap();
    // The log vanishes and a directory takes its place: appending fails.
    std::fs::remove_file(dir.join(REPLAY_LOG_FILE)).unwrap();
    std::fs::create_dir(dir.join(REPLAY_LOG_FILE)).unwrap();
    let (token, claims) = auth.mint(&greeter(), Duration::from_secs(60)).unwrap();
    let err = auth.redeem(token.expose(), SystemTime::now()).unwrap_err();
    assert!(matches!(err, TokenError::ReplayLog { .. }), "{err}");
    assert!(err.to_string().contains(REPLAY_LOG_FILE), "{err}");
    assert!(!auth.lock().contains_key(&claims.jti), "not redeemed");
    assert_eq!(
        crate::ca::server::token_status(&err).code(),
        tonic::Code::Unavailable
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
