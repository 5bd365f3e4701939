//! `mayfly report`: reports for owners and compliance, built from what the
//! broker's admin API says. `report inventory` lists every identity (one row
//! per registration entry) with its owner, purpose, usage and governance
//! states, as a terminal table, JSON, CSV (RFC 4180) or one self-contained
//! HTML file.
//!
//! Invariants: the states are the broker's (`Entry.states`, computed by its
//! clock, `[governance]` settings and revocation set with
//! `governance::standing`); the report never derives them again. Filters are
//! applied by the server (`ListEntries`), whose pages the report follows to
//! the end. Every value in the HTML report is escaped, and the file loads
//! nothing: inline CSS, no script, and a Content-Security-Policy that
//! forbids everything else.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::v1::{Entry, ListEntriesRequest, ServerStatusRequest};
use serde::Serialize;

use super::Context;
use super::error::CliError;
use super::output::{self, Table, clean, optional_rfc3339, rfc3339};
use super::pages;
use super::values::now_unix;
use mayfly::governance::EntryState;

/// The reports.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Every identity: owner, purpose, usage per audience, states.
    #[command(after_help = INVENTORY_EXAMPLES)]
    Inventory(InventoryArgs),
    /// What each owner should look at: identities expiring soon, reviews
    /// overdue, dormant identities, identities governance disabled.
    #[command(after_help = OWNERS_EXAMPLES)]
    Owners(OwnersArgs),
}

const INVENTORY_EXAMPLES: &str = "\
Examples:
  mayfly report inventory                      # a table on the terminal
  mayfly report inventory --state dormant --state expiring
  mayfly report inventory --owner team-billing --format csv --out inv.csv
  mayfly report inventory --format json | jq '.identities[].states'
  mayfly report inventory --format html --out inventory.html

States (most severe first): revoked, breakglass (a grant is in force),
disabled, expired, dormant, breakglass-review-overdue (a grant ended
without its review), review-overdue, expiring (within 14 days), active.
An identity may be in several; --state picks those in any of the given ones.

HTML is one self-contained file (no script, nothing loaded) meant to be
saved with --out and opened or printed by anyone; it prints to stdout
without --out.";

/// How the inventory is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table with the main columns, for a terminal.
    Table,
    /// One JSON document with every column.
    Json,
    /// RFC 4180 CSV with a header row; lists joined with ";".
    Csv,
    /// One self-contained HTML file (meant for --out).
    Html,
}

/// Arguments of `mayfly report inventory`.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// The output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Only identities of this owner (exact match).
    #[arg(long, value_name = "OWNER")]
    owner: Option<String>,
    /// Only identities of this environment (exact match).
    #[arg(long, value_name = "ENV")]
    environment: Option<String>,
    /// Only identities of this data class (exact match).
    #[arg(long, value_name = "CLASS")]
    data_class: Option<String>,
    /// Only identities in this state; repeat for any of several.
    #[arg(long = "state", value_name = "STATE", value_parser = parse_state)]
    states: Vec<String>,
    /// Write the report to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// A state name as the broker knows it.
fn parse_state(text: &str) -> Result<String, String> {
    EntryState::parse(text).map(|state| state.as_str().to_owned())
}

/// Runs a report.
///
/// # Errors
///
/// The admin API's errors, or [`CliError::File`] when `--out` cannot be
/// written.
pub(super) async fn run(ctx: &Context, command: ReportCommand) -> Result<(), CliError> {
    match command {
        ReportCommand::Inventory(args) => inventory(ctx, args).await,
        ReportCommand::Owners(args) => owners(ctx, args).await,
    }
}

async fn inventory(ctx: &Context, args: InventoryArgs) -> Result<(), CliError> {
    let mut admin = ctx.admin().await?;
    let broker = admin
        .server_status(ServerStatusRequest {})
        .await?
        .into_inner()
        .grpc_address;
    let first = ListEntriesRequest {
        page_size: Some(0),
        page_token: String::new(),
        owner: args.owner.clone().unwrap_or_default(),
        environment: args.environment.clone().unwrap_or_default(),
        data_class: args.data_class.clone().unwrap_or_default(),
        spiffe_id_prefix: String::new(),
        parent_id: String::new(),
        states: args.states.clone(),
    };
    let mut entries = Vec::new();
    pages::follow(
        |page_token| {
            let mut admin = admin.clone();
            let request = ListEntriesRequest {
                page_token,
                ..first.clone()
            };
            async move {
                let page = admin.list_entries(request).await?.into_inner();
                Ok((page.entries, page.next_page_token))
            }
        },
        |entry| {
            entries.push(entry);
            Ok(())
        },
    )
    .await?;
    // The broker lists in id order (random); people read by SPIFFE ID.
    entries.sort_by(|a, b| a.spiffe_id.cmp(&b.spiffe_id));
    let report = Inventory {
        generated_at: rfc3339(now_unix()),
        broker,
        filters: Filters {
            owner: args.owner,
            environment: args.environment,
            data_class: args.data_class,
            states: args.states,
        },
        identities: entries.iter().map(Identity::from).collect(),
    };
    let text = match args.format {
        Format::Table => report.table(),
        Format::Json => report.json()?,
        Format::Csv => report.csv(),
        Format::Html => report.html(),
    };
    match &args.out {
        Some(path) => std::fs::write(path, text).map_err(|e| CliError::file("write", path, e)),
        None => output::stdout(&text),
    }
}

/// The whole report, as the JSON format writes it.
#[derive(Debug, Clone, Serialize)]
struct Inventory {
    /// When the report was made (this machine's clock), RFC 3339.
    generated_at: String,
    /// The broker's gRPC address, as it reports it.
    broker: String,
    filters: Filters,
    identities: Vec<Identity>,
}

/// The filters the report was asked for; `null` (or empty) when not used.
#[derive(Debug, Clone, Serialize)]
struct Filters {
    owner: Option<String>,
    environment: Option<String>,
    data_class: Option<String>,
    states: Vec<String>,
}

/// One identity's row. Times are RFC 3339, `None` (null) for never.
#[derive(Debug, Clone, Serialize)]
struct Identity {
    id: String,
    spiffe_id: String,
    owner: String,
    purpose: String,
    environment: String,
    data_class: String,
    kinds: Vec<String>,
    audiences: Vec<AudienceRow>,
    /// Audiences of the entry that are not registered (`mayfly audience create`).
    unregistered_audiences: Vec<String>,
    parent_agent: Option<String>,
    created_at: String,
    expires_at: String,
    last_minted_at: Option<String>,
    mint_count: u64,
    x509_mint_count: u64,
    x509_last_minted_at: Option<String>,
    last_review: Option<String>,
    last_review_by: Option<String>,
    review_due_at: Option<String>,
    states: Vec<String>,
}

/// How one audience was used.
#[derive(Debug, Clone, Serialize)]
struct AudienceRow {
    audience: String,
    /// Whether it is a registered audience (an entry's audience that is not
    /// is flagged in every format); `None` for an audience the entry minted
    /// for before it was taken off the entry, which the broker does not say.
    registered: Option<bool>,
    mint_count: u64,
    last_minted_at: Option<String>,
}

impl From<&Entry> for Identity {
    fn from(entry: &Entry) -> Self {
        let mut used: BTreeMap<&str, (u64, i64)> = entry
            .audience_usage
            .iter()
            .map(|u| (u.audience.as_str(), (u.mint_count, u.last_minted_at)))
            .collect();
        // The entry's audiences in its order, then any it minted for before
        // its audiences changed.
        let mut audiences: Vec<AudienceRow> = entry
            .audiences
            .iter()
            .map(|audience| {
                let (mint_count, last) = used.remove(audience.as_str()).unwrap_or((0, 0));
                AudienceRow {
                    audience: audience.clone(),
                    registered: Some(!entry.unregistered_audiences.contains(audience)),
                    mint_count,
                    last_minted_at: optional_rfc3339(last),
                }
            })
            .collect();
        audiences.extend(
            used.into_iter()
                .map(|(audience, (mint_count, last))| AudienceRow {
                    audience: audience.to_owned(),
                    registered: None,
                    mint_count,
                    last_minted_at: optional_rfc3339(last),
                }),
        );
        Identity {
            id: entry.id.clone(),
            spiffe_id: entry.spiffe_id.clone(),
            owner: entry.owner.clone(),
            purpose: entry.purpose.clone(),
            environment: entry.environment.clone(),
            data_class: entry.data_class.clone(),
            kinds: entry.kinds.clone(),
            audiences,
            unregistered_audiences: entry.unregistered_audiences.clone(),
            parent_agent: (!entry.parent_id.is_empty()).then(|| entry.parent_id.clone()),
            created_at: rfc3339(entry.created_at),
            expires_at: rfc3339(entry.expires_at),
            last_minted_at: optional_rfc3339(entry.last_minted_at),
            mint_count: entry.mint_count,
            x509_mint_count: entry.x509_mint_count,
            x509_last_minted_at: optional_rfc3339(entry.x509_last_minted_at),
            last_review: entry.last_review.as_ref().map(|r| rfc3339(r.at)),
            last_review_by: entry.last_review.as_ref().map(|r| r.by.clone()),
            review_due_at: optional_rfc3339(entry.review_due_at),
            states: entry.states.clone(),
        }
    }
}

impl Identity {
    /// `aud=count;...`, every audience with its JWT-SVID count.
    fn audience_counts(&self) -> String {
        self.audiences
            .iter()
            .map(|a| format!("{}={}", a.audience, a.mint_count))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Like [`audience_counts`](Self::audience_counts), each unregistered
    /// audience marked, for a person.
    fn audience_counts_flagged(&self) -> String {
        self.audiences
            .iter()
            .map(|a| {
                let flag = match a.registered {
                    Some(false) => " (unregistered)",
                    Some(true) | None => "",
                };
                format!("{}={}{flag}", a.audience, a.mint_count)
            })
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// The CSV columns, in order.
const CSV_HEADER: [&str; 19] = [
    "id",
    "spiffe_id",
    "owner",
    "purpose",
    "environment",
    "data_class",
    "kinds",
    "audiences",
    "audience_mint_counts",
    "unregistered_audiences",
    "parent_agent",
    "created_at",
    "expires_at",
    "last_minted_at",
    "mint_count",
    "x509_mint_count",
    "last_review",
    "review_due_at",
    "states",
];

/// Text escaped for HTML content and attribute values.
fn html_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const HTML_STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#111}
h1{font-size:1.4rem;margin:0 0 .3rem}
h2{font-size:1.1rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;font-size:.85rem}
th,td{border:1px solid #999;padding:.25rem .4rem;text-align:left;vertical-align:top}
th{background:#e8e8e8}
tbody tr:nth-child(even){background:#f6f6f6}
td.num{text-align:right}
.state{display:inline-block;padding:0 .3rem;margin:1px;border-radius:3px;background:#ddd}
.revoked,.disabled,.expired{background:#f3b4b4}
.dormant,.review-overdue,.expiring{background:#f5dd9a}
.breakglass,.breakglass-review-overdue{background:#f2a3a3}
.active{background:#bfe3bf}
.unregistered{background:#cfd8f0}
@media print{body{margin:0}table{font-size:.7rem}th{background:#e8e8e8 !important}
 tr{page-break-inside:avoid}thead{display:table-header-group}}
";

impl Inventory {
    fn table(&self) -> String {
        if self.identities.is_empty() {
            return "no identities match\n".to_owned();
        }
        let mut table = Table::new(&[
            "SPIFFE ID",
            "OWNER",
            "ENV",
            "CLASS",
            "MINTS",
            "LAST MINTED",
            "EXPIRES",
            "STATES",
            "UNREGISTERED AUD",
        ]);
        for i in &self.identities {
            table.row([
                i.spiffe_id.clone(),
                i.owner.clone(),
                i.environment.clone(),
                i.data_class.clone(),
                i.mint_count.to_string(),
                i.last_minted_at.clone().unwrap_or_else(|| "never".into()),
                i.expires_at.clone(),
                i.states.join(","),
                i.unregistered_audiences.join(","),
            ]);
        }
        table.render()
    }

    fn json(&self) -> Result<String, CliError> {
        serde_json::to_string_pretty(self)
            .map(|text| text + "\n")
            .map_err(|e| CliError::Output {
                reason: e.to_string(),
                broken_pipe: false,
            })
    }

    fn csv(&self) -> String {
        let mut out = CSV_HEADER.join(",");
        out.push_str("\r\n");
        for i in &self.identities {
            let audiences: Vec<&str> = i.audiences.iter().map(|a| a.audience.as_str()).collect();
            let fields = [
                i.id.clone(),
                i.spiffe_id.clone(),
                i.owner.clone(),
                i.purpose.clone(),
                i.environment.clone(),
                i.data_class.clone(),
                i.kinds.join(";"),
                audiences.join(";"),
                i.audience_counts(),
                i.unregistered_audiences.join(";"),
                i.parent_agent.clone().unwrap_or_default(),
                i.created_at.clone(),
                i.expires_at.clone(),
                i.last_minted_at.clone().unwrap_or_default(),
                i.mint_count.to_string(),
                i.x509_mint_count.to_string(),
                i.last_review.clone().unwrap_or_default(),
                i.review_due_at.clone().unwrap_or_default(),
                i.states.join(";"),
            ];
            let line: Vec<String> = fields.iter().map(|f| mayfly::csv::cell(f)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        }
        out
    }

    fn html(&self) -> String {
        let e = |text: &str| html_escape(text);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
             style-src 'unsafe-inline'\">\n<title>Mayfly identity inventory</title>\n\
             <style>\n{HTML_STYLE}</style>\n</head>\n<body>\n\
             <h1>Mayfly identity inventory</h1>\n\
             <p>Generated at <time id=\"generated-at\">{}</time> from the broker at \
             <code>{}</code>: {} identit{}.</p>\n",
            e(&self.generated_at),
            e(&self.broker),
            self.identities.len(),
            if self.identities.len() == 1 {
                "y"
            } else {
                "ies"
            },
        );
        out.push_str("<h2>Filters</h2>\n<ul id=\"filters\">\n");
        let f = &self.filters;
        let mut any = false;
        for (name, value) in [
            ("owner", &f.owner),
            ("environment", &f.environment),
            ("data class", &f.data_class),
        ] {
            if let Some(value) = value {
                any = true;
                let _ = writeln!(out, "<li>{name}: {}</li>", e(value));
            }
        }
        if !f.states.is_empty() {
            any = true;
            let _ = writeln!(out, "<li>state: any of {}</li>", e(&f.states.join(", ")));
        }
        if !any {
            out.push_str("<li>none: every identity</li>\n");
        }
        out.push_str("</ul>\n<h2>Identities per state</h2>\n");
        out.push_str(
            "<table id=\"state-counts\">\n<thead><tr><th>State</th><th>Identities</th>\
             </tr></thead>\n<tbody>\n",
        );
        for state in EntryState::ALL {
            let count = self
                .identities
                .iter()
                .filter(|i| i.states.iter().any(|s| s == state.as_str()))
                .count();
            let _ = writeln!(
                out,
                "<tr><td><span class=\"state {0}\">{0}</span></td><td class=\"num\">{count}</td></tr>",
                state.as_str()
            );
        }
        let unregistered = self
            .identities
            .iter()
            .filter(|i| !i.unregistered_audiences.is_empty())
            .count();
        let _ = writeln!(
            out,
            "<tr><td><span class=\"state unregistered\">unregistered audience</span></td>\
             <td class=\"num\">{unregistered}</td></tr>"
        );
        out.push_str("</tbody>\n</table>\n<h2>Identities</h2>\n");
        out.push_str("<table id=\"inventory\">\n<thead><tr>");
        for header in [
            "SPIFFE ID",
            "Owner",
            "Purpose",
            "Environment",
            "Data class",
            "Kinds",
            "Audiences (JWT-SVIDs)",
            "Parent agent",
            "Created",
            "Expires",
            "Last minted",
            "Mints",
            "X509-SVIDs",
            "Last review",
            "States",
        ] {
            let _ = write!(out, "<th>{header}</th>");
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        let never = |t: &Option<String>| t.clone().unwrap_or_else(|| "never".into());
        for i in &self.identities {
            let states: String = i
                .states
                .iter()
                .map(|s| format!("<span class=\"state {0}\">{0}</span>", e(s)))
                .collect::<Vec<_>>()
                .join(" ");
            let review = match (&i.last_review, &i.last_review_by) {
                (Some(at), Some(by)) => format!("{at} by {by}"),
                _ => "never".into(),
            };
            let cells = [
                e(&i.spiffe_id),
                e(&i.owner),
                e(&i.purpose),
                e(&i.environment),
                e(&i.data_class),
                e(&i.kinds.join(", ")),
                e(&i.audience_counts_flagged().replace(';', "; ")),
                e(i.parent_agent.as_deref().unwrap_or("")),
                e(&i.created_at),
                e(&i.expires_at),
                e(&never(&i.last_minted_at)),
                i.mint_count.to_string(),
                i.x509_mint_count.to_string(),
                e(&review),
                states,
            ];
            let _ = write!(out, "<tr id=\"entry-{}\">", e(&i.id));
            for cell in cells {
                let _ = write!(out, "<td>{cell}</td>");
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n</body>\n</html>\n");
        out
    }
}

// ---------------------------------------------------------------------------
// report owners

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
        output::stderr_line(&match args.owner.as_deref() {
            Some(owner) => format!("{} has nothing to look at now", clean(owner)),
            None => "no owner has anything to look at now".to_owned(),
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(html_escape("plain text"), "plain text");
        assert_eq!(
            html_escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn a_state_flag_must_name_a_state() {
        assert_eq!(
            parse_state("review-overdue").as_deref(),
            Ok("review-overdue")
        );
        let error = parse_state("stale").unwrap_err();
        assert!(error.contains("dormant"), "{error}");
    }
}
