//! The attestors' first look at a bearer token, `jwt_evidence::peek`, on any
//! UTF-8 text: never panics, and accepts only what its docs promise (size,
//! three parts, an allowed `alg`, a `kid`, a string `iss`). For a peeked
//! token, the replay key derived from its claims is well-formed too.

#![no_main]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use mayfly::attest::jwt_evidence::{DEFAULT_ALGORITHMS, MAX_TOKEN_BYTES, peek, replay_guard};
use serde_json::{Map, Value};

const NAMESPACE: &str = "oidc:fuzz";

fuzz_target!(|token: &str| {
    let Ok(peeked) = peek(token) else {
        return;
    };
    assert!(token.len() <= MAX_TOKEN_BYTES);
    assert!(DEFAULT_ALGORITHMS.contains(&peeked.alg));
    assert!(!peeked.kid.is_empty());

    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let payload = URL_SAFE_NO_PAD
        .decode(parts[1])
        .expect("peek accepted the claims as base64url");
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload).expect("peek accepted the claims as a JSON object");
    assert_eq!(
        claims.get("iss").and_then(Value::as_str),
        Some(peeked.issuer.as_str())
    );

    // In the broker this runs only after `verify`; the claims are just as
    // attacker-written there, and the key goes into the replay store.
    if let Ok(guard) = replay_guard(NAMESPACE, token, &claims, Duration::from_secs(30)) {
        let rest = guard
            .key
            .strip_prefix(NAMESPACE)
            .and_then(|rest| rest.strip_prefix(':'))
            .expect("the replay key starts with its namespace");
        assert!(
            rest.len() <= "jti-sha256:".len() + 128,
            "replay key of {} bytes",
            rest.len()
        );
        assert!(
            !rest
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        );
    }
});
