//! `mayfly audit …`: check and read the hash-chained audit log in the data directory.
//!
//! These commands read the files directly, so they work while the server is down, which is
//! when an operator most needs them.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::Context;
use super::error::CliError;
use super::output::{self, Table};
use mayfly::audit::{self, AuditRecord};

/// Check the audit log's hash chain, or read its last records.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every record against its hash, the chain, and the signed-off head.
    #[command(after_help = VERIFY_HELP)]
    Verify,
    /// Print the last records, oldest first.
    #[command(
        after_help = "Examples:\n  mayfly audit tail\n  mayfly audit tail -n 200 --json | jq 'select(.outcome == \"refused\")'"
    )]
    Tail(TailArgs),
}

const VERIFY_HELP: &str = "\
Examples:
  mayfly audit verify
  mayfly audit verify --data-dir /var/lib/mayfly

Exit status 0 if the log is intact, 1 if it is broken (the first break is
named), so it can run from cron or a health check. Safe while the server
writes.";

/// Arguments of `mayfly audit tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// How many records.
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 20)]
    lines: usize,
    /// Print the records as JSON lines, exactly as stored.
    #[arg(long)]
    json: bool,
}

/// Runs one `mayfly audit` command.
pub(super) fn run(ctx: &Context, command: AuditCommand) -> Result<ExitCode, CliError> {
    let dir = mayfly_sdk::data_dir::DataDir::new(&ctx.data_dir).audit();
    if !dir.exists() {
        return Err(CliError::file(
            "read",
            &dir,
            "no such directory; is --data-dir (MAYFLY_DATA_DIR) the server's data directory?",
        ));
    }
    match command {
        AuditCommand::Verify => verify(&dir),
        AuditCommand::Tail(args) => {
            tail(&dir, &args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify(dir: &Path) -> Result<ExitCode, CliError> {
    let report = audit::verify(dir)?;
    for note in &report.notes {
        output::stderr_line(&format!("note: {}", output::clean(note)));
    }
    match &report.problem {
        None => {
            output::stdout_line(&format!(
                "audit log OK: {} records, head seq {} hash {}",
                report.records, report.head_seq, report.head_hash
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(problem) => {
            output::stderr_line(&format!(
                "audit log BROKEN: {}",
                output::clean(&problem.to_string())
            ));
            output::stderr_line(&format!(
                "the first {} records verify (head seq {} hash {})",
                report.records, report.head_seq, report.head_hash
            ));
            Ok(ExitCode::from(super::error::exit::FAILED))
        }
    }
}

fn tail(dir: &Path, args: &TailArgs) -> Result<(), CliError> {
    let records = audit::tail(dir, args.lines)?;
    if args.json {
        for record in &records {
            output::json_line(record)?;
        }
        return Ok(());
    }
    output::stdout(&record_table(&records))
}

/// The `audit tail` table. Fields are read from the records' JSON form, which is the
/// log's stable format.
fn record_table(records: &[AuditRecord]) -> String {
    let mut table = Table::new(&[
        "SEQ",
        "TIME",
        "ACTION",
        "OUTCOME",
        "ACTOR",
        "SPIFFE ID",
        "DETAIL",
    ]);
    for record in records {
        let value = serde_json::to_value(record).unwrap_or(Value::Null);
        let field = |name: &str| match value.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let detail: Vec<String> = ["entry_id", "audience", "serial", "jti", "reason"]
            .iter()
            .filter_map(|name| {
                let text = field(name);
                let short = name.strip_suffix("_id").unwrap_or(name);
                (!text.is_empty()).then(|| format!("{short}={text}"))
            })
            .collect();
        table.row([
            field("seq"),
            field("time"),
            field("action"),
            field("outcome"),
            field("actor"),
            field("spiffe_id"),
            detail.join(" "),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly::audit::{AuditEvent, Outcome};

    #[test]
    fn tail_table_shows_what_happened() {
        let record = AuditRecord {
            seq: 7,
            time: "2026-01-01T00:00:00.000Z".into(),
            prev: "00".into(),
            event: AuditEvent {
                action: "jwt.mint".into(),
                outcome: Outcome::Refused,
                actor: "spiffe://td/a".into(),
                spiffe_id: Some("spiffe://td/a".into()),
                audience: Some("db".into()),
                reason: Some("audience not allowed".into()),
                ..Default::default()
            },
            hash: "ff".into(),
        };
        let text = record_table(&[record]);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(
                "SEQ  TIME                      ACTION    OUTCOME  ACTOR          SPIFFE ID      DETAIL"
            )
        );
        assert_eq!(
            lines.next(),
            Some(
                "7    2026-01-01T00:00:00.000Z  jwt.mint  refused  spiffe://td/a  spiffe://td/a  \
                 audience=db reason=audience not allowed"
            )
        );
    }
}
