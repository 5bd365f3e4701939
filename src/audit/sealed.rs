//! Checking one sealed segment on its own, with nothing but its seal and the pinned root
//! audit key (`mayfly audit verify-segment`); the files are described in the `segment`
//! module.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::AuditError;
use super::merkle;
use super::record::{LineFault, parse_line};
use super::seal::AuditPublicKey;
use super::segment::{read_seal, seal_name, seal_start};

/// What [`verify_segment`] proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    /// The seq of the segment's first record.
    pub first: u64,
    /// The seq of its last.
    pub last: u64,
    /// When its last record was written.
    pub last_time: String,
    /// The Merkle root over records 1 to `last`, which the seal's checkpoint signed.
    pub root: String,
    /// The epoch of the audit key that signed the seal.
    pub epoch: u64,
    /// The id of the root key the chain was followed from (the pinned one).
    pub root_key: String,
    /// Things to know that do not make the segment fail (a key chain restarted by an
    /// operator).
    pub warnings: Vec<String>,
}

/// Verifies one sealed segment on its own, from `audit-<first>.log` and the seal next to
/// it, against the pinned root audit key: every record's hash, the seqs and the chain from
/// the seal's `prev`, the Merkle root the seal's frontier and the records make, and the
/// signature on the seal's checkpoint through its key chain.
///
/// # Errors
/// [`AuditError::Segment`] naming the file, the seq and what does not hold;
/// [`AuditError::Io`] when the files cannot be read.
pub fn verify_segment(log: &Path, pinned: &AuditPublicKey) -> Result<SegmentReport, AuditError> {
    let fail = |reason: String| AuditError::Segment {
        path: log.to_owned(),
        reason,
    };
    let name = log
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| fail("not a segment file name".into()))?;
    let first: u64 = name
        .strip_prefix("audit-")
        .and_then(|rest| rest.strip_suffix(".log"))
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| fail("not a segment name (audit-<first seq, 20 digits>.log)".into()))?;
    let seal_path = log.with_file_name(seal_name(first));
    let seal = read_seal(&seal_path)?.ok_or_else(|| {
        fail(format!(
            "its seal {} is missing: the segment cannot be checked alone",
            seal_path.display()
        ))
    })?;
    if seal.first != first || seal.checkpoint.seq != seal.last || seal.last < seal.first {
        return Err(AuditError::Segment {
            path: seal_path,
            reason: format!(
                "the seal is for records {} to {} (checkpoint of {}), not for the segment \
                 starting at {first}",
                seal.first, seal.last, seal.checkpoint.seq
            ),
        });
    }
    let start = seal_start(&seal, &seal_path)?;
    let file = File::open(log).map_err(|e| AuditError::io("open", log, e))?;
    let mut reader = BufReader::new(file);
    let mut frontier = start.frontier.clone();
    let mut prev = start.prev.clone();
    let mut seq = first - 1;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| AuditError::io("read", log, e))?;
        if n == 0 {
            break;
        }
        let place = seq + 1;
        let line = buf
            .strip_suffix(b"\n")
            .ok_or_else(|| fail(format!("seq {place}: the last line has no newline")))?;
        let record = parse_line(line).map_err(|fault| {
            fail(match fault {
                LineFault::Unparseable(reason) => format!("seq {place}: not a record ({reason})"),
                LineFault::HashMismatch => {
                    format!("seq {place}: the record was edited (its hash does not match)")
                }
                LineFault::NotCanonical => {
                    format!("seq {place}: the record's bytes are not the ones written")
                }
            })
        })?;
        if record.seq != place {
            return Err(fail(format!(
                "expected seq {place}, found seq {}: records were removed, added or reordered",
                record.seq
            )));
        }
        if record.prev != prev {
            return Err(fail(format!(
                "seq {place}: `prev` is not the hash of the record before it"
            )));
        }
        frontier.push(merkle::leaf_hash(line));
        prev = record.hash;
        seq = place;
    }
    if seq != seal.last {
        return Err(fail(format!(
            "the segment ends at seq {seq}, the seal at seq {}: records were cut off or added",
            seal.last
        )));
    }
    if prev != seal.checkpoint.hash || merkle::to_hex(&frontier.root()) != seal.checkpoint.root {
        return Err(AuditError::Segment {
            path: seal_path,
            reason: format!(
                "records {first} to {} with the seal's frontier do not make the tree its \
                 checkpoint signed: the records or the frontier were rewritten",
                seal.last
            ),
        });
    }
    let signed = super::proof::check_signed(&seal.keys, &seal.checkpoint, pinned).map_err(|e| {
        AuditError::Segment {
            path: seal_path.clone(),
            reason: e.to_string(),
        }
    })?;
    Ok(SegmentReport {
        first,
        last: seal.last,
        last_time: seal.last_time,
        root: seal.checkpoint.root,
        epoch: seal.checkpoint.epoch,
        root_key: pinned.id(),
        warnings: signed,
    })
}
