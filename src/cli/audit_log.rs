//! `mayfly audit …`: check and read the hash-chained audit log in the data directory.
//!
//! These commands read the files directly, so they work while the server is down, which is
//! when an operator most needs them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::Context;
use super::audit_export::{self, ExportArgs, VerifyExportArgs};
use super::audit_key::read_public_key;
use super::error::CliError;
use super::output::{self, Table};
use mayfly::audit::{self, AuditRecord};

/// Check the audit log's hash chain, read its last records, prove records to an auditor,
/// or export a range of them.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every record, the chain, the audit key's hand-overs and the signed checkpoint;
    /// with --public-key against the root key you pinned, with --checkpoint against
    /// checkpoints kept elsewhere.
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
    /// Print the root audit key's public half (PEM), for auditors to pin off the host.
    #[command(after_help = PUBLIC_KEY_HELP)]
    PublicKey(KeyDirArgs),
    /// Print a proof (JSON) that record SEQ is in the log a signed checkpoint vouches for,
    /// or with --since that the log only grew since a checkpoint you kept; an auditor
    /// checks it offline with `mayfly audit verify-proof`.
    #[command(after_help = PROVE_HELP)]
    Prove(ProveArgs),
    /// Check a proof from `mayfly audit prove` offline, with only the root public key you
    /// pinned: the key chain, the checkpoint's signature and the Merkle proof.
    #[command(after_help = VERIFY_PROOF_HELP)]
    VerifyProof(VerifyProofArgs),
    /// Check one sealed segment (segments/audit-<first>.log) on its own, offline, with
    /// only the root public key you pinned: its records, their chain and its signed seal.
    #[command(after_help = VERIFY_SEGMENT_HELP)]
    VerifySegment(VerifySegmentArgs),
    /// Write the records of a time or seq range (JSON lines or CSV) and a proof with
    /// which an auditor checks that slice alone, with `mayfly audit verify-export`.
    #[command(after_help = audit_export::EXPORT_HELP)]
    Export(ExportArgs),
    /// Check an export offline with only the root public key you pinned: every record,
    /// the chain, the edges of the range and the inclusion proof.
    #[command(after_help = audit_export::VERIFY_EXPORT_HELP)]
    VerifyExport(VerifyExportArgs),
    /// Print the last records, oldest first.
    #[command(
        after_help = "Examples:\n  mayfly audit tail\n  mayfly audit tail -n 200 --json | jq 'select(.outcome == \"refused\")'"
    )]
    Tail(TailArgs),
}

const VERIFY_HELP: &str = "\
Examples:
  mayfly audit verify
  mayfly audit verify --public-key audit-root.pub
  mayfly audit verify --public-key audit-root.pub --checkpoint kept/cp-1101.json
  mayfly audit verify --audit-dir /mnt/copy/audit --public-key audit-root.pub

Exit status 0 if the log is intact, 1 if it is broken (the first break is
named), so it can run from cron or a health check. Safe while the server
writes. It needs no secret: a copy of the audit directory and the root
public key (from `mayfly audit public-key`, kept off the host) are enough.
Without --public-key the log's own root key is taken as it is, which proves
the log consistent, not that it is the log that key started.";

const PUBLIC_KEY_HELP: &str = "\
Examples:
  mayfly audit public-key > audit-root.pub     # keep a copy off this host
  mayfly audit public-key --key-dir /var/lib/mayfly-audit-key

The root key signs nothing itself: it vouches for the first key, each key
signs the hand-over to the next and is then erased. An auditor who pinned
this key detects a log re-made under another one.";

const PROVE_HELP: &str = "\
Examples:
  mayfly audit prove 1042 > proof-1042.json
  mayfly audit prove 1042 --checkpoint kept/2026-11-01.json
  mayfly audit prove --since kept/2026-11-01.json > grew-since-november.json

The log is verified first; a log that does not verify gets no proof. An
inclusion proof is made against the current signed checkpoint (checkpoint.json),
or the one given with --checkpoint, which must verify against the log. A
record the server appended in the last second may not be signed for yet:
wait a second and run it again. The output holds the record, the proof, the
checkpoint and the key hand-overs from the root key to the key that signed
it: everything `mayfly audit verify-proof` needs besides the pinned root key.";

const VERIFY_PROOF_HELP: &str = "\
Examples:
  mayfly audit verify-proof proof-1042.json --public-key audit-root.pub
  mayfly audit prove 7 | mayfly audit verify-proof - --public-key audit-root.pub

Needs no access to the log, no data directory and no secret. Exit status 0
with a one-line summary if the proof holds, 1 with the reason if it does not.
A key chain that restarts with a new root key (accepted by an operator with a
reason) is accepted with a warning naming that reason: that key is trusted on
the operator's word, not by the pinned key.";

const VERIFY_SEGMENT_HELP: &str = "\
Examples:
  mayfly audit verify-segment archive/audit-00000000000000120001.log \\
      --public-key audit-root.pub

The live audit.log is sealed into segments/ when it reaches [audit]
segment_max_size or segment_max_age; the chain runs on across segments. The
seal beside each segment (audit-<first>.seal.json) holds where it starts in
the chain, a checkpoint of its last record signed by the audit key, and the
key hand-overs from the root key: so an archived segment is checked without
the rest of the log, the data directory or any secret. Exit status 0 with a
summary if it holds, 1 with the seq and the check if it does not.";

/// Arguments of `mayfly audit verify-segment`.
#[derive(Debug, Args)]
pub struct VerifySegmentArgs {
    /// The segment (segments/audit-<first>.log); its seal is read from beside it.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The root audit key you pinned (PEM, from `mayfly audit public-key`).
    #[arg(long, value_name = "FILE")]
    public_key: PathBuf,
}

/// Arguments of `mayfly audit prove`.
#[derive(Debug, Args)]
pub struct ProveArgs {
    /// The seq of the record to prove (from `mayfly audit tail`).
    #[arg(
        value_name = "SEQ",
        required_unless_present = "since",
        conflicts_with = "since"
    )]
    seq: Option<u64>,
    /// A signed checkpoint you kept (a copy of checkpoint.json): prove that the log's
    /// current checkpoint only appended to it.
    #[arg(long, value_name = "FILE")]
    since: Option<PathBuf>,
    /// Prove SEQ against this kept checkpoint instead of the log's current one.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// The audit directory to prove from (a copy, say) instead of <data-dir>/audit.
    #[arg(long, value_name = "DIR")]
    audit_dir: Option<PathBuf>,
}

/// Arguments of `mayfly audit verify-proof`.
#[derive(Debug, Args)]
pub struct VerifyProofArgs {
    /// The proof (from `mayfly audit prove`), or - for standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The root audit key you pinned (PEM, from `mayfly audit public-key`).
    #[arg(long, value_name = "FILE")]
    public_key: PathBuf,
}

/// Arguments of `mayfly audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The root audit key you trust (PEM, from `mayfly audit public-key`).
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
    /// A signed checkpoint kept elsewhere (a copy of checkpoint.json, or the anchor
    /// file); the log must be a continuation of it. May be given several times.
    #[arg(long, value_name = "FILE")]
    checkpoint: Vec<PathBuf>,
    /// The audit directory to check (a copy, say) instead of <data-dir>/audit.
    #[arg(long, value_name = "DIR")]
    audit_dir: Option<PathBuf>,
}

/// Where the audit key lives.
#[derive(Debug, Args)]
pub struct KeyDirArgs {
    /// The audit key directory ([audit] key_dir) [default: <data-dir>/audit-key].
    #[arg(long, value_name = "DIR")]
    key_dir: Option<PathBuf>,
}

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
    let layout = mayfly_sdk::data_dir::DataDir::new(&ctx.data_dir);
    match &command {
        AuditCommand::PublicKey(args) => {
            let dir = args.key_dir.clone().unwrap_or_else(|| layout.audit_key());
            return public_key(&dir);
        }
        // Offline: no data directory.
        AuditCommand::VerifyProof(args) => return verify_proof(args),
        AuditCommand::VerifySegment(args) => return verify_segment(args),
        AuditCommand::VerifyExport(args) => return audit_export::verify_export(args),
        _ => {}
    }
    let dir = match &command {
        AuditCommand::Verify(VerifyArgs {
            audit_dir: Some(dir),
            ..
        })
        | AuditCommand::Prove(ProveArgs {
            audit_dir: Some(dir),
            ..
        })
        | AuditCommand::Export(ExportArgs {
            audit_dir: Some(dir),
            ..
        }) => dir.clone(),
        _ => layout.audit(),
    };
    if !dir.exists() {
        return Err(CliError::file(
            "read",
            &dir,
            "no such directory; is --data-dir (MAYFLY_DATA_DIR) the server's data directory?",
        ));
    }
    match command {
        AuditCommand::Verify(args) => verify(&dir, &args),
        AuditCommand::Prove(args) => {
            prove(&dir, &args)?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export(args) => audit_export::export(&dir, &args),
        AuditCommand::PublicKey(_)
        | AuditCommand::VerifyProof(_)
        | AuditCommand::VerifySegment(_)
        | AuditCommand::VerifyExport(_) => Ok(ExitCode::SUCCESS),
        AuditCommand::Tail(args) => {
            tail(&dir, &args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn public_key(dir: &Path) -> Result<ExitCode, CliError> {
    let path = dir.join(audit::ROOT_PUBLIC_KEY_FILE);
    let pem = mayfly_sdk::files::read_public_file(&path).map_err(|e| {
        CliError::file(
            "read",
            &path,
            format!("{e}; the server writes it at its first start (--key-dir, [audit] key_dir)"),
        )
    })?;
    let key = audit::AuditPublicKey::from_pem(&pem)?;
    output::stdout(&key.to_pem())?;
    output::stderr_line(&format!("root audit key {}", key.id()));
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &Path, args: &VerifyArgs) -> Result<ExitCode, CliError> {
    let mut options = audit::VerifyOptions::default();
    if let Some(path) = &args.public_key {
        options.public_key = Some(read_public_key(path)?);
    }
    for path in &args.checkpoint {
        options.checkpoints.push(audit::read_checkpoint(path)?);
    }
    let report = audit::verify_with(dir, &options)?;
    for note in &report.notes {
        output::stderr_line(&format!("note: {}", output::clean(note)));
    }
    match &report.problem {
        None => {
            output::stdout_line(&format!(
                "audit log OK: {} records, head seq {} hash {}",
                report.records, report.head_seq, report.head_hash
            ))?;
            if report.segments > 0 || report.removed > 0 {
                output::stdout_line(&format!(
                    "{} sealed segment(s) and audit.log; records 1 to {} removed by retention",
                    report.segments, report.removed
                ))?;
            }
            if let Some(last) = report.keys.last() {
                let root = report.keys.first().map(|k| k.key.id()).unwrap_or_default();
                let pinned = if report.pinned {
                    "pinned"
                } else {
                    "not pinned"
                };
                output::stdout_line(&format!(
                    "signed through seq {} (Merkle root {}), key epoch {} of root key {root} \
                     ({pinned})",
                    report.signed_through, report.root, last.epoch
                ))?;
            }
            if !args.checkpoint.is_empty() {
                output::stdout_line(&format!(
                    "continues each of the {} checkpoint(s) given",
                    args.checkpoint.len()
                ))?;
            }
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

fn prove(dir: &Path, args: &ProveArgs) -> Result<(), CliError> {
    let bundle = match (&args.since, args.seq) {
        (Some(since), _) => audit::prove_consistency(dir, &audit::read_checkpoint(since)?)?,
        (None, Some(seq)) => {
            let against = args
                .checkpoint
                .as_deref()
                .map(audit::read_checkpoint)
                .transpose()?;
            audit::prove_inclusion(dir, seq, against.as_ref())?
        }
        (None, None) => {
            return Err(CliError::Usage {
                message: "give the SEQ of a record, or --since FILE".into(),
            });
        }
    };
    output::stdout_line(&bundle.to_json_pretty()?)
}

/// Reads the bundle from `path`, or standard input for `-`, up to the size limit.
fn read_bundle(path: &Path) -> Result<Vec<u8>, CliError> {
    if path.as_os_str() != "-" {
        return mayfly_sdk::files::read_file_with_limit(path, audit::MAX_BUNDLE_LEN)
            .map_err(|e| CliError::file("read", path, e.to_string()));
    }
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(audit::MAX_BUNDLE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::file("read", path, e.to_string()))?;
    Ok(bytes)
}

fn verify_proof(args: &VerifyProofArgs) -> Result<ExitCode, CliError> {
    let key = read_public_key(&args.public_key)?;
    let bytes = read_bundle(&args.file)?;
    let checked = audit::ProofBundle::from_json(&bytes)
        .and_then(|bundle| audit::verify_bundle(&bundle, &key));
    match checked {
        Ok(summary) => {
            for warning in &summary.warnings {
                output::stderr_line(&format!("warning: {}", output::clean(warning)));
            }
            output::stdout_line(&output::clean(&summary.to_string()))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(audit::AuditError::Proof { reason }) => {
            output::stderr_line(&format!("proof does NOT hold: {}", output::clean(&reason)));
            Ok(ExitCode::from(super::error::exit::FAILED))
        }
        Err(other) => Err(other.into()),
    }
}

fn verify_segment(args: &VerifySegmentArgs) -> Result<ExitCode, CliError> {
    let key = read_public_key(&args.public_key)?;
    match audit::verify_segment(&args.file, &key) {
        Ok(report) => {
            for warning in &report.warnings {
                output::stderr_line(&format!("warning: {}", output::clean(warning)));
            }
            output::stdout_line(&format!(
                "segment OK: records {} to {} (last written {}), Merkle root {} signed by key \
                 epoch {} of root key {} (pinned)",
                report.first,
                report.last,
                output::clean(&report.last_time),
                report.root,
                report.epoch,
                report.root_key
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(audit::AuditError::Segment { path, reason }) => {
            output::stderr_line(&format!(
                "segment does NOT hold: {}: {}",
                path.display(),
                output::clean(&reason)
            ));
            Ok(ExitCode::from(super::error::exit::FAILED))
        }
        Err(other) => Err(other.into()),
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
