use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use mayfly_sdk::SpiffeId;

use super::{Entry, EntryId};

#[derive(Debug, Default)]
struct Snapshot {
    by_id: HashMap<EntryId, Arc<Entry>>,
    by_spiffe_id: HashMap<SpiffeId, Arc<Entry>>,
}

/// The entries the mint path reads: an immutable snapshot swapped on every
/// change, so lookups never take a lock and never wait on the store.
#[derive(Debug, Default)]
pub struct EntryIndex {
    current: ArcSwap<Snapshot>,
}

impl EntryIndex {
    /// An index over `entries`.
    pub fn new(entries: impl IntoIterator<Item = Entry>) -> Self {
        let index = EntryIndex::default();
        index.replace_all(entries);
        index
    }

    /// Replaces the whole snapshot (used at load and on a full resync).
    pub fn replace_all(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut snapshot = Snapshot::default();
        for entry in entries {
            let entry = Arc::new(entry);
            snapshot
                .by_spiffe_id
                .insert(entry.spiffe_id.clone(), entry.clone());
            snapshot.by_id.insert(entry.id.clone(), entry);
        }
        self.current.store(Arc::new(snapshot));
    }

    /// Inserts or replaces one entry.
    pub fn upsert(&self, entry: Entry) {
        let entry = Arc::new(entry);
        self.current.rcu(|old| {
            let mut next = Snapshot {
                by_id: old.by_id.clone(),
                by_spiffe_id: old.by_spiffe_id.clone(),
            };
            if let Some(previous) = next.by_id.insert(entry.id.clone(), entry.clone())
                && previous.spiffe_id != entry.spiffe_id
            {
                next.by_spiffe_id.remove(&previous.spiffe_id);
            }
            next.by_spiffe_id
                .insert(entry.spiffe_id.clone(), entry.clone());
            next
        });
    }

    /// Removes one entry.
    pub fn remove(&self, id: &EntryId) {
        self.current.rcu(|old| {
            let mut next = Snapshot {
                by_id: old.by_id.clone(),
                by_spiffe_id: old.by_spiffe_id.clone(),
            };
            if let Some(previous) = next.by_id.remove(id) {
                next.by_spiffe_id.remove(&previous.spiffe_id);
            }
            next
        });
    }

    /// The entry with this id.
    pub fn by_id(&self, id: &EntryId) -> Option<Arc<Entry>> {
        self.current.load().by_id.get(id).cloned()
    }

    /// The entry that issues this SPIFFE ID.
    pub fn by_spiffe_id(&self, id: &SpiffeId) -> Option<Arc<Entry>> {
        self.current.load().by_spiffe_id.get(id).cloned()
    }

    /// Every entry, in id order.
    pub fn all(&self) -> Vec<Arc<Entry>> {
        let mut entries: Vec<_> = self.current.load().by_id.values().cloned().collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        entries
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.current.load().by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
