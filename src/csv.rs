//! CSV cells for people's spreadsheets (RFC 4180): quoted when they must be, and never
//! read as a formula. The audit export and the governance report write their cells
//! through here.
//!
//! A cell that starts like a formula (`=`, `+`, `-`, `@`, tab, CR: OWASP's list for CSV
//! injection) gets a leading `'`, so a spreadsheet shows the text instead of evaluating
//! it. Owners, purposes and reasons are free text an operator typed; a report opened by
//! someone else must not run it.

/// First characters a spreadsheet may read as the start of a formula.
pub const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `cell` with a leading `'` if a spreadsheet could take it for a formula.
pub fn defused(cell: &str) -> String {
    if cell.starts_with(FORMULA_STARTS) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

/// Appends `cell` as it is, quoted (quotes doubled) if it holds a comma, a quote or a
/// line break.
pub fn push_cell(row: &mut Vec<u8>, cell: &[u8]) {
    if !cell
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
    {
        row.extend_from_slice(cell);
        return;
    }
    row.push(b'"');
    for &byte in cell {
        if byte == b'"' {
            row.push(b'"');
        }
        row.push(byte);
    }
    row.push(b'"');
}

/// One cell for people: defused, then quoted if it needs to be.
pub fn cell(value: &str) -> String {
    let mut out = Vec::with_capacity(value.len() + 3);
    push_cell(&mut out, defused(value).as_bytes());
    // Only whole UTF-8 text and ASCII bytes went in.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_only_when_needed() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell(""), "");
    }

    #[test]
    fn a_cell_that_starts_like_a_formula_is_shown_not_evaluated() {
        for start in FORMULA_STARTS {
            let text = format!("{start}HYPERLINK(\"http://x\")");
            let written = cell(&text);
            assert!(
                written.starts_with("'") || written.starts_with("\"'"),
                "{written:?}"
            );
            assert!(written.contains("HYPERLINK"), "{written:?}");
        }
        assert_eq!(cell("=1+1"), "'=1+1");
        assert_eq!(cell("=SUM(A1,A2)"), "\"'=SUM(A1,A2)\"");
        // Controls: the same characters later in the cell change nothing.
        assert_eq!(cell("team=payments"), "team=payments");
        assert_eq!(cell("a-b@c"), "a-b@c");
    }
}
