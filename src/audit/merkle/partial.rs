//! Proofs over a tree whose oldest leaves are gone: what a log keeps after retention removed
//! its oldest segments.
//!
//! Of the removed leaves only the [`Frontier`] they left is kept (the roots of their perfect
//! subtrees, at most 64 hashes, signed into the next segment's seal). That is enough for
//! every proof about a later leaf: each sibling on a later leaf's path is either made of
//! later leaves or is a whole subtree of the removed part whose parent reaches past it, that
//! is, one of the frontier's roots. The same holds for a consistency proof from a size at or
//! after the cut. A proof that needs anything finer than the frontier fails with
//! [`ProofError::Pruned`] instead of a wrong answer.
//!
//! The proofs are RFC 9162's PATH and SUBPROOF, written over leaf positions instead of
//! slices so that a subtree can come from either side of the cut; over a tree with nothing
//! removed they give exactly what [`inclusion_proof`](super::inclusion_proof) and
//! [`consistency_proof`](super::consistency_proof) give (tested below, exhaustively for small
//! trees).

use super::{Frontier, Hash, ProofError, node_hash, root};

/// A tree of `start.size() + leaves.len()` leaves: the first known by their frontier only,
/// the rest one by one.
#[derive(Debug, Clone, Copy)]
pub struct PartialTree<'a> {
    start: &'a Frontier,
    leaves: &'a [Hash],
}

impl<'a> PartialTree<'a> {
    /// The tree of the leaves summed up by `start`, followed by `leaves` (leaf hashes).
    #[must_use]
    pub fn new(start: &'a Frontier, leaves: &'a [Hash]) -> Self {
        PartialTree { start, leaves }
    }

    /// How many leaves the tree has, removed ones included.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.start.size().saturating_add(len_u64(self.leaves.len()))
    }

    /// The first leaf held one by one (the number of removed leaves).
    #[must_use]
    pub fn cut(&self) -> u64 {
        self.start.size()
    }

    /// The tree's root.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut frontier = self.start.clone();
        for leaf in self.leaves {
            frontier.push(*leaf);
        }
        frontier.root()
    }

    /// The inclusion proof (RFC 9162 PATH) for the leaf at `index`, as
    /// [`inclusion_proof`](super::inclusion_proof) gives it for the whole tree.
    ///
    /// # Errors
    /// [`ProofError::IndexOutOfRange`] when `index` is not below [`size`](Self::size);
    /// [`ProofError::Pruned`] when the proof needs a removed subtree the frontier does not
    /// hold (only for a removed leaf).
    pub fn inclusion_proof(&self, index: u64) -> Result<Vec<Hash>, ProofError> {
        let size = self.size();
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof)?;
        Ok(proof)
    }

    /// The consistency proof (RFC 9162 PROOF) that the tree of the first `old_size` leaves
    /// is a prefix of this one, as [`consistency_proof`](super::consistency_proof) gives it.
    ///
    /// # Errors
    /// [`ProofError::BadSizes`] when `old_size` is larger than the tree;
    /// [`ProofError::Pruned`] when the proof needs a removed subtree the frontier does not
    /// hold (only for an `old_size` before the cut).
    pub fn consistency_proof(&self, old_size: u64) -> Result<Vec<Hash>, ProofError> {
        let new_size = self.size();
        if old_size > new_size {
            return Err(ProofError::BadSizes { old_size, new_size });
        }
        let mut proof = Vec::new();
        if old_size != 0 && old_size != new_size {
            self.subproof(old_size, 0, new_size, true, &mut proof)?;
        }
        Ok(proof)
    }

    /// RFC 9162 `PATH(m, D[from:to])`.
    fn path(&self, m: u64, from: u64, to: u64, proof: &mut Vec<Hash>) -> Result<(), ProofError> {
        let Some(k) = split(to - from) else {
            return Ok(());
        };
        if m < from + k {
            self.path(m, from, from + k, proof)?;
            proof.push(self.subtree(from + k, to)?);
        } else {
            self.path(m, from + k, to, proof)?;
            proof.push(self.subtree(from, from + k)?);
        }
        Ok(())
    }

    /// RFC 9162 `SUBPROOF(m, D[from:to], b)`, with `m` the absolute old size.
    fn subproof(
        &self,
        old: u64,
        from: u64,
        to: u64,
        old_root_known: bool,
        proof: &mut Vec<Hash>,
    ) -> Result<(), ProofError> {
        if old == to {
            if !old_root_known {
                proof.push(self.subtree(from, to)?);
            }
            return Ok(());
        }
        let Some(k) = split(to - from) else {
            return Ok(());
        };
        if old <= from + k {
            self.subproof(old, from, from + k, old_root_known, proof)?;
            proof.push(self.subtree(from + k, to)?);
        } else {
            self.subproof(old, from + k, to, false, proof)?;
            proof.push(self.subtree(from, from + k)?);
        }
        Ok(())
    }

    /// The root of the subtree over leaves `from..to` (RFC 9162 `MTH(D[from:to])`).
    fn subtree(&self, from: u64, to: u64) -> Result<Hash, ProofError> {
        let cut = self.cut();
        if from >= cut {
            let start = usize::try_from(from - cut).unwrap_or(usize::MAX);
            let end = usize::try_from(to - cut).unwrap_or(usize::MAX);
            return self
                .leaves
                .get(start..end)
                .map(root)
                .ok_or(ProofError::Pruned { from, to });
        }
        if let Some(peak) = self.peak(from, to) {
            return Ok(peak);
        }
        // A subtree reaching past the cut is made of frontier roots and later leaves, and
        // one inside the removed part can still be a row of frontier roots: split either
        // where the RFC does. Anything else inside the removed part needs a removed leaf;
        // refusing it at once keeps the recursion to one path down the tree.
        let Some(k) = split(to - from) else {
            return Err(ProofError::Pruned { from, to });
        };
        if to <= cut && !self.peak_starts_at(from) {
            return Err(ProofError::Pruned { from, to });
        }
        Ok(node_hash(
            &self.subtree(from, from + k)?,
            &self.subtree(from + k, to)?,
        ))
    }

    /// Whether one of the frontier's roots starts at leaf `from`.
    fn peak_starts_at(&self, from: u64) -> bool {
        self.peak_ranges().any(|(start, _)| start == from)
    }

    /// The leaves each frontier root covers, in order.
    fn peak_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let size = self.cut();
        let mut start = 0_u64;
        (0..u64::BITS)
            .rev()
            .filter(move |bit| size >> bit & 1 == 1)
            .map(move |bit| {
                let range = (start, start + (1 << bit));
                start = range.1;
                range
            })
    }

    /// The frontier root that covers exactly leaves `from..to`, if there is one.
    fn peak(&self, from: u64, to: u64) -> Option<Hash> {
        self.peak_ranges()
            .zip(self.start.peaks())
            .find(|(range, _)| *range == (from, to))
            .map(|(_, peak)| *peak)
    }
}

/// Where RFC 9162 splits `n >= 2` leaves: the largest power of two below `n`.
fn split(n: u64) -> Option<u64> {
    (n >= 2).then(|| 1 << (u64::BITS - 1 - (n - 1).leading_zeros()))
}

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::{consistency_proof, inclusion_proof, leaf_hash, verify_inclusion};
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn cut_at(all: &[Hash], cut: usize) -> Frontier {
        Frontier::from_leaves(all[..cut].iter().copied())
    }

    /// For every tree up to 40 leaves and every cut: every proof about a leaf at or after
    /// the cut exists and equals the whole tree's; one about a removed leaf either equals it
    /// or is refused as pruned, never different.
    #[test]
    fn inclusion_proofs_match_the_whole_tree_at_every_cut() {
        let mut refused = 0;
        for n in 1..=40_u64 {
            let all = leaves(n);
            for cut in 0..=all.len() {
                let start = cut_at(&all, cut);
                let tree = PartialTree::new(&start, &all[cut..]);
                assert_eq!(tree.size(), n);
                assert_eq!(tree.root(), root(&all));
                for index in 0..n {
                    let whole = inclusion_proof(&all, index).unwrap();
                    match tree.inclusion_proof(index) {
                        Ok(proof) => assert_eq!(proof, whole, "n {n} cut {cut} index {index}"),
                        Err(ProofError::Pruned { .. }) if index < cut as u64 => refused += 1,
                        Err(e) => panic!("n {n} cut {cut} index {index}: {e}"),
                    }
                }
            }
        }
        assert!(
            refused > 0,
            "some removed leaves cannot be proved: the negative case ran"
        );
    }

    #[test]
    fn consistency_proofs_match_the_whole_tree_at_every_cut() {
        let mut refused = 0;
        for n in 1..=40_u64 {
            let all = leaves(n);
            for cut in 0..=all.len() {
                let start = cut_at(&all, cut);
                let tree = PartialTree::new(&start, &all[cut..]);
                for old in 0..=n {
                    let whole = consistency_proof(&all, old).unwrap();
                    match tree.consistency_proof(old) {
                        Ok(proof) => assert_eq!(proof, whole, "n {n} cut {cut} old {old}"),
                        Err(ProofError::Pruned { .. }) if old < cut as u64 => refused += 1,
                        Err(e) => panic!("n {n} cut {cut} old {old}: {e}"),
                    }
                }
            }
        }
        assert!(
            refused > 0,
            "some old sizes before the cut cannot be proved"
        );
    }

    #[test]
    fn a_proof_from_a_partial_tree_verifies_and_a_wrong_frontier_does_not() {
        let all = leaves(37);
        let start = cut_at(&all, 21);
        let tree = PartialTree::new(&start, &all[21..]);
        let proof = tree.inclusion_proof(30).unwrap();
        verify_inclusion(&all[30], 30, 37, &proof, &root(&all)).unwrap();
        // Control: a frontier of other leaves gives another root, and its proofs do not
        // lead to the real one.
        let mut other = all.clone();
        other[3] = leaf_hash(b"rewritten");
        let forged = cut_at(&other, 21);
        let tree = PartialTree::new(&forged, &all[21..]);
        assert_ne!(tree.root(), root(&all));
        let proof = tree.inclusion_proof(30).unwrap();
        assert!(verify_inclusion(&all[30], 30, 37, &proof, &root(&all)).is_err());
    }

    #[test]
    fn out_of_range_is_refused() {
        let all = leaves(5);
        let start = cut_at(&all, 2);
        let tree = PartialTree::new(&start, &all[2..]);
        assert_eq!(
            tree.inclusion_proof(5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            tree.consistency_proof(6),
            Err(ProofError::BadSizes {
                old_size: 6,
                new_size: 5
            })
        );
    }

    #[test]
    fn frontier_round_trips_through_its_peaks_and_checks_their_count() {
        let all = leaves(13);
        let frontier = Frontier::from_leaves(all.iter().copied());
        let again = Frontier::from_peaks(13, frontier.peaks().to_vec()).unwrap();
        assert_eq!(again.root(), frontier.root());
        assert_eq!(
            Frontier::from_peaks(13, frontier.peaks()[1..].to_vec()),
            Err(ProofError::FrontierShape {
                size: 13,
                expected: 3,
                got: 2
            })
        );
    }
}
