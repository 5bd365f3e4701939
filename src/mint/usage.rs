use std::collections::HashMap;
use std::sync::Mutex;

use crate::policy::EntryId;
use crate::store::UsageRecord;

/// When each entry last minted and how often, kept in memory on the hot path
/// and written to the store in batches (a store write per mint would cost an
/// fsync per credential).
#[derive(Debug, Default)]
pub struct UsageTracker {
    state: Mutex<HashMap<EntryId, Usage>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    last_minted_at: i64,
    mint_count: u64,
    /// Minted since the last save: what the next save adds to the store.
    unsaved: u64,
    dirty: bool,
}

impl UsageTracker {
    /// A tracker starting from what the store remembers.
    pub fn new(saved: impl IntoIterator<Item = UsageRecord>) -> Self {
        let state = saved
            .into_iter()
            .map(|r| {
                (
                    r.entry_id,
                    Usage {
                        last_minted_at: r.last_minted_at,
                        mint_count: r.mint_count,
                        unsaved: 0,
                        dirty: false,
                    },
                )
            })
            .collect();
        UsageTracker {
            state: Mutex::new(state),
        }
    }

    /// Notes one credential minted for `entry` at `now`.
    pub fn record(&self, entry: &EntryId, now: i64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let usage = state.entry(entry.clone()).or_default();
        usage.last_minted_at = usage.last_minted_at.max(now);
        usage.mint_count += 1;
        usage.unsaved += 1;
        usage.dirty = true;
    }

    /// (last minted, count) for one entry.
    pub fn usage(&self, entry: &EntryId) -> (i64, u64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .get(entry)
            .map_or((0, 0), |u| (u.last_minted_at, u.mint_count))
    }

    /// Takes the records changed since the last call, to be saved: each
    /// carries the count minted since the last save.
    pub fn take_dirty(&self) -> Vec<UsageRecord> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .iter_mut()
            .filter(|(_, u)| u.dirty)
            .map(|(id, u)| {
                u.dirty = false;
                let unsaved = std::mem::take(&mut u.unsaved);
                UsageRecord {
                    entry_id: id.clone(),
                    last_minted_at: u.last_minted_at,
                    mint_count: unsaved,
                }
            })
            .collect()
    }

    /// Marks records as unsaved again after a failed write.
    pub fn restore_dirty(&self, records: &[UsageRecord]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for record in records {
            if let Some(u) = state.get_mut(&record.entry_id) {
                u.unsaved += record.mint_count;
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

    #[test]
    fn saves_carry_the_mints_since_the_last_save_and_a_failed_save_is_retried() {
        let id = EntryId::parse("0123456789abcdef").unwrap();
        let tracker = UsageTracker::new([UsageRecord {
            entry_id: id.clone(),
            last_minted_at: 5,
            mint_count: 10,
        }]);
        assert!(tracker.take_dirty().is_empty());
        tracker.record(&id, 20);
        tracker.record(&id, 30);
        assert_eq!(tracker.usage(&id), (30, 12));
        let batch = tracker.take_dirty();
        assert_eq!(batch.len(), 1);
        assert_eq!((batch[0].last_minted_at, batch[0].mint_count), (30, 2));
        assert!(tracker.take_dirty().is_empty(), "saved: nothing left");
        // A failed save puts its count back, and later mints add to it.
        tracker.restore_dirty(&batch);
        tracker.record(&id, 40);
        let retry = tracker.take_dirty();
        assert_eq!((retry[0].last_minted_at, retry[0].mint_count), (40, 3));
        assert_eq!(tracker.usage(&id), (40, 13));
    }
}
