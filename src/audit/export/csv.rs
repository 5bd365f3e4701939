//! The CSV form of an export (RFC 4180, CRLF line ends): the columns, how a record fills
//! them, and a strict reader for the verifier.
//!
//! Every column but `record` is for people and is derived from the record; the verifier
//! derives them again and compares, so an edited cell is caught like an edited record.

use std::io::{self, BufRead};

use super::super::record::{AuditRecord, Outcome};
use crate::csv::{defused, push_cell};

/// The columns, in order. `record` is last: the stored line, which verification uses.
pub(super) const COLUMNS: [&str; 16] = [
    "seq",
    "time",
    "action",
    "outcome",
    "actor",
    "spiffe_id",
    "entry_id",
    "audience",
    "serial",
    "jti",
    "evidence_sha256",
    "reason",
    "detail",
    "prev",
    "hash",
    "record",
];

/// The index of the `record` column.
pub(super) const RECORD: usize = COLUMNS.len() - 1;

/// The header row, with its line end.
pub(super) fn header() -> Vec<u8> {
    let mut row = COLUMNS.join(",").into_bytes();
    row.extend_from_slice(b"\r\n");
    row
}

/// The cells of the people's columns (all but `record`), as a record fills them.
pub(super) fn human_cells(record: &AuditRecord) -> [String; RECORD] {
    let event = &record.event;
    let optional = |value: &Option<String>| value.clone().unwrap_or_default();
    let outcome = match event.outcome {
        Outcome::Granted => "granted",
        Outcome::Refused => "refused",
        Outcome::Ok => "ok",
    };
    [
        record.seq.to_string(),
        record.time.clone(),
        event.action.clone(),
        outcome.to_owned(),
        event.actor.clone(),
        optional(&event.spiffe_id),
        optional(&event.entry_id),
        optional(&event.audience),
        optional(&event.serial),
        optional(&event.jti),
        optional(&event.evidence_sha256),
        optional(&event.reason),
        event
            .detail
            .as_ref()
            .map(|detail| detail.to_string())
            .unwrap_or_default(),
        record.prev.clone(),
        record.hash.clone(),
    ]
    .map(|cell| defused(&cell))
}

/// The row of `record`, whose stored line is `line`, with its line end.
pub(super) fn row(record: &AuditRecord, line: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(line.len() * 2 + 64);
    for cell in human_cells(record) {
        push_cell(&mut row, cell.as_bytes());
        row.push(b',');
    }
    push_cell(&mut row, line);
    row.extend_from_slice(b"\r\n");
    row
}

/// Why a row is not RFC 4180 CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CsvFault {
    /// A quoted cell is not closed before the end of the file.
    Unclosed,
    /// A quote inside a cell that does not start with one.
    StrayQuote,
    /// Something else than a comma or the row's end after a closing quote.
    AfterQuote,
    /// A cell that is not UTF-8.
    NotUtf8,
    /// The row is longer than the limit.
    TooLong,
}

impl CsvFault {
    /// The fault in words.
    pub(super) fn describe(&self) -> &'static str {
        match self {
            CsvFault::Unclosed => "a quoted cell is not closed before the end of the file",
            CsvFault::StrayQuote => "a quote inside a cell that does not start with one",
            CsvFault::AfterQuote => "something else than a comma follows a closing quote",
            CsvFault::NotUtf8 => "a cell is not UTF-8 text",
            CsvFault::TooLong => "the row is longer than any record",
        }
    }
}

/// Reads one row (a row may span lines inside quoted cells) into its cells; `None` at the
/// end of the input. `buf` is scratch space; a row longer than `max` bytes is refused.
pub(super) fn read_row(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: u64,
) -> io::Result<Option<Result<Vec<String>, CsvFault>>> {
    buf.clear();
    loop {
        let room = max.saturating_sub(buf.len() as u64);
        let n = io::Read::take(&mut *reader, room + 1).read_until(b'\n', buf)?;
        if n == 0 {
            return Ok((!buf.is_empty()).then_some(Err(CsvFault::Unclosed)));
        }
        if buf.len() as u64 > max {
            return Ok(Some(Err(CsvFault::TooLong)));
        }
        // Quotes come in pairs outside a quoted cell and inside one (doubled), so an odd
        // count means the line break just read is inside a quoted cell.
        let quotes = buf.iter().filter(|&&b| b == b'"').count();
        if quotes % 2 == 0 || buf.last() != Some(&b'\n') {
            break;
        }
    }
    let row = buf
        .strip_suffix(b"\r\n")
        .or_else(|| buf.strip_suffix(b"\n"))
        .unwrap_or(buf);
    Ok(Some(cells(row)))
}

/// Splits a row (without its line end) into its cells.
fn cells(row: &[u8]) -> Result<Vec<String>, CsvFault> {
    let mut cells = Vec::new();
    let mut at = 0;
    loop {
        let mut cell = Vec::new();
        if row.get(at) == Some(&b'"') {
            at += 1;
            loop {
                match row.get(at) {
                    None => return Err(CsvFault::Unclosed),
                    Some(b'"') if row.get(at + 1) == Some(&b'"') => {
                        cell.push(b'"');
                        at += 2;
                    }
                    Some(b'"') => {
                        at += 1;
                        break;
                    }
                    Some(&byte) => {
                        cell.push(byte);
                        at += 1;
                    }
                }
            }
            if !matches!(row.get(at), None | Some(b',')) {
                return Err(CsvFault::AfterQuote);
            }
        } else {
            while let Some(&byte) = row.get(at) {
                match byte {
                    b',' => break,
                    b'"' => return Err(CsvFault::StrayQuote),
                    _ => cell.push(byte),
                }
                at += 1;
            }
        }
        cells.push(String::from_utf8(cell).map_err(|_| CsvFault::NotUtf8)?);
        if row.get(at) == Some(&b',') {
            at += 1;
        } else {
            return Ok(cells);
        }
    }
}
