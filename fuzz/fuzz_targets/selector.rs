//! `Selector::parse` on any UTF-8 text: never panics, and an accepted
//! selector is exactly `type:value` as documented and round-trips.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly::policy::Selector;

fuzz_target!(|text: &str| {
    let Ok(selector) = Selector::parse(text) else {
        return;
    };
    assert_eq!(selector.as_str(), text);
    assert_eq!(selector.to_string(), text);

    let (kind, value) = text
        .split_once(':')
        .expect("an accepted selector has a ':'");
    assert_eq!(selector.kind(), kind);
    assert!(!kind.is_empty());
    assert!(
        kind.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    );
    assert!(!value.is_empty() && text.len() <= 256);
    assert!(value.bytes().all(|b| b.is_ascii_graphic()));

    assert_eq!(
        Selector::parse(selector.as_str()).ok().as_ref(),
        Some(&selector)
    );
    let json = serde_json::to_string(&selector).expect("a String serializes");
    assert_eq!(serde_json::from_str::<Selector>(&json).ok(), Some(selector));
});
