//! `mayfly audit export` and `mayfly audit verify-export`: a slice of the audit log for a
//! compliance officer, and its check by an auditor who holds only the pinned root key.
//! The work is `mayfly::audit::export`'s; this reads the flags and prints.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::error::{CliError, exit};
use super::output;
use mayfly::audit::{self, ExportBound, ExportFormat, ExportRange, Exported};

pub(super) const EXPORT_HELP: &str = "\
Examples:
  mayfly audit export --since 2026-11-01T00:00:00Z \\
      --until 2026-12-01T00:00:00Z --format csv --out november.csv
  mayfly audit export --since seq:1200 --out from-1200.jsonl
  mayfly audit export --until seq:500 --out - --proof first.proof.json \\
      | gzip > first.jsonl.gz

WHEN is seq:N (a record number, as `mayfly audit tail` shows) or an RFC 3339
time (2026-11-01T00:00:00Z, 2026-11-01T01:00:00+01:00); a bare number is
refused. The range is half-open: from the first record at or after --since to
before the first record at or after --until. Only records a signed checkpoint
covers are exported (the server signs about once a second); without --until
the export ends at the signed head. The log is verified first: a broken log
gets no export.

The proof (FILE.proof.json, or --proof) holds the records just before and just
after the slice and an inclusion proof against the signed checkpoint: with it
and the root public key, `mayfly audit verify-export` checks the slice alone.
jsonl holds the records byte for byte. csv has a column per field and, last,
the record as stored; cells a spreadsheet would evaluate (= + - @) get a
leading ' (never the record).";

pub(super) const VERIFY_EXPORT_HELP: &str = "\
Examples:
  mayfly audit verify-export november.csv --public-key audit-root.pub
  mayfly audit verify-export - --proof first.proof.json \\
      --public-key audit-root.pub < first.jsonl

Needs no access to the log, no data directory and no secret. Checks every
record's hash, that the seqs follow and each prev is the hash before, that the
records just before and after the slice lie outside the range (so nothing at
its edges was left out), that every CSV cell is what its record says, and the
inclusion proof through the key chain from the pinned root key. Exit status 0
with what was proven; 1 naming the line or row, the seq and the failed check.";

/// The records' format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// The records as stored, one per line.
    Jsonl,
    /// RFC 4180, a column per field, the record as stored last.
    Csv,
}

/// Arguments of `mayfly audit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where the range starts (included): seq:N or an RFC 3339 time [default: the
    /// first record].
    #[arg(long, value_name = "WHEN")]
    since: Option<ExportBound>,
    /// Where it ends (excluded): seq:N or an RFC 3339 time [default: the signed head,
    /// included].
    #[arg(long, value_name = "WHEN")]
    until: Option<ExportBound>,
    /// How the records are written.
    #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
    format: FormatArg,
    /// Where the records go, or - for standard output (then --proof is needed).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Where the proof goes [default: <FILE>.proof.json].
    #[arg(long, value_name = "PROOF", required_if_eq("out", "-"))]
    proof: Option<PathBuf>,
    /// The audit directory to export from (a copy, say) instead of <data-dir>/audit.
    #[arg(long, value_name = "DIR")]
    pub(super) audit_dir: Option<PathBuf>,
}

/// Arguments of `mayfly audit verify-export`.
#[derive(Debug, Args)]
pub struct VerifyExportArgs {
    /// The records (from `mayfly audit export`), or - for standard input (then --proof
    /// is needed).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The proof [default: <FILE>.proof.json].
    #[arg(long, value_name = "PROOF", required_if_eq("file", "-"))]
    proof: Option<PathBuf>,
    /// The root audit key you pinned (PEM, from `mayfly audit public-key`).
    #[arg(long, value_name = "FILE")]
    public_key: PathBuf,
}

/// `FILE.proof.json`.
fn default_proof(records: &Path) -> PathBuf {
    let mut name = records.as_os_str().to_owned();
    name.push(".proof.json");
    PathBuf::from(name)
}

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Runs `mayfly audit export` on the audit directory `dir`.
pub(super) fn export(dir: &Path, args: &ExportArgs) -> Result<ExitCode, CliError> {
    let range =
        ExportRange::new(args.since.clone(), args.until.clone()).map_err(|e| CliError::Usage {
            message: format!("--since and --until: {e}"),
        })?;
    let format = match args.format {
        FormatArg::Jsonl => ExportFormat::Jsonl,
        FormatArg::Csv => ExportFormat::Csv,
    };
    let proof = args
        .proof
        .clone()
        .unwrap_or_else(|| default_proof(&args.out));
    let exported = if is_stdio(&args.out) {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        audit::export(dir, &range, format, &mut out, Path::new("standard output"))?
    } else {
        audit::export_to_file(dir, &range, format, &args.out)?
    };
    exported.proof.write(&proof)?;
    summarize(&exported, &args.out, &proof);
    Ok(ExitCode::SUCCESS)
}

/// The summary on standard error: what was written, and how to check it.
fn summarize(exported: &Exported, out: &Path, proof: &Path) {
    let stated = &exported.proof;
    let to = if is_stdio(out) {
        "standard output".to_owned()
    } else {
        out.display().to_string()
    };
    let what = match (stated.first_seq, stated.last_seq) {
        (Some(first), Some(last)) => format!(
            "{} records, seq {first} to {last} ({} to {})",
            stated.count,
            exported.first_time.as_deref().unwrap_or("?"),
            exported.last_time.as_deref().unwrap_or("?"),
        ),
        _ => "no record (none lies in the range)".to_owned(),
    };
    let checkpoint = exported.checkpoint();
    output::stderr_line(&format!("exported {what} to {to}"));
    output::stderr_line(&format!(
        "proof: {}, against the signed checkpoint of seq {} (key epoch {})",
        proof.display(),
        checkpoint.seq,
        checkpoint.epoch
    ));
    if exported.past_signed_head {
        output::stderr_line(&format!(
            "note: --until lies past the signed head (seq {}): the export ends there; later \
             records are not signed for yet (the server signs about once a second)",
            checkpoint.seq
        ));
    }
    let records = if is_stdio(out) {
        "RECORDS".to_owned()
    } else {
        shell_word(out)
    };
    let proof_flag = if !is_stdio(out) && default_proof(out) == proof {
        String::new()
    } else {
        format!(" --proof {}", shell_word(proof))
    };
    output::stderr_line("verify with the root key pinned off this host (audit-root.pub):");
    output::stderr_line(&format!(
        "  mayfly audit verify-export {records}{proof_flag} --public-key audit-root.pub"
    ));
}

/// `path` as one shell word: as it is when it needs no quoting, else single-quoted.
fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Runs `mayfly audit verify-export`: offline, with no data directory.
pub(super) fn verify_export(args: &VerifyExportArgs) -> Result<ExitCode, CliError> {
    let key = super::audit_key::read_public_key(&args.public_key)?;
    let proof_path = args
        .proof
        .clone()
        .unwrap_or_else(|| default_proof(&args.file));
    let bytes = mayfly_sdk::files::read_file_with_limit(&proof_path, audit::MAX_EXPORT_PROOF_LEN)
        .map_err(|e| CliError::file("read", &proof_path, e.to_string()))?;
    let checked = audit::ExportProof::from_json(&bytes).and_then(|proof| {
        if is_stdio(&args.file) {
            let stdin = std::io::stdin().lock();
            return audit::verify_export(stdin, Path::new("standard input"), &proof, &key);
        }
        match std::fs::File::open(&args.file) {
            Ok(file) => audit::verify_export(BufReader::new(file), &args.file, &proof, &key),
            Err(e) => Err(audit::AuditError::Io {
                action: "open",
                path: args.file.clone(),
                source: e,
            }),
        }
    });
    match checked {
        Ok(verified) => {
            for warning in &verified.warnings {
                output::stderr_line(&format!("warning: {}", output::clean(warning)));
            }
            for line in verified.to_string().lines() {
                output::stdout_line(&output::clean(line))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(audit::AuditError::ExportRefused { problem }) => {
            let text = problem.to_string();
            output::stderr_line(&format!("export does NOT hold: {}", output::clean(&text)));
            Ok(ExitCode::from(exit::FAILED))
        }
        Err(audit::AuditError::Proof { reason }) => {
            let text = format!("{}: {reason}", proof_path.display());
            output::stderr_line(&format!("export does NOT hold: {}", output::clean(&text)));
            Ok(ExitCode::from(exit::FAILED))
        }
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_the_shell_only_when_needed() {
        assert_eq!(
            shell_word(Path::new("out/nov-2026.csv")),
            "out/nov-2026.csv"
        );
        assert_eq!(shell_word(Path::new("my export.csv")), "'my export.csv'");
        assert_eq!(shell_word(Path::new("it's.csv")), r"'it'\''s.csv'");
        assert_eq!(
            default_proof(Path::new("a/b.csv")),
            Path::new("a/b.csv.proof.json")
        );
    }
}
