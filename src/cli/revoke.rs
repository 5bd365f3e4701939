//! `mayfly revoke …` and `mayfly unrevoke …`: cut credentials off, at once,
//! on every replica and every subscribed verifier.

use clap::{Args, Subcommand, ValueEnum};
use std::process::ExitCode;

use mayfly_sdk::proto::v1::{
    ListRevocationsRequest, Revocation, RevokeManyRequest, RevokeRequest, UnrevokeRequest,
};
use serde::Serialize;

use super::Context;
use super::error::CliError;
use super::output::{self, Table, time_and_relative};
use super::pages;
use super::values::{Since, now_unix, parse_since, parse_spiffe_id};

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RevokeKind {
    /// A registration entry (by id): every credential of its SPIFFE ID.
    Entry,
    /// A SPIFFE ID, whatever entry it came from.
    SpiffeId,
    /// One JWT-SVID, by its `jti` claim.
    Jti,
    /// One X509-SVID, by its serial number (hex, as `openssl x509 -serial` prints it).
    Serial,
    /// An agent (by SPIFFE ID): its own SVID and everything issued through it.
    Agent,
}

impl RevokeKind {
    fn as_str(self) -> &'static str {
        match self {
            RevokeKind::Entry => "entry",
            RevokeKind::SpiffeId => "spiffe-id",
            RevokeKind::Jti => "jti",
            RevokeKind::Serial => "serial",
            RevokeKind::Agent => "agent",
        }
    }
}

/// Arguments of `mayfly revoke`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RevokeArgs {
    /// `list`: show the revocations in force.
    #[command(subcommand)]
    pub list: Option<RevokeSubcommand>,
    /// What to revoke.
    #[arg(value_enum, required = true)]
    pub kind: Option<RevokeKind>,
    /// The entry id, SPIFFE ID, jti or serial.
    #[arg(required = true)]
    pub value: Option<String>,
    /// Why: required, it goes into the audit log.
    #[arg(long, required = true)]
    pub reason: Option<String>,
    /// Print the revocation as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `mayfly revoke list`.
#[derive(Debug, Subcommand)]
pub enum RevokeSubcommand {
    /// Show the revocations in force, or those that match the filters.
    #[command(after_help = LIST_EXAMPLES)]
    List(ListRevocationsArgs),
    /// Revoke many at once, from a file of `KIND VALUE` lines.
    #[command(after_help = BULK_EXAMPLES)]
    Bulk(BulkArgs),
}

const BULK_EXAMPLES: &str = "\
Examples:
  mayfly revoke bulk leaked-tokens.txt --reason \"tokens pasted in INC-77\"
  cut -f1 serials.tsv | sed 's/^/serial /' \\
      | mayfly revoke bulk - --reason \"batch\"

Each line is KIND VALUE (entry, spiffe-id, jti, serial or agent); blank
lines and lines starting with # are skipped. Lines go to the broker in
batches (--batch); each batch is stored in one write and audited in one
group commit, one record per revocation, and is durable before the next is
sent. Lines the broker refuses are listed with their line number; the rest
go ahead. Exit 0 when every line is revoked (or already was), else 1.";

/// Arguments of `mayfly revoke bulk`.
#[derive(Debug, Args)]
pub struct BulkArgs {
    /// The file of `KIND VALUE` lines; `-` reads standard input.
    pub file: std::path::PathBuf,
    /// Why: required, it goes into every revocation's audit record.
    #[arg(long)]
    pub reason: String,
    /// Revocations per request (at most 10000).
    #[arg(long, default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
}

const LIST_EXAMPLES: &str = "\
Examples:
  mayfly revoke list
  mayfly revoke list --kind jti --since 24h
  mayfly revoke list --subject spiffe://mayfly.internal/billing/api
  mayfly revoke list --actor admin:uid=1000 --since 2026-05-01
  mayfly revoke list --kind serial --json | jq -r .value

Revocations come in key order (kind, then value), fetched a page at a time
(--page-size); the filters given must all match. --json prints one
revocation per line (JSON lines) as each page arrives.";

/// Arguments of `mayfly revoke list`.
#[derive(Debug, Args)]
pub struct ListRevocationsArgs {
    /// Only revocations of this kind.
    #[arg(long, value_enum, value_name = "KIND")]
    kind: Option<RevokeKind>,
    /// Only revocations that cover this SPIFFE ID.
    #[arg(long, value_name = "SPIFFE_ID", value_parser = parse_spiffe_id)]
    subject: Option<String>,
    /// Only revocations made by this actor, as the list shows it (admin:uid=1000).
    #[arg(long, value_name = "ACTOR")]
    actor: Option<String>,
    /// Only revocations made since then: 24h (ago), 2026-05-01 or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    since: Option<Since>,
    /// Revocations per request, at most 5000 [default: the server's, 500].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    page_size: Option<u32>,
    /// Print JSON lines, one revocation per line, as the pages arrive.
    #[arg(long)]
    json: bool,
}

impl ListRevocationsArgs {
    /// The request for the first page; the others differ in their token.
    fn request(&self, now: i64) -> ListRevocationsRequest {
        ListRevocationsRequest {
            page_size: Some(self.page_size.unwrap_or(0)),
            page_token: String::new(),
            kind: self
                .kind
                .map(|kind| kind.as_str().to_owned())
                .unwrap_or_default(),
            subject: self.subject.clone().unwrap_or_default(),
            actor: self.actor.clone().unwrap_or_default(),
            revoked_since: self.since.map_or(0, |since| since.resolve(now)),
        }
    }

    fn filtered(&self) -> bool {
        self.kind.is_some()
            || self.subject.is_some()
            || self.actor.is_some()
            || self.since.is_some()
    }
}

/// Arguments of `mayfly unrevoke`.
#[derive(Debug, Args)]
pub struct UnrevokeArgs {
    /// What to lift: entry, spiffe-id or agent (a leaked token or
    /// certificate stays revoked until it expires).
    #[arg(value_enum)]
    pub kind: RevokeKind,
    /// The entry id or SPIFFE ID.
    pub value: String,
    /// Why: required, it goes into the audit log.
    #[arg(long)]
    pub reason: String,
    /// Print the lifted revocation as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) const REVOKE_EXAMPLES: &str = "\
Examples:
  mayfly revoke entry 7aff5b4acb408a99 --reason \"host compromised\"
  mayfly revoke spiffe-id spiffe://example.org/billing/api --reason \"key leaked\"
  mayfly revoke jti 3q2-7Hn0aC1b --reason \"token pasted in a ticket\"
  mayfly revoke serial 5C:0F:31:A2 --reason \"laptop stolen\"
  mayfly revoke agent spiffe://example.org/agent/node-7 --reason \"node lost\"
  mayfly revoke list
  mayfly unrevoke entry 7aff5b4acb408a99 --reason \"host rebuilt\"

A revocation is durable when the command returns, and every replica and
subscribed verifier rejects what it covers within a second. Entry, SPIFFE ID
and agent revocations also stop new credentials until lifted with `mayfly
unrevoke`; credentials issued before stay revoked until they expire. A jti
or serial revocation lasts until the credential has expired; then it is
dropped on its own.";

/// A revocation as `--json` prints it.
#[derive(Serialize)]
struct RevocationView<'a> {
    kind: &'a str,
    value: &'a str,
    subjects: &'a [String],
    revoked_at: String,
    expires_at: Option<String>,
    stops_minting: bool,
    reason: &'a str,
    actor: &'a str,
}

impl<'a> RevocationView<'a> {
    fn new(revocation: &'a Revocation) -> Self {
        RevocationView {
            kind: &revocation.kind,
            value: &revocation.value,
            subjects: &revocation.subjects,
            revoked_at: output::rfc3339(revocation.revoked_at),
            expires_at: output::optional_rfc3339(revocation.expires_at),
            stops_minting: revocation.expires_at == 0,
            reason: &revocation.reason,
            actor: &revocation.actor,
        }
    }
}

/// Runs `mayfly revoke`.
pub(super) async fn run_revoke(ctx: &Context, args: RevokeArgs) -> Result<ExitCode, CliError> {
    match args.list {
        Some(RevokeSubcommand::List(list)) => {
            return run_list(ctx, list).await.map(|()| ExitCode::SUCCESS);
        }
        Some(RevokeSubcommand::Bulk(bulk)) => return run_bulk(ctx, bulk).await,
        None => {}
    }
    let (Some(kind), Some(value), Some(reason)) = (args.kind, args.value, args.reason) else {
        return Err(CliError::usage(
            "usage: mayfly revoke <KIND> <VALUE> --reason \"...\" (or mayfly revoke list)",
        ));
    };
    let revocation = ctx
        .admin()
        .await?
        .revoke(RevokeRequest {
            kind: kind.as_str().to_owned(),
            value,
            reason,
        })
        .await?
        .into_inner();
    if args.json {
        output::json(&RevocationView::new(&revocation))?;
    } else {
        output::stdout(&describe("revoked", &revocation, now_unix()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of a bulk file: its number, kind and value.
type BulkLine = (usize, String, String);

/// Reads `KIND VALUE` lines, skipping blanks and comments.
///
/// # Errors
/// A usage error naming the first malformed line.
fn bulk_lines(text: &str) -> Result<Vec<BulkLine>, CliError> {
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(kind), Some(value), None) => {
                lines.push((index + 1, kind.to_owned(), value.to_owned()));
            }
            _ => {
                return Err(CliError::usage(format!(
                    "line {}: expected KIND VALUE (e.g. \"jti 3q2-7Hn0aC1b\"), got {:?}",
                    index + 1,
                    output::clean(line)
                )));
            }
        }
    }
    Ok(lines)
}

async fn run_bulk(ctx: &Context, args: BulkArgs) -> Result<ExitCode, CliError> {
    let text = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| CliError::usage(format!("cannot read standard input: {e}")))?;
        text
    } else {
        std::fs::read_to_string(&args.file)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", args.file.display())))?
    };
    let lines = bulk_lines(&text)?;
    let mut admin = ctx.admin().await?;
    let started = std::time::Instant::now();
    let (mut revoked, mut in_force, mut refused) = (0u64, 0u64, Vec::new());
    let batch = usize::try_from(args.batch).unwrap_or(1000);
    for chunk in lines.chunks(batch) {
        let items = chunk
            .iter()
            .map(|(_, kind, value)| RevokeRequest {
                kind: kind.clone(),
                value: value.clone(),
                reason: args.reason.clone(),
            })
            .collect();
        let answer = admin
            .revoke_many(RevokeManyRequest { items })
            .await?
            .into_inner();
        revoked += answer.revoked;
        in_force += answer.in_force;
        for ((line, kind, value), result) in chunk.iter().zip(&answer.results) {
            if !result.error.is_empty() {
                refused.push(format!(
                    "line {line}: {kind} {}: {}",
                    output::clean(value),
                    output::clean(&result.error)
                ));
            }
        }
        let done = revoked + in_force + refused.len() as u64;
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
        output::stderr_line(&format!(
            "{done}/{} lines ({rate:.0}/s): {revoked} revoked, {in_force} already, {} refused",
            lines.len(),
            refused.len()
        ));
    }
    for line in refused.iter().take(20) {
        output::stderr_line(line);
    }
    if refused.len() > 20 {
        output::stderr_line(&format!("... and {} more refused", refused.len() - 20));
    }
    output::stdout(&format!(
        "revoked {revoked}, already in force {in_force}, refused {} in {:.1}s\n",
        refused.len(),
        started.elapsed().as_secs_f64()
    ))?;
    Ok(if refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `mayfly unrevoke`.
pub(super) async fn run_unrevoke(ctx: &Context, args: UnrevokeArgs) -> Result<(), CliError> {
    let revocation = ctx
        .admin()
        .await?
        .unrevoke(UnrevokeRequest {
            kind: args.kind.as_str().to_owned(),
            value: args.value,
            reason: args.reason,
        })
        .await?
        .into_inner();
    if args.json {
        return output::json(&RevocationView::new(&revocation));
    }
    output::stdout(&describe("lifted", &revocation, now_unix()))
}

async fn run_list(ctx: &Context, args: ListRevocationsArgs) -> Result<(), CliError> {
    let admin = ctx.admin().await?;
    let now = now_unix();
    let first = args.request(now);
    // JSON lines go out as each page arrives; the table waits for all of
    // them, to size its columns.
    let mut rows = Vec::new();
    pages::follow(
        |page_token| {
            let mut admin = admin.clone();
            let request = ListRevocationsRequest {
                page_token,
                ..first.clone()
            };
            async move {
                let page = admin.list_revocations(request).await?.into_inner();
                Ok((page.revocations, page.next_page_token))
            }
        },
        |revocation| {
            if args.json {
                output::json_line(&RevocationView::new(&revocation))
            } else {
                rows.push(revocation);
                Ok(())
            }
        },
    )
    .await?;
    if args.json {
        return Ok(());
    }
    if rows.is_empty() {
        return output::stdout(if args.filtered() {
            "no revocations in force match these filters\n"
        } else {
            "no revocations in force\n"
        });
    }
    let mut table = Table::new(&["KIND", "VALUE", "REVOKED", "UNTIL", "REASON"]);
    for revocation in &rows {
        table.row([
            output::clean(&revocation.kind),
            output::clean(&revocation.value),
            time_and_relative(revocation.revoked_at, now),
            until(revocation, now),
            output::clean(&revocation.reason),
        ]);
    }
    output::stdout(&table.render())
}

fn until(revocation: &Revocation, now: i64) -> String {
    if revocation.expires_at == 0 {
        "lifted by unrevoke (stops minting)".to_owned()
    } else {
        time_and_relative(revocation.expires_at, now)
    }
}

/// What `revoke` and `unrevoke` print.
fn describe(what: &str, revocation: &Revocation, now: i64) -> String {
    let mut text = format!(
        "{what}: {} {}\n",
        output::clean(&revocation.kind),
        output::clean(&revocation.value)
    );
    if !revocation.subjects.is_empty() {
        let subjects: Vec<String> = revocation
            .subjects
            .iter()
            .map(|s| output::clean(s))
            .collect();
        text.push_str(&format!("  covers    {}\n", subjects.join(", ")));
    }
    text.push_str(&format!(
        "  revoked   {}\n  until     {}\n  reason    {}\n",
        time_and_relative(revocation.revoked_at, now),
        until(revocation, now),
        output::clean(&revocation.reason)
    ));
    if what == "lifted" {
        text.push_str(
            "New credentials may be minted again; those issued before the revocation stay revoked until they expire.\n",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn list_args(args: &[&str]) -> Result<ListRevocationsArgs, Box<dyn std::error::Error>> {
        let cli = Cli::try_parse_from([&["mayfly", "revoke", "list"], args].concat())?;
        match cli.command {
            Command::Revoke(RevokeArgs {
                list: Some(RevokeSubcommand::List(list)),
                ..
            }) => Ok(list),
            _ => Err("not revoke list".into()),
        }
    }

    #[test]
    fn list_flags_become_the_requests_filters() -> Result<(), Box<dyn std::error::Error>> {
        let args = list_args(&[
            "--kind",
            "spiffe-id",
            "--subject",
            "spiffe://td/a",
            "--actor",
            "admin:uid=0",
            "--since",
            "1h",
            "--page-size",
            "9",
        ])?;
        assert!(args.filtered());
        assert_eq!(
            args.request(10_000),
            ListRevocationsRequest {
                page_size: Some(9),
                page_token: String::new(),
                kind: "spiffe-id".into(),
                subject: "spiffe://td/a".into(),
                actor: "admin:uid=0".into(),
                revoked_since: 10_000 - 3_600,
            }
        );
        let plain = list_args(&[])?;
        assert!(!plain.filtered());
        assert_eq!(
            plain.request(10_000),
            ListRevocationsRequest {
                page_size: Some(0),
                ..Default::default()
            }
        );
        assert!(list_args(&["--kind", "token"]).is_err());
        assert!(list_args(&["--since", "soon"]).is_err());
        Ok(())
    }

    #[test]
    fn describes_an_identity_revocation_and_its_lifting() {
        let revocation = Revocation {
            kind: "entry".into(),
            value: "7aff5b4acb408a99".into(),
            subjects: vec!["spiffe://td/a".into()],
            revoked_at: 1_000,
            expires_at: 0,
            reason: "leaked\u{1b}[31m".into(),
            actor: "admin:uid=0".into(),
        };
        let text = describe("revoked", &revocation, 1_010);
        assert!(
            text.starts_with("revoked: entry 7aff5b4acb408a99\n"),
            "{text}"
        );
        assert!(text.contains("covers    spiffe://td/a"), "{text}");
        assert!(text.contains("stops minting"), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "control characters are cleaned: {text}"
        );
        let lifted = Revocation {
            expires_at: 4_600,
            ..revocation
        };
        let text = describe("lifted", &lifted, 1_010);
        assert!(text.contains("stay revoked until they expire"), "{text}");
        assert!(!text.contains("stops minting"), "{text}");
    }
}
