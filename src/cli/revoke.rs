//! `mayfly revoke …` and `mayfly unrevoke …`: cut credentials off, at once,
//! on every replica and every subscribed verifier.

use clap::{Args, Subcommand, ValueEnum};
use mayfly_sdk::proto::v1::{ListRevocationsRequest, Revocation, RevokeRequest, UnrevokeRequest};
use serde::Serialize;

use super::Context;
use super::error::CliError;
use super::output::{self, Table, time_and_relative};
use super::values::now_unix;

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
    /// Show every revocation in force.
    #[command(
        after_help = "Examples:\n  mayfly revoke list\n  mayfly revoke list --json | jq -r 'select(.kind == \"jti\") | .value'"
    )]
    List(ListRevocationsArgs),
}

/// Arguments of `mayfly revoke list`.
#[derive(Debug, Args)]
pub struct ListRevocationsArgs {
    /// Print JSON lines, one revocation per line.
    #[arg(long)]
    pub json: bool,
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
pub(super) async fn run_revoke(ctx: &Context, args: RevokeArgs) -> Result<(), CliError> {
    if let Some(RevokeSubcommand::List(list)) = args.list {
        return run_list(ctx, list).await;
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
        return output::json(&RevocationView::new(&revocation));
    }
    output::stdout(&describe("revoked", &revocation, now_unix()))
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
    let list = ctx
        .admin()
        .await?
        .list_revocations(ListRevocationsRequest::default())
        .await?
        .into_inner()
        .revocations;
    if args.json {
        for revocation in &list {
            output::json_line(&RevocationView::new(revocation))?;
        }
        return Ok(());
    }
    if list.is_empty() {
        return output::stdout("no revocations in force\n");
    }
    let now = now_unix();
    let mut table = Table::new(&["KIND", "VALUE", "REVOKED", "UNTIL", "REASON"]);
    for revocation in &list {
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
    use super::*;

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
