//! Revocation: what the broker has cut off, and the in-process index every
//! verifier checks.
//!
//! A [`Revocation`] names credentials by entry, SPIFFE ID, token id (`jti`),
//! certificate serial or agent. [`RevocationSet`] is the index: reads take
//! no lock (a lock-free hash map per lookup kind), and it knows how fresh it
//! is, so a verifier cut off from its source fails closed instead of
//! trusting an old picture.
//!
//! ```
//! use mayfly_sdk::revocation::{Revocation, RevocationKind, RevocationSet};
//!
//! let set = RevocationSet::authoritative();
//! let sub = "spiffe://example.org/billing".parse().unwrap();
//! let revoked = Revocation::new(RevocationKind::Jti, "abc123", 100, Some(4000)).unwrap();
//! set.upsert(revoked);
//! assert!(set.check_jwt(&sub, Some("abc123"), Some(90), 200).is_err());
//! assert!(set.check_jwt(&sub, Some("other"), Some(90), 200).is_ok());
//! ```
//!
//! [`RevocationWatch`] keeps a set current from the broker's
//! `WatchRevocations` stream, for relying parties outside the broker; hand
//! it to [`JwtVerifier::with_revocations`](crate::workload::JwtVerifier::with_revocations)
//! so that local JWT-SVID validation refuses revoked tokens.

mod compact;
mod set;
mod watch;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::SpiffeId;
use crate::proto::v1 as pb;

pub use set::{Pages, RevocationChange, RevocationError, RevocationSet, Staged};
pub use watch::{RevocationWatch, RevocationWatchBuilder, RevocationWatchError};

/// The longest `value` a revocation may carry (a SPIFFE ID's limit).
pub const MAX_VALUE_LEN: usize = crate::spiffe_id::MAX_SPIFFE_ID_LEN;
/// The longest reason kept.
pub const MAX_REASON_LEN: usize = 1024;

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationKind {
    /// A registration entry: every credential of its SPIFFE ID.
    Entry,
    /// A SPIFFE ID, whatever entry it came from.
    SpiffeId,
    /// One JWT-SVID, by its `jti`.
    Jti,
    /// One X509-SVID, by its serial number.
    Serial,
    /// An agent: its own SVID and everything issued through it.
    Agent,
}

impl RevocationKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [RevocationKind; 5] = [
        RevocationKind::Entry,
        RevocationKind::SpiffeId,
        RevocationKind::Jti,
        RevocationKind::Serial,
        RevocationKind::Agent,
    ];

    /// The wire and CLI name: `entry`, `spiffe-id`, `jti`, `serial`, `agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Entry => "entry",
            RevocationKind::SpiffeId => "spiffe-id",
            RevocationKind::Jti => "jti",
            RevocationKind::Serial => "serial",
            RevocationKind::Agent => "agent",
        }
    }

    /// Whether the revocation names an identity (and so stops minting until
    /// lifted), rather than one credential.
    pub fn is_identity(self) -> bool {
        !matches!(self, RevocationKind::Jti | RevocationKind::Serial)
    }
}

impl fmt::Display for RevocationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationKind {
    type Err = RevocationParseError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        RevocationKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value)
            .ok_or_else(|| RevocationParseError(format!(
                "unknown revocation kind {value:?}; expected one of entry, spiffe-id, jti, serial, agent"
            )))
    }
}

/// Why a revocation could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RevocationParseError(String);

/// One revocation.
///
/// A credential is covered when its `jti` or serial is the value of a `jti`
/// or `serial` revocation, or when its subject is one of `subjects` and it
/// was issued at or before `revoked_at` (JWT `iat`; X.509 `notBefore`, which
/// Mayfly backdates, so a certificate issued just after the revocation may
/// be covered too: the error is on the closed side). A token without `iat`
/// is covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// What it names.
    pub kind: RevocationKind,
    /// The entry id, SPIFFE ID, jti, serial (lowercase hex, no separators)
    /// or agent SPIFFE ID.
    pub value: String,
    /// The SPIFFE IDs it covers; empty for `jti` and `serial`.
    #[serde(default)]
    pub subjects: Vec<SpiffeId>,
    /// Unix seconds.
    pub revoked_at: i64,
    /// Unix seconds after which it covers nothing and is dropped. `None`
    /// while an identity revocation is in force until lifted; it then also
    /// stops minting.
    pub expires_at: Option<i64>,
    /// Why, as the operator said it.
    #[serde(default)]
    pub reason: String,
    /// Who revoked it.
    #[serde(default)]
    pub actor: String,
}

impl Revocation {
    /// A revocation with a checked value and no subjects, reason or actor.
    ///
    /// # Errors
    ///
    /// [`RevocationParseError`] if `value` is not a valid value of `kind`.
    pub fn new(
        kind: RevocationKind,
        value: &str,
        revoked_at: i64,
        expires_at: Option<i64>,
    ) -> Result<Self, RevocationParseError> {
        Ok(Revocation {
            kind,
            value: normalize_value(kind, value)?,
            subjects: Vec::new(),
            revoked_at,
            expires_at,
            reason: String::new(),
            actor: String::new(),
        })
    }

    /// The key that identifies it: `kind:value`.
    pub fn key(&self) -> String {
        key(self.kind, &self.value)
    }

    /// Whether it still stops new credentials for its subjects.
    pub fn blocks_minting(&self) -> bool {
        self.kind.is_identity() && self.expires_at.is_none()
    }

    /// Whether it covers nothing any more at `now`.
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Reads one from the wire, strictly.
    ///
    /// # Errors
    ///
    /// [`RevocationParseError`] naming the bad field.
    pub fn from_proto(proto: pb::Revocation) -> Result<Self, RevocationParseError> {
        let kind: RevocationKind = proto.kind.parse()?;
        let mut revocation = Revocation::new(
            kind,
            &proto.value,
            proto.revoked_at,
            (proto.expires_at != 0).then_some(proto.expires_at),
        )?;
        revocation.subjects = proto
            .subjects
            .iter()
            .map(|s| {
                s.parse::<SpiffeId>()
                    .map_err(|e| RevocationParseError(format!("subject {s:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        if !kind.is_identity() && !revocation.subjects.is_empty() {
            return Err(RevocationParseError(format!(
                "a {kind} revocation has no subjects"
            )));
        }
        revocation.reason = truncate(proto.reason, MAX_REASON_LEN);
        revocation.actor = truncate(proto.actor, MAX_REASON_LEN);
        Ok(revocation)
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::Revocation {
        pb::Revocation {
            kind: self.kind.as_str().to_owned(),
            value: self.value.clone(),
            subjects: self.subjects.iter().map(ToString::to_string).collect(),
            revoked_at: self.revoked_at,
            expires_at: self.expires_at.unwrap_or(0),
            reason: self.reason.clone(),
            actor: self.actor.clone(),
        }
    }
}

/// The key of the revocation of `value` as `kind`: `kind:value`.
pub fn key(kind: RevocationKind, value: &str) -> String {
    format!("{}:{value}", kind.as_str())
}

/// Checks `value` for `kind` and returns its canonical form: serials in
/// lowercase hex without separators or leading zeros, SPIFFE IDs parsed
/// strictly.
///
/// # Errors
///
/// [`RevocationParseError`] saying what is wrong.
pub fn normalize_value(kind: RevocationKind, value: &str) -> Result<String, RevocationParseError> {
    let bad = |why: &str| RevocationParseError(format!("{kind} value: {why}"));
    if value.is_empty() {
        return Err(bad("empty"));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(bad("too long"));
    }
    match kind {
        RevocationKind::SpiffeId | RevocationKind::Agent => value
            .parse::<SpiffeId>()
            .map(|id| id.to_string())
            .map_err(|e| bad(&e.to_string())),
        RevocationKind::Serial => normalize_serial(value).ok_or_else(|| {
            bad("expected the serial number in hex (colons allowed), as openssl x509 -serial prints it")
        }),
        RevocationKind::Entry | RevocationKind::Jti => {
            if value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                Ok(value.to_owned())
            } else {
                Err(bad("only letters, digits, '-', '_' and '.' are allowed"))
            }
        }
    }
}

/// A certificate serial as lowercase hex without separators or leading
/// zeros (`0` for zero); `None` if it is not hex.
pub fn normalize_serial(value: &str) -> Option<String> {
    let value = value.strip_prefix("0x").unwrap_or(value);
    let digits: String = value.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0').to_ascii_lowercase();
    Some(if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed
    })
}

/// A serial from its big-endian bytes (as x509-parser's `raw_serial`).
pub fn serial_from_bytes(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.to_owned()
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_is_refused() {
        for kind in RevocationKind::ALL {
            assert_eq!(kind.as_str().parse::<RevocationKind>().unwrap(), kind);
        }
        assert!("token".parse::<RevocationKind>().is_err());
    }

    #[test]
    fn values_are_checked_and_canonical() {
        assert_eq!(
            normalize_value(RevocationKind::Serial, "00:1A:ff").unwrap(),
            "1aff"
        );
        assert_eq!(normalize_serial("0"), Some("0".into()));
        assert!(normalize_value(RevocationKind::Serial, "xyz").is_err());
        assert!(normalize_value(RevocationKind::SpiffeId, "spiffe://Example.org/a").is_err());
        assert_eq!(
            normalize_value(RevocationKind::Agent, "spiffe://example.org/node").unwrap(),
            "spiffe://example.org/node"
        );
        assert!(normalize_value(RevocationKind::Jti, "a b").is_err());
        assert!(normalize_value(RevocationKind::Jti, "").is_err());
        assert_eq!(
            normalize_value(RevocationKind::Jti, "AbC-1_2.3").unwrap(),
            "AbC-1_2.3"
        );
        assert_eq!(serial_from_bytes(&[0, 0x1a, 0xff]), "1aff");
    }

    #[test]
    fn proto_round_trip_and_strictness() {
        let mut revocation = Revocation::new(RevocationKind::Entry, "0123abcd", 10, None).unwrap();
        revocation.subjects = vec!["spiffe://example.org/a".parse().unwrap()];
        revocation.reason = "leaked".into();
        revocation.actor = "uid:0".into();
        let back = Revocation::from_proto(revocation.to_proto()).unwrap();
        assert_eq!(back, revocation);
        assert!(back.blocks_minting());

        let mut bad = revocation.to_proto();
        bad.subjects = vec!["not a spiffe id".into()];
        assert!(Revocation::from_proto(bad).is_err());
        let mut bad = revocation.to_proto();
        bad.kind = "jti".into();
        assert!(
            Revocation::from_proto(bad).is_err(),
            "a jti revocation has no subjects"
        );
        let token = Revocation::new(RevocationKind::Jti, "t1", 10, Some(20)).unwrap();
        assert!(!token.blocks_minting());
        assert!(token.is_expired(20));
        assert!(!token.is_expired(19));
    }
}
