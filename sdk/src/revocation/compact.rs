//! [`Credentials`]: the `jti` or `serial` revocations of a [`RevocationSet`](super::RevocationSet),
//! packed for a million of them.
//!
//! A value the broker or its CA made (a `jti` of 16 random bytes in unpadded base64url, a
//! serial of at most 128 bits in canonical hex) is kept as its 16 bytes, and its two times as
//! 32-bit seconds: 24 bytes in a slot of an open-addressing table, with no allocation of its
//! own. So a million revocations are 64 large tables, not two million small heap objects
//! interleaved with the request path's short-lived ones (which left the allocator unable to
//! give pages back). Any other value, or times that do not fit, goes to a plain map beside
//! them, unchanged: a value is in exactly one of the two, and reads back as it was given.
//!
//! The table is split in [`SHARDS`] shards, each behind its own lock, so that a resize moves
//! one shard's slots, not a million, while readers of the others go on. The plain map is
//! split the same way (by a hash of the text), so that a million values in another form
//! (say a relying party's hex `jti`s, revoked in bulk) are read a shard at a time too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::RevocationKind;

/// How many shards the packed table has.
const SHARDS: usize = 64;

/// How many parts [`Credentials::for_each_in`] walks: every shard of the packed table, then
/// every shard of the values that do not pack.
pub(super) const PARTS: usize = 2 * SHARDS;

/// A `jti` or `serial` revocation as the index keeps it: two times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) revoked_at: i64,
    /// `i64::MAX` for none (a credential revocation always has one in
    /// practice: it lasts as long as the longest credential).
    pub(super) expires_at: i64,
}

/// A [`Stamp`] in 8 bytes: Unix seconds as `u32` (until 2106), and how long it lasts.
#[derive(Debug, Clone, Copy)]
struct Packed {
    revoked_at: u32,
    /// Seconds from `revoked_at` to its expiry; [`Packed::FOREVER`] for none.
    lasts: u32,
}

impl Packed {
    const FOREVER: u32 = u32::MAX;

    fn of(stamp: Stamp) -> Option<Packed> {
        let revoked_at = u32::try_from(stamp.revoked_at).ok()?;
        let lasts = if stamp.expires_at == i64::MAX {
            Packed::FOREVER
        } else {
            let lasts = u32::try_from(stamp.expires_at.checked_sub(stamp.revoked_at)?).ok()?;
            (lasts != Packed::FOREVER).then_some(lasts)?
        };
        Some(Packed { revoked_at, lasts })
    }

    fn stamp(self) -> Stamp {
        let revoked_at = i64::from(self.revoked_at);
        Stamp {
            revoked_at,
            expires_at: if self.lasts == Packed::FOREVER {
                i64::MAX
            } else {
                revoked_at + i64::from(self.lasts)
            },
        }
    }
}

/// A value's 16 bytes, when its text is the canonical form of them for `kind`.
type Key = [u8; 16];

fn key_of(kind: RevocationKind, value: &str) -> Option<Key> {
    match kind {
        // 16 bytes in unpadded base64url are 22 characters; the decoder refuses
        // stray bits in the last one, so the text is the only encoding of its bytes.
        RevocationKind::Jti if value.len() == 22 => {
            let mut key = [0u8; 16];
            let written = URL_SAFE_NO_PAD.decode_slice(value, &mut key).ok()?;
            (written == 16).then_some(key)
        }
        // Canonical serial hex: lowercase, no leading zeros, `0` for zero.
        RevocationKind::Serial
            if (1..=32).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                && (value == "0" || !value.starts_with('0')) =>
        {
            u128::from_str_radix(value, 16).ok().map(u128::to_be_bytes)
        }
        _ => None,
    }
}

fn value_of(kind: RevocationKind, key: &Key) -> String {
    match kind {
        RevocationKind::Serial => format!("{:x}", u128::from_be_bytes(*key)),
        _ => URL_SAFE_NO_PAD.encode(key),
    }
}

fn shard_of(key: &Key) -> usize {
    // The bytes are random for every value the broker makes; the last one
    // also varies for serials that count up.
    usize::from(key[15]) % SHARDS
}

fn other_shard_of(value: &str) -> usize {
    // FNV-1a: values in another form need not be random, and an operator who
    // picks them all for one shard only slows their own sync.
    let hash = value.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % SHARDS as u64) as usize
}

/// One shard of the values that do not pack.
type Others = HashMap<Box<str>, Stamp>;

/// The revocations of one credential kind, by value.
#[derive(Debug)]
pub(super) struct Credentials {
    kind: RevocationKind,
    packed: Box<[RwLock<HashMap<Key, Packed>>]>,
    /// Values or times that do not pack, in [`SHARDS`] shards by [`other_shard_of`].
    other: Box<[RwLock<Others>]>,
    /// How many `other` holds, read without its locks on the hot path.
    others: AtomicUsize,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Every write below is a single map operation: a panic cannot leave a
    // map half-changed, so a poisoned lock's data is whole.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn into_inner<T>(lock: RwLock<T>) -> T {
    lock.into_inner().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl Credentials {
    pub(super) fn new(kind: RevocationKind) -> Self {
        Credentials {
            kind,
            packed: (0..SHARDS).map(|_| RwLock::default()).collect(),
            other: (0..SHARDS).map(|_| RwLock::default()).collect(),
            others: AtomicUsize::new(0),
        }
    }

    pub(super) fn get(&self, value: &str) -> Option<Stamp> {
        if let Some(key) = key_of(self.kind, value)
            && let Some(packed) = read(&self.packed[shard_of(&key)]).get(&key)
        {
            return Some(packed.stamp());
        }
        if self.others.load(Ordering::Acquire) == 0 {
            return None;
        }
        read(&self.other[other_shard_of(value)]).get(value).copied()
    }

    /// Adds or replaces `value`'s stamp. Callers serialise writes.
    pub(super) fn insert(&self, value: &str, stamp: Stamp) {
        let key = key_of(self.kind, value);
        match (key, Packed::of(stamp)) {
            (Some(key), Some(packed)) => {
                self.remove_other(value);
                write(&self.packed[shard_of(&key)]).insert(key, packed);
            }
            (key, _) => {
                if let Some(key) = key {
                    write(&self.packed[shard_of(&key)]).remove(&key);
                }
                let added = write(&self.other[other_shard_of(value)])
                    .insert(value.into(), stamp)
                    .is_none();
                if added {
                    self.others.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
    }

    /// Removes `value`; returns its stamp. Callers serialise writes.
    pub(super) fn remove(&self, value: &str) -> Option<Stamp> {
        if let Some(key) = key_of(self.kind, value)
            && let Some(packed) = write(&self.packed[shard_of(&key)]).remove(&key)
        {
            return Some(packed.stamp());
        }
        self.remove_other(value)
    }

    fn remove_other(&self, value: &str) -> Option<Stamp> {
        if self.others.load(Ordering::Acquire) == 0 {
            return None;
        }
        let removed = write(&self.other[other_shard_of(value)]).remove(value);
        if removed.is_some() {
            self.others.fetch_sub(1, Ordering::AcqRel);
        }
        removed
    }

    pub(super) fn len(&self) -> usize {
        let packed: usize = self.packed.iter().map(|shard| read(shard).len()).sum();
        packed + self.others.load(Ordering::Acquire)
    }

    /// Replaces every value with `staged`'s, a shard at a time (each swap under that shard's
    /// lock), and drops the old ones. Callers serialise writes.
    pub(super) fn take_from(&self, staged: Credentials) {
        let Credentials {
            packed,
            other,
            others,
            ..
        } = staged;
        for (shard, staged) in self.packed.iter().zip(packed.into_vec()) {
            let old = std::mem::replace(&mut *write(shard), into_inner(staged));
            drop(old);
        }
        // Counted high first, so the hot path's `others == 0` shortcut never skips a value
        // that is there.
        let others = others.into_inner();
        self.others.fetch_max(others, Ordering::AcqRel);
        for (shard, staged) in self.other.iter().zip(other.into_vec()) {
            let old = std::mem::replace(&mut *write(shard), into_inner(staged));
            drop(old);
        }
        self.others.store(others, Ordering::Release);
    }

    /// Shows `visit` every value and its stamp, one shard at a time.
    pub(super) fn for_each(&self, mut visit: impl FnMut(&str, Stamp)) {
        for part in 0..PARTS {
            self.for_each_in(part, &mut visit);
        }
    }

    /// Shows `visit` every value and its stamp in one part (of [`PARTS`]), under that
    /// part's read lock only. A value stays in its part while it is held, so walking the
    /// parts one after another shows once every value held throughout.
    pub(super) fn for_each_in(&self, part: usize, mut visit: impl FnMut(&str, Stamp)) {
        match self.packed.get(part) {
            Some(shard) => {
                for (key, packed) in read(shard).iter() {
                    visit(&value_of(self.kind, key), packed.stamp());
                }
            }
            None => {
                if let Some(shard) = part.checked_sub(SHARDS).and_then(|s| self.other.get(s)) {
                    for (value, stamp) in read(shard).iter() {
                        visit(value, *stamp);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JTI: &str = "3pZigHCby27fD15wV4gdVQ";

    fn stamp(revoked_at: i64, expires_at: i64) -> Stamp {
        Stamp {
            revoked_at,
            expires_at,
        }
    }

    #[test]
    fn the_values_the_broker_makes_pack_and_read_back_as_given() {
        assert!(key_of(RevocationKind::Jti, JTI).is_some());
        for serial in ["0", "1", "ff", "7a3c0000000000000000000000000001"] {
            let key = key_of(RevocationKind::Serial, serial).expect(serial);
            assert_eq!(value_of(RevocationKind::Serial, &key), serial);
        }
        let key = key_of(RevocationKind::Jti, JTI).unwrap();
        assert_eq!(value_of(RevocationKind::Jti, &key), JTI);
    }

    #[test]
    fn values_in_another_form_do_not_pack() {
        // 'R' leaves stray bits in the last character: the same bytes as 'Q'.
        assert_eq!(key_of(RevocationKind::Jti, "3pZigHCby27fD15wV4gdVR"), None);
        assert_eq!(key_of(RevocationKind::Jti, "abc"), None);
        assert_eq!(key_of(RevocationKind::Jti, "3pZigHCby27fD15wV4gd.Q"), None);
        assert_eq!(key_of(RevocationKind::Serial, "0ff"), None);
        assert_eq!(key_of(RevocationKind::Serial, "FF"), None);
        assert_eq!(key_of(RevocationKind::Serial, &"f".repeat(33)), None);
        // A kind the table never holds.
        assert_eq!(key_of(RevocationKind::Entry, JTI), None);
    }

    #[test]
    fn times_pack_when_they_fit() {
        let usual = stamp(1_800_000_000, 1_800_000_000 + 86_400);
        assert_eq!(Packed::of(usual).map(Packed::stamp), Some(usual));
        let forever = stamp(1_800_000_000, i64::MAX);
        assert_eq!(Packed::of(forever).map(Packed::stamp), Some(forever));
        assert!(Packed::of(stamp(-1, 10)).is_none());
        assert!(Packed::of(stamp(10, 5)).is_none());
        assert!(Packed::of(stamp(0, i64::from(u32::MAX))).is_none());
        assert!(Packed::of(stamp(i64::from(u32::MAX) + 1, i64::MAX)).is_none());
    }

    #[test]
    fn every_value_is_found_where_it_was_put_and_nowhere_after_removal() {
        let table = Credentials::new(RevocationKind::Jti);
        let odd = "3pZigHCby27fD15wV4gdVR";
        let cases = [
            (JTI, stamp(100, 200)),
            (odd, stamp(100, 200)),
            ("short.jti", stamp(5, i64::MAX)),
            ("AAAAAAAAAAAAAAAAAAAAAA", stamp(-7, 3)),
        ];
        for (value, stamp) in cases {
            assert_eq!(table.get(value), None, "{value} before insert");
            table.insert(value, stamp);
        }
        assert_eq!(table.len(), cases.len());
        for (value, stamp) in cases {
            assert_eq!(table.get(value), Some(stamp), "{value}");
        }
        let mut seen: Vec<(String, Stamp)> = Vec::new();
        table.for_each(|value, stamp| seen.push((value.to_owned(), stamp)));
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected: Vec<(String, Stamp)> =
            cases.iter().map(|(v, s)| ((*v).to_owned(), *s)).collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen, expected);
        for (value, stamp) in cases {
            assert_eq!(table.remove(value), Some(stamp), "{value}");
            assert_eq!(table.get(value), None, "{value} after removal");
        }
        assert_eq!(table.len(), 0);
    }

    /// What each of the [`PARTS`] holds.
    fn part_sizes(table: &Credentials) -> Vec<usize> {
        (0..PARTS)
            .map(|part| {
                let mut n = 0;
                table.for_each_in(part, |_, _| n += 1);
                n
            })
            .collect()
    }

    #[test]
    fn values_in_another_form_are_read_a_shard_at_a_time_like_packed_ones() {
        const N: usize = 4_096;
        // The control: values the broker makes fill the packed table's parts only.
        let packed = Credentials::new(RevocationKind::Jti);
        for n in 0..N as u128 {
            packed.insert(&URL_SAFE_NO_PAD.encode(n.to_be_bytes()), stamp(100, 200));
        }
        let sizes = part_sizes(&packed);
        assert_eq!(sizes.iter().sum::<usize>(), N);
        assert!(sizes[SHARDS..].iter().all(|&n| n == 0), "{sizes:?}");
        // A relying party's hex `jti`s do not pack: they spread over the other parts, so a
        // sync reads no part much larger than a packed one (64 each on average here).
        let hex = Credentials::new(RevocationKind::Jti);
        for n in 0..N {
            hex.insert(&format!("{n:032x}"), stamp(100, 200));
        }
        let sizes = part_sizes(&hex);
        assert_eq!(sizes.iter().sum::<usize>(), N);
        assert_eq!(hex.len(), N);
        assert!(sizes[..SHARDS].iter().all(|&n| n == 0), "{sizes:?}");
        assert!(
            sizes[SHARDS..].iter().all(|&n| n < 4 * N / SHARDS),
            "{sizes:?}"
        );
        assert_eq!(hex.get(&format!("{:032x}", 7)), Some(stamp(100, 200)));
        assert_eq!(hex.remove(&format!("{:032x}", 7)), Some(stamp(100, 200)));
        assert_eq!((hex.len(), hex.get(&format!("{:032x}", 7))), (N - 1, None));
    }

    #[test]
    fn a_value_moves_between_the_two_maps_when_its_times_change() {
        let table = Credentials::new(RevocationKind::Jti);
        table.insert(JTI, stamp(100, 200));
        table.insert(JTI, stamp(-1, 200));
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(JTI), Some(stamp(-1, 200)));
        table.insert(JTI, stamp(300, 400));
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(JTI), Some(stamp(300, 400)));
        // Replaced whole, by a table with the value in the other map: the count of other
        // values follows (the control: the value is found), then by an empty one.
        let staged = Credentials::new(RevocationKind::Jti);
        staged.insert(JTI, stamp(-1, 200));
        table.take_from(staged);
        assert_eq!((table.len(), table.get(JTI)), (1, Some(stamp(-1, 200))));
        table.take_from(Credentials::new(RevocationKind::Jti));
        assert_eq!((table.len(), table.get(JTI)), (0, None));
    }
}
