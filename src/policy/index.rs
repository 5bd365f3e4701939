use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use mayfly_sdk::SpiffeId;

use super::{Entry, EntryId, Selector};

#[derive(Debug, Default)]
struct Snapshot {
    by_id: HashMap<EntryId, Arc<Entry>>,
    by_spiffe_id: HashMap<SpiffeId, Arc<Entry>>,
    /// Each selector to the entries that require it, so matching attested
    /// selectors looks at candidates only, never at every entry.
    by_selector: HashMap<Selector, Vec<Arc<Entry>>>,
    /// Each agent to the entries registered under it.
    by_parent: HashMap<SpiffeId, Vec<Arc<Entry>>>,
}

impl Snapshot {
    fn index_selectors(&mut self) {
        self.by_selector.clear();
        self.by_parent.clear();
        for entry in self.by_id.values() {
            if let Some(parent) = &entry.parent_id {
                self.by_parent
                    .entry(parent.clone())
                    .or_default()
                    .push(entry.clone());
            }
            for selector in &entry.selectors {
                self.by_selector
                    .entry(selector.clone())
                    .or_default()
                    .push(entry.clone());
            }
        }
    }
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
        snapshot.index_selectors();
        self.current.store(Arc::new(snapshot));
    }

    /// Inserts or replaces one entry.
    pub fn upsert(&self, entry: Entry) {
        let entry = Arc::new(entry);
        self.current.rcu(|old| {
            let mut next = Snapshot {
                by_id: old.by_id.clone(),
                by_spiffe_id: old.by_spiffe_id.clone(),
                by_selector: HashMap::new(),
                by_parent: HashMap::new(),
            };
            if let Some(previous) = next.by_id.insert(entry.id.clone(), entry.clone())
                && previous.spiffe_id != entry.spiffe_id
            {
                next.by_spiffe_id.remove(&previous.spiffe_id);
            }
            next.by_spiffe_id
                .insert(entry.spiffe_id.clone(), entry.clone());
            next.index_selectors();
            next
        });
    }

    /// Removes one entry.
    pub fn remove(&self, id: &EntryId) {
        self.current.rcu(|old| {
            let mut next = Snapshot {
                by_id: old.by_id.clone(),
                by_spiffe_id: old.by_spiffe_id.clone(),
                by_selector: HashMap::new(),
                by_parent: HashMap::new(),
            };
            if let Some(previous) = next.by_id.remove(id) {
                next.by_spiffe_id.remove(&previous.spiffe_id);
            }
            next.index_selectors();
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

    /// The entries whose selectors were all proven by `attested` (entries
    /// without selectors never match: they are reachable by join token only),
    /// in SPIFFE ID order.
    pub fn matching(&self, attested: &[Selector]) -> Vec<Arc<Entry>> {
        let snapshot = self.current.load();
        let proven: BTreeSet<&Selector> = attested.iter().collect();
        let mut seen = BTreeSet::new();
        let mut matches = Vec::new();
        for selector in attested {
            for entry in snapshot.by_selector.get(selector).into_iter().flatten() {
                if seen.insert(entry.id.clone())
                    && entry.selectors.iter().all(|s| proven.contains(s))
                {
                    matches.push(entry.clone());
                }
            }
        }
        matches.sort_by(|a, b| a.spiffe_id.cmp(&b.spiffe_id));
        matches
    }

    /// The entries registered under the agent `parent`, in SPIFFE ID order.
    pub fn children_of(&self, parent: &SpiffeId) -> Vec<Arc<Entry>> {
        let mut children = self
            .current
            .load()
            .by_parent
            .get(parent)
            .cloned()
            .unwrap_or_default();
        children.sort_by(|a, b| a.spiffe_id.cmp(&b.spiffe_id));
        children
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{EntrySpec, TtlPolicy};
    use mayfly_sdk::TrustDomain;

    fn entry(path: &str, selectors: &[&str]) -> Entry {
        EntrySpec {
            spiffe_id: Some(format!("spiffe://example.org{path}")),
            selectors: Some(selectors.iter().map(|s| (*s).to_owned()).collect()),
            audiences: Some(vec!["a".into()]),
            owner: Some("o".into()),
            purpose: Some("p".into()),
            ..EntrySpec::default()
        }
        .create(
            &TrustDomain::new("example.org").unwrap(),
            &TtlPolicy::default(),
            0,
        )
        .unwrap()
    }

    fn selectors(texts: &[&str]) -> Vec<Selector> {
        texts.iter().map(|t| Selector::parse(t).unwrap()).collect()
    }

    #[test]
    fn an_entry_matches_only_when_all_its_selectors_are_proven() {
        let index = EntryIndex::new([
            entry("/billing", &["k8s:ns:billing", "k8s:sa:api"]),
            entry("/any-billing", &["k8s:ns:billing"]),
            entry("/join-only", &[]),
        ]);
        let both = index.matching(&selectors(&[
            "k8s:ns:billing",
            "k8s:sa:api",
            "k8s:cluster:c",
        ]));
        let paths: Vec<_> = both.iter().map(|e| e.spiffe_id.path().to_owned()).collect();
        assert_eq!(paths, ["/any-billing", "/billing"]);
        let ns_only = index.matching(&selectors(&["k8s:ns:billing"]));
        assert_eq!(ns_only.len(), 1, "the two-selector entry needs both");
        assert!(index.matching(&selectors(&["k8s:ns:other"])).is_empty());
        assert!(
            index.matching(&[]).is_empty(),
            "entries without selectors never match"
        );
    }

    #[test]
    fn updates_and_removals_reindex_selectors() {
        let index = EntryIndex::new([entry("/a", &["unix:uid:1"])]);
        let proven = selectors(&["unix:uid:1"]);
        let id = index.matching(&proven)[0].id.clone();
        let mut changed = (*index.by_id(&id).unwrap()).clone();
        changed.selectors = selectors(&["unix:uid:2"]);
        index.upsert(changed);
        assert!(index.matching(&proven).is_empty());
        assert_eq!(index.matching(&selectors(&["unix:uid:2"])).len(), 1);
        index.remove(&id);
        assert!(index.matching(&selectors(&["unix:uid:2"])).is_empty());
    }
}
