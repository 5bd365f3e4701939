//! How the Redis store encodes what it keeps and publishes: records as
//! JSON, challenges as bytes, change messages as the scripts wrap them, and
//! when Redis may forget a one-time record.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{RedisStore, StoreError, StoreEvent};
use crate::audience::AudienceRecord;
use crate::policy::{Entry, EntryId};
use mayfly_sdk::revocation::Revocation;

/// Redis keeps one-time keys and challenges this long past `expires_at`
/// (judged by its own clock): the caller's `now` decides, Redis only
/// collects garbage.
const ONE_TIME_GRACE_SECONDS: i64 = 10 * 60;

/// A change as published on `{prefix}:events`, inside `{"version": n,
/// "event": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// An entry (with its governance state) is the largest variant; events are
// decoded one at a time and moved once, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum WireEvent {
    EntryUpserted { entry: Entry },
    EntryDeleted { id: EntryId },
    RevocationPut { revocation: Revocation },
    RevocationDeleted { key: String },
    ReplicasChanged,
    AudienceUpserted { audience: AudienceRecord },
    AudienceDeleted { name: String },
}

impl From<WireEvent> for StoreEvent {
    fn from(event: WireEvent) -> Self {
        match event {
            WireEvent::EntryUpserted { entry } => StoreEvent::EntryUpserted(entry),
            WireEvent::EntryDeleted { id } => StoreEvent::EntryDeleted(id),
            WireEvent::RevocationPut { revocation } => StoreEvent::RevocationPut(revocation),
            WireEvent::RevocationDeleted { key } => StoreEvent::RevocationDeleted(key),
            WireEvent::ReplicasChanged => StoreEvent::ReplicasChanged,
            WireEvent::AudienceUpserted { audience } => StoreEvent::AudienceUpserted(audience),
            WireEvent::AudienceDeleted { name } => StoreEvent::AudienceDeleted(name),
        }
    }
}

pub(super) fn event_json(event: &WireEvent) -> Result<String, StoreError> {
    serde_json::to_string(event).map_err(|error| StoreError::Internal {
        reason: format!("cannot encode change event: {error}"),
    })
}

pub(super) fn encode(what: &str, key: &str, value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Internal {
        reason: format!("cannot encode {what} {key}: {error}"),
    })
}

/// Reads a published message: its version, and its event if this build
/// knows it (`None` otherwise, and the subscriber resyncs).
pub(super) fn decode_message(payload: &[u8]) -> Result<(u64, Option<StoreEvent>), String> {
    #[derive(Deserialize)]
    struct Message {
        version: u64,
        event: serde_json::Value,
    }
    let message: Message = serde_json::from_slice(payload)
        .map_err(|error| format!("undecodable change message: {error}"))?;
    let event = serde_json::from_value::<WireEvent>(message.event)
        .ok()
        .map(StoreEvent::from);
    Ok((message.version, event))
}

/// A challenge as stored: `expires_at` (8 bytes, big-endian), then the
/// nonce, which may hold any bytes.
pub(super) fn encode_challenge(nonce: &[u8], expires_at: i64) -> Vec<u8> {
    let mut value = expires_at.to_be_bytes().to_vec();
    value.extend_from_slice(nonce);
    value
}

pub(super) fn decode_challenge(value: &[u8]) -> Option<(Vec<u8>, i64)> {
    let (expiry, nonce) = value.split_first_chunk::<8>()?;
    Some((nonce.to_vec(), i64::from_be_bytes(*expiry)))
}

/// Unix milliseconds at which Redis may forget a one-time record that the
/// caller considers live until `expires_at`.
pub(super) fn garbage_after_ms(expires_at: i64) -> i64 {
    expires_at
        .saturating_add(ONE_TIME_GRACE_SECONDS)
        .saturating_mul(1000)
        .max(1)
}

impl RedisStore {
    /// Decodes a stored record; what cannot be decoded is corrupt, and the
    /// error names the record and the server.
    pub(super) fn decode<T: DeserializeOwned>(
        &self,
        what: &str,
        key: &str,
        json: &str,
    ) -> Result<T, StoreError> {
        serde_json::from_str(json).map_err(|error| StoreError::Corrupt {
            reason: format!("{what} {key} in redis {}: {error}", self.names.server),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use mayfly_sdk::revocation::RevocationKind;

    use super::*;

    #[test]
    fn change_messages_round_trip() {
        let revocation = Revocation::new(RevocationKind::Jti, "abc123", 100, Some(4000)).unwrap();
        let event = WireEvent::RevocationPut {
            revocation: revocation.clone(),
        };
        let json = event_json(&event).unwrap();
        assert!(
            json.starts_with(r#"{"type":"revocation_put","revocation":{"#),
            "{json}"
        );
        // As the scripts wrap it.
        let message = format!(r#"{{"version":7,"event":{json}}}"#);
        assert_eq!(
            decode_message(message.as_bytes()).unwrap(),
            (7, Some(StoreEvent::RevocationPut(revocation)))
        );
        let message = format!(
            r#"{{"version":8,"event":{}}}"#,
            event_json(&WireEvent::ReplicasChanged).unwrap()
        );
        assert_eq!(
            decode_message(message.as_bytes()).unwrap(),
            (8, Some(StoreEvent::ReplicasChanged))
        );
    }

    #[test]
    fn unknown_events_keep_their_version_and_garbage_is_refused() {
        assert_eq!(
            decode_message(br#"{"version":9,"event":{"type":"from_the_future"}}"#).unwrap(),
            (9, None)
        );
        assert!(decode_message(b"{not json").is_err());
        assert!(decode_message(br#"{"event":{"type":"replicas_changed"}}"#).is_err());
    }

    #[test]
    fn challenges_encode_expiry_then_nonce() {
        let value = encode_challenge(b"nonce", 1_700_000_000);
        assert_eq!(
            decode_challenge(&value),
            Some((b"nonce".to_vec(), 1_700_000_000))
        );
        assert_eq!(decode_challenge(&value[..7]), None);
        assert_eq!(
            decode_challenge(&value[..8]),
            Some((Vec::new(), 1_700_000_000))
        );
    }

    #[test]
    fn one_time_records_outlive_their_expiry_in_redis() {
        assert_eq!(garbage_after_ms(100), (100 + ONE_TIME_GRACE_SECONDS) * 1000);
        assert_eq!(garbage_after_ms(i64::MAX), i64::MAX);
        assert_eq!(garbage_after_ms(i64::MIN), 1);
    }
}
