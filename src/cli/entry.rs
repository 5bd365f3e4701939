//! `mayfly entry …`: registration entries over the admin socket.

use clap::{Args, Subcommand, ValueEnum};
use mayfly_sdk::proto::v1::{
    CreateEntryRequest, DeleteEntryRequest, DisableEntryRequest, EnableEntryRequest, Entry,
    EntrySpec, GetEntryRequest, ListEntriesRequest, PurgeEntriesRequest, ReviewEntryRequest,
    StringList, UpdateEntryRequest,
};
use serde::Serialize;

use super::Context;
use super::error::CliError;
use super::output::{self, Table, key_values, optional_rfc3339, relative, time_and_relative};
use super::pages;
use super::values::{Expiry, now_unix, parse_expiry, parse_interval, parse_spiffe_id, parse_ttl};

/// Register, inspect, change and remove identities.
#[derive(Debug, Subcommand)]
pub enum EntryCommand {
    /// Register a new identity: who it is, who owns it, what it may be used for.
    #[command(after_help = CREATE_EXAMPLES)]
    Create(CreateArgs),
    /// List the registered identities, or those that match the filters.
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Show every field of one entry.
    #[command(
        after_help = "Examples:\n  mayfly entry show 7aff5b4acb408a99\n  mayfly entry show spiffe://mayfly.internal/billing/api --json"
    )]
    Show(ShowArgs),
    /// Change an entry. Only the flags given change; a list flag replaces the whole list.
    #[command(after_help = UPDATE_EXAMPLES)]
    Update(UpdateArgs),
    /// Remove an entry. Credentials already issued stay valid until they expire.
    #[command(after_help = "Examples:\n  mayfly entry delete 7aff5b4acb408a99")]
    Delete(DeleteArgs),
    /// Stop an entry minting; every refusal quotes the reason. Audited.
    #[command(after_help = DISABLE_EXAMPLES)]
    Disable(GovernArgs),
    /// Let a disabled entry mint again. Audited.
    #[command(
        after_help = "Examples:\n  mayfly entry enable 7aff5b4acb408a99 --reason \"owner confirmed, CHG-1234\""
    )]
    Enable(GovernArgs),
    /// Record an owner review of an entry: who, when, and a note. Audited.
    #[command(after_help = REVIEW_EXAMPLES)]
    Review(ReviewArgs),
    /// Delete entries expired longer than --expired-for; lists only, unless --yes.
    #[command(after_help = PURGE_EXAMPLES)]
    Purge(PurgeArgs),
}

const PURGE_EXAMPLES: &str = "\
Examples:
  mayfly entry purge --expired-for 90d         # lists what would be deleted
  mayfly entry purge --expired-for 90d --yes   # deletes them, each audited";

const REVIEW_EXAMPLES: &str = "\
Examples:
  mayfly entry review 7aff5b4acb408a99 --note \"still needed; scope ok\"

The next review is due one interval later: the entry's --review-every, or
[governance] review_every (default 90d). `entry show` says when.";

const DISABLE_EXAMPLES: &str = "\
Examples:
  mayfly entry disable 7aff5b4acb408a99 --reason \"owner left; pending review\"

Credentials already issued stay valid until they expire (revoke them with
`mayfly revoke entry <ID>`); agents stop handing out cached JWT-SVIDs at
their next sync.";

const CREATE_EXAMPLES: &str = "\
Examples:
  # A billing API: JWTs for the billing database, X.509 for mTLS
  mayfly entry create --spiffe-id spiffe://mayfly.internal/billing/api \\
      --owner team-billing --purpose \"billing API reads invoices\" \\
      --audience billing-db --kind jwt --kind x509 --jwt-ttl 5m \\
      --environment prod --data-class phi --expires 90d

  # A CI job, attested by its OIDC token, for one quarter
  mayfly entry create --spiffe-id spiffe://mayfly.internal/ci/deploy \\
      --owner platform --purpose \"deploys billing\" \\
      --selector oidc:repository:org/billing --audience deployer \\
      --expires 2027-01-31

--expires takes a duration from now (90d), a date (midnight UTC) or an
RFC 3339 time.";

const LIST_EXAMPLES: &str = "\
Examples:
  mayfly entry list
  mayfly entry list --owner team-billing --environment prod
  mayfly entry list --spiffe-id-prefix spiffe://mayfly.internal/billing/
  mayfly entry list --parent spiffe://mayfly.internal/agent/node-7
  mayfly entry list --data-class phi --json | jq -r .spiffe_id

Entries come in id order, fetched a page at a time (--page-size); the
filters given must all match. --json prints one entry per line (JSON lines)
as each page arrives.";

const UPDATE_EXAMPLES: &str = "\
Examples:
  mayfly entry update 7aff5b4acb408a99 --expires 30d
  mayfly entry update 7aff5b4acb408a99 --clear-dns-names
  # replaces the whole list of audiences:
  mayfly entry update 7aff5b4acb408a99 --audience billing-db --audience reports";

/// A credential kind an entry may be issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// JWT-SVIDs (bearer tokens with one audience).
    Jwt,
    /// X509-SVIDs (certificates for mTLS).
    X509,
}

impl KindArg {
    fn as_wire(self) -> &'static str {
        match self {
            KindArg::Jwt => "jwt",
            KindArg::X509 => "x509",
        }
    }
}

/// The fields `create` and `update` share; all optional.
#[derive(Debug, Args)]
pub struct EntryFields {
    /// A selector the workload must prove, e.g. k8s:ns:billing (repeat for several; all
    /// must match).
    #[arg(long = "selector", value_name = "SELECTOR")]
    selectors: Vec<String>,
    /// An audience (purpose) the workload may ask JWT-SVIDs for (repeat for several).
    #[arg(long = "audience", value_name = "AUDIENCE")]
    audiences: Vec<String>,
    /// A credential kind it may get (repeat for both) [server default: both].
    #[arg(long = "kind", value_enum, value_name = "KIND")]
    kinds: Vec<KindArg>,
    /// Lifetime of its JWT-SVIDs, e.g. 5m.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    jwt_ttl: Option<u32>,
    /// Lifetime of its X509-SVIDs, e.g. 15m.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    x509_ttl: Option<u32>,
    /// A DNS name to put in its X509-SVIDs (repeat for several).
    #[arg(long = "dns-name", value_name = "NAME")]
    dns_names: Vec<String>,
    /// The environment it runs in, e.g. prod.
    #[arg(long, value_name = "ENV")]
    environment: Option<String>,
    /// The most sensitive data it touches, e.g. phi.
    #[arg(long, value_name = "CLASS")]
    data_class: Option<String>,
    /// When the entry stops minting: 90d, 2027-01-31 or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = parse_expiry)]
    expires: Option<Expiry>,
    /// The SPIFFE ID of the agent that may obtain this identity for local
    /// workloads (selectors are then unix:uid:…, unix:path:… as the agent
    /// attests them). "" removes it.
    #[arg(long, value_name = "AGENT_SPIFFE_ID")]
    parent: Option<String>,
    /// Sign a fresh JWT-SVID (with its own jti) on every request instead of reusing a
    /// cached one until half its life; for relying parties that reject replayed jtis.
    /// --unique-jti=false allows reuse again [server default: reuse].
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    unique_jti: Option<bool>,
    /// How often its owner must review it, e.g. 30d; never turns reviews off
    /// [server default: [governance] review_every].
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    review_every: Option<u64>,
}

/// Arguments of `mayfly entry create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The identity, e.g. spiffe://mayfly.internal/billing/api.
    #[arg(long, value_name = "ID", value_parser = parse_spiffe_id)]
    spiffe_id: String,
    /// Who answers for this identity (a team or a person).
    #[arg(long, value_name = "OWNER")]
    owner: String,
    /// Why it exists, in words an auditor understands.
    #[arg(long, value_name = "TEXT")]
    purpose: String,
    #[command(flatten)]
    fields: EntryFields,
    /// Print the entry as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `mayfly entry update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The entry's id.
    #[arg(value_name = "ID")]
    id: String,
    /// A new SPIFFE ID.
    #[arg(long, value_name = "ID", value_parser = parse_spiffe_id)]
    spiffe_id: Option<String>,
    /// A new owner.
    #[arg(long, value_name = "OWNER")]
    owner: Option<String>,
    /// A new purpose.
    #[arg(long, value_name = "TEXT")]
    purpose: Option<String>,
    #[command(flatten)]
    fields: EntryFields,
    /// Remove every selector.
    #[arg(long, conflicts_with = "selectors")]
    clear_selectors: bool,
    /// Remove every audience.
    #[arg(long, conflicts_with = "audiences")]
    clear_audiences: bool,
    /// Remove every DNS name.
    #[arg(long, conflicts_with = "dns_names")]
    clear_dns_names: bool,
    /// Print the entry as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `mayfly entry list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only entries of this owner (exact match).
    #[arg(long, value_name = "OWNER")]
    owner: Option<String>,
    /// Only entries of this environment (exact match).
    #[arg(long, value_name = "ENV")]
    environment: Option<String>,
    /// Only entries of this data class (exact match).
    #[arg(long, value_name = "CLASS")]
    data_class: Option<String>,
    /// Only entries whose SPIFFE ID starts with this text (end it with / for a path).
    #[arg(long, value_name = "PREFIX")]
    spiffe_id_prefix: Option<String>,
    /// Only entries registered under this agent.
    #[arg(long, value_name = "AGENT_SPIFFE_ID", value_parser = parse_spiffe_id)]
    parent: Option<String>,
    /// Entries per request, at most 5000 [default: the server's, 500].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    page_size: Option<u32>,
    /// Print JSON lines, one entry per line, as the pages arrive.
    #[arg(long)]
    json: bool,
}

impl ListArgs {
    /// The request for the first page; the others differ in their token.
    fn request(&self) -> ListEntriesRequest {
        ListEntriesRequest {
            page_size: Some(self.page_size.unwrap_or(0)),
            page_token: String::new(),
            owner: self.owner.clone().unwrap_or_default(),
            environment: self.environment.clone().unwrap_or_default(),
            data_class: self.data_class.clone().unwrap_or_default(),
            spiffe_id_prefix: self.spiffe_id_prefix.clone().unwrap_or_default(),
            parent_id: self.parent.clone().unwrap_or_default(),
            states: Vec::new(),
        }
    }

    fn filtered(&self) -> bool {
        self.owner.is_some()
            || self.environment.is_some()
            || self.data_class.is_some()
            || self.spiffe_id_prefix.is_some()
            || self.parent.is_some()
    }
}

/// Arguments of `mayfly entry show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The entry's id, or its SPIFFE ID.
    #[arg(value_name = "ID|SPIFFE_ID")]
    id: String,
    /// Print the entry as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `mayfly entry delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The entry's id.
    #[arg(value_name = "ID")]
    id: String,
    /// Print the deleted entry as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `mayfly entry disable` and `mayfly entry enable`.
#[derive(Debug, Args)]
pub struct GovernArgs {
    /// The entry's id, or its SPIFFE ID.
    #[arg(value_name = "ID|SPIFFE_ID")]
    id: String,
    /// Why, for the audit log (required, at most 1024 bytes).
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Print the entry as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `mayfly entry purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Only entries that expired at least this long ago, e.g. 90d (at least 1d).
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    expired_for: u64,
    /// Delete them; without it, only list what would be deleted.
    #[arg(long)]
    yes: bool,
    /// Print the entries as a JSON array.
    #[arg(long)]
    json: bool,
}

/// Arguments of `mayfly entry review`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The entry's id, or its SPIFFE ID.
    #[arg(value_name = "ID|SPIFFE_ID")]
    id: String,
    /// What the owner checked and decided (required, at most 1024 bytes).
    #[arg(long, value_name = "TEXT")]
    note: String,
    /// Print the entry as JSON.
    #[arg(long)]
    json: bool,
}

/// An entry as `--json` prints it: the API's fields, times in RFC 3339 (`null` for never).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EntryView {
    /// The entry's id.
    pub id: String,
    /// The identity.
    pub spiffe_id: String,
    /// Selectors a workload must prove.
    pub selectors: Vec<String>,
    /// Audiences it may ask JWT-SVIDs for.
    pub audiences: Vec<String>,
    /// "jwt" and/or "x509".
    pub kinds: Vec<String>,
    /// JWT-SVID lifetime, seconds.
    pub jwt_ttl_seconds: u32,
    /// X509-SVID lifetime, seconds.
    pub x509_ttl_seconds: u32,
    /// DNS names in its X509-SVIDs.
    pub dns_names: Vec<String>,
    /// Who answers for it.
    pub owner: String,
    /// Why it exists.
    pub purpose: String,
    /// Where it runs.
    pub environment: String,
    /// What data it touches.
    pub data_class: String,
    /// When it stops minting.
    pub expires_at: Option<String>,
    /// When it was created.
    pub created_at: Option<String>,
    /// When it last changed.
    pub updated_at: Option<String>,
    /// Bumped on every change.
    pub revision: u64,
    /// When it last minted a credential.
    pub last_minted_at: Option<String>,
    /// How many credentials it minted.
    pub mint_count: u64,
    /// The agent it is registered under, if any.
    pub parent_id: Option<String>,
    /// Whether every JWT-SVID is freshly signed with its own jti (no reuse).
    pub unique_jti: bool,
    /// `disabled`, `expired`, `review-overdue` or `active` (the first that holds).
    pub state: String,
    /// Who disabled it, when and why; `null` while it is not disabled.
    pub disabled: Option<DisabledView>,
    /// Seconds between owner reviews; 0: never.
    pub review_every_seconds: u64,
    /// When the next review is due; `null`: never.
    pub review_due_at: Option<String>,
    /// The last review; `null` before the first.
    pub last_review: Option<ReviewView>,
}

/// An owner review, as `--json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReviewView {
    /// When, RFC 3339.
    pub at: Option<String>,
    /// Who recorded it.
    pub by: String,
    /// The reviewer's note.
    pub note: String,
}

/// Who disabled an entry, as `--json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DisabledView {
    /// When, RFC 3339.
    pub at: Option<String>,
    /// Who: the admin peer, or `mayfly-governance`.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// An entry's state in one word: `disabled`, `expired`, `review-overdue`, else `active`.
pub(super) fn entry_state(e: &Entry, now: i64) -> &'static str {
    if e.disabled.is_some() {
        "disabled"
    } else if now >= e.expires_at {
        "expired"
    } else if e.review_due_at != 0 && now >= e.review_due_at {
        "review-overdue"
    } else {
        "active"
    }
}

impl From<&Entry> for EntryView {
    fn from(e: &Entry) -> Self {
        EntryView {
            id: e.id.clone(),
            spiffe_id: e.spiffe_id.clone(),
            selectors: e.selectors.clone(),
            audiences: e.audiences.clone(),
            kinds: e.kinds.clone(),
            jwt_ttl_seconds: e.jwt_ttl_seconds,
            x509_ttl_seconds: e.x509_ttl_seconds,
            dns_names: e.dns_names.clone(),
            owner: e.owner.clone(),
            purpose: e.purpose.clone(),
            environment: e.environment.clone(),
            data_class: e.data_class.clone(),
            expires_at: optional_rfc3339(e.expires_at),
            created_at: optional_rfc3339(e.created_at),
            updated_at: optional_rfc3339(e.updated_at),
            revision: e.revision,
            last_minted_at: optional_rfc3339(e.last_minted_at),
            mint_count: e.mint_count,
            parent_id: (!e.parent_id.is_empty()).then(|| e.parent_id.clone()),
            unique_jti: e.unique_jti,
            state: entry_state(e, now_unix()).to_owned(),
            disabled: e.disabled.as_ref().map(|d| DisabledView {
                at: optional_rfc3339(d.at),
                by: d.by.clone(),
                reason: d.reason.clone(),
            }),
            review_every_seconds: e.review_every_seconds,
            review_due_at: optional_rfc3339(e.review_due_at),
            last_review: e.last_review.as_ref().map(|r| ReviewView {
                at: optional_rfc3339(r.at),
                by: r.by.clone(),
                note: r.note.clone(),
            }),
        }
    }
}

/// Runs one `mayfly entry` command.
pub(super) async fn run(ctx: &Context, command: EntryCommand) -> Result<(), CliError> {
    match command {
        EntryCommand::Create(args) => create(ctx, args).await,
        EntryCommand::List(args) => list(ctx, args).await,
        EntryCommand::Show(args) => {
            let mut admin = ctx.admin().await?;
            let entry = admin.get_entry(GetEntryRequest { id: args.id }).await?;
            print_entry(&entry.into_inner(), args.json, None)
        }
        EntryCommand::Update(args) => update(ctx, args).await,
        EntryCommand::Delete(args) => delete(ctx, args).await,
        EntryCommand::Disable(args) => {
            let request = DisableEntryRequest {
                id: args.id,
                reason: args.reason,
            };
            let entry = ctx.admin().await?.disable_entry(request).await?;
            print_entry(&entry.into_inner(), args.json, Some("disabled entry"))
        }
        EntryCommand::Enable(args) => {
            let request = EnableEntryRequest {
                id: args.id,
                reason: args.reason,
            };
            let entry = ctx.admin().await?.enable_entry(request).await?;
            print_entry(&entry.into_inner(), args.json, Some("enabled entry"))
        }
        EntryCommand::Review(args) => {
            let request = ReviewEntryRequest {
                id: args.id,
                note: args.note,
            };
            let entry = ctx.admin().await?.review_entry(request).await?;
            print_entry(&entry.into_inner(), args.json, Some("reviewed entry"))
        }
        EntryCommand::Purge(args) => purge(ctx, args).await,
    }
}

async fn purge(ctx: &Context, args: PurgeArgs) -> Result<(), CliError> {
    let request = PurgeEntriesRequest {
        expired_for_seconds: args.expired_for,
        confirm: args.yes,
    };
    let response = ctx
        .admin()
        .await?
        .purge_entries(request)
        .await?
        .into_inner();
    if args.json {
        let views: Vec<EntryView> = response.entries.iter().map(EntryView::from).collect();
        return output::json(&views);
    }
    let verb = if response.deleted {
        "deleted"
    } else {
        "would delete"
    };
    for entry in &response.entries {
        output::stdout_line(&format!(
            "{verb} {} ({}), expired {}",
            output::clean(&entry.id),
            output::clean(&entry.spiffe_id),
            optional_rfc3339(entry.expires_at).unwrap_or_default()
        ))?;
    }
    if response.entries.is_empty() {
        output::stderr_line("no entry expired that long ago");
    } else if !response.deleted {
        output::stderr_line("nothing was deleted; run again with --yes to delete these");
    }
    Ok(())
}

async fn create(ctx: &Context, args: CreateArgs) -> Result<(), CliError> {
    // Flags are checked before connecting, so a bad value is reported as such even when
    // the server is down.
    let spec = args.spec(now_unix())?;
    let request = CreateEntryRequest { spec: Some(spec) };
    let entry = ctx.admin().await?.create_entry(request).await?.into_inner();
    print_entry(&entry, args.json, Some("created entry"))
}

async fn list(ctx: &Context, args: ListArgs) -> Result<(), CliError> {
    let admin = ctx.admin().await?;
    let first = args.request();
    // JSON lines go out as each page arrives; the table waits for all of
    // them, to size its columns.
    let mut rows = Vec::new();
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
            if args.json {
                output::json_line(&EntryView::from(&entry))
            } else {
                rows.push(entry);
                Ok(())
            }
        },
    )
    .await?;
    if args.json {
        Ok(())
    } else if rows.is_empty() && args.filtered() {
        output::stderr_line("no entries match these filters");
        Ok(())
    } else if rows.is_empty() {
        output::stderr_line("no entries yet; register one with `mayfly entry create --help`");
        Ok(())
    } else {
        output::stdout(&entry_table(&rows, now_unix()))
    }
}

async fn update(ctx: &Context, args: UpdateArgs) -> Result<(), CliError> {
    let spec = args.spec(now_unix())?;
    let request = UpdateEntryRequest {
        id: args.id.clone(),
        spec: Some(spec),
    };
    let entry = ctx.admin().await?.update_entry(request).await?.into_inner();
    print_entry(&entry, args.json, Some("updated entry"))
}

async fn delete(ctx: &Context, args: DeleteArgs) -> Result<(), CliError> {
    let request = DeleteEntryRequest {
        id: args.id.clone(),
    };
    let deleted = ctx.admin().await?.delete_entry(request).await?.into_inner();
    match (deleted.entry, args.json) {
        (Some(entry), true) => output::json(&EntryView::from(&entry)),
        (Some(entry), false) => output::stdout_line(&format!(
            "deleted entry {} ({})",
            output::clean(&entry.id),
            output::clean(&entry.spiffe_id)
        )),
        (None, true) => output::json(&serde_json::json!({ "id": args.id })),
        (None, false) => output::stdout_line(&format!("deleted entry {}", output::clean(&args.id))),
    }
}

impl CreateArgs {
    fn spec(&self, now: i64) -> Result<EntrySpec, CliError> {
        let mut spec = self.fields.spec(now)?;
        spec.spiffe_id = Some(self.spiffe_id.clone());
        spec.owner = Some(self.owner.clone());
        spec.purpose = Some(self.purpose.clone());
        Ok(spec)
    }
}

impl UpdateArgs {
    fn spec(&self, now: i64) -> Result<EntrySpec, CliError> {
        let mut spec = self.fields.spec(now)?;
        spec.spiffe_id.clone_from(&self.spiffe_id);
        spec.owner.clone_from(&self.owner);
        spec.purpose.clone_from(&self.purpose);
        if self.clear_selectors {
            spec.selectors = Some(StringList::default());
        }
        if self.clear_audiences {
            spec.audiences = Some(StringList::default());
        }
        if self.clear_dns_names {
            spec.dns_names = Some(StringList::default());
        }
        if spec == EntrySpec::default() {
            return Err(CliError::usage(
                "nothing to change: give at least one flag, e.g. --expires 30d \
                 (see `mayfly entry update --help`)",
            ));
        }
        Ok(spec)
    }
}

impl EntryFields {
    /// The spec these flags describe; a list flag not given stays unset.
    fn spec(&self, now: i64) -> Result<EntrySpec, CliError> {
        let list = |values: &[String]| {
            (!values.is_empty()).then(|| StringList {
                values: values.to_vec(),
            })
        };
        let mut kinds: Vec<String> = Vec::new();
        for kind in &self.kinds {
            let wire = kind.as_wire().to_string();
            if !kinds.contains(&wire) {
                kinds.push(wire);
            }
        }
        Ok(EntrySpec {
            spiffe_id: None,
            selectors: list(&self.selectors),
            audiences: list(&self.audiences),
            kinds: list(&kinds),
            jwt_ttl_seconds: self.jwt_ttl,
            x509_ttl_seconds: self.x509_ttl,
            dns_names: list(&self.dns_names),
            owner: None,
            purpose: None,
            environment: self.environment.clone(),
            data_class: self.data_class.clone(),
            expires_at: self.expires.map(|e| e.resolve(now)).transpose()?,
            parent_id: self.parent.clone(),
            unique_jti: self.unique_jti,
            review_every_seconds: self.review_every,
        })
    }
}

fn print_entry(entry: &Entry, json: bool, headline: Option<&str>) -> Result<(), CliError> {
    if json {
        return output::json(&EntryView::from(entry));
    }
    if let Some(headline) = headline {
        output::stdout_line(&format!("{headline} {}", output::clean(&entry.id)))?;
    }
    output::stdout(&entry_details(entry, now_unix()))
}

/// The `entry list` table.
pub(super) fn entry_table(entries: &[Entry], now: i64) -> String {
    let mut table = Table::new(&[
        "ID",
        "SPIFFE ID",
        "OWNER",
        "ENV",
        "DATA",
        "AUDIENCES",
        "EXPIRES",
        "LAST MINTED",
        "STATE",
    ]);
    for e in entries {
        table.row([
            e.id.clone(),
            e.spiffe_id.clone(),
            e.owner.clone(),
            e.environment.clone(),
            e.data_class.clone(),
            e.audiences.join(","),
            optional_rfc3339(e.expires_at).unwrap_or_else(|| "never".to_string()),
            match e.last_minted_at {
                0 => "never".to_string(),
                at => relative(at, now),
            },
            entry_state(e, now).to_owned(),
        ]);
    }
    table.render()
}

/// The `entry show` block: every field, one per line.
pub(super) fn entry_details(e: &Entry, now: i64) -> String {
    let when = |at: i64| match at {
        0 => "never".to_string(),
        at => time_and_relative(at, now),
    };
    let ttl = |secs: u32| match secs {
        0 => "default".to_string(),
        secs => output::compact_duration(u64::from(secs)),
    };
    let state = match &e.disabled {
        Some(d) => format!("disabled since {} by {}: {}", when(d.at), d.by, d.reason),
        None => entry_state(e, now).to_owned(),
    };
    key_values(&[
        ("id", e.id.clone()),
        ("state", state),
        ("spiffe id", e.spiffe_id.clone()),
        ("owner", e.owner.clone()),
        ("purpose", e.purpose.clone()),
        ("environment", e.environment.clone()),
        ("data class", e.data_class.clone()),
        ("selectors", e.selectors.join(", ")),
        ("audiences", e.audiences.join(", ")),
        ("kinds", e.kinds.join(", ")),
        ("jwt ttl", ttl(e.jwt_ttl_seconds)),
        ("x509 ttl", ttl(e.x509_ttl_seconds)),
        ("dns names", e.dns_names.join(", ")),
        ("parent", e.parent_id.clone()),
        (
            "unique jti",
            if e.unique_jti {
                "yes: a fresh JWT-SVID on every request".to_string()
            } else {
                "no: a JWT-SVID is reused until half its life".to_string()
            },
        ),
        ("expires", when(e.expires_at)),
        ("created", when(e.created_at)),
        ("updated", when(e.updated_at)),
        ("revision", e.revision.to_string()),
        ("last minted", when(e.last_minted_at)),
        ("mint count", e.mint_count.to_string()),
        (
            "reviews",
            match e.review_every_seconds {
                0 => "never".to_string(),
                secs => format!("every {}", output::compact_duration(secs)),
            },
        ),
        ("review due", when(e.review_due_at)),
        (
            "last review",
            e.last_review.as_ref().map_or_else(
                || "never".to_string(),
                |r| format!("{} by {}: {}", when(r.at), r.by, r.note),
            ),
        ),
    ])
}

#[cfg(test)]
mod tests;
