//! What one audit record holds, and the exact bytes its hash covers.

use serde::{Deserialize, Serialize};

use super::AuditError;

/// The `prev` of the first record: there is nothing before it.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How a decision went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Access was granted (attestation succeeded, a credential was issued).
    Granted,
    /// Access was refused; `reason` says why.
    Refused,
    /// Not a decision: an administrative change or a server event.
    #[default]
    Ok,
}

/// One auditable event, as the broker describes it. The writer adds seq, time and hashes.
///
/// Secrets and tokens never go in here: only their SHA-256 (`evidence_sha256`) or an
/// identifier that is not itself a credential (`jti`, a join token's id).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct AuditEvent {
    /// What happened: "attest", "x509.issue", "x509.renew", "jwt.mint", "entry.create",
    /// "entry.update", "entry.delete", "token.create", "server.start", …
    pub action: String,
    /// How it went.
    pub outcome: Outcome,
    /// Who asked: `admin:uid=1000`, `spiffe://td/x`, `join_token:<token id>`, `anonymous`.
    pub actor: String,
    /// The registration entry involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
    /// The SPIFFE ID involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// The audience asked for or granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The serial number of an X.509 certificate, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// The `jti` of a JWT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Hex SHA-256 of the evidence presented (never the evidence itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_sha256: Option<String>,
    /// Why the request was refused, in words an operator understands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Free-form extra, e.g. the fields an update changed. `Some(Value::Null)` is stored as
    /// `None`, because both read back as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// One line of `audit.log`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// When the writer committed it: RFC 3339, UTC, milliseconds.
    pub time: String,
    /// Hex SHA-256 of the previous record; 64 zeros for the first.
    pub prev: String,
    /// What happened.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hex SHA-256 of this record's canonical bytes (the record without this field).
    pub hash: String,
}

/// Proof that a record is durable: where it sits in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReceipt {
    /// The record's seq.
    pub seq: u64,
    /// The record's hash.
    pub hash: String,
}

/// The bytes the hash covers: the record without `hash`, as compact JSON, fields in
/// declaration order, absent options omitted.
///
/// Struct fields serialize in a fixed order. `detail`'s objects are `serde_json::Map`, a
/// `BTreeMap` (sorted keys) while `serde_json`'s `preserve_order` feature is off, which it is in
/// this workspace's `Cargo.lock` (`serde_json` does not depend on `indexmap`). Any crate in the
/// build can switch that feature on through feature unification, so the writer does not rely
/// on it: [`normalize`] rebuilds `detail` with sorted keys before encoding. Verification
/// re-encodes what it parsed, and sorted input stays sorted under either setting, so a log
/// verifies the same whichever way the feature is set.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    time: &'a str,
    prev: &'a str,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

/// Encodes the canonical bytes of a record.
pub(super) fn canonical_bytes(
    seq: u64,
    time: &str,
    prev: &str,
    event: &AuditEvent,
) -> Result<Vec<u8>, AuditError> {
    serde_json::to_vec(&Canonical {
        seq,
        time,
        prev,
        event,
    })
    .map_err(|e| AuditError::Encode {
        reason: e.to_string(),
    })
}

/// Brings an event into the one form whose encoding is stable across a write and a read:
/// `detail` objects with sorted keys, and `Some(Null)` as `None` (both read back as `None`,
/// so hashing `Some(Null)` would make the record fail verification).
pub(super) fn normalize(mut event: AuditEvent) -> AuditEvent {
    event.detail = match event.detail.take() {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(sort_keys(value)),
    };
    event
}

fn sort_keys(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// Hex SHA-256 of `bytes`.
pub(super) use mayfly_sdk::digest::sha256_hex;

/// The line as written, without its newline: the canonical object with `hash` appended as
/// its last field. Built from the canonical bytes rather than by serializing again, so the
/// bytes that were hashed are, byte for byte, the bytes on disk.
pub(super) fn line_bytes(canonical: &[u8], hash: &str) -> Vec<u8> {
    // A serialized struct always ends with '}'; strip it to append one more field.
    let body = canonical.strip_suffix(b"}").unwrap_or(canonical);
    let mut line = Vec::with_capacity(body.len() + hash.len() + 12);
    line.extend_from_slice(body);
    line.extend_from_slice(b",\"hash\":\"");
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}");
    line
}

/// Why a line does not hold up on its own, before the chain is considered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LineFault {
    /// Not JSON, or not a record.
    Unparseable(String),
    /// The stored hash is not the hash of the contents.
    HashMismatch,
    /// The hash matches the known fields, but the bytes are not the ones the writer wrote.
    NotCanonical,
}

/// Parses one line (without its newline) and checks it against its own hash.
pub(super) fn parse_line(line: &[u8]) -> Result<AuditRecord, LineFault> {
    let record: AuditRecord =
        serde_json::from_slice(line).map_err(|e| LineFault::Unparseable(e.to_string()))?;
    let canonical = canonical_bytes(record.seq, &record.time, &record.prev, &record.event)
        .map_err(|e| LineFault::Unparseable(e.to_string()))?;
    if sha256_hex(&canonical) != record.hash {
        return Err(LineFault::HashMismatch);
    }
    // Serde ignores unknown fields and whitespace, so a matching hash alone would let
    // someone add fields to a record unnoticed; the bytes must be exactly ours.
    if line_bytes(&canonical, &record.hash) != line {
        return Err(LineFault::NotCanonical);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sample() -> AuditEvent {
        AuditEvent {
            action: "jwt.mint".into(),
            outcome: Outcome::Granted,
            actor: "spiffe://td/x".into(),
            audience: Some("billing".into()),
            detail: Some(
                serde_json::json!({"zeta": 1, "alpha": [1.5, "x"], "mid": {"b": 2, "a": 1}}),
            ),
            ..Default::default()
        }
    }

    fn encode(seq: u64, event: &AuditEvent) -> Vec<u8> {
        let event = normalize(event.clone());
        let canonical =
            canonical_bytes(seq, "2025-01-01T00:00:00.000Z", GENESIS_HASH, &event).unwrap();
        line_bytes(&canonical, &sha256_hex(&canonical))
    }

    #[test]
    fn serde_json_map_is_sorted_in_this_build() {
        // Not required for correctness (see `normalize`), but the Cargo.lock note above says
        // preserve_order is off; this keeps that note true.
        let value = serde_json::json!({"b": 1, "a": 2});
        assert_eq!(value.to_string(), r#"{"a":2,"b":1}"#);
    }

    #[test]
    fn null_detail_is_stored_as_none() {
        let event = AuditEvent {
            detail: Some(serde_json::Value::Null),
            ..sample()
        };
        let record = parse_line(&encode(1, &event)).unwrap();
        assert_eq!(record.event.detail, None);
    }

    #[test]
    fn detail_keys_are_sorted() {
        let line = String::from_utf8(encode(1, &sample())).unwrap();
        let alpha = line.find("\"alpha\"").unwrap();
        let mid = line.find("\"mid\"").unwrap();
        let zeta = line.find("\"zeta\"").unwrap();
        assert!(alpha < mid && mid < zeta, "{line}");
        assert!(line.contains(r#"{"a":1,"b":2}"#), "{line}");
    }

    #[test]
    fn written_line_parses_and_matches_serde_form() {
        let line = encode(7, &sample());
        let record = parse_line(&line).unwrap();
        assert_eq!(record.seq, 7);
        assert_eq!(record.event, normalize(sample()));
        // The public type serializes to exactly the stored line, so tools that re-emit
        // records produce verifiable bytes.
        assert_eq!(serde_json::to_vec(&record).unwrap(), line);
        let text = String::from_utf8(line).unwrap();
        assert!(text.starts_with(r#"{"seq":7,"time":"#), "{text}");
        assert!(
            text.ends_with(&format!(r#""hash":"{}"}}"#, record.hash)),
            "{text}"
        );
        assert!(
            !text.contains("entry_id"),
            "absent options are omitted: {text}"
        );
        assert!(text.contains(r#""outcome":"granted""#), "{text}");
    }

    #[test]
    fn edited_line_is_a_hash_mismatch() {
        let line = String::from_utf8(encode(1, &sample())).unwrap();
        assert!(parse_line(line.as_bytes()).is_ok(), "control");
        let edited = line.replace("billing", "payroll");
        assert_eq!(parse_line(edited.as_bytes()), Err(LineFault::HashMismatch));
    }

    #[test]
    fn added_field_or_whitespace_is_not_canonical() {
        let line = String::from_utf8(encode(1, &sample())).unwrap();
        assert!(parse_line(line.as_bytes()).is_ok(), "control");
        let added = line.replacen("{", r#"{"note":"hi","#, 1);
        assert_eq!(parse_line(added.as_bytes()), Err(LineFault::NotCanonical));
        let spaced = line.replacen(",", ", ", 1);
        assert_eq!(parse_line(spaced.as_bytes()), Err(LineFault::NotCanonical));
    }

    #[test]
    fn garbage_is_unparseable() {
        assert!(matches!(
            parse_line(b"{\"seq\":1,"),
            Err(LineFault::Unparseable(_))
        ));
        assert!(matches!(parse_line(b""), Err(LineFault::Unparseable(_))));
    }
}
