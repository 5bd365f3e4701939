//! `mayfly audience …`: register the audiences JWT-SVIDs are minted for,
//! with an owner, an environment and a data class, so that the broker
//! refuses a token for an audience in another environment or above the
//! entry's data class.

use clap::{Args, Subcommand};
use mayfly_sdk::proto::v1::{
    Audience, CreateAudienceRequest, DeleteAudienceRequest, ListAudiencesRequest,
    UpdateAudienceRequest,
};
use serde::Serialize;

use super::Context;
use super::error::CliError;
use super::output::{self, Table};

/// `mayfly audience …`.
#[derive(Debug, Subcommand)]
pub enum AudienceCommand {
    /// Register an audience (the exact `aud` string entries mint for).
    #[command(after_help = CREATE_EXAMPLES)]
    Create(CreateArgs),
    /// Show every registered audience.
    #[command(after_help = "Examples:\n  mayfly audience list\n  mayfly audience list --json")]
    List(ListArgs),
    /// Change a registered audience's owner, environment, class or description.
    #[command(after_help = UPDATE_EXAMPLES)]
    Update(UpdateArgs),
    /// Unregister an audience (entries may still name it).
    #[command(after_help = "Examples:\n  mayfly audience delete billing-api")]
    Delete(DeleteArgs),
}

const CREATE_EXAMPLES: &str = "\
Examples:
  mayfly audience create billing-api --owner team-billing \\
      --environment prod --data-class confidential
  mayfly audience create https://records.example.org --owner team-records \\
      --environment prod --data-class phi --description \"patient records\"

Once registered, a JWT-SVID for this audience is refused to an entry in
another environment, or whose data class ranks below the audience's in
[governance] data_classes (default: none < internal < confidential < phi).";

const UPDATE_EXAMPLES: &str = "\
Examples:
  mayfly audience update billing-api --data-class phi
  mayfly audience update billing-api --owner team-payments --revision 3
  mayfly audience update billing-api --description \"\"   # clears it

Only the options given change. With --revision, the update is refused if
the audience changed since you read that revision.";

/// Arguments of `mayfly audience create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The audience string, exactly as entries mint for it.
    pub name: String,
    /// Who answers for the relying party.
    #[arg(long, value_name = "WHO")]
    pub owner: String,
    /// The environment it runs in, e.g. prod or staging.
    #[arg(long, value_name = "ENV")]
    pub environment: String,
    /// The most sensitive data class it handles, e.g. phi.
    #[arg(long, value_name = "CLASS")]
    pub data_class: String,
    /// What it is.
    #[arg(long)]
    pub description: Option<String>,
    /// Print the audience as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mayfly audience list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON lines, one audience per line.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mayfly audience update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The registered audience.
    pub name: String,
    /// New owner.
    #[arg(long)]
    pub owner: Option<String>,
    /// New environment.
    #[arg(long)]
    pub environment: Option<String>,
    /// New data class.
    #[arg(long)]
    pub data_class: Option<String>,
    /// New description ("" clears it).
    #[arg(long)]
    pub description: Option<String>,
    /// Refuse if the audience is no longer at this revision.
    #[arg(long)]
    pub revision: Option<u64>,
    /// Print the audience as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mayfly audience delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The registered audience.
    pub name: String,
    /// Print the deleted audience as JSON.
    #[arg(long)]
    pub json: bool,
}

/// An audience as `--json` prints it.
#[derive(Serialize)]
struct AudienceView<'a> {
    name: &'a str,
    owner: &'a str,
    environment: &'a str,
    data_class: &'a str,
    description: &'a str,
    created_at: String,
    updated_at: String,
    revision: u64,
}

impl<'a> AudienceView<'a> {
    fn new(audience: &'a Audience) -> Self {
        AudienceView {
            name: &audience.name,
            owner: &audience.owner,
            environment: &audience.environment,
            data_class: &audience.data_class,
            description: &audience.description,
            created_at: output::rfc3339(audience.created_at),
            updated_at: output::rfc3339(audience.updated_at),
            revision: audience.revision,
        }
    }
}

/// Runs `mayfly audience …`.
pub(super) async fn run(ctx: &Context, command: AudienceCommand) -> Result<(), CliError> {
    let mut admin = ctx.admin().await?;
    match command {
        AudienceCommand::Create(args) => {
            let audience = admin
                .create_audience(CreateAudienceRequest {
                    name: args.name,
                    owner: args.owner,
                    environment: args.environment,
                    data_class: args.data_class,
                    description: args.description.unwrap_or_default(),
                })
                .await?
                .into_inner();
            show("registered", &audience, args.json)
        }
        AudienceCommand::List(args) => {
            let audiences = admin
                .list_audiences(ListAudiencesRequest {})
                .await?
                .into_inner()
                .audiences;
            if args.json {
                for audience in &audiences {
                    output::json_line(&AudienceView::new(audience))?;
                }
                return Ok(());
            }
            if audiences.is_empty() {
                return output::stdout("no audiences registered\n");
            }
            let mut table = Table::new(&["NAME", "ENVIRONMENT", "DATA CLASS", "OWNER", "REV"]);
            for audience in &audiences {
                table.row([
                    output::clean(&audience.name),
                    output::clean(&audience.environment),
                    output::clean(&audience.data_class),
                    output::clean(&audience.owner),
                    audience.revision.to_string(),
                ]);
            }
            output::stdout(&table.render())
        }
        AudienceCommand::Update(args) => {
            let audience = admin
                .update_audience(UpdateAudienceRequest {
                    name: args.name,
                    owner: args.owner,
                    environment: args.environment,
                    data_class: args.data_class,
                    description: args.description,
                    revision: args.revision.unwrap_or(0),
                })
                .await?
                .into_inner();
            show("updated", &audience, args.json)
        }
        AudienceCommand::Delete(args) => {
            let audience = admin
                .delete_audience(DeleteAudienceRequest { name: args.name })
                .await?
                .into_inner()
                .audience
                .unwrap_or_default();
            show("deleted", &audience, args.json)
        }
    }
}

fn show(what: &str, audience: &Audience, json: bool) -> Result<(), CliError> {
    if json {
        return output::json(&AudienceView::new(audience));
    }
    let mut pairs = vec![
        ("environment", audience.environment.clone()),
        ("data class", audience.data_class.clone()),
        ("owner", audience.owner.clone()),
        ("revision", audience.revision.to_string()),
    ];
    if !audience.description.is_empty() {
        pairs.push(("description", audience.description.clone()));
    }
    output::stdout(&format!(
        "{what}: audience {}\n{}",
        output::clean(&audience.name),
        output::key_values(&pairs)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory as _, Parser as _};

    #[test]
    fn create_needs_owner_environment_and_class() {
        let cli = Cli::try_parse_from([
            "mayfly",
            "audience",
            "create",
            "billing-api",
            "--owner",
            "team",
            "--environment",
            "prod",
            "--data-class",
            "phi",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Audience(AudienceCommand::Create(CreateArgs { ref name, .. })) if name == "billing-api"
        ));
        assert!(
            Cli::try_parse_from([
                "mayfly",
                "audience",
                "create",
                "billing-api",
                "--owner",
                "t"
            ])
            .is_err()
        );
    }

    #[test]
    fn help_lines_fit_80_columns() {
        let mut command = Cli::command();
        let audience = command.find_subcommand_mut("audience").unwrap();
        for sub in ["create", "list", "update", "delete"] {
            let help = audience
                .find_subcommand_mut(sub)
                .unwrap()
                .render_long_help()
                .to_string();
            // Clap's usage line is not wrapped; every other line is ours.
            for line in help.lines().filter(|l| !l.starts_with("Usage:")) {
                assert!(line.chars().count() <= 80, "{sub}: {line:?}");
            }
            assert!(help.contains("Examples:"), "{sub}");
        }
    }
}
