//! `mayfly report ...`: governance reports for owners and compliance.

use clap::{Args, Subcommand};
use mayfly_sdk::proto::v1 as pb;
use serde::Serialize;

use super::Context;
use super::error::CliError;
use super::output::{self, clean, rfc3339};

/// `mayfly report ...`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// What each owner should look at: identities expiring soon, reviews
    /// overdue, dormant identities, identities governance disabled.
    #[command(after_help = OWNERS_EXAMPLES)]
    Owners(OwnersArgs),
}

const OWNERS_EXAMPLES: &str = "\
Examples:
  mayfly report owners
  mayfly report owners --owner team-billing
  mayfly report owners --json | jq '.owner'

Owners with nothing to do are left out; no output means nothing is due.
With [alerts] webhook_url set, the broker also sends each owner's digest
to the webhook every [alerts] owner_digest_every (default 1d).";

/// Arguments of `mayfly report owners`.
#[derive(Debug, Args)]
pub struct OwnersArgs {
    /// Only this owner's digest (exactly as entries name it).
    #[arg(long, value_name = "OWNER")]
    owner: Option<String>,
    /// One JSON document per owner, one per line.
    #[arg(long)]
    json: bool,
}

/// Runs a `report` subcommand.
pub async fn run(ctx: &Context, command: ReportCommand) -> Result<(), CliError> {
    match command {
        ReportCommand::Owners(args) => owners(ctx, args).await,
    }
}

async fn owners(ctx: &Context, args: OwnersArgs) -> Result<(), CliError> {
    let mut admin = ctx.admin().await?;
    let mut page_token = String::new();
    let mut first = true;
    loop {
        let page = admin
            .owner_digests(pb::OwnerDigestsRequest {
                owner: args.owner.clone().unwrap_or_default(),
                page_token,
            })
            .await?
            .into_inner();
        for digest in &page.digests {
            if args.json {
                output::json_line(&DigestView::new(digest, page.generated_at))?;
            } else {
                if !first {
                    output::stdout_line("")?;
                }
                output::stdout(&render(digest))?;
            }
            first = false;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if first && !args.json {
        let whose = args
            .owner
            .as_deref()
            .map_or_else(|| "no owner".to_owned(), |o| format!("{} has", clean(o)));
        output::stderr_line(&format!("{whose} nothing to look at now"));
    }
    Ok(())
}

/// The lists of a digest with their headings, in the order they are shown.
fn lists(digest: &pb::OwnerDigest) -> [(&'static str, Option<&pb::DigestList>); 4] {
    [
        ("expiring within 14 days", digest.expiring.as_ref()),
        ("owner review overdue", digest.review_overdue.as_ref()),
        ("dormant", digest.dormant.as_ref()),
        ("disabled by governance", digest.disabled.as_ref()),
    ]
}

/// One owner's digest for a person.
fn render(digest: &pb::OwnerDigest) -> String {
    let mut out = format!("owner {}\n", clean(&digest.owner));
    for (heading, list) in lists(digest) {
        let Some(list) = list.filter(|l| !l.items.is_empty()) else {
            continue;
        };
        out.push_str(&format!(
            "  {heading} ({}):\n",
            list.items.len() as u64 + list.omitted
        ));
        for item in &list.items {
            out.push_str(&format!(
                "    {} {} [{}]\n      {}\n",
                item.entry_id,
                clean(&item.spiffe_id),
                clean(&item.environment),
                clean(&item.detail)
            ));
        }
        if list.omitted > 0 {
            out.push_str(&format!("    ... and {} more\n", list.omitted));
        }
    }
    out
}

/// One owner's digest as `--json` prints it.
#[derive(Debug, Serialize)]
struct DigestView<'a> {
    owner: &'a str,
    generated_at: String,
    expiring: ListView<'a>,
    review_overdue: ListView<'a>,
    dormant: ListView<'a>,
    disabled: ListView<'a>,
}

#[derive(Debug, Default, Serialize)]
struct ListView<'a> {
    items: Vec<ItemView<'a>>,
    omitted: u64,
}

#[derive(Debug, Serialize)]
struct ItemView<'a> {
    entry_id: &'a str,
    spiffe_id: &'a str,
    environment: &'a str,
    at: String,
    detail: &'a str,
}

impl<'a> DigestView<'a> {
    fn new(digest: &'a pb::OwnerDigest, generated_at: i64) -> Self {
        let list = |list: Option<&'a pb::DigestList>| {
            list.map(|l| ListView {
                items: l
                    .items
                    .iter()
                    .map(|i| ItemView {
                        entry_id: &i.entry_id,
                        spiffe_id: &i.spiffe_id,
                        environment: &i.environment,
                        at: rfc3339(i.at),
                        detail: &i.detail,
                    })
                    .collect(),
                omitted: l.omitted,
            })
            .unwrap_or_default()
        };
        DigestView {
            owner: &digest.owner,
            generated_at: rfc3339(generated_at),
            expiring: list(digest.expiring.as_ref()),
            review_overdue: list(digest.review_overdue.as_ref()),
            dormant: list(digest.dormant.as_ref()),
            disabled: list(digest.disabled.as_ref()),
        }
    }
}
