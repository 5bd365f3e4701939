//! The last records of the log, read from its end.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::AuditError;
use super::record::AuditRecord;
use super::segment::Layout;

/// How much of the file one read takes, walking back from the end.
const CHUNK: u64 = 64 * 1024;

/// The last `count` records of the log in `dir`, oldest first (fewer if the log is shorter).
///
/// Reads backwards from the end of the live segment, and of the sealed segments before it
/// when the live one holds fewer, so it costs the same on a log of any length. Parses but
/// does not verify: use [`verify`](super::verify) for that. Safe while the server appends;
/// a final line still being written is left out.
///
/// # Errors
/// - [`AuditError::Io`] if the log cannot be read.
/// - [`AuditError::Malformed`] if one of the lines is not a record.
pub fn tail(dir: &Path, count: usize) -> Result<Vec<AuditRecord>, AuditError> {
    let layout = Layout::read(dir)?;
    let mut records = Vec::new();
    for path in layout.files().collect::<Vec<_>>().into_iter().rev() {
        if records.len() >= count {
            break;
        }
        let mut older = match last_records(path, count - records.len()) {
            // Rotated away between the listing and the read: the records are in a segment.
            Err(AuditError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
                    && path == layout.live
                    && !layout.sealed.is_empty() =>
            {
                Vec::new()
            }
            other => other?,
        };
        older.append(&mut records);
        records = older;
    }
    Ok(records)
}

/// The last `count` records of one file, oldest first.
pub(super) fn last_records(path: &Path, count: usize) -> Result<Vec<AuditRecord>, AuditError> {
    let file = File::open(path).map_err(|e| AuditError::io("open", path, e))?;
    let lines = last_lines(file, count, CHUNK).map_err(|e| AuditError::io("read", path, e))?;
    lines
        .iter()
        .map(|line| {
            serde_json::from_slice(line).map_err(|e| AuditError::Malformed {
                path: path.to_owned(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// The last `count` newline-terminated lines, without their newlines.
fn last_lines(mut file: File, count: usize, chunk: u64) -> std::io::Result<Vec<Vec<u8>>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut pos = file.metadata()?.len();
    let mut chunks = Vec::new();
    let mut newlines = 0;
    // One newline more than lines wanted: it marks where the first wanted line starts.
    while pos > 0 && newlines <= count {
        let start = pos.saturating_sub(chunk);
        // At most `chunk` bytes, which is small.
        #[allow(clippy::cast_possible_truncation)]
        let mut buf = vec![0; (pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        newlines += buf.iter().filter(|&&b| b == b'\n').count();
        chunks.push(buf);
        pos = start;
    }
    let data: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    // Whatever follows the last newline is a record still being written.
    let Some(last_newline) = data.iter().rposition(|&b| b == b'\n') else {
        return Ok(Vec::new());
    };
    let lines: Vec<&[u8]> = data[..last_newline].split(|&b| b == b'\n').collect();
    // If the walk stopped before the start of the file, the first piece may be a partial
    // line; it is never among the last `count` because the walk saw `count + 1` newlines.
    let skip = lines.len().saturating_sub(count);
    Ok(lines[skip..].iter().map(|line| line.to_vec()).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::test_support::{event, write_log};
    use super::*;

    fn lines_of(content: &[u8], count: usize, chunk: u64) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, content).unwrap();
        last_lines(File::open(&path).unwrap(), count, chunk)
            .unwrap()
            .into_iter()
            .map(|l| String::from_utf8(l).unwrap())
            .collect()
    }

    #[test]
    fn last_lines_across_chunk_sizes() {
        let content = b"one\ntwo\nthree\nfour\nfive\n";
        for chunk in [1, 2, 3, 5, 7, 64, 1024] {
            assert_eq!(
                lines_of(content, 3, chunk),
                ["three", "four", "five"],
                "chunk {chunk}"
            );
            assert_eq!(lines_of(content, 1, chunk), ["five"], "chunk {chunk}");
            assert_eq!(lines_of(content, 9, chunk).len(), 5, "chunk {chunk}");
            assert!(lines_of(content, 0, chunk).is_empty());
        }
    }

    #[test]
    fn unterminated_final_line_is_left_out() {
        for chunk in [1, 4, 1024] {
            assert_eq!(
                lines_of(b"a\nb\nhalf-writ", 2, chunk),
                ["a", "b"],
                "chunk {chunk}"
            );
            assert!(lines_of(b"half-writ", 2, chunk).is_empty());
            assert!(lines_of(b"", 2, chunk).is_empty());
        }
    }

    #[tokio::test]
    async fn tail_returns_the_last_three() {
        let dir = tempfile::tempdir().unwrap();
        let receipts = write_log(dir.path(), 10).await;
        let records = tail(dir.path(), 3).unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [8, 9, 10]
        );
        assert_eq!(records[2].hash, receipts[9].hash);
        assert_eq!(records[0].event.audience, event(8).audience);
        assert_eq!(records[1].prev, records[0].hash);
        assert_eq!(tail(dir.path(), 50).unwrap().len(), 10);
        assert!(tail(dir.path(), 0).unwrap().is_empty());
    }

    #[test]
    fn tail_of_a_missing_log_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(tail(dir.path(), 3), Err(AuditError::Io { .. })));
    }
}
