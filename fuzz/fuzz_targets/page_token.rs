//! `api::paging::decode_token` (the `page_token` an admin client sends back):
//! never panics; what it accepts belongs to the listing it was given to and
//! names a key that the token made from it names again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly::api::paging::{Listing, decode_token, encode_token};

fuzz_target!(|text: &str| {
    for listing in [Listing::Entries, Listing::Revocations] {
        if let Ok(key) = decode_token(listing, text) {
            let again = encode_token(listing, &key);
            assert_eq!(decode_token(listing, &again).ok(), Some(key.clone()));
            let other = match listing {
                Listing::Entries => Listing::Revocations,
                Listing::Revocations => Listing::Entries,
            };
            assert!(decode_token(other, text).is_err(), "{key}");
        }
    }
});
