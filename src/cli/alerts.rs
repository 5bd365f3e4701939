//! `mayfly alerts ...`: the alert webhook, seen from the operator's side.

use clap::{Args, Subcommand};
use mayfly_sdk::proto::v1 as pb;

use super::Context;
use super::error::CliError;
use super::output::{self, clean};

/// `mayfly alerts ...`.
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Send a test alert to the webhook and wait for its fate.
    #[command(after_help = TEST_EXAMPLES)]
    Test(TestArgs),
}

const TEST_EXAMPLES: &str = "\
Examples:
  mayfly alerts test
  mayfly alerts test --note \"checking the new receiver, CHG-1234\"

The broker POSTs a signed alert of kind \"test\" to [alerts] webhook_url,
trying again on no answer, timeouts, 408, 429 and 5xx (five tries in all,
up to about a minute), and says what became of it. Exit status 0 when
delivered, 1 when not. The outcome is in the audit log either way.";

/// Arguments of `mayfly alerts test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// A line said in the alert (at most 256 characters).
    #[arg(long, default_value = "")]
    note: String,
}

/// Runs an `alerts` subcommand; `false` when the alert was not delivered.
pub async fn run(ctx: &Context, command: AlertsCommand) -> Result<bool, CliError> {
    match command {
        AlertsCommand::Test(args) => {
            output::stderr_line("sending a test alert (retries may take up to a minute)...");
            let answer = ctx
                .admin()
                .await?
                .test_alert(pb::TestAlertRequest { note: args.note })
                .await?
                .into_inner();
            let tries = match answer.tries {
                1 => "1 try".to_owned(),
                n => format!("{n} tries"),
            };
            if answer.delivered {
                output::stdout_line(&format!(
                    "delivered to {} after {tries} (delivery {})",
                    clean(&answer.url),
                    answer.delivery
                ))?;
            } else {
                output::stdout_line(&format!(
                    "NOT delivered to {} after {tries}: {} (delivery {})",
                    clean(&answer.url),
                    clean(&answer.error),
                    answer.delivery
                ))?;
            }
            Ok(answer.delivered)
        }
    }
}
