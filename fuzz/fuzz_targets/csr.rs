//! `parse_and_verify_csr` on any bytes: never panics, and a CSR it accepts
//! yields a well-formed `SubjectPublicKeyInfo` taken byte for byte from the
//! request. Seed with `fuzz/seeds/csr` (real CSRs of every accepted key
//! type), or the fuzzer rarely gets past the DER parser.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly_ca::csr::{MAX_CSR_LEN, parse_and_verify_csr};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

fuzz_target!(|der: &[u8]| {
    let Ok(verified) = parse_and_verify_csr(der) else {
        return;
    };
    assert!(der.len() <= MAX_CSR_LEN);
    let spki = verified.subject_public_key_info_der.as_slice();
    let (rest, _) = SubjectPublicKeyInfo::from_der(spki)
        .expect("an accepted CSR's public key is a DER SubjectPublicKeyInfo");
    assert!(
        rest.is_empty(),
        "the SubjectPublicKeyInfo has trailing bytes"
    );
    assert!(
        der.windows(spki.len()).any(|window| window == spki),
        "the SubjectPublicKeyInfo is not the one in the request"
    );
});
