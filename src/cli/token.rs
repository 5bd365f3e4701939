//! `mayfly token …`: one-time join tokens.

use std::path::Path;

use clap::{Args, Subcommand};
use mayfly_sdk::proto::v1::{CreateJoinTokenRequest, CreateJoinTokenResponse, ServerStatusRequest};
use serde::Serialize;

use super::Context;
use super::error::CliError;
use super::output::{self, optional_rfc3339, time_and_relative};
use super::values::{now_unix, parse_ttl};

/// Mint one-time join tokens that let a workload attest as an entry.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token for an entry. It is shown once and works once.
    #[command(after_help = TOKEN_EXAMPLES)]
    Create(TokenCreateArgs),
}

const TOKEN_EXAMPLES: &str = "\
Examples:
  mayfly token create --entry 7aff5b4acb408a99
  mayfly token create --entry 7aff5b4acb408a99 --ttl 1h

  # Hand the token over in a file, so it never shows in `ps`
  mayfly token create --entry 7aff5b4acb408a99 --json | jq -r .token >t.txt
  mayfly client attest --join-token-file t.txt

The server stores only a hash of the token: a lost token cannot be shown
again; create a new one.";

/// Arguments of `mayfly token create`.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The entry the token attests as (its id).
    #[arg(long, value_name = "ID")]
    entry: String,
    /// How long the token may wait to be used [server default: 10m].
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    ttl: Option<u32>,
    /// Print the token and its details as JSON.
    #[arg(long)]
    json: bool,
}

/// A created join token as `--json` prints it.
#[derive(Serialize)]
struct TokenView<'a> {
    token: &'a str,
    token_id: &'a str,
    entry_id: &'a str,
    spiffe_id: &'a str,
    expires_at: Option<String>,
}

/// Runs one `mayfly token` command.
pub(super) async fn run(ctx: &Context, command: TokenCommand) -> Result<(), CliError> {
    let TokenCommand::Create(args) = command;
    let request = CreateJoinTokenRequest {
        entry_id: args.entry,
        ttl_seconds: args.ttl.unwrap_or(0),
    };
    let created = ctx
        .admin()
        .await?
        .create_join_token(request)
        .await?
        .into_inner();
    if created.token.is_empty() {
        return Err(CliError::bad_response("the join token is empty"));
    }
    if args.json {
        return output::json(&TokenView {
            token: &created.token,
            token_id: &created.token_id,
            entry_id: &created.entry_id,
            spiffe_id: &created.spiffe_id,
            expires_at: optional_rfc3339(created.expires_at),
        });
    }
    let server = advertised_server(ctx).await;
    let bundle = absolute(&ctx.attest_bundle_path());
    output::stdout(&token_text(&created, &server, &bundle, now_unix()))
}

/// The broker URL for the printed command: `--server` when given, else the
/// URL the broker says it is reached at (the CLI's default only holds for
/// a broker on the default address).
async fn advertised_server(ctx: &Context) -> String {
    if ctx.server != super::DEFAULT_SERVER {
        return ctx.server.clone();
    }
    let status = match ctx.admin().await {
        Ok(mut admin) => admin.server_status(ServerStatusRequest {}).await.ok(),
        Err(_) => None,
    };
    status
        .map(tonic::Response::into_inner)
        .map(|status| status.broker_url)
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| ctx.server.clone())
}

/// What `token create` prints: the token, once, and the command that uses it.
fn token_text(created: &CreateJoinTokenResponse, server: &str, bundle: &Path, now: i64) -> String {
    let token = output::clean(&created.token);
    format!(
        "join token for {spiffe_id} (entry {entry_id}), token id {token_id}, \
         expires {expires}:\n\
         \n    {token}\n\n\
         It is shown once and works once: the server keeps only its hash.\n\
         On the workload's host, with the server's root CA copied to --bundle, run:\n\
         \n    mayfly client attest --join-token {token} --server {server} --bundle {bundle}\n\n\
         (or put the token in a file and use --join-token-file FILE, which keeps it out of `ps`)\n",
        spiffe_id = output::clean(&created.spiffe_id),
        entry_id = output::clean(&created.entry_id),
        token_id = output::clean(&created.token_id),
        expires = time_and_relative(created.expires_at, now),
        server = output::clean(server),
        bundle = output::clean(&bundle.display().to_string()),
    )
}

/// `path` made absolute, so that the printed command works from any directory.
fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_the_token_and_the_next_command() {
        let created = CreateJoinTokenResponse {
            token: "jt_abc123".into(),
            token_id: "9f2c".into(),
            expires_at: 1_600,
            entry_id: "e1".into(),
            spiffe_id: "spiffe://td/a".into(),
        };
        let text = token_text(
            &created,
            "https://127.0.0.1:7443",
            Path::new("/data/bundle.pem"),
            1_000,
        );
        assert!(text.contains("\n    jt_abc123\n"), "{text}");
        assert!(
            text.contains(
                "mayfly client attest --join-token jt_abc123 --server https://127.0.0.1:7443 \
                 --bundle /data/bundle.pem"
            ),
            "{text}"
        );
        assert!(text.contains("shown once"), "{text}");
        assert!(text.contains("1970-01-01T00:26:40Z (in 10m)"), "{text}");
    }
}
