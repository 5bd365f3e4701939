//! The Merkle tree over the audit log's records, as RFC 9162 (Certificate Transparency 2.0)
//! section 2.1 defines it.
//!
//! The hash chain in the log proves that records were not edited or reordered, but checking it
//! means reading the whole file. A Merkle tree over the same records adds two short proofs:
//!
//! - an **inclusion proof** shows that one record sits at a given position in a log of a given
//!   size with a given root, in O(log n) hashes ([`inclusion_proof`], [`verify_inclusion`]);
//! - a **consistency proof** shows that the log of an earlier size is an exact prefix of the
//!   log now, so nothing before the earlier size was rewritten or dropped
//!   ([`consistency_proof`], [`verify_consistency`]).
//!
//! # The tree (RFC 9162 section 2.1.1)
//! - the empty tree's root is SHA-256 of nothing ([`empty_root`]);
//! - a leaf is `SHA-256(0x00 || leaf bytes)` ([`leaf_hash`]);
//! - a tree of `n > 1` leaves is `SHA-256(0x01 || left root || right root)` ([`node_hash`]),
//!   where the left part holds the first `k` leaves, `k` being the largest power of two
//!   strictly below `n`.
//!
//! The two prefixes keep a leaf from ever being mistaken for an inner node. Everything here
//! works on leaf hashes: the caller hashes each record once with [`leaf_hash`].
//!
//! # Who uses what
//! The audit writer keeps a [`Frontier`]: it appends each new leaf hash in amortised O(1)
//! hashing and can give the root at any size. The offline CLI reads the leaf hashes of the
//! whole file and builds proofs with [`inclusion_proof`] and [`consistency_proof`] (O(n)
//! hashing, O(log n) extra memory); anyone holding a signed root checks them with
//! [`verify_inclusion`] and [`verify_consistency`]. Proofs travel as JSON with hashes written
//! by [`to_hex`] and read back by [`from_hex`].
//!
//! A root only means something next to the tree size it was computed for: always sign or
//! store the size together with the root.

use std::fmt;

use aws_lc_rs::digest;

mod partial;
pub use partial::PartialTree;

/// A SHA-256 output: a leaf hash, an inner node hash or a root.
pub type Hash = [u8; 32];

/// Domain separation byte put before a leaf's bytes (RFC 9162 section 2.1.1).
const LEAF_PREFIX: u8 = 0x00;

/// Domain separation byte put before two child hashes (RFC 9162 section 2.1.1).
const NODE_PREFIX: u8 = 0x01;

/// Everything that can be wrong with a proof, a tree size or a hex hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// A proof needs the root of leaves `from..to` (0-based, end excluded), which lie in the
    /// part of a [`PartialTree`] known only by its frontier (records removed by retention).
    #[error("the proof needs leaves {from}..{to}, which are no longer held (removed by retention)")]
    Pruned {
        /// The first leaf of the subtree needed.
        from: u64,
        /// One past its last leaf.
        to: u64,
    },
    /// A frontier was given a number of subtree roots that does not fit its size (one per
    /// set bit).
    #[error("a frontier of {size} leaves has {expected} subtree roots, not {got}")]
    FrontierShape {
        /// The tree size claimed.
        size: u64,
        /// The number of roots that size needs.
        expected: u32,
        /// The number given.
        got: usize,
    },
    /// The leaf index is not inside the tree (a proof needs `index < size`).
    #[error("leaf index {index} is out of range for a tree of {size} leaves")]
    IndexOutOfRange {
        /// The 0-based leaf index asked about.
        index: u64,
        /// The number of leaves in the tree.
        size: u64,
    },
    /// A consistency proof was asked for from a larger tree to a smaller one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    BadSizes {
        /// The size of the earlier tree.
        old_size: u64,
        /// The size of the later tree.
        new_size: u64,
    },
    /// The proof has too many or too few hashes for the sizes and index given.
    #[error("the proof has {got} hashes but these tree sizes need exactly {expected}")]
    WrongProofLength {
        /// How many hashes the proof has.
        got: u64,
        /// How many hashes a correct proof has.
        expected: u64,
    },
    /// The proof leads to a different root than the one given for the (new) tree.
    #[error("the proof does not lead to the given root")]
    RootMismatch,
    /// A consistency proof leads to a different root than the one given for the old tree.
    #[error("the proof does not lead to the given old root")]
    OldRootMismatch,
    /// Hex text for a hash is not exactly 64 bytes long.
    #[error("a hash must be exactly 64 hex digits, got {got} bytes of text")]
    HexLength {
        /// The length of the text in bytes.
        got: usize,
    },
    /// Hex text for a hash holds something other than `0-9`, `a-f` or `A-F`.
    #[error("byte {position} of the hash text is not a hex digit")]
    HexDigit {
        /// The 0-based byte position of the first bad character.
        position: usize,
    },
}

/// Hashes one leaf: `SHA-256(0x00 || leaf)`. Call it once per record to get the tree's input.
#[must_use]
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    sha256(&[&[LEAF_PREFIX], leaf])
}

/// Hashes an inner node from its two children: `SHA-256(0x01 || left || right)`.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[NODE_PREFIX], left, right])
}

/// The root of a tree with no leaves: SHA-256 of the empty string.
#[must_use]
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// The root (RFC 9162's MTH) of the tree whose leaf hashes are `leaves`, in order.
///
/// It follows the recursive definition directly: O(n) hashing, O(log n) stack.
#[must_use]
pub fn root(leaves: &[Hash]) -> Hash {
    match split(leaves) {
        Some((left, right)) => node_hash(&root(left), &root(right)),
        // Zero leaves or one leaf: the empty root, or the leaf hash itself.
        None => leaves.first().copied().unwrap_or_else(empty_root),
    }
}

/// The right edge of a growing tree, enough to append leaves and read the root.
///
/// A tree of `size` leaves is a row of perfect subtrees, one for each bit set in `size`,
/// largest first (what transparency-dev calls a compact range). The frontier keeps only their
/// roots: at most 64 hashes. Appending merges equal-sized subtrees like a binary counter
/// carries, so a push costs one hash on average; the root folds the row from the right in
/// O(log n) hashes. This is what the audit writer holds to know the root after every record
/// without keeping all leaf hashes in memory.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    /// How many leaves have been pushed.
    size: u64,
    /// The roots of the perfect subtrees, leftmost (largest) first; one per set bit of `size`.
    peaks: Vec<Hash>,
}

impl Frontier {
    /// An empty tree: size 0, root [`empty_root`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The frontier of a tree built from `leaves` (leaf hashes, in order).
    #[must_use]
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut frontier = Self::new();
        for leaf in leaves {
            frontier.push(leaf);
        }
        frontier
    }

    /// Appends one leaf hash (from [`leaf_hash`]) at the end of the tree.
    ///
    /// A tree holds at most `u64::MAX` leaves; a push beyond that is ignored. Reaching it
    /// would take 2^64 appends, which no log will see.
    pub fn push(&mut self, leaf: Hash) {
        let Some(new_size) = self.size.checked_add(1) else {
            return;
        };
        let mut carry = leaf;
        let mut bits = self.size;
        // Each trailing 1 bit of the old size is a subtree as large as the one being carried:
        // merge the two, the older one on the left.
        while bits & 1 == 1 {
            let Some(left) = self.peaks.pop() else {
                break;
            };
            carry = node_hash(&left, &carry);
            bits >>= 1;
        }
        self.peaks.push(carry);
        self.size = new_size;
    }

    /// How many leaves the tree has.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The roots of the perfect subtrees the tree is made of, largest (leftmost) first: one
    /// per set bit of [`size`](Self::size). With the size, all a [`PartialTree`] needs to
    /// know of the leaves before it.
    #[must_use]
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// The frontier of a tree of `size` leaves whose perfect subtrees have the roots `peaks`
    /// (as [`peaks`](Self::peaks) gives them).
    ///
    /// # Errors
    /// [`ProofError::FrontierShape`] unless there is exactly one root per set bit of `size`.
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Result<Self, ProofError> {
        if peaks.len() != capacity(u64::from(size.count_ones())) {
            return Err(ProofError::FrontierShape {
                size,
                expected: size.count_ones(),
                got: peaks.len(),
            });
        }
        Ok(Frontier { size, peaks })
    }

    /// The tree's root, equal to [`root`] over the same leaves.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut from_right = self.peaks.iter().rev();
        let Some(last) = from_right.next() else {
            return empty_root();
        };
        from_right.fold(*last, |right, left| node_hash(left, &right))
    }
}

impl fmt::Debug for Frontier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peaks: Vec<String> = self.peaks.iter().map(to_hex).collect();
        f.debug_struct("Frontier")
            .field("size", &self.size)
            .field("peaks", &peaks)
            .finish()
    }
}

/// The inclusion proof (RFC 9162's PATH) for the leaf at `index` (0-based) in the tree of
/// all of `leaves`: the sibling hashes from the leaf up to the root, lowest first.
///
/// O(n) hashing: it recomputes the root of every sibling subtree.
///
/// # Errors
/// [`ProofError::IndexOutOfRange`] when `index` is not below `leaves.len()`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let size = len_u64(leaves.len());
    let out_of_range = ProofError::IndexOutOfRange { index, size };
    let position = usize::try_from(index).map_err(|_| out_of_range.clone())?;
    if position >= leaves.len() {
        return Err(out_of_range);
    }
    let mut proof = Vec::with_capacity(capacity(inclusion_proof_len(index, size)));
    path(leaves, position, &mut proof);
    Ok(proof)
}

/// Checks that `leaf` (a leaf hash) sits at `index` in the tree of `size` leaves whose root
/// is `root`, following RFC 9162 section 2.1.3.2 step by step.
///
/// # Errors
/// - [`ProofError::IndexOutOfRange`] when `index >= size` (this includes `size == 0`);
/// - [`ProofError::WrongProofLength`] when the proof is longer or shorter than `index` and
///   `size` call for;
/// - [`ProofError::RootMismatch`] when the proof does not lead to `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // Step 1.
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let wrong_length = || ProofError::WrongProofLength {
        got: len_u64(proof.len()),
        expected: inclusion_proof_len(index, size),
    };
    // Steps 2 and 3. The RFC's `fn` (the node on the leaf's path) and `sn` (the last node on
    // the same level) are `f_n` and `s_n` here: `fn` is a Rust keyword.
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    // Step 4.
    for p in proof {
        if s_n == 0 {
            return Err(wrong_length());
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                (f_n, s_n) = shift_while_even(f_n, s_n);
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5.
    if s_n != 0 {
        return Err(wrong_length());
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The consistency proof (RFC 9162's PROOF) that the tree of the first `old_size` leaves is a
/// prefix of the tree of all of `leaves`.
///
/// When `old_size` is 0 or equals `leaves.len()` there is nothing to prove and the proof is
/// empty (see [`verify_consistency`]). O(n) hashing.
///
/// # Errors
/// [`ProofError::BadSizes`] when `old_size` is larger than `leaves.len()`.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    let new_size = len_u64(leaves.len());
    if old_size > new_size {
        return Err(ProofError::BadSizes { old_size, new_size });
    }
    let old = usize::try_from(old_size).map_err(|_| ProofError::BadSizes { old_size, new_size })?;
    if old == 0 || old == leaves.len() {
        return Ok(Vec::new());
    }
    let mut proof = Vec::with_capacity(capacity(consistency_proof_len(old_size, new_size)));
    subproof(leaves, old, true, &mut proof);
    Ok(proof)
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root`.
///
/// For `0 < old_size < new_size` this is RFC 9162 section 2.1.4.2 step by step. The RFC
/// defines no proof outside that range; here:
/// - `old_size == new_size` needs an empty proof and `old_root == new_root`;
/// - `old_size == 0` needs an empty proof and `old_root` equal to [`empty_root`] (the only
///   root a tree of no leaves has); any new tree extends the empty one. When `new_size` is 0
///   too, `new_root` must also be the empty root.
///
/// # Errors
/// - [`ProofError::BadSizes`] when `old_size > new_size`;
/// - [`ProofError::WrongProofLength`] when the proof is longer or shorter than the sizes call
///   for (an empty proof for `0 < old_size < new_size` is always too short);
/// - [`ProofError::OldRootMismatch`] when the proof does not lead to `old_root`;
/// - [`ProofError::RootMismatch`] when it does not lead to `new_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::BadSizes { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return verify_trivial_consistency(old_size, new_size, old_root, new_root, proof);
    }
    let wrong_length = || ProofError::WrongProofLength {
        got: len_u64(proof.len()),
        expected: consistency_proof_len(old_size, new_size),
    };
    // Step 1.
    let Some((first, rest)) = proof.split_first() else {
        return Err(wrong_length());
    };
    // Step 2: when the old tree is a perfect subtree of the new one its root is not in the
    // proof, so the walk starts from `old_root` and uses every proof hash after it.
    let (seed, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (*first, rest)
    };
    // Steps 3 and 4 (`fn` and `sn` are `f_n` and `s_n`, as in `verify_inclusion`).
    let (mut f_n, mut s_n) = (old_size - 1, new_size - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (seed, seed);
    // Step 6.
    for c in rest {
        if s_n == 0 {
            return Err(wrong_length());
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                (f_n, s_n) = shift_while_even(f_n, s_n);
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 7.
    if s_n != 0 {
        return Err(wrong_length());
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Writes a hash as 64 lowercase hex digits.
#[must_use]
pub fn to_hex(hash: &Hash) -> String {
    let mut text = String::with_capacity(64);
    for byte in hash {
        text.push(hex_digit(byte >> 4));
        text.push(hex_digit(byte & 0x0f));
    }
    text
}

/// Reads a hash from exactly 64 hex digits (either case, mixed allowed); no prefix, spaces
/// or anything else.
///
/// # Errors
/// [`ProofError::HexLength`] when the text is not 64 bytes long, [`ProofError::HexDigit`] at
/// the first character that is not a hex digit.
pub fn from_hex(text: &str) -> Result<Hash, ProofError> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return Err(ProofError::HexLength { got: bytes.len() });
    }
    let mut hash = [0u8; 32];
    for (i, (out, pair)) in hash.iter_mut().zip(bytes.chunks_exact(2)).enumerate() {
        let position = 2 * i;
        let &[high, low] = pair else {
            return Err(ProofError::HexDigit { position });
        };
        let high = nibble(high).ok_or(ProofError::HexDigit { position })?;
        let low = nibble(low).ok_or(ProofError::HexDigit {
            position: position + 1,
        })?;
        *out = (high << 4) | low;
    }
    Ok(hash)
}

/// SHA-256 over the concatenation of `parts`.
fn sha256(parts: &[&[u8]]) -> Hash {
    let mut context = digest::Context::new(&digest::SHA256);
    for part in parts {
        context.update(part);
    }
    let digest = context.finish();
    let mut hash = [0u8; 32];
    for (out, byte) in hash.iter_mut().zip(digest.as_ref()) {
        *out = *byte;
    }
    hash
}

/// Splits a tree of two or more leaves where RFC 9162 section 2.1.1 does: the left part gets
/// the largest power of two strictly below the count. `None` for zero leaves or one.
fn split(leaves: &[Hash]) -> Option<(&[Hash], &[Hash])> {
    let n = leaves.len();
    if n < 2 {
        return None;
    }
    // n >= 2, so n - 1 >= 1 and its highest set bit is the largest power of two below n.
    let k = 1_usize << (usize::BITS - 1 - (n - 1).leading_zeros());
    leaves.split_at_checked(k)
}

/// RFC 9162 section 2.1.3.1 `PATH(m, D_n)`, appending to `proof` (deepest sibling first).
fn path(leaves: &[Hash], m: usize, proof: &mut Vec<Hash>) {
    // PATH(0, {d(0)}) is empty.
    let Some((left, right)) = split(leaves) else {
        return;
    };
    if m < left.len() {
        path(left, m, proof);
        proof.push(root(right));
    } else {
        path(right, m - left.len(), proof);
        proof.push(root(left));
    }
}

/// RFC 9162 section 2.1.4.1 `SUBPROOF(m, D_n, b)`, appending to `proof`. `old_root_known` is
/// the RFC's `b`: whether the subtree of the first `m` leaves is one whose root the verifier
/// already has (so it is left out of the proof).
fn subproof(leaves: &[Hash], m: usize, old_root_known: bool, proof: &mut Vec<Hash>) {
    if m == leaves.len() {
        if !old_root_known {
            proof.push(root(leaves));
        }
        return;
    }
    // 0 < m < n here, so there are at least two leaves to split.
    let Some((left, right)) = split(leaves) else {
        return;
    };
    if m <= left.len() {
        subproof(left, m, old_root_known, proof);
        proof.push(root(right));
    } else {
        subproof(right, m - left.len(), false, proof);
        proof.push(root(left));
    }
}

/// The consistency cases RFC 9162 leaves undefined: the old tree is empty, or both trees
/// have the same size. Neither has anything to prove, so the proof must be empty.
fn verify_trivial_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if !proof.is_empty() {
        return Err(ProofError::WrongProofLength {
            got: len_u64(proof.len()),
            expected: 0,
        });
    }
    if old_size == 0 && *old_root != empty_root() {
        return Err(ProofError::OldRootMismatch);
    }
    if old_size == new_size && old_root != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 steps 2.1.3.2 4.b.ii and 2.1.4.2 6.b.iii: right-shift both values until the first
/// is odd or zero.
fn shift_while_even(mut f_n: u64, mut s_n: u64) -> (u64, u64) {
    while f_n != 0 && f_n & 1 == 0 {
        f_n >>= 1;
        s_n >>= 1;
    }
    (f_n, s_n)
}

/// How many hashes the inclusion proof for `index` in a tree of `size` leaves has
/// (`index < size`). Used for error messages and capacity; the verifiers themselves follow
/// the RFC and do not depend on it.
fn inclusion_proof_len(index: u64, size: u64) -> u64 {
    path_len(index, size.saturating_sub(1))
}

/// How many hashes the path from node `index` to the root has, in a tree whose last node on
/// the same level is `last` (`index <= last`).
///
/// The paths from `index` and from `last` meet `inner` levels up; below that every level has
/// a sibling, above it only the levels where the path comes from the right do.
fn path_len(index: u64, last: u64) -> u64 {
    let inner = u64::BITS - (index ^ last).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    u64::from(inner + border)
}

/// How many hashes the consistency proof from `old_size` to `new_size` has
/// (`0 < old_size < new_size`); as [`inclusion_proof_len`], for messages and capacity.
///
/// The proof is the inclusion proof of the old tree's last perfect subtree inside the new
/// tree, plus that subtree's root unless it is the whole old tree.
fn consistency_proof_len(old_size: u64, new_size: u64) -> u64 {
    let level = old_size.trailing_zeros();
    let index = old_size.saturating_sub(1).checked_shr(level).unwrap_or(0);
    let last = new_size.saturating_sub(1).checked_shr(level).unwrap_or(0);
    let seed = u64::from(!old_size.is_power_of_two());
    seed + path_len(index, last)
}

/// A slice length as a `u64` (lossless on every platform Rust supports).
fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

/// A proof length as a `Vec` capacity (proofs have at most 65 hashes).
fn capacity(len: u64) -> usize {
    usize::try_from(len).unwrap_or(0)
}

/// The lowercase hex digit for the low four bits of `value`.
fn hex_digit(value: u8) -> char {
    let value = value & 0x0f;
    char::from(if value < 10 {
        b'0' + value
    } else {
        b'a' + (value - 10)
    })
}

/// The value of one hex digit, either case.
fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    // Reference data used across the certificate-transparency implementations: the 8 leaves,
    // the roots of the trees of their first 1..=8 leaves, and the published inclusion and
    // consistency proofs. Source: transparency-dev/merkle, proof/verify_test.go (variables
    // `leaves`, `roots`, `inclusionProofs`, `consistencyProofs`; the same vectors as
    // certificate-transparency-go's merkle tests and the C++ merkle_tree_test.cc).
    const REFERENCE_LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    const REFERENCE_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// (0-based leaf index, tree size, proof). The Go source numbers leaves from 1.
    const REFERENCE_INCLUSION: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    /// (old size, new size, proof).
    const REFERENCE_CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    const EMPTY_ROOT_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn hex_bytes(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn hashes(texts: &[&str]) -> Vec<Hash> {
        texts.iter().map(|t| from_hex(t).unwrap()).collect()
    }

    fn reference_leaves() -> Vec<Hash> {
        REFERENCE_LEAVES
            .iter()
            .map(|l| leaf_hash(&hex_bytes(l)))
            .collect()
    }

    fn reference_root(size: u64) -> Hash {
        from_hex(REFERENCE_ROOTS[us(size) - 1]).unwrap()
    }

    /// The leaf data the exhaustive and Python tests share: distinct for every index.
    fn record(i: usize) -> Vec<u8> {
        format!("record-{i}").into_bytes()
    }

    fn test_leaves(count: usize) -> Vec<Hash> {
        (0..count).map(|i| leaf_hash(&record(i))).collect()
    }

    fn u(n: usize) -> u64 {
        u64::try_from(n).unwrap()
    }

    fn us(n: u64) -> usize {
        usize::try_from(n).unwrap()
    }

    fn flip_bit(proof: &[Hash], element: usize, bit: usize) -> Vec<Hash> {
        let mut bad = proof.to_vec();
        bad[element][bit / 8] ^= 1 << (bit % 8);
        bad
    }

    fn is_mismatch(result: &Result<(), ProofError>) -> bool {
        matches!(
            result,
            Err(ProofError::RootMismatch | ProofError::OldRootMismatch)
        )
    }

    fn is_wrong_length(result: &Result<(), ProofError>) -> bool {
        matches!(result, Err(ProofError::WrongProofLength { .. }))
    }

    fn largest_power_of_two_below(n: u64) -> u64 {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// The shape of `PATH(m, D_n)`, read off the RFC's recursion: for each proof hash from the
    /// bottom, whether it is a left sibling. Two (index, size) pairs with the same shape make
    /// the verifier do the same hashing, so a proof for one also passes for the other.
    fn inclusion_shape(m: u64, n: u64) -> Vec<bool> {
        if n <= 1 {
            return Vec::new();
        }
        let k = largest_power_of_two_below(n);
        let (mut shape, left) = if m < k {
            (inclusion_shape(m, k), false)
        } else {
            (inclusion_shape(m - k, n - k), true)
        };
        shape.push(left);
        shape
    }

    /// The shape of `PROOF(m, D_n)` from `SUBPROOF`'s recursion: `None` for the old subtree's
    /// root, `Some(is_left_sibling)` for the other hashes.
    fn consistency_shape(m: u64, n: u64, known: bool) -> Vec<Option<bool>> {
        if m == n {
            return if known { Vec::new() } else { vec![None] };
        }
        let k = largest_power_of_two_below(n);
        let (mut shape, left) = if m <= k {
            (consistency_shape(m, k, known), false)
        } else {
            (consistency_shape(m - k, n - k, false), true)
        };
        shape.push(Some(left));
        shape
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(to_hex(&empty_root()), EMPTY_ROOT_HEX);
        assert_eq!(root(&[]), empty_root());
        assert_eq!(Frontier::new().root(), empty_root());
        assert_eq!(Frontier::new().size(), 0);
    }

    #[test]
    fn leaf_and_node_hashes_use_the_rfc_prefixes() {
        // The root of a one-leaf tree of "" is SHA-256(0x00), the reference's first root.
        assert_eq!(leaf_hash(b""), reference_root(1));
        let leaves = reference_leaves();
        assert_eq!(node_hash(&leaves[0], &leaves[1]), reference_root(2));
        // Negative next to it: the children in the other order give another hash.
        assert_ne!(node_hash(&leaves[1], &leaves[0]), reference_root(2));
    }

    #[test]
    fn reference_roots_for_sizes_1_to_8() {
        let leaves = reference_leaves();
        for size in 1..=8 {
            let expected = reference_root(size);
            assert_eq!(root(&leaves[..us(size)]), expected, "root of {size}");
            let frontier = Frontier::from_leaves(leaves[..us(size)].iter().copied());
            assert_eq!(frontier.root(), expected, "frontier root of {size}");
            assert_eq!(frontier.size(), size);
        }
    }

    #[test]
    fn reference_inclusion_proofs() {
        let leaves = reference_leaves();
        for (index, size, published) in REFERENCE_INCLUSION {
            let published = hashes(published);
            let tree = &leaves[..us(size)];
            let leaf = &leaves[us(index)];
            let tree_root = reference_root(size);
            assert_eq!(
                inclusion_proof(tree, index).unwrap(),
                published,
                "({index}, {size})"
            );
            assert_eq!(
                verify_inclusion(leaf, index, size, &published, &tree_root),
                Ok(())
            );
            for element in 0..published.len() {
                let bad = flip_bit(&published, element, 3);
                assert_eq!(
                    verify_inclusion(leaf, index, size, &bad, &tree_root),
                    Err(ProofError::RootMismatch)
                );
            }
        }
        // The Go table's (0, 0) entry: no proof exists for a tree of no leaves.
        assert_eq!(
            verify_inclusion(&leaves[0], 0, 0, &[], &empty_root()),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
    }

    #[test]
    fn reference_consistency_proofs() {
        let leaves = reference_leaves();
        for (old_size, new_size, published) in REFERENCE_CONSISTENCY {
            let published = hashes(published);
            let tree = &leaves[..us(new_size)];
            let (old_root, new_root) = (reference_root(old_size), reference_root(new_size));
            assert_eq!(consistency_proof(tree, old_size).unwrap(), published);
            assert_eq!(
                verify_consistency(old_size, new_size, &old_root, &new_root, &published),
                Ok(())
            );
            for element in 0..published.len() {
                let bad = flip_bit(&published, element, 4);
                assert!(is_mismatch(&verify_consistency(
                    old_size, new_size, &old_root, &new_root, &bad
                )));
            }
        }
    }

    /// The example tree of RFC 9162 section 2.1.5 (seven leaves, nodes named a..l) and the
    /// proofs the RFC lists for it.
    #[test]
    #[allow(
        clippy::many_single_char_names,
        reason = "the RFC's names for the nodes"
    )]
    fn rfc_9162_example_tree() {
        let d = reference_leaves();
        let [a, b, c, dd, e, f, j] = [d[0], d[1], d[2], d[3], d[4], d[5], d[6]];
        let g = node_hash(&a, &b);
        let h = node_hash(&c, &dd);
        let i = node_hash(&e, &f);
        let k = node_hash(&g, &h);
        let l = node_hash(&i, &j);
        let tree = &d[..7];
        assert_eq!(root(tree), node_hash(&k, &l));
        assert_eq!(inclusion_proof(tree, 0).unwrap(), [b, h, l]);
        assert_eq!(inclusion_proof(tree, 3).unwrap(), [c, g, l]);
        assert_eq!(inclusion_proof(tree, 4).unwrap(), [f, j, k]);
        assert_eq!(inclusion_proof(tree, 6).unwrap(), [i, k]);
        assert_eq!(consistency_proof(tree, 3).unwrap(), [c, dd, g, l]);
        assert_eq!(consistency_proof(tree, 4).unwrap(), [l]);
        assert_eq!(consistency_proof(tree, 6).unwrap(), [i, j, k]);
    }

    #[test]
    fn exhaustive_inclusion_up_to_64_leaves() {
        let all = test_leaves(129);
        let roots: Vec<Hash> = (0..=all.len()).map(|n| root(&all[..n])).collect();
        let other = leaf_hash(b"not in the tree");
        for size in 1..=64_u64 {
            let tree = &all[..us(size)];
            let tree_root = roots[us(size)];
            for index in 0..size {
                let leaf = &tree[us(index)];
                let proof = inclusion_proof(tree, index).unwrap();
                let check =
                    |i: u64, s: u64, p: &[Hash], r: &Hash| verify_inclusion(leaf, i, s, p, r);

                // Positive control.
                assert_eq!(u(proof.len()), inclusion_proof_len(index, size));
                assert_eq!(
                    check(index, size, &proof, &tree_root),
                    Ok(()),
                    "{index} of {size}"
                );

                // A flipped bit in any element.
                for element in 0..proof.len() {
                    let bit = (element * 37 + us(index)) % 256;
                    let bad = flip_bit(&proof, element, bit);
                    assert_eq!(
                        check(index, size, &bad, &tree_root),
                        Err(ProofError::RootMismatch)
                    );
                }
                // A wrong leaf.
                assert_eq!(
                    verify_inclusion(&other, index, size, &proof, &tree_root),
                    Err(ProofError::RootMismatch)
                );
                // Every other index, and one past the end.
                for wrong in (0..size).filter(|&w| w != index) {
                    assert!(
                        check(wrong, size, &proof, &tree_root).is_err(),
                        "{wrong} as {index}"
                    );
                }
                assert_eq!(
                    check(size, size, &proof, &tree_root),
                    Err(ProofError::IndexOutOfRange { index: size, size })
                );
                // Wrong sizes. Against the root of a tree of that size the claim is true, but
                // this is not its proof: refused unless the two proofs are the same hashes.
                // Against this tree's root it passes exactly when the proof has the same
                // shape: a root only binds a tree together with its size.
                for wrong in [size - 1, size + 1, size * 2]
                    .into_iter()
                    .filter(|&w| w > index)
                {
                    if wrong == size {
                        continue;
                    }
                    let claimed = check(index, wrong, &proof, &roots[us(wrong)]);
                    let right_proof = inclusion_proof(&all[..us(wrong)], index).unwrap();
                    assert_eq!(claimed.is_ok(), proof == right_proof);
                    let same_shape = inclusion_shape(index, wrong) == inclusion_shape(index, size);
                    assert_eq!(check(index, wrong, &proof, &tree_root).is_ok(), same_shape);
                }
                // Truncated or extended.
                if let Some((_, rest)) = proof.split_first() {
                    assert!(is_wrong_length(&check(index, size, rest, &tree_root)));
                    let short = &proof[..proof.len() - 1];
                    assert!(is_wrong_length(&check(index, size, short, &tree_root)));
                }
                for extra in [tree_root, other] {
                    let mut longer = proof.clone();
                    longer.push(extra);
                    assert!(is_wrong_length(&check(index, size, &longer, &tree_root)));
                    longer.rotate_right(1);
                    assert!(is_wrong_length(&check(index, size, &longer, &tree_root)));
                }
                // Wrong roots.
                for wrong_root in [roots[us(size) - 1], roots[us(size) + 1], empty_root()] {
                    assert_eq!(
                        check(index, size, &proof, &wrong_root),
                        Err(ProofError::RootMismatch)
                    );
                }
            }
        }
    }

    #[test]
    fn exhaustive_consistency_up_to_64_leaves() {
        let all = test_leaves(129);
        let roots: Vec<Hash> = (0..=all.len()).map(|n| root(&all[..n])).collect();
        let other = leaf_hash(b"not in the tree");
        for new_size in 1..=64_u64 {
            let tree = &all[..us(new_size)];
            let new_root = roots[us(new_size)];
            for old_size in 0..=new_size {
                let old_root = roots[us(old_size)];
                let proof = consistency_proof(tree, old_size).unwrap();
                let check = |m: u64, n: u64, r1: &Hash, r2: &Hash, p: &[Hash]| {
                    verify_consistency(m, n, r1, r2, p)
                };

                // Positive control.
                assert_eq!(
                    check(old_size, new_size, &old_root, &new_root, &proof),
                    Ok(())
                );
                if old_size == 0 || old_size == new_size {
                    assert!(proof.is_empty());
                } else {
                    assert_eq!(u(proof.len()), consistency_proof_len(old_size, new_size));
                }

                // A flipped bit in any element.
                for element in 0..proof.len() {
                    let bit = (element * 41 + us(old_size)) % 256;
                    let bad = flip_bit(&proof, element, bit);
                    assert!(is_mismatch(&check(
                        old_size, new_size, &old_root, &new_root, &bad
                    )));
                }
                // Wrong or swapped roots. An empty old tree says nothing about the new root:
                // every tree extends it, so there only the old root is checked.
                let new_root_checked = !(old_size == 0 && new_size > 0);
                let wrong_new = check(old_size, new_size, &old_root, &other, &proof);
                assert_eq!(is_mismatch(&wrong_new), new_root_checked);
                assert_eq!(wrong_new.is_ok(), !new_root_checked);
                assert!(is_mismatch(&check(
                    old_size, new_size, &other, &new_root, &proof
                )));
                if old_size != new_size {
                    assert!(is_mismatch(&check(
                        old_size, new_size, &new_root, &old_root, &proof
                    )));
                }
                // Wrong sizes, with the roots of trees of those sizes: refused unless this
                // proof happens to be that claim's proof too (the empty proof of (0, 1) is
                // also the proof of (1, 1)). With the original roots the claim passes exactly
                // when the proof has the same shape (as for inclusion proofs).
                let wrong_sizes = [
                    (old_size.wrapping_sub(1), new_size),
                    (old_size + 1, new_size),
                    (old_size, new_size + 1),
                    (old_size, new_size - 1),
                    (old_size, new_size * 2),
                ];
                for (m, n) in wrong_sizes {
                    if (m, n) == (old_size, new_size) || m > n || n > 128 {
                        continue;
                    }
                    let claimed = check(m, n, &roots[us(m)], &roots[us(n)], &proof);
                    let right_proof = consistency_proof(&all[..us(n)], m).unwrap();
                    assert_eq!(claimed.is_ok(), proof == right_proof, "({m}, {n})");
                    if 0 < m && m < n && 0 < old_size && old_size < new_size {
                        let same_shape = consistency_shape(m, n, true)
                            == consistency_shape(old_size, new_size, true);
                        let passed = check(m, n, &old_root, &new_root, &proof).is_ok();
                        assert_eq!(passed, same_shape, "({old_size}, {new_size}) as ({m}, {n})");
                    }
                }
                // Truncated, extended, or empty when a proof is needed.
                if let Some((_, rest)) = proof.split_first() {
                    assert!(is_wrong_length(&check(
                        old_size, new_size, &old_root, &new_root, rest
                    )));
                    let short = &proof[..proof.len() - 1];
                    assert!(is_wrong_length(&check(
                        old_size, new_size, &old_root, &new_root, short
                    )));
                }
                for extra in [old_root, new_root, other] {
                    let mut longer = proof.clone();
                    longer.push(extra);
                    assert!(is_wrong_length(&check(
                        old_size, new_size, &old_root, &new_root, &longer
                    )));
                    longer.rotate_right(1);
                    assert!(is_wrong_length(&check(
                        old_size, new_size, &old_root, &new_root, &longer
                    )));
                }
            }
        }
    }

    #[test]
    fn consistency_edge_cases() {
        let leaves = test_leaves(5);
        let (root_3, root_5) = (root(&leaves[..3]), root(&leaves));
        let empty = empty_root();
        let other = leaf_hash(b"other");

        // Equal sizes: empty proof and equal roots.
        assert_eq!(verify_consistency(5, 5, &root_5, &root_5, &[]), Ok(()));
        assert_eq!(
            verify_consistency(5, 5, &root_5, &root_3, &[]),
            Err(ProofError::RootMismatch)
        );
        assert_eq!(
            verify_consistency(5, 5, &root_5, &root_5, &[root_5]),
            Err(ProofError::WrongProofLength {
                got: 1,
                expected: 0
            })
        );
        assert_eq!(consistency_proof(&leaves, 5).unwrap(), Vec::<Hash>::new());

        // Old size 0: empty proof, and the old root must be the empty tree's.
        assert_eq!(consistency_proof(&leaves, 0).unwrap(), Vec::<Hash>::new());
        assert_eq!(verify_consistency(0, 5, &empty, &root_5, &[]), Ok(()));
        assert_eq!(
            verify_consistency(0, 5, &other, &root_5, &[]),
            Err(ProofError::OldRootMismatch)
        );
        assert_eq!(
            verify_consistency(0, 5, &empty, &root_5, &[root_5]),
            Err(ProofError::WrongProofLength {
                got: 1,
                expected: 0
            })
        );
        assert_eq!(verify_consistency(0, 0, &empty, &empty, &[]), Ok(()));
        assert_eq!(
            verify_consistency(0, 0, &empty, &other, &[]),
            Err(ProofError::RootMismatch)
        );

        // Old size above new size.
        assert_eq!(
            consistency_proof(&leaves[..3], 3).unwrap(),
            Vec::<Hash>::new()
        );
        assert_eq!(
            consistency_proof(&leaves[..3], 4),
            Err(ProofError::BadSizes {
                old_size: 4,
                new_size: 3
            })
        );
        assert_eq!(verify_consistency(3, 3, &root_3, &root_3, &[]), Ok(()));
        assert_eq!(
            verify_consistency(4, 3, &root_3, &root_3, &[]),
            Err(ProofError::BadSizes {
                old_size: 4,
                new_size: 3
            })
        );

        // 0 < old < new with an empty proof: too short (RFC 9162 2.1.4.2 step 1).
        let proof = consistency_proof(&leaves, 3).unwrap();
        assert_eq!(verify_consistency(3, 5, &root_3, &root_5, &proof), Ok(()));
        assert_eq!(
            verify_consistency(3, 5, &root_3, &root_5, &[]),
            Err(ProofError::WrongProofLength {
                got: 0,
                expected: u(proof.len())
            })
        );
    }

    #[test]
    fn inclusion_edge_cases() {
        let leaves = test_leaves(5);
        let root_5 = root(&leaves);
        assert!(inclusion_proof(&leaves, 4).is_ok());
        assert_eq!(
            inclusion_proof(&leaves, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            inclusion_proof(&leaves, u64::MAX),
            Err(ProofError::IndexOutOfRange {
                index: u64::MAX,
                size: 5
            })
        );
        assert_eq!(
            inclusion_proof(&[], 0),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
        // A one-leaf tree: the proof is empty and the root is the leaf hash.
        assert_eq!(
            inclusion_proof(&leaves[..1], 0).unwrap(),
            Vec::<Hash>::new()
        );
        assert_eq!(verify_inclusion(&leaves[0], 0, 1, &[], &leaves[0]), Ok(()));
        assert_eq!(
            verify_inclusion(&leaves[0], 0, 1, &[leaves[1]], &leaves[0]),
            Err(ProofError::WrongProofLength {
                got: 1,
                expected: 0
            })
        );
        let proof = inclusion_proof(&leaves, 2).unwrap();
        assert_eq!(verify_inclusion(&leaves[2], 2, 5, &proof, &root_5), Ok(()));
        assert_eq!(
            verify_inclusion(&leaves[2], 5, 5, &proof, &root_5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
    }

    #[test]
    fn extreme_sizes_do_not_panic() {
        let some = leaf_hash(b"x");
        let long = vec![some; 200];
        for size in [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) + 1] {
            for index in [0, 1, size / 2, size - 1] {
                assert!(is_wrong_length(&verify_inclusion(
                    &some,
                    index,
                    size,
                    &[],
                    &some
                )));
                assert!(is_wrong_length(&verify_inclusion(
                    &some, index, size, &long, &some
                )));
                let right_length = vec![some; us(inclusion_proof_len(index, size))];
                assert_eq!(
                    verify_inclusion(&some, index, size, &right_length, &some),
                    Err(ProofError::RootMismatch)
                );
            }
            for old_size in [1, 2, 3, size / 2, size - 1] {
                let v = |p: &[Hash]| verify_consistency(old_size, size, &some, &some, p);
                assert!(is_wrong_length(&v(&[])));
                assert!(is_wrong_length(&v(&long)));
                let right_length = vec![some; us(consistency_proof_len(old_size, size))];
                assert!(is_mismatch(&v(&right_length)));
            }
        }
    }

    #[test]
    fn frontier_matches_root_after_every_push() {
        let leaves = test_leaves(300);
        let mut frontier = Frontier::new();
        for n in 1..=leaves.len() {
            frontier.push(leaves[n - 1]);
            assert_eq!(frontier.size(), u(n));
            assert_eq!(frontier.root(), root(&leaves[..n]), "size {n}");
            // At most one stored hash per bit of the size.
            assert_eq!(u(frontier.peaks.len()), u64::from(u(n).count_ones()));
        }
        let copy = frontier.clone();
        assert_eq!(copy, Frontier::from_leaves(leaves.iter().copied()));
        assert_eq!(copy.root(), root(&leaves));
        assert!(format!("{copy:?}").contains(&to_hex(&copy.peaks[0])));
        // Negative next to it: one more leaf changes the root.
        frontier.push(leaf_hash(b"one more"));
        assert_ne!(frontier.root(), copy.root());
    }

    #[test]
    fn hex_round_trip_and_strictness() {
        let hash = leaf_hash(b"hex");
        let text = to_hex(&hash);
        assert_eq!(text.len(), 64);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(from_hex(&text), Ok(hash));
        assert_eq!(from_hex(&text.to_uppercase()), Ok(hash));
        assert_eq!(from_hex(EMPTY_ROOT_HEX), Ok(empty_root()));

        assert_eq!(from_hex(""), Err(ProofError::HexLength { got: 0 }));
        assert_eq!(
            from_hex(&text[..63]),
            Err(ProofError::HexLength { got: 63 })
        );
        assert_eq!(
            from_hex(&format!("{text}0")),
            Err(ProofError::HexLength { got: 65 })
        );
        assert_eq!(
            from_hex(&format!("{text}\n")),
            Err(ProofError::HexLength { got: 65 })
        );
        assert_eq!(
            from_hex(&format!("0x{}", &text[2..])),
            Err(ProofError::HexDigit { position: 1 })
        );
        assert_eq!(
            from_hex(&format!(" {}", &text[1..])),
            Err(ProofError::HexDigit { position: 0 })
        );
        assert_eq!(
            from_hex(&format!("{}g", &text[..63])),
            Err(ProofError::HexDigit { position: 63 })
        );
        assert_eq!(
            from_hex(&format!("{}+1", &text[..62])),
            Err(ProofError::HexDigit { position: 62 })
        );
        // 62 ASCII digits and one two-byte character: 64 bytes, not 64 digits.
        assert_eq!(
            from_hex(&format!("{}é", &text[..62])),
            Err(ProofError::HexDigit { position: 62 })
        );
    }

    #[test]
    fn error_messages_are_plain_english() {
        let cases = [
            (
                ProofError::IndexOutOfRange { index: 7, size: 3 },
                "leaf index 7 is out of range for a tree of 3 leaves",
            ),
            (
                ProofError::BadSizes {
                    old_size: 4,
                    new_size: 3,
                },
                "old tree size 4 is larger than new tree size 3",
            ),
            (
                ProofError::WrongProofLength {
                    got: 2,
                    expected: 3,
                },
                "the proof has 2 hashes but these tree sizes need exactly 3",
            ),
            (
                ProofError::RootMismatch,
                "the proof does not lead to the given root",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }

    /// An implementation of MTH, PATH and PROOF written separately in Python from the RFC
    /// text, using only hashlib. It hashes the raw leaf data itself.
    const PYTHON_REFERENCE: &str = r#"
import hashlib

def sha(data):
    return hashlib.sha256(data).digest()

def split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k

def mth(data):
    if len(data) == 0:
        return sha(b"")
    if len(data) == 1:
        return sha(b"\x00" + data[0])
    k = split(len(data))
    return sha(b"\x01" + mth(data[:k]) + mth(data[k:]))

def path(m, data):
    if len(data) <= 1:
        return []
    k = split(len(data))
    if m < k:
        return path(m, data[:k]) + [mth(data[k:])]
    return path(m - k, data[k:]) + [mth(data[:k])]

def subproof(m, data, b):
    if m == len(data):
        return [] if b else [mth(data)]
    k = split(len(data))
    if m <= k:
        return subproof(m, data[:k], b) + [mth(data[k:])]
    return subproof(m - k, data[k:], False) + [mth(data[:k])]

records = [b"record-%d" % i for i in range(300)]
for n in range(301):
    print("root", n, mth(records[:n]).hex())
for n in range(1, 41):
    for m in range(n):
        print("path", n, m, ",".join(h.hex() for h in path(m, records[:n])))
    for m in range(1, n):
        print("proof", n, m, ",".join(h.hex() for h in subproof(m, records[:n], True)))
"#;

    #[test]
    fn python_reference_agrees() {
        let output = std::process::Command::new("python3")
            .arg("-c")
            .arg(PYTHON_REFERENCE)
            .output()
            .expect("python3 must be installed to run this test");
        assert!(
            output.status.success(),
            "python3 failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        let leaves = test_leaves(300);
        let mut frontier = Frontier::new();
        let (mut roots, mut paths, mut proofs) = (0, 0, 0);
        for line in stdout.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                ["root", n, expected] => {
                    let n: usize = n.parse().unwrap();
                    while frontier.size() < u(n) {
                        frontier.push(leaves[us(frontier.size())]);
                    }
                    assert_eq!(to_hex(&root(&leaves[..n])), *expected, "root {n}");
                    assert_eq!(to_hex(&frontier.root()), *expected, "frontier {n}");
                    roots += 1;
                }
                ["path", n, m, expected] => {
                    let (n, m): (usize, u64) = (n.parse().unwrap(), m.parse().unwrap());
                    let proof = inclusion_proof(&leaves[..n], m).unwrap();
                    let got: Vec<String> = proof.iter().map(to_hex).collect();
                    assert_eq!(got.join(","), *expected, "path {n} {m}");
                    paths += 1;
                }
                ["proof", n, m, expected] => {
                    let (n, m): (usize, u64) = (n.parse().unwrap(), m.parse().unwrap());
                    let proof = consistency_proof(&leaves[..n], m).unwrap();
                    let got: Vec<String> = proof.iter().map(to_hex).collect();
                    assert_eq!(got.join(","), *expected, "proof {n} {m}");
                    proofs += 1;
                }
                _ => panic!("unexpected line from python3: {line}"),
            }
        }
        // 301 roots; 40 * 41 / 2 paths; 39 * 40 / 2 consistency proofs.
        assert_eq!((roots, paths, proofs), (301, 820, 780));
    }
}
