//! Segments: the log rotated into files of bounded size or age, the chain running on across
//! them, each old segment sealed so that it verifies on its own; and retention, which
//! removes the oldest segments and says so in the log.
//!
//! # Files
//! `audit.log` is the live segment. When it reaches `[audit] segment_max_size` or its first
//! record is `[audit] segment_max_age` old, the writer (between batches):
//! 1. renames it to `segments/audit-<first seq, 20 digits>.log` (one rename: the records
//!    never exist twice or nowhere), and starts a new `audit.log` whose first record links
//!    to the last one of the segment, as if nothing had happened;
//! 2. writes the segment's seal, `segments/audit-<first>.seal.json` ([`SegmentSeal`]): where
//!    the segment starts in the chain (the hash before it, and the Merkle frontier of the
//!    records before it), a checkpoint of its last record signed by the audit key, and the
//!    key hand-overs from the root key to that key. With `audit-root.pub`, that is all
//!    [`verify_segment`](super::verify_segment) needs: the records' own hashes, their chain from the seal's `prev`,
//!    and the Merkle root recomputed from the seal's frontier plus the records, which the
//!    signed checkpoint must name. An edited, removed or added record, or another frontier,
//!    gives another root.
//!
//! A crash between the two steps leaves a segment without a seal; the next open seals it.
//!
//! # Retention
//! With `[audit] retention`, sealed segments whose last record is older than that are
//! removed, oldest first, never the live one, in three durable steps: an
//! `audit.retention.removed` record (through which seq, how many segments, why) is
//! appended; `segments/start.json` ([`Start`]) records where the kept log now starts (the
//! hash and the Merkle frontier there); then the files go. A verifier starts from
//! `start.json`; its frontier is checked by every later signed checkpoint (another frontier
//! gives other roots) and the log must hold a retention record reaching that far, so
//! segments removed by hand, without one, are a break ([`BreakKind::Removed`]). Proofs
//! about kept records still work ([`PartialTree`]).
//!
//! [`BreakKind::Removed`]: super::BreakKind::Removed
//! [`PartialTree`]: super::merkle::PartialTree

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::AuditError;
use super::merkle::{self, Frontier};
use super::record::GENESIS_HASH;
use super::seal::{Handover, SignedCheckpoint};

/// File name of the log's live segment inside the audit directory.
pub(super) const LOG_FILE: &str = "audit.log";

/// The directory of sealed segments, inside the audit directory.
pub(super) const SEGMENT_DIR: &str = "segments";

/// Where the kept log starts once retention removed segments, inside [`SEGMENT_DIR`].
pub(super) const START_FILE: &str = "start.json";

/// The `format` of a seal.
const SEAL_FORMAT: &str = "mayfly-audit-segment/1";

/// The most bytes a seal or `start.json` may have: they hold at most 64 frontier hashes and
/// a few hundred key hand-overs.
const MAX_SEAL_LEN: u64 = 1 << 20;

/// A sealed segment's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sealed {
    /// The seq of its first record.
    pub(super) first: u64,
    /// `segments/audit-<first>.log`.
    pub(super) log: PathBuf,
    /// `segments/audit-<first>.seal.json` (may be missing after a crash).
    pub(super) seal: PathBuf,
}

/// What makes a sealed segment verifiable on its own (`audit-<first>.seal.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSeal {
    /// `mayfly-audit-segment/1`.
    pub format: String,
    /// The seq of the segment's first record.
    pub first: u64,
    /// The seq of its last record.
    pub last: u64,
    /// The hash of the record before the first (64 zeros for seq 1).
    pub prev: String,
    /// The Merkle frontier of the `first - 1` records before the segment: the roots of its
    /// perfect subtrees, largest first, hex.
    pub start: Vec<String>,
    /// When the segment's last record was written (what retention goes by).
    pub last_time: String,
    /// A checkpoint of the segment's last record (`seq == last`), signed by the audit key.
    pub checkpoint: SignedCheckpoint,
    /// The key hand-overs from the root key up to the key that signed `checkpoint`.
    pub keys: Vec<Handover>,
}

/// Where the kept log starts (`segments/start.json`, once retention removed something).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StartFile {
    /// Records before the kept log (the last removed seq).
    size: u64,
    /// The hash of the last removed record.
    prev: String,
    /// The Merkle frontier of the removed records, hex.
    start: Vec<String>,
}

/// Where the kept records begin: after `size` records, with hash `prev` and tree `frontier`.
#[derive(Debug, Clone)]
pub(super) struct Start {
    pub(super) size: u64,
    pub(super) prev: String,
    pub(super) frontier: Frontier,
}

impl Start {
    /// The start of a log nothing was removed from.
    pub(super) fn genesis() -> Start {
        Start {
            size: 0,
            prev: GENESIS_HASH.to_owned(),
            frontier: Frontier::new(),
        }
    }

    fn from_parts(
        size: u64,
        prev: String,
        peaks: &[String],
        file: &Path,
    ) -> Result<Start, AuditError> {
        let bad = |reason: String| AuditError::Segment {
            path: file.to_owned(),
            reason,
        };
        let peaks = peaks
            .iter()
            .map(|peak| merkle::from_hex(peak))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("a frontier hash: {e}")))?;
        let frontier = Frontier::from_peaks(size, peaks).map_err(|e| bad(e.to_string()))?;
        if merkle::from_hex(&prev).is_err() {
            return Err(bad("`prev` is not a hex SHA-256 hash".into()));
        }
        Ok(Start {
            size,
            prev,
            frontier,
        })
    }

    fn peaks_hex(&self) -> Vec<String> {
        self.frontier.peaks().iter().map(merkle::to_hex).collect()
    }
}

/// The files of a log, oldest first, and where its kept records start.
#[derive(Debug)]
pub(super) struct Layout {
    pub(super) start: Start,
    /// Sealed segments after the start, oldest first.
    pub(super) sealed: Vec<Sealed>,
    /// Sealed segments retention already accounted for (before the start): a crash
    /// interrupted their removal.
    pub(super) expired: Vec<Sealed>,
    /// The live segment, `audit.log`.
    pub(super) live: PathBuf,
}

impl Layout {
    /// Reads the segment directory of the log in `dir`: which sealed segments there are, and
    /// where the kept records start.
    pub(super) fn read(dir: &Path) -> Result<Layout, AuditError> {
        let segments = dir.join(SEGMENT_DIR);
        let start_path = segments.join(START_FILE);
        let start = match read_small(&start_path)? {
            None => Start::genesis(),
            Some(bytes) => {
                let file: StartFile =
                    serde_json::from_slice(&bytes).map_err(|e| AuditError::Segment {
                        path: start_path.clone(),
                        reason: e.to_string(),
                    })?;
                Start::from_parts(file.size, file.prev, &file.start, &start_path)?
            }
        };
        let (expired, sealed) = list(&segments)?
            .into_iter()
            .partition(|segment| segment.first <= start.size);
        Ok(Layout {
            start,
            sealed,
            expired,
            live: dir.join(LOG_FILE),
        })
    }

    /// Every file of the kept log, in order: the sealed segments, then the live one.
    pub(super) fn files(&self) -> impl Iterator<Item = &Path> {
        self.sealed
            .iter()
            .map(|segment| segment.log.as_path())
            .chain(std::iter::once(self.live.as_path()))
    }

    /// The kept log's records as one stream: the sealed segments, then the live one (a
    /// missing live file reads as empty). Also returns each file's length, in order.
    pub(super) fn reader(&self) -> Result<(Box<dyn BufRead>, Vec<u64>), AuditError> {
        let mut reader: Box<dyn Read> = Box::new(io::empty());
        let mut lens = Vec::with_capacity(self.sealed.len() + 1);
        for path in self.files() {
            let file = match File::open(path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound && path == self.live => {
                    lens.push(0);
                    continue;
                }
                Err(e) => return Err(AuditError::io("open", path, e)),
            };
            let len = file
                .metadata()
                .map_err(|e| AuditError::io("read the size of", path, e))?
                .len();
            lens.push(len);
            // Only what was there when it was measured: a live file still growing ends here.
            reader = Box::new(reader.chain(file.take(len)));
        }
        Ok((Box::new(BufReader::with_capacity(1 << 16, reader)), lens))
    }

    /// The names of [`files`](Self::files), relative to the audit directory.
    pub(super) fn names(&self) -> Vec<String> {
        self.sealed
            .iter()
            .map(|segment| {
                format!(
                    "{SEGMENT_DIR}/{}",
                    segment
                        .log
                        .file_name()
                        .map(|name| name.to_string_lossy().into_owned())
                        .unwrap_or_default()
                )
            })
            .chain(std::iter::once(LOG_FILE.to_owned()))
            .collect()
    }
}

/// The name of the segment starting at `first`.
pub(super) fn log_name(first: u64) -> String {
    format!("audit-{first:020}.log")
}

/// The name of its seal.
pub(super) fn seal_name(first: u64) -> String {
    format!("audit-{first:020}.seal.json")
}

/// The sealed segments in `segments`, oldest first. Other files are left alone; a name
/// that looks like a segment's but is not one exactly is an error (someone put it there).
pub(super) fn list(segments: &Path) -> Result<Vec<Sealed>, AuditError> {
    let entries = match fs::read_dir(segments) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditError::io("list", segments, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io("list", segments, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let Some(digits) = name
            .strip_prefix("audit-")
            .and_then(|rest| rest.strip_suffix(".log"))
        else {
            continue;
        };
        let first = digits
            .parse::<u64>()
            .ok()
            .filter(|first| digits.len() == 20 && *first > 0)
            .ok_or_else(|| AuditError::Segment {
                path: entry.path(),
                reason: "not a segment name (audit-<first seq, 20 digits>.log)".into(),
            })?;
        found.push(Sealed {
            first,
            log: segments.join(log_name(first)),
            seal: segments.join(seal_name(first)),
        });
    }
    found.sort_by_key(|segment| segment.first);
    Ok(found)
}

/// Reads a small JSON file: `None` if it does not exist.
fn read_small(path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::io("open", path, e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_SEAL_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| AuditError::io("read", path, e))?;
    if bytes.len() as u64 > MAX_SEAL_LEN {
        return Err(AuditError::Segment {
            path: path.to_owned(),
            reason: format!("larger than {MAX_SEAL_LEN} bytes"),
        });
    }
    Ok(Some(bytes))
}

/// Reads a seal, strictly.
pub(super) fn read_seal(path: &Path) -> Result<Option<SegmentSeal>, AuditError> {
    let Some(bytes) = read_small(path)? else {
        return Ok(None);
    };
    let seal: SegmentSeal = serde_json::from_slice(&bytes).map_err(|e| AuditError::Segment {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if seal.format != SEAL_FORMAT {
        return Err(AuditError::Segment {
            path: path.to_owned(),
            reason: format!("format {:?}, expected {SEAL_FORMAT:?}", seal.format),
        });
    }
    Ok(Some(seal))
}

/// What a seal is made of, before it is written.
pub(super) struct SealParts<'a> {
    pub(super) first: u64,
    pub(super) start: &'a Start,
    pub(super) last_time: String,
    pub(super) checkpoint: SignedCheckpoint,
    pub(super) keys: Vec<Handover>,
}

/// Writes the seal of the segment starting at `parts.first` atomically and durably.
pub(super) fn write_seal(segments: &Path, parts: SealParts<'_>) -> Result<(), AuditError> {
    let seal = SegmentSeal {
        format: SEAL_FORMAT.to_owned(),
        first: parts.first,
        last: parts.checkpoint.seq,
        prev: parts.start.prev.clone(),
        start: parts.start.peaks_hex(),
        last_time: parts.last_time,
        checkpoint: parts.checkpoint,
        keys: parts.keys,
    };
    let path = segments.join(seal_name(parts.first));
    write_json(&path, &seal)
}

/// Writes `start.json`: the kept log starts after `start.size` records.
pub(super) fn write_start(segments: &Path, start: &Start) -> Result<(), AuditError> {
    let file = StartFile {
        size: start.size,
        prev: start.prev.clone(),
        start: start.peaks_hex(),
    };
    write_json(&segments.join(START_FILE), &file)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), AuditError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| AuditError::Encode {
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    mayfly_sdk::files::write_secret_atomic(path, &bytes)
        .map_err(|e| AuditError::io("write", path, io::Error::other(e)))
}

/// The start of the segment a seal describes.
pub(super) fn seal_start(seal: &SegmentSeal, path: &Path) -> Result<Start, AuditError> {
    let size = seal
        .first
        .checked_sub(1)
        .ok_or_else(|| AuditError::Segment {
            path: path.to_owned(),
            reason: "a segment's first seq is at least 1".into(),
        })?;
    Start::from_parts(size, seal.prev.clone(), &seal.start, path)
}

#[cfg(test)]
mod tests;
