//! `SpiffeId::parse` and `TrustDomain::new` on any UTF-8 text: they never
//! panic, and whatever they accept round-trips through every other way of
//! building or printing the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly_sdk::{SpiffeId, TrustDomain};

fuzz_target!(|text: &str| {
    if let Ok(id) = SpiffeId::parse(text) {
        check_spiffe_id(text, &id);
    }
    if let Ok(trust_domain) = TrustDomain::new(text) {
        check_trust_domain(&trust_domain);
    }
});

fn check_spiffe_id(text: &str, id: &SpiffeId) {
    assert_eq!(id.as_str(), text, "parse keeps the text as given");
    let printed = id.to_string();
    assert_eq!(SpiffeId::parse(&printed).ok().as_ref(), Some(id));
    assert_eq!(
        format!("spiffe://{}{}", id.trust_domain_name(), id.path()),
        printed
    );
    assert!(id.path().is_empty() || id.path().starts_with('/'));

    let trust_domain = id.trust_domain();
    assert!(id.is_member_of(&trust_domain));
    assert_eq!(
        SpiffeId::new(&trust_domain, id.path()).ok().as_ref(),
        Some(id)
    );
    assert_eq!(
        TrustDomain::new(trust_domain.as_str()).ok(),
        Some(trust_domain.clone())
    );

    let json = serde_json::to_string(id).expect("a String serializes");
    assert_eq!(
        serde_json::from_str::<SpiffeId>(&json).ok().as_ref(),
        Some(id)
    );
    assert_eq!(SpiffeId::try_from(printed).ok().as_ref(), Some(id));
}

fn check_trust_domain(trust_domain: &TrustDomain) {
    // Given bare or as `spiffe://name`, the result is the bare name.
    assert!(!trust_domain.as_str().contains('/'));
    assert_eq!(
        TrustDomain::new(trust_domain.as_str()).ok().as_ref(),
        Some(trust_domain)
    );
    let own_id = SpiffeId::parse(&trust_domain.id_string())
        .expect("a trust domain's own ID is a valid SPIFFE ID");
    assert!(own_id.path().is_empty());
    assert_eq!(&own_id.trust_domain(), trust_domain);
    assert_eq!(
        TrustDomain::new(&trust_domain.id_string()).ok().as_ref(),
        Some(trust_domain)
    );

    let json = serde_json::to_string(trust_domain).expect("a String serializes");
    assert_eq!(
        serde_json::from_str::<TrustDomain>(&json).ok().as_ref(),
        Some(trust_domain)
    );
}
