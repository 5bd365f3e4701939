//! An issuer's JWKS document (fetched over the network from `jwks_uri`, or
//! given inline), parsed by `JwksCache::new`: never panics on any bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly::attest::jwks::{JwksCache, JwksSource};

fuzz_target!(|document: &str| {
    let _ = JwksCache::new(
        "https://issuer.example",
        JwksSource::Inline(document.to_owned()),
    );
});
