//! [`UsageTracker`]: when each entry last minted, how often, per kind and
//! per JWT audience. Kept in memory on the hot path and saved to the store
//! in batches (a store write per mint would cost an fsync per credential).
//!
//! Bounded: an entry counts at most [`MAX_USAGE_AUDIENCES`] audiences (an
//! entry allows at most 64); mints for further audiences (possible only
//! after its audiences changed many times) count in its totals only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::policy::EntryId;
use crate::store::{MAX_USAGE_AUDIENCES, UsageCount, UsageRecord};

/// What was minted, for [`UsageTracker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Minted<'a> {
    /// An X509-SVID.
    X509,
    /// A JWT-SVID for this audience.
    Jwt {
        /// The audience it was minted for.
        audience: &'a str,
    },
}

/// An entry's usage as the inventory reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageDetail {
    /// Every credential.
    pub total: UsageCount,
    /// The X509-SVIDs.
    pub x509: UsageCount,
    /// The JWT-SVIDs per audience.
    pub audiences: BTreeMap<String, UsageCount>,
}

/// When each entry last minted and how often; see the module docs.
#[derive(Debug, Default)]
pub struct UsageTracker {
    state: Mutex<HashMap<EntryId, Usage>>,
}

#[derive(Debug, Clone, Default)]
struct Usage {
    /// Everything known, saved or not.
    known: UsageDetail,
    /// Minted since the last save: what the next save adds to the store.
    unsaved: UsageDetail,
    dirty: bool,
}

/// Adds `count` for `audience` to `map`, unless the map is full.
fn add_audience(map: &mut BTreeMap<String, UsageCount>, audience: &str, count: &UsageCount) {
    if let Some(stored) = map.get_mut(audience) {
        stored.merge(count);
    } else if map.len() < MAX_USAGE_AUDIENCES {
        map.insert(audience.to_owned(), *count);
    }
}

impl UsageDetail {
    fn add(&mut self, other: &UsageDetail) {
        self.total.merge(&other.total);
        self.x509.merge(&other.x509);
        for (audience, count) in &other.audiences {
            add_audience(&mut self.audiences, audience, count);
        }
    }

    fn from_record(record: &UsageRecord) -> Self {
        let mut detail = UsageDetail {
            total: UsageCount {
                last_minted_at: record.last_minted_at,
                mint_count: record.mint_count,
            },
            x509: record.x509,
            audiences: BTreeMap::new(),
        };
        for (audience, count) in &record.audiences {
            add_audience(&mut detail.audiences, audience, count);
        }
        detail
    }

    fn to_record(&self, entry_id: &EntryId) -> UsageRecord {
        UsageRecord {
            entry_id: entry_id.clone(),
            last_minted_at: self.total.last_minted_at,
            mint_count: self.total.mint_count,
            x509: self.x509,
            audiences: self.audiences.clone(),
        }
    }
}

impl UsageTracker {
    /// A tracker starting from what the store remembers.
    pub fn new(saved: impl IntoIterator<Item = UsageRecord>) -> Self {
        let state = saved
            .into_iter()
            .map(|r| {
                let known = UsageDetail::from_record(&r);
                (
                    r.entry_id,
                    Usage {
                        known,
                        unsaved: UsageDetail::default(),
                        dirty: false,
                    },
                )
            })
            .collect();
        UsageTracker {
            state: Mutex::new(state),
        }
    }

    /// Notes one credential, `what`, minted for `entry` at `now`.
    pub fn record(&self, entry: &EntryId, what: Minted<'_>, now: i64) {
        let one = UsageCount {
            last_minted_at: now,
            mint_count: 1,
        };
        let mut minted = UsageDetail {
            total: one,
            ..UsageDetail::default()
        };
        match what {
            Minted::X509 => minted.x509 = one,
            Minted::Jwt { audience } => {
                minted.audiences.insert(audience.to_owned(), one);
            }
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let usage = state.entry(entry.clone()).or_default();
        usage.known.add(&minted);
        usage.unsaved.add(&minted);
        usage.dirty = true;
    }

    /// (last minted, count) for one entry.
    pub fn usage(&self, entry: &EntryId) -> (i64, u64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.get(entry).map_or((0, 0), |u| {
            (u.known.total.last_minted_at, u.known.total.mint_count)
        })
    }

    /// Everything known about one entry's usage, per kind and audience.
    pub fn detail(&self, entry: &EntryId) -> UsageDetail {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .get(entry)
            .map(|u| u.known.clone())
            .unwrap_or_default()
    }

    /// Takes the records changed since the last call, to be saved: each
    /// carries the counts minted since the last save.
    pub fn take_dirty(&self) -> Vec<UsageRecord> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .iter_mut()
            .filter(|(_, u)| u.dirty)
            .map(|(id, u)| {
                u.dirty = false;
                std::mem::take(&mut u.unsaved).to_record(id)
            })
            .collect()
    }

    /// Marks records as unsaved again after a failed write.
    pub fn restore_dirty(&self, records: &[UsageRecord]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for record in records {
            if let Some(u) = state.get_mut(&record.entry_id) {
                u.unsaved.add(&UsageDetail::from_record(record));
                u.dirty = true;
            }
        }
    }

    /// Forgets a deleted entry.
    pub fn forget(&self, entry: &EntryId) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(last_minted_at: i64, mint_count: u64) -> UsageCount {
        UsageCount {
            last_minted_at,
            mint_count,
        }
    }

    #[test]
    fn saves_carry_the_mints_since_the_last_save_and_a_failed_save_is_retried() {
        let id = EntryId::parse("0123456789abcdef").unwrap();
        let tracker = UsageTracker::new([UsageRecord {
            entry_id: id.clone(),
            last_minted_at: 5,
            mint_count: 10,
            x509: UsageCount::default(),
            audiences: BTreeMap::new(),
        }]);
        assert!(tracker.take_dirty().is_empty());
        tracker.record(&id, Minted::Jwt { audience: "a" }, 20);
        tracker.record(&id, Minted::X509, 30);
        assert_eq!(tracker.usage(&id), (30, 12));
        let batch = tracker.take_dirty();
        assert_eq!(batch.len(), 1);
        assert_eq!((batch[0].last_minted_at, batch[0].mint_count), (30, 2));
        assert!(tracker.take_dirty().is_empty(), "saved: nothing left");
        // A failed save puts its count back, and later mints add to it.
        tracker.restore_dirty(&batch);
        tracker.record(&id, Minted::Jwt { audience: "a" }, 40);
        let retry = tracker.take_dirty();
        assert_eq!((retry[0].last_minted_at, retry[0].mint_count), (40, 3));
        assert_eq!(retry[0].x509, count(30, 1));
        assert_eq!(retry[0].audiences["a"], count(40, 2));
        assert_eq!(tracker.usage(&id), (40, 13));
    }

    #[test]
    fn jwt_mints_count_per_audience_and_x509_apart() {
        let id = EntryId::parse("0123456789abcdef").unwrap();
        let tracker = UsageTracker::default();
        tracker.record(&id, Minted::Jwt { audience: "a" }, 10);
        tracker.record(&id, Minted::Jwt { audience: "b" }, 20);
        tracker.record(&id, Minted::Jwt { audience: "a" }, 30);
        tracker.record(&id, Minted::X509, 25);
        let detail = tracker.detail(&id);
        assert_eq!(detail.total, count(30, 4));
        assert_eq!(detail.x509, count(25, 1));
        assert_eq!(detail.audiences.len(), 2);
        assert_eq!(detail.audiences["a"], count(30, 2));
        assert_eq!(detail.audiences["b"], count(20, 1));
    }

    #[test]
    fn the_audiences_counted_per_entry_are_bounded() {
        let id = EntryId::parse("0123456789abcdef").unwrap();
        let tracker = UsageTracker::default();
        for n in 0..MAX_USAGE_AUDIENCES + 5 {
            tracker.record(
                &id,
                Minted::Jwt {
                    audience: &format!("aud-{n}"),
                },
                1,
            );
        }
        // Positive control: the last audience that fits is counted.
        let detail = tracker.detail(&id);
        let last_fit = format!("aud-{}", MAX_USAGE_AUDIENCES - 1);
        assert_eq!(detail.audiences[&last_fit], count(1, 1));
        assert_eq!(detail.audiences.len(), MAX_USAGE_AUDIENCES);
        assert!(
            !detail
                .audiences
                .contains_key(&format!("aud-{MAX_USAGE_AUDIENCES}"))
        );
        // The totals still count every mint.
        assert_eq!(detail.total.mint_count, (MAX_USAGE_AUDIENCES + 5) as u64);
        assert_eq!(tracker.take_dirty()[0].audiences.len(), MAX_USAGE_AUDIENCES);
    }
}
