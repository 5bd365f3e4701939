//! What an HTTP witness answers at the broker's start (`[audit] anchor_url`),
//! read strictly by `anchor::http::parse_record`: never panics on any bytes,
//! and whatever it accepts encodes back to a record it accepts again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly::anchor::http::parse_record;

fuzz_target!(|body: &[u8]| {
    if let Ok(record) = parse_record(body) {
        let again = serde_json::to_vec(&record).expect("a record encodes");
        assert_eq!(parse_record(&again).expect("and reads back"), record);
    }
});
