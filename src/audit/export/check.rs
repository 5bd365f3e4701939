//! Checking an export: the records file read line by line (or row by row), the chain from
//! `before` through the slice to `after`, the range's edges, and what the proof states.

use std::fmt;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;

use super::super::AuditError;
use super::super::proof::ProofSummary;
use super::super::record::{AuditRecord, GENESIS_HASH, LineFault, parse_line};
use super::ExportProof;
use super::csv::{self, COLUMNS, RECORD};
use super::range::{ExportRange, record_time};

/// The longest line (or CSV row) of a records file the verifier reads: far longer than any
/// record the broker writes.
pub(super) const MAX_LINE_LEN: u64 = 16 << 20;

/// Where an export fails a check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportPlace {
    /// A line of a JSON lines export, from 1.
    Line {
        /// The line number.
        line: u64,
        /// The seq the line holds, if it could be read.
        seq: Option<u64>,
    },
    /// A row of a CSV export; the header is row 1, as a spreadsheet numbers them.
    Row {
        /// The row number.
        row: u64,
        /// The seq the row's record holds, if it could be read.
        seq: Option<u64>,
    },
    /// The proof's `before`: the record just before the slice.
    Before {
        /// Its seq, if it could be read.
        seq: Option<u64>,
    },
    /// The proof's `after`: the record just after the slice.
    After {
        /// Its seq, if it could be read.
        seq: Option<u64>,
    },
    /// The records file as a whole.
    Records,
    /// The proof file: what it states, and its inclusion proof.
    Proof,
}

impl ExportPlace {
    fn with_seq(self, found: Option<u64>) -> ExportPlace {
        match self {
            ExportPlace::Line { line, .. } => ExportPlace::Line { line, seq: found },
            ExportPlace::Row { row, .. } => ExportPlace::Row { row, seq: found },
            ExportPlace::Before { .. } => ExportPlace::Before { seq: found },
            ExportPlace::After { .. } => ExportPlace::After { seq: found },
            other => other,
        }
    }
}

impl fmt::Display for ExportPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = |seq: &Option<u64>| seq.map(|seq| format!(" (seq {seq})")).unwrap_or_default();
        match self {
            ExportPlace::Line { line, seq: s } => write!(f, "line {line}{}", seq(s)),
            ExportPlace::Row { row, seq: s } => write!(f, "row {row}{}", seq(s)),
            ExportPlace::Before { seq: s } => match s {
                Some(s) => write!(f, "the record before the slice (`before`, seq {s})"),
                None => f.write_str("the record before the slice (`before`)"),
            },
            ExportPlace::After { seq: s } => match s {
                Some(s) => write!(f, "the record after the slice (`after`, seq {s})"),
                None => f.write_str("the record after the slice (`after`)"),
            },
            ExportPlace::Records => f.write_str("the records file"),
            ExportPlace::Proof => f.write_str("the proof file"),
        }
    }
}

/// Which check an export fails.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportCheck {
    /// The file is neither JSON lines nor an export's CSV, or a CSV row is malformed.
    Format {
        /// What is wrong.
        problem: String,
    },
    /// The line is not an audit record.
    NotARecord {
        /// What the parser said.
        reason: String,
    },
    /// The record's hash does not match its contents: it was edited.
    Edited,
    /// The record's hash matches its fields, but its bytes are not the ones the writer
    /// wrote (a field added, keys reordered, whitespace): edited by someone who knew the
    /// format.
    NotCanonical,
    /// A CSV cell is not what the row's record says.
    Cell {
        /// The column.
        column: &'static str,
    },
    /// The seq is not the one after the record before it.
    Seq {
        /// The seq that should be here.
        expected: u64,
        /// The seq that is.
        found: u64,
    },
    /// The record's `prev` is not the hash of the record before it (seq `previous`; 0:
    /// the first record's `prev` is not 64 zeros).
    Prev {
        /// The seq of the record before it.
        previous: u64,
    },
    /// The chain starts after seq 1 without a record before it in the proof.
    NothingBefore,
    /// `before` is in the range: records at the range's start were left out.
    BeforeInRange {
        /// The range's start.
        since: String,
        /// The record's time.
        time: String,
    },
    /// The proof names a record before the slice, although the range starts at the log's
    /// first record.
    BeforeWithoutSince,
    /// The slice's first record is before the range's start.
    BeforeSince {
        /// The range's start.
        since: String,
        /// The record's time.
        time: String,
    },
    /// A record of the slice is at or past the range's end.
    PastUntil {
        /// The range's end.
        until: String,
        /// The record's time.
        time: String,
    },
    /// `after` is before the range's end: records at the range's end were left out.
    AfterInRange {
        /// The range's end.
        until: String,
        /// The record's time.
        time: String,
    },
    /// The proof names a record after the slice, although the range runs to the signed
    /// checkpoint.
    AfterWithoutUntil,
    /// A record's time is not RFC 3339, so it cannot be placed in a time range.
    BadTime {
        /// The record's time.
        time: String,
    },
    /// Nothing follows the chain's last record in the proof, yet the signed checkpoint
    /// covers later records: records at the slice's end were left out.
    NotAtSignedHead {
        /// The checkpoint's last seq.
        head: u64,
    },
    /// The inclusion proof is not of the chain's last line.
    ProvenNotLast {
        /// The seq the proof is of.
        proven: u64,
        /// The seq of the chain's last record.
        last: u64,
    },
    /// The proof states something else about the slice than the records show.
    Stated {
        /// Which field: `count`, `first_seq`, `last_seq`.
        field: &'static str,
        /// What it states.
        stated: String,
        /// What the records show.
        found: String,
    },
    /// Neither the records nor the proof hold a record: nothing ties them to the log.
    Empty,
    /// The inclusion proof does not hold (the key chain, the checkpoint's signature, or
    /// the Merkle proof).
    Inclusion {
        /// What does not hold.
        reason: String,
    },
}

impl fmt::Display for ExportCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportCheck::Format { problem } => write!(f, "not an export: {problem}"),
            ExportCheck::NotARecord { reason } => {
                write!(f, "not a valid audit record ({reason}): damaged, or edited")
            }
            ExportCheck::Edited => {
                f.write_str("the record was edited: its hash does not match its contents")
            }
            ExportCheck::NotCanonical => f.write_str(
                "the record was edited: its bytes differ from what the writer wrote (a field \
                 added, keys reordered or whitespace changed)",
            ),
            ExportCheck::Cell { column } => write!(
                f,
                "the `{column}` cell is not what the row's record says: the cell was edited"
            ),
            ExportCheck::Seq { expected, found } if found > expected => {
                let missing = found - expected;
                let records = if missing == 1 { "record" } else { "records" };
                write!(
                    f,
                    "expected seq {expected}, found seq {found}: {missing} {records} left out \
                     before it"
                )
            }
            ExportCheck::Seq { expected, found } => write!(
                f,
                "expected seq {expected}, found seq {found}, which belongs earlier: a record \
                 was added, repeated or moved"
            ),
            ExportCheck::Prev { previous: 0 } => f.write_str(
                "its prev is not 64 zeros, as the log's first record's is: it is not the \
                 log's first record",
            ),
            ExportCheck::Prev { previous } => write!(
                f,
                "its prev is not the hash of the record before it (seq {previous}): a record \
                 was replaced, or edited and re-hashed"
            ),
            ExportCheck::NothingBefore => f.write_str(
                "the chain starts here, after seq 1, but the proof names no record before \
                 the slice (`before` is null): records at the start were left out",
            ),
            ExportCheck::BeforeInRange { since, time } => write!(
                f,
                "it is at or after the range's start {since} (its time is {time}): records \
                 at the start of the range were left out"
            ),
            ExportCheck::BeforeWithoutSince => f.write_str(
                "the range starts at the log's first record, so nothing may come before the \
                 slice: records at the start were left out",
            ),
            ExportCheck::BeforeSince { since, time } => write!(
                f,
                "it is before the range's start {since} (its time is {time}): the slice is \
                 not the range's"
            ),
            ExportCheck::PastUntil { until, time } => write!(
                f,
                "it is at or after the range's end {until} (its time is {time}): the slice \
                 is not the range's"
            ),
            ExportCheck::AfterInRange { until, time } => write!(
                f,
                "it is before the range's end {until} (its time is {time}): records at the \
                 end of the range were left out"
            ),
            ExportCheck::AfterWithoutUntil => f.write_str(
                "the range runs to the signed checkpoint, so nothing may come after the \
                 slice: records at the end were left out",
            ),
            ExportCheck::BadTime { time } => write!(
                f,
                "its time {time:?} is not RFC 3339: it cannot be placed in a time range"
            ),
            ExportCheck::NotAtSignedHead { head } => write!(
                f,
                "the chain ends here, but the signed checkpoint covers records to seq {head} \
                 and the proof names no record after the slice (`after` is null): records \
                 at the end were left out"
            ),
            ExportCheck::ProvenNotLast { proven, last } => write!(
                f,
                "the inclusion proof is of seq {proven}, not of the chain's last record (seq \
                 {last}): the proof belongs to another export, or records were left out"
            ),
            ExportCheck::Stated {
                field,
                stated,
                found,
            } => write!(
                f,
                "it states {field} {stated}, but the records show {found}: the records file \
                 or the proof was changed"
            ),
            ExportCheck::Empty => f.write_str(
                "neither the records nor the proof hold a record: nothing ties them to the \
                 signed log",
            ),
            ExportCheck::Inclusion { reason } => {
                write!(f, "the inclusion proof does not hold: {reason}")
            }
        }
    }
}

/// Where an export fails which check: `AuditError::ExportRefused` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportBreak {
    /// Where.
    pub place: ExportPlace,
    /// Which check.
    pub check: ExportCheck,
}

impl fmt::Display for ExportBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.check)
    }
}

impl std::error::Error for ExportBreak {}

/// The error for an export that fails `check` at `place`.
pub(super) fn refused(place: ExportPlace, check: ExportCheck) -> AuditError {
    AuditError::ExportRefused {
        problem: Box::new(ExportBreak { place, check }),
    }
}

/// What an export that holds shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportVerified {
    /// The records in the slice.
    pub count: u64,
    /// The seq of the first.
    pub first_seq: Option<u64>,
    /// The seq of the last.
    pub last_seq: Option<u64>,
    /// The range the slice is complete for.
    pub range: ExportRange,
    /// The seq of the record before the slice (`None`: the slice starts at seq 1).
    pub before_seq: Option<u64>,
    /// The seq of the record after the slice (`None`: the slice ends at the checkpoint).
    pub after_seq: Option<u64>,
    /// The signed checkpoint the chain is proved against, and the key chain that signed it.
    pub checkpoint: ProofSummary,
    /// What the auditor must know although the export holds: record times that go back
    /// (the host's clock was set back), a restarted root key.
    pub warnings: Vec<String>,
}

impl fmt::Display for ExportVerified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.first_seq, self.last_seq) {
            (Some(first), Some(last)) => write!(
                f,
                "export OK: {} records, seq {first} to {last}, complete for the range {}",
                self.count, self.range
            )?,
            _ => write!(f, "export OK: no record in the range {}", self.range)?,
        }
        match self.before_seq {
            Some(seq) => write!(f, ": seq {seq} before it is not in the range")?,
            None => f.write_str(": it starts at the log's first record")?,
        }
        let head = self.checkpoint.size;
        match (self.after_seq, self.range.until()) {
            (Some(seq), _) => write!(f, ", seq {seq} after it is at or past the range's end")?,
            (None, None) => write!(f, ", it ends at the signed head (seq {head})")?,
            (None, Some(_)) => write!(
                f,
                ", it ends at the signed head (seq {head}): the range reaches past it, and \
                 later records were not signed for when this was exported"
            )?,
        }
        let c = &self.checkpoint;
        write!(
            f,
            "\nsigned checkpoint: seq {head}, root {}, replica {}, signed {} by key epoch {} \
             {}, reached from pinned root key {}",
            c.root, c.replica, c.time, c.epoch, c.key, c.root_key
        )
    }
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// The seq a line claims, even if it does not verify.
fn seq_of(line: &str) -> Option<u64> {
    serde_json::from_str::<SeqOnly>(line).ok().map(|s| s.seq)
}

/// The chain as followed from `before` through the slice to `after`.
#[derive(Debug)]
pub(super) struct Walk<'a> {
    range: &'a ExportRange,
    /// The seq and hash of the chain's last line so far.
    previous: Option<(u64, String)>,
    /// The latest record time seen, and its seq.
    latest: Option<(u64, OffsetDateTime, String)>,
    before: Option<u64>,
    after: Option<u64>,
    first: Option<u64>,
    last: Option<u64>,
    count: u64,
    /// The chain's last line, its seq, and where it is.
    chain_last: Option<(String, u64, ExportPlace)>,
    warnings: Vec<String>,
}

impl<'a> Walk<'a> {
    pub(super) fn new(range: &'a ExportRange) -> Walk<'a> {
        Walk {
            range,
            previous: None,
            latest: None,
            before: None,
            after: None,
            first: None,
            last: None,
            count: 0,
            chain_last: None,
            warnings: Vec::new(),
        }
    }

    /// Checks `line` on its own and as the next of the chain; returns the record and its
    /// place with its seq.
    fn link(
        &mut self,
        place: ExportPlace,
        line: &str,
    ) -> Result<(AuditRecord, ExportPlace), AuditError> {
        let record = parse_line(line.as_bytes()).map_err(|fault| {
            let check = match fault {
                LineFault::Unparseable(reason) => ExportCheck::NotARecord { reason },
                LineFault::HashMismatch => ExportCheck::Edited,
                LineFault::NotCanonical => ExportCheck::NotCanonical,
            };
            refused(place.clone().with_seq(seq_of(line)), check)
        })?;
        let place = place.with_seq(Some(record.seq));
        let fail = |check| Err(refused(place.clone(), check));
        match &self.previous {
            // `before` may be any record; anything else that starts the chain is record 1.
            None if matches!(place, ExportPlace::Before { .. }) => {}
            None if record.seq != 1 => return fail(ExportCheck::NothingBefore),
            None if record.prev != GENESIS_HASH => {
                return fail(ExportCheck::Prev { previous: 0 });
            }
            None => {}
            Some((seq, _)) if record.seq != seq + 1 => {
                return fail(ExportCheck::Seq {
                    expected: seq + 1,
                    found: record.seq,
                });
            }
            Some((seq, hash)) if record.prev != *hash => {
                return fail(ExportCheck::Prev { previous: *seq });
            }
            Some(_) => {}
        }
        self.note_time(&record);
        self.previous = Some((record.seq, record.hash.clone()));
        self.chain_last = Some((line.to_owned(), record.seq, place.clone()));
        Ok((record, place))
    }

    /// Warns when the record times go back: a time range then does not tell the whole story.
    fn note_time(&mut self, record: &AuditRecord) {
        let Some(time) = record_time(record) else {
            return;
        };
        if let Some((seq, latest, text)) = &self.latest
            && time < *latest
        {
            let timed = [self.range.since(), self.range.until()]
                .into_iter()
                .flatten()
                .any(|bound| bound.is_time());
            let consequence = if timed {
                "; records outside the slice may carry times inside the range"
            } else {
                ""
            };
            self.warnings.push(format!(
                "the record times go back from {text} (seq {seq}) to {} (seq {}): the \
                 host's clock was set back{consequence}",
                record.time, record.seq
            ));
        }
        if self
            .latest
            .as_ref()
            .is_none_or(|(_, latest, _)| time >= *latest)
        {
            self.latest = Some((record.seq, time, record.time.clone()));
        }
    }

    /// The proof's `before`.
    pub(super) fn before(&mut self, line: &str) -> Result<(), AuditError> {
        let (record, place) = self.link(ExportPlace::Before { seq: None }, line)?;
        let Some(since) = self.range.since() else {
            return Err(refused(place, ExportCheck::BeforeWithoutSince));
        };
        match since.admits(&record) {
            Some(false) => {}
            Some(true) => {
                return Err(refused(
                    place,
                    ExportCheck::BeforeInRange {
                        since: since.to_string(),
                        time: record.time,
                    },
                ));
            }
            None => return Err(refused(place, ExportCheck::BadTime { time: record.time })),
        }
        self.before = Some(record.seq);
        Ok(())
    }

    /// A record of the slice, at `place`, with its CSV cells if it came from a CSV file.
    pub(super) fn record(
        &mut self,
        place: ExportPlace,
        line: &str,
        cells: Option<&[String]>,
    ) -> Result<(), AuditError> {
        let (record, place) = self.link(place, line)?;
        if let Some(cells) = cells {
            let expected = csv::human_cells(&record);
            if let Some(column) = (0..RECORD).find(|&i| cells.get(i) != expected.get(i)) {
                return Err(refused(
                    place,
                    ExportCheck::Cell {
                        column: COLUMNS[column],
                    },
                ));
            }
        }
        let bad_time = || ExportCheck::BadTime {
            time: record.time.clone(),
        };
        if self.count == 0
            && let Some(since) = self.range.since()
        {
            match since.admits(&record) {
                Some(true) => {}
                Some(false) => {
                    return Err(refused(
                        place,
                        ExportCheck::BeforeSince {
                            since: since.to_string(),
                            time: record.time,
                        },
                    ));
                }
                None => return Err(refused(place, bad_time())),
            }
        }
        if let Some(until) = self.range.until() {
            match until.admits(&record) {
                Some(false) => {}
                Some(true) => {
                    return Err(refused(
                        place,
                        ExportCheck::PastUntil {
                            until: until.to_string(),
                            time: record.time,
                        },
                    ));
                }
                None => return Err(refused(place, bad_time())),
            }
        }
        self.count += 1;
        self.first.get_or_insert(record.seq);
        self.last = Some(record.seq);
        Ok(())
    }

    /// The proof's `after`.
    pub(super) fn after(&mut self, line: &str) -> Result<(), AuditError> {
        let (record, place) = self.link(ExportPlace::After { seq: None }, line)?;
        let Some(until) = self.range.until() else {
            return Err(refused(place, ExportCheck::AfterWithoutUntil));
        };
        match until.admits(&record) {
            Some(true) => {}
            Some(false) => {
                return Err(refused(
                    place,
                    ExportCheck::AfterInRange {
                        until: until.to_string(),
                        time: record.time,
                    },
                ));
            }
            None => return Err(refused(place, ExportCheck::BadTime { time: record.time })),
        }
        self.after = Some(record.seq);
        Ok(())
    }

    /// What the proof states against what the records showed, and the inclusion proof's
    /// record against the chain's last; `signed` is what the inclusion proof showed.
    pub(super) fn finish(
        self,
        proof: &ExportProof,
        signed: ProofSummary,
    ) -> Result<ExportVerified, AuditError> {
        let show = |seq: Option<u64>| seq.map_or_else(|| "none".to_owned(), |s| s.to_string());
        let stated = [
            ("count", Some(proof.count), Some(self.count)),
            ("first_seq", proof.first_seq, self.first),
            ("last_seq", proof.last_seq, self.last),
        ];
        for (field, stated, found) in stated {
            if stated != found {
                return Err(refused(
                    ExportPlace::Proof,
                    ExportCheck::Stated {
                        field,
                        stated: show(stated),
                        found: show(found),
                    },
                ));
            }
        }
        let Some((line, last, place)) = self.chain_last else {
            return Err(refused(ExportPlace::Proof, ExportCheck::Empty));
        };
        if proof.inclusion.record != line {
            return Err(refused(
                ExportPlace::Proof,
                ExportCheck::ProvenNotLast {
                    proven: proof.inclusion.index.saturating_add(1),
                    last,
                },
            ));
        }
        if self.after.is_none() && last != signed.size {
            return Err(refused(
                place,
                ExportCheck::NotAtSignedHead { head: signed.size },
            ));
        }
        let mut warnings = self.warnings;
        warnings.extend(signed.warnings.iter().cloned());
        Ok(ExportVerified {
            count: self.count,
            first_seq: self.first,
            last_seq: self.last,
            range: self.range.clone(),
            before_seq: self.before,
            after_seq: self.after,
            checkpoint: signed,
            warnings,
        })
    }
}

/// The records file, told apart by its first byte: `{` a JSON lines export, `s` (the
/// header's `seq`) a CSV one; an empty file holds no record.
#[derive(Debug)]
pub(super) struct Records<R> {
    reader: R,
    name: PathBuf,
    kind: Kind,
    /// The number of the last line or row read.
    number: u64,
    buf: Vec<u8>,
}

/// One record as read from a records file.
#[derive(Debug)]
pub(super) struct ReadRecord {
    /// Where it is.
    pub(super) place: ExportPlace,
    /// The record's line (for CSV, the `record` cell).
    pub(super) line: String,
    /// For CSV, the row's cells (`record`'s taken out).
    pub(super) cells: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Empty,
    Jsonl,
    Csv,
}

impl<R: BufRead> Records<R> {
    /// Looks at the first byte, and reads the CSV header.
    pub(super) fn detect(mut reader: R, name: &Path) -> Result<Records<R>, AuditError> {
        let first = reader
            .fill_buf()
            .map_err(|e| AuditError::io("read", name, e))?
            .first()
            .copied();
        let kind = match first {
            None => Kind::Empty,
            Some(b'{') => Kind::Jsonl,
            Some(b's') => Kind::Csv,
            Some(_) => {
                return Err(refused(
                    ExportPlace::Records,
                    ExportCheck::Format {
                        problem: "neither JSON lines (a record per line) nor an export's CSV \
                                  (a header starting with `seq,time`)"
                            .into(),
                    },
                ));
            }
        };
        let mut records = Records {
            reader,
            name: name.to_path_buf(),
            kind,
            number: 0,
            buf: Vec::new(),
        };
        if kind == Kind::Csv {
            let header = records.row()?;
            if header.as_deref() != Some(&COLUMNS.map(str::to_owned)[..]) {
                return Err(refused(
                    ExportPlace::Row { row: 1, seq: None },
                    ExportCheck::Format {
                        problem: format!(
                            "the header is not an export's, which is {}",
                            COLUMNS.join(",")
                        ),
                    },
                ));
            }
        }
        Ok(records)
    }

    /// The next record.
    pub(super) fn next_record(&mut self) -> Result<Option<ReadRecord>, AuditError> {
        match self.kind {
            Kind::Empty => Ok(None),
            Kind::Jsonl => Ok(self.line()?.map(|(place, line)| ReadRecord {
                place,
                line,
                cells: None,
            })),
            Kind::Csv => {
                let Some(mut cells) = self.row()? else {
                    return Ok(None);
                };
                let place = ExportPlace::Row {
                    row: self.number,
                    seq: None,
                };
                if cells.len() != COLUMNS.len() {
                    return Err(refused(
                        place,
                        ExportCheck::Format {
                            problem: format!(
                                "{} cells, where an export's rows have {}",
                                cells.len(),
                                COLUMNS.len()
                            ),
                        },
                    ));
                }
                let line = std::mem::take(&mut cells[RECORD]);
                Ok(Some(ReadRecord {
                    place,
                    line,
                    cells: Some(cells),
                }))
            }
        }
    }

    /// The next line of a JSON lines file, without its newline.
    fn line(&mut self) -> Result<Option<(ExportPlace, String)>, AuditError> {
        self.buf.clear();
        let n = io::Read::take(&mut self.reader, MAX_LINE_LEN + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| AuditError::io("read", &self.name, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.number += 1;
        let place = ExportPlace::Line {
            line: self.number,
            seq: None,
        };
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() as u64 > MAX_LINE_LEN {
            let problem = format!("the line is longer than {MAX_LINE_LEN} bytes");
            return Err(refused(place, ExportCheck::Format { problem }));
        }
        match String::from_utf8(std::mem::take(&mut self.buf)) {
            Ok(line) => Ok(Some((place, line))),
            Err(_) => Err(refused(
                place,
                ExportCheck::NotARecord {
                    reason: "not UTF-8 text".into(),
                },
            )),
        }
    }

    /// The next CSV row's cells.
    fn row(&mut self) -> Result<Option<Vec<String>>, AuditError> {
        let read = csv::read_row(&mut self.reader, &mut self.buf, MAX_LINE_LEN)
            .map_err(|e| AuditError::io("read", &self.name, e))?;
        let Some(row) = read else {
            return Ok(None);
        };
        self.number += 1;
        row.map(Some).map_err(|fault| {
            refused(
                ExportPlace::Row {
                    row: self.number,
                    seq: None,
                },
                ExportCheck::Format {
                    problem: fault.describe().to_owned(),
                },
            )
        })
    }
}
