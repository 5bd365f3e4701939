//! `mayfly breakglass …`: emergency access with two operators and a clock.

use clap::{Args, Subcommand};
use mayfly_sdk::proto::v1::{
    ApproveGrantRequest, Grant, GrantOperator, ListGrantsRequest, RequestGrantRequest,
    ReviewGrantRequest, RevokeGrantRequest,
};
use serde::Serialize;

use super::Context;
use super::error::CliError;
use super::output::{self, Table};

/// `mayfly breakglass …`.
#[derive(Debug, Subcommand)]
pub enum BreakglassCommand {
    /// Ask for a grant: one more audience, or a disabled entry minting again.
    #[command(
        after_help = REQUEST_EXAMPLES,
        override_usage = "mayfly breakglass request --entry <ID> <--audience <AUD>|--enable>\n       \
                          --ttl <DURATION> --reason <REASON> --ticket <TICKET> [--json]"
    )]
    Request(RequestArgs),
    /// Approve another operator's pending grant; it is in force at once.
    #[command(after_help = "Examples:\n  mayfly breakglass approve 3f9c2a7d51e04b86")]
    Approve(GrantArgs),
    /// End a grant now and revoke every credential it issued.
    #[command(
        after_help = "Examples:\n  mayfly breakglass revoke 3f9c2a7d51e04b86 --reason \"incident closed\""
    )]
    Revoke(RevokeArgs),
    /// Show grants, newest first: pending, active and past.
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Record the post-incident review of a grant that has ended.
    #[command(after_help = REVIEW_EXAMPLES)]
    Review(ReviewArgs),
}

const REQUEST_EXAMPLES: &str = "\
Examples:
  mayfly breakglass request --entry 7aff5b4acb408a99 --audience ledger \\
      --ttl 30m --reason \"ledger outage, manual reconciliation\" --ticket INC-123
  mayfly breakglass request --entry 7aff5b4acb408a99 --enable \\
      --ttl 1h --reason \"disabled entry needed for recovery\" --ticket INC-124

A different operator must approve it (`mayfly breakglass approve <grant>`)
within [breakglass] approve_within (default 1h), or it lapses. Approved, it
lasts --ttl (at most [breakglass] max_ttl, default 4h) and ends on its own;
no credential issued under it outlives it. Every step and every credential
minted under it is audited and raises an alert.";

const LIST_EXAMPLES: &str = "\
Examples:
  mayfly breakglass list
  mayfly breakglass list --state active --state pending
  mayfly breakglass list --unreviewed      # ended, not yet reviewed
  mayfly breakglass list --entry 7aff5b4acb408a99 --json";

const REVIEW_EXAMPLES: &str = "\
Examples:
  mayfly breakglass review 3f9c2a7d51e04b86 \\
      --note \"INC-123 postmortem: access used as intended, 4 tokens\"

Until it is reviewed, its entry shows breakglass-review-overdue in
`mayfly report inventory` and in its owner's digest.";

/// Arguments of `mayfly breakglass request`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["audience", "enable"])))]
pub struct RequestArgs {
    /// The entry to widen.
    #[arg(long, value_name = "ID")]
    pub entry: String,
    /// The one audience to add.
    #[arg(long, value_name = "AUD")]
    pub audience: Option<String>,
    /// Let the disabled (or dormant, hence disabled) entry mint again.
    #[arg(long)]
    pub enable: bool,
    /// How long it lasts once approved, e.g. 30m.
    #[arg(long, value_name = "DURATION", value_parser = super::values::parse_ttl)]
    pub ttl: u32,
    /// Why, for the audit log and the alerts.
    #[arg(long)]
    pub reason: String,
    /// The incident or change ticket, e.g. INC-123.
    #[arg(long)]
    pub ticket: String,
    /// Print the grant as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A grant id, and `--json`.
#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The grant (as `mayfly breakglass list` shows it).
    pub grant: String,
    /// Print the grant as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mayfly breakglass revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The grant.
    pub grant: String,
    /// Why, for the audit log and the revocations.
    #[arg(long)]
    pub reason: String,
    /// Print the grant as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mayfly breakglass list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this entry's grants.
    #[arg(long, value_name = "ID")]
    pub entry: Option<String>,
    /// Only grants in this state; repeatable.
    ///
    /// One of pending, active, expired, lapsed, revoked.
    #[arg(long, value_name = "STATE")]
    pub state: Vec<String>,
    /// Only grants that ended without their post-incident review.
    #[arg(long)]
    pub unreviewed: bool,
    /// At most this many (default 100, at most 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Print JSON lines, one grant per line.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mayfly breakglass review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The grant.
    pub grant: String,
    /// What the review found.
    #[arg(long)]
    pub note: String,
    /// Print the grant as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A grant as `--json` prints it.
#[derive(Serialize)]
struct GrantView<'a> {
    id: &'a str,
    state: &'a str,
    entry_id: &'a str,
    spiffe_id: &'a str,
    owner: &'a str,
    audience: Option<&'a str>,
    enable: bool,
    ttl_seconds: u64,
    reason: &'a str,
    ticket: &'a str,
    requested_by: String,
    requested_at: String,
    approve_by: String,
    approved_by: Option<String>,
    approved_at: Option<String>,
    expires_at: Option<String>,
    ended_at: Option<String>,
    ended_by: Option<&'a str>,
    end_reason: Option<&'a str>,
    reviewed_by: Option<String>,
    reviewed_at: Option<String>,
    review_note: Option<&'a str>,
    issued: u64,
    revision: u64,
}

fn who(operator: Option<&GrantOperator>) -> Option<String> {
    operator.map(|o| {
        if o.name.is_empty() {
            format!("uid {}", o.uid)
        } else {
            format!("uid {} ({})", o.uid, o.name)
        }
    })
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

impl<'a> GrantView<'a> {
    fn new(grant: &'a Grant) -> Self {
        GrantView {
            id: &grant.id,
            state: &grant.state,
            entry_id: &grant.entry_id,
            spiffe_id: &grant.spiffe_id,
            owner: &grant.owner,
            audience: non_empty(&grant.audience),
            enable: grant.audience.is_empty(),
            ttl_seconds: grant.ttl_seconds,
            reason: &grant.reason,
            ticket: &grant.ticket,
            requested_by: who(grant.requested_by.as_ref()).unwrap_or_default(),
            requested_at: output::rfc3339(grant.requested_at),
            approve_by: output::rfc3339(grant.approve_by),
            approved_by: who(grant.approved_by.as_ref()),
            approved_at: output::optional_rfc3339(grant.approved_at),
            expires_at: output::optional_rfc3339(grant.expires_at),
            ended_at: output::optional_rfc3339(grant.ended_at),
            ended_by: non_empty(&grant.ended_by),
            end_reason: non_empty(&grant.end_reason),
            reviewed_by: who(grant.reviewed_by.as_ref()),
            reviewed_at: output::optional_rfc3339(grant.reviewed_at),
            review_note: non_empty(&grant.review_note),
            issued: grant.issued,
            revision: grant.revision,
        }
    }
}

fn scope(grant: &Grant) -> String {
    if grant.audience.is_empty() {
        "enable".to_owned()
    } else {
        format!("+aud {}", output::clean(&grant.audience))
    }
}

/// Runs `mayfly breakglass …`.
pub(super) async fn run(ctx: &Context, command: BreakglassCommand) -> Result<(), CliError> {
    let mut admin = ctx.admin().await?;
    match command {
        BreakglassCommand::Request(args) => {
            let grant = admin
                .request_grant(RequestGrantRequest {
                    entry_id: args.entry,
                    audience: args.audience.unwrap_or_default(),
                    enable: args.enable,
                    ttl_seconds: u64::from(args.ttl),
                    reason: args.reason,
                    ticket: args.ticket,
                })
                .await?
                .into_inner();
            show("requested", &grant, args.json)?;
            if !args.json {
                output::stderr_line(&format!(
                    "another operator approves it with `mayfly breakglass approve {}` before {}",
                    grant.id,
                    output::rfc3339(grant.approve_by)
                ));
            }
            Ok(())
        }
        BreakglassCommand::Approve(args) => {
            let grant = admin
                .approve_grant(ApproveGrantRequest { id: args.grant })
                .await?
                .into_inner();
            show("approved", &grant, args.json)
        }
        BreakglassCommand::Revoke(args) => {
            let answer = admin
                .revoke_grant(RevokeGrantRequest {
                    id: args.grant,
                    reason: args.reason,
                })
                .await?
                .into_inner();
            let grant = answer.grant.unwrap_or_default();
            show("revoked", &grant, args.json)?;
            if !args.json {
                output::stderr_line(&format!(
                    "{} credential(s) it issued were revoked",
                    answer.credentials_revoked
                ));
            }
            Ok(())
        }
        BreakglassCommand::Review(args) => {
            let grant = admin
                .review_grant(ReviewGrantRequest {
                    id: args.grant,
                    note: args.note,
                })
                .await?
                .into_inner();
            show("reviewed", &grant, args.json)
        }
        BreakglassCommand::List(args) => {
            let grants = admin
                .list_grants(ListGrantsRequest {
                    entry_id: args.entry.unwrap_or_default(),
                    states: args.state,
                    unreviewed: args.unreviewed,
                    limit: args.limit,
                })
                .await?
                .into_inner()
                .grants;
            if args.json {
                for grant in &grants {
                    output::json_line(&GrantView::new(grant))?;
                }
                return Ok(());
            }
            if grants.is_empty() {
                return output::stdout("no break-glass grants\n");
            }
            let mut table = Table::new(&[
                "GRANT",
                "STATE",
                "ENTRY",
                "SCOPE",
                "REQUESTED BY",
                "APPROVED BY",
                "ENDS",
                "ISSUED",
                "REVIEWED",
            ]);
            for grant in &grants {
                let ends = match grant.state.as_str() {
                    "pending" => grant.approve_by,
                    "active" | "expired" => grant.expires_at,
                    _ => grant.ended_at,
                };
                table.row([
                    grant.id.clone(),
                    output::clean(&grant.state),
                    grant.entry_id.clone(),
                    scope(grant),
                    output::clean(&who(grant.requested_by.as_ref()).unwrap_or_default()),
                    output::clean(&who(grant.approved_by.as_ref()).unwrap_or_else(|| "-".into())),
                    output::optional_rfc3339(ends).unwrap_or_else(|| "-".into()),
                    grant.issued.to_string(),
                    if grant.reviewed_at > 0 { "yes" } else { "no" }.to_owned(),
                ]);
            }
            output::stdout(&table.render())
        }
    }
}

fn show(what: &str, grant: &Grant, json: bool) -> Result<(), CliError> {
    if json {
        return output::json(&GrantView::new(grant));
    }
    let mut pairs = vec![
        ("state", grant.state.clone()),
        ("entry", format!("{} ({})", grant.entry_id, grant.spiffe_id)),
        ("scope", scope(grant)),
        ("ttl", output::compact_duration(grant.ttl_seconds)),
        ("reason", grant.reason.clone()),
        ("ticket", grant.ticket.clone()),
        (
            "requested by",
            who(grant.requested_by.as_ref()).unwrap_or_default(),
        ),
    ];
    if let Some(by) = who(grant.approved_by.as_ref()) {
        pairs.push(("approved by", by));
    }
    if let Some(at) = output::optional_rfc3339(grant.expires_at) {
        pairs.push(("in force until", at));
    }
    if let Some(at) = output::optional_rfc3339(grant.ended_at) {
        pairs.push(("ended", format!("{at} by {}", grant.ended_by)));
    }
    if let Some(by) = who(grant.reviewed_by.as_ref()) {
        pairs.push(("reviewed by", by));
    }
    pairs.push(("issued", grant.issued.to_string()));
    output::stdout(&format!(
        "{what}: break-glass grant {}\n{}",
        grant.id,
        output::key_values(&pairs)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory as _, Parser as _};

    #[test]
    fn a_request_names_exactly_one_scope() {
        let base = [
            "mayfly",
            "breakglass",
            "request",
            "--entry",
            "7aff5b4acb408a99",
            "--ttl",
            "30m",
            "--reason",
            "r",
            "--ticket",
            "INC-1",
        ];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let cli = with(&["--audience", "ledger"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Breakglass(BreakglassCommand::Request(RequestArgs { ttl: 1800, .. }))
        ));
        assert!(with(&["--enable"]).is_ok());
        assert!(with(&[]).is_err(), "a scope is required");
        assert!(
            with(&["--enable", "--audience", "x"]).is_err(),
            "not both scopes"
        );
        assert!(
            Cli::try_parse_from(&base[..9]).is_err(),
            "a ticket is required"
        );
    }

    #[test]
    fn help_lines_fit_a_terminal() {
        let mut command = Cli::command();
        let breakglass = command.find_subcommand_mut("breakglass").unwrap();
        for sub in ["request", "approve", "revoke", "list", "review"] {
            let help = breakglass
                .find_subcommand_mut(sub)
                .unwrap()
                .render_long_help()
                .to_string();
            for line in help.lines() {
                assert!(line.len() <= 80, "{sub}: {line:?}");
            }
        }
    }
}
