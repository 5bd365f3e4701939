//! `JoinTokenSecret::parse` (what a node presents) and `TokenHash::parse`
//! (what the store holds): never panic; what they accept has the documented
//! shape and round-trips.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly::attest::join_token::{JoinTokenSecret, TokenHash};

fuzz_target!(|text: &str| {
    if let Ok(secret) = JoinTokenSecret::parse(text) {
        assert_eq!(secret.expose(), text);
        assert!(text.starts_with("mf1."));
        let hash = secret.hash();
        assert_eq!(TokenHash::parse(hash.as_str()).ok().as_ref(), Some(&hash));
        // The secret never shows through `Debug`.
        assert!(!format!("{secret:?}").contains(&text[4..]));
    }
    if let Ok(hash) = TokenHash::parse(text) {
        assert_eq!(hash.as_str(), text);
        assert!(text.starts_with(hash.token_id().as_str()));
    }
});
