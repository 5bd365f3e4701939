use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::{Bound, ControlFlow};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use imbl::{OrdMap, OrdSet};
use mayfly_sdk::SpiffeId;

use super::{Entry, EntryId, Selector};

/// Declares a wrapper that orders an `Arc<Entry>` by `$key` alone, so the
/// entry is its own key in a persistent set: the key is shared with the
/// entry instead of copied, which matters because a persistent set clones
/// every key of each node it rewrites.
macro_rules! entry_ordered_by {
    ($(#[$doc:meta])* $name:ident, |$entry:ident| $key:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        struct $name(Arc<Entry>);

        impl $name {
            fn key(&self) -> impl Ord + '_ {
                let $entry = &self.0;
                $key
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.key() == other.key()
            }
        }

        impl Eq for $name {}

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> Ordering {
                self.key().cmp(&other.key())
            }
        }
    };
}

entry_ordered_by!(
    /// An entry ordered by its id; found by `&EntryId`.
    ById,
    |entry| &entry.id
);

entry_ordered_by!(
    /// An entry ordered by the SPIFFE ID it issues; found by `&SpiffeId`.
    BySpiffeId,
    |entry| &entry.spiffe_id
);

entry_ordered_by!(
    /// An entry ordered by SPIFFE ID, then id: the order `matching` and
    /// `children_of` return, so a bucket reads out already sorted.
    InSpiffeIdOrder,
    |entry| (&entry.spiffe_id, &entry.id)
);

// `Borrow` must agree with `Ord`: both look at the same field.
impl Borrow<EntryId> for ById {
    fn borrow(&self) -> &EntryId {
        &self.0.id
    }
}

impl Borrow<SpiffeId> for BySpiffeId {
    fn borrow(&self) -> &SpiffeId {
        &self.0.spiffe_id
    }
}

/// The entries that share one selector or one parent.
///
/// Most selectors name one workload (`k8s:sa:billing`), so a bucket of one
/// entry holds it inline: an `OrdSet` node would cost ~160 bytes for one
/// pointer. A larger bucket is a persistent set, since a selector such as
/// `k8s:ns:default` may be shared by most entries and a change must not copy
/// its whole bucket.
#[derive(Debug, Clone)]
enum Bucket {
    One(InSpiffeIdOrder),
    Many(OrdSet<InSpiffeIdOrder>),
}

impl Bucket {
    fn insert(&mut self, member: InSpiffeIdOrder) {
        match self {
            Bucket::One(only) if *only == member => *only = member,
            Bucket::One(only) => {
                let mut set = OrdSet::unit(only.clone());
                set.insert(member);
                *self = Bucket::Many(set);
            }
            Bucket::Many(set) => {
                set.insert(member);
            }
        }
    }

    /// Removes `member`; returns whether the bucket is now empty.
    fn remove(&mut self, member: &InSpiffeIdOrder) -> bool {
        match self {
            Bucket::One(only) => only == member,
            Bucket::Many(set) => {
                set.remove(member);
                if set.len() == 1
                    && let Some(last) = set.get_min().cloned()
                {
                    *self = Bucket::One(last);
                }
                false
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &InSpiffeIdOrder> {
        let (one, many) = match self {
            Bucket::One(only) => (Some(only), None),
            Bucket::Many(set) => (None, Some(set.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// One consistent view of every entry. Every map is persistent (a B-tree
/// whose nodes are shared between versions): cloning a snapshot is O(1), and
/// changing one entry in the clone rewrites O(log n) nodes, leaving the
/// published snapshot untouched.
#[derive(Debug, Default, Clone)]
struct Snapshot {
    by_id: OrdSet<ById>,
    by_spiffe_id: OrdSet<BySpiffeId>,
    /// Each selector to the entries that require it, so matching attested
    /// selectors looks at candidates only, never at every entry. The keys
    /// are `Arc`s so that rewriting a node does not copy their text.
    by_selector: OrdMap<Arc<Selector>, Bucket>,
    /// Each agent to the entries registered under it.
    by_parent: OrdMap<Arc<SpiffeId>, Bucket>,
}

impl Snapshot {
    fn upsert(&mut self, entry: Arc<Entry>) {
        if let Some(ById(previous)) = self.by_id.insert(ById(entry.clone())) {
            self.unlink(&previous);
        }
        self.by_spiffe_id.insert(BySpiffeId(entry.clone()));
        for selector in &entry.selectors {
            add_to_bucket(&mut self.by_selector, selector, &entry);
        }
        if let Some(parent) = &entry.parent_id {
            add_to_bucket(&mut self.by_parent, parent, &entry);
        }
    }

    fn remove(&mut self, id: &EntryId) {
        if let Some(ById(previous)) = self.by_id.remove(id) {
            self.unlink(&previous);
        }
    }

    /// Drops `entry` from every index but `by_id`.
    fn unlink(&mut self, entry: &Arc<Entry>) {
        // The SPIFFE ID may meanwhile name another entry (the store keeps them
        // unique, but a feed may deliver a rename and a create in either
        // order): that mapping stays.
        if self
            .by_spiffe_id
            .get(&entry.spiffe_id)
            .is_some_and(|current| current.0.id == entry.id)
        {
            self.by_spiffe_id.remove(&entry.spiffe_id);
        }
        let member = InSpiffeIdOrder(entry.clone());
        for selector in &entry.selectors {
            remove_from_bucket(&mut self.by_selector, selector, &member);
        }
        if let Some(parent) = &entry.parent_id {
            remove_from_bucket(&mut self.by_parent, parent, &member);
        }
    }

    fn by_id(&self, id: &EntryId) -> Option<Arc<Entry>> {
        self.by_id.get(id).map(|found| found.0.clone())
    }

    fn by_spiffe_id(&self, id: &SpiffeId) -> Option<Arc<Entry>> {
        self.by_spiffe_id.get(id).map(|found| found.0.clone())
    }

    fn matching(&self, attested: &[Selector]) -> Vec<Arc<Entry>> {
        let proven: BTreeSet<&Selector> = attested.iter().collect();
        let mut matches: Vec<&InSpiffeIdOrder> = proven
            .iter()
            .filter_map(|selector| self.by_selector.get(*selector))
            .flat_map(Bucket::iter)
            .filter(|candidate| candidate.0.selectors.iter().all(|s| proven.contains(s)))
            .collect();
        // An entry with several proven selectors sits in several buckets;
        // sorting brings its copies together.
        matches.sort_unstable();
        matches.dedup();
        matches.into_iter().map(|found| found.0.clone()).collect()
    }

    fn children_of(&self, parent: &SpiffeId) -> Vec<Arc<Entry>> {
        self.by_parent
            .get(parent)
            .map(|bucket| bucket.iter().map(|child| child.0.clone()).collect())
            .unwrap_or_default()
    }

    fn all(&self) -> Vec<Arc<Entry>> {
        self.by_id.iter().map(|found| found.0.clone()).collect()
    }

    fn scan_after(
        &self,
        after: Option<&EntryId>,
        mut visit: impl FnMut(&Arc<Entry>) -> ControlFlow<()>,
    ) {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        for found in self.by_id.range::<_, EntryId>((lower, Bound::Unbounded)) {
            if visit(&found.0).is_break() {
                return;
            }
        }
    }
}

fn add_to_bucket<K: Ord + Clone>(
    buckets: &mut OrdMap<Arc<K>, Bucket>,
    key: &K,
    entry: &Arc<Entry>,
) {
    let member = InSpiffeIdOrder(entry.clone());
    if let Some(bucket) = buckets.get_mut(key) {
        bucket.insert(member);
    } else {
        buckets.insert(Arc::new(key.clone()), Bucket::One(member));
    }
}

fn remove_from_bucket<K: Ord>(
    buckets: &mut OrdMap<Arc<K>, Bucket>,
    key: &K,
    member: &InSpiffeIdOrder,
) {
    if let Some(bucket) = buckets.get_mut(key)
        && bucket.remove(member)
    {
        buckets.remove(key);
    }
}

/// `entry` as the index holds it, for as long as it exists: its lists
/// without the spare room decoding left (serde grows a list of two to four),
/// about 120 bytes an entry.
fn held(mut entry: Entry) -> Entry {
    entry.selectors.shrink_to_fit();
    entry.audiences.shrink_to_fit();
    entry.kinds.shrink_to_fit();
    entry.dns_names.shrink_to_fit();
    entry
}

/// A snapshot being built for [`EntryIndex::publish`], which nothing reads
/// until then: the broker's start adds the store's entries a page at a time,
/// so that they are never all in memory twice.
#[derive(Debug, Default)]
pub struct IndexLoad {
    snapshot: Snapshot,
}

impl IndexLoad {
    /// Adds `entries`; of entries sharing an id, the last wins.
    pub fn add(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for entry in entries {
            self.snapshot.upsert(Arc::new(held(entry)));
        }
    }
}

/// The entries the mint path reads: an immutable snapshot swapped on every
/// change, so lookups never take a lock and never wait on the store, and
/// never see half of a change.
///
/// The snapshot's maps are persistent, so [`upsert`](Self::upsert) and
/// [`remove`](Self::remove) cost O(log n), not a copy of every entry.
/// Writers take turns on a mutex; readers never touch it.
#[derive(Debug, Default)]
pub struct EntryIndex {
    current: ArcSwap<Snapshot>,
    /// Serialises writers, so no change is lost to a concurrent one.
    writer: Mutex<()>,
}

impl EntryIndex {
    /// An index over `entries`.
    pub fn new(entries: impl IntoIterator<Item = Entry>) -> Self {
        let index = EntryIndex::default();
        index.replace_all(entries);
        index
    }

    /// Replaces the whole snapshot (used at load and on a full resync). Of
    /// entries sharing an id, the last wins.
    pub fn replace_all(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut load = IndexLoad::default();
        load.add(entries);
        self.publish(load);
    }

    /// Replaces the whole snapshot with one built step by step (a page of
    /// the store at a time), in one change.
    pub fn publish(&self, load: IndexLoad) {
        let _writer = self.lock_writer();
        self.current.store(Arc::new(load.snapshot));
    }

    /// Inserts or replaces one entry (the one with the same id).
    pub fn upsert(&self, entry: Entry) {
        let entry = Arc::new(held(entry));
        self.update(|next| next.upsert(entry));
    }

    /// Removes one entry; removing an absent id does nothing.
    pub fn remove(&self, id: &EntryId) {
        self.update(|next| next.remove(id));
    }

    /// Applies `change` to a copy of the current snapshot and publishes it.
    fn update(&self, change: impl FnOnce(&mut Snapshot)) {
        let _writer = self.lock_writer();
        // O(1): the copy shares every node with the published snapshot.
        let mut next = Snapshot::clone(&self.current.load());
        change(&mut next);
        self.current.store(Arc::new(next));
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data: a writer that panicked never published
        // its half-made snapshot, so the current one is whole and poisoning
        // can be ignored.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry with this id.
    pub fn by_id(&self, id: &EntryId) -> Option<Arc<Entry>> {
        self.current.load().by_id(id)
    }

    /// The entry that issues this SPIFFE ID.
    pub fn by_spiffe_id(&self, id: &SpiffeId) -> Option<Arc<Entry>> {
        self.current.load().by_spiffe_id(id)
    }

    /// The entries whose selectors were all proven by `attested` (entries
    /// without selectors never match: they are reachable by join token only),
    /// in SPIFFE ID order.
    pub fn matching(&self, attested: &[Selector]) -> Vec<Arc<Entry>> {
        self.current.load().matching(attested)
    }

    /// The entries registered under the agent `parent`, in SPIFFE ID order.
    pub fn children_of(&self, parent: &SpiffeId) -> Vec<Arc<Entry>> {
        self.current.load().children_of(parent)
    }

    /// Every entry, in id order.
    pub fn all(&self) -> Vec<Arc<Entry>> {
        self.current.load().all()
    }

    /// Shows `visit` each entry whose id sorts after `after` (from the first
    /// when `None`), in id order, until it answers `Break`: a listing reads
    /// one page of one consistent snapshot without copying the others.
    pub fn scan_after(
        &self,
        after: Option<&EntryId>,
        visit: impl FnMut(&Arc<Entry>) -> ControlFlow<()>,
    ) {
        self.current.load().scan_after(after, visit);
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
mod tests;
