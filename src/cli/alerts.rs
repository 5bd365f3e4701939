//! `mayfly alerts ...`: the alert outputs (webhook, OTel log events), seen from the
//! operator's side.

use clap::{Args, Subcommand};
use mayfly_sdk::proto::v1 as pb;

use super::Context;
use super::error::CliError;
use super::output::{self, clean};

/// `mayfly alerts ...`.
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Send a test alert to every alert output and wait for its fate.
    #[command(after_help = TEST_EXAMPLES)]
    Test(TestArgs),
}

const TEST_EXAMPLES: &str = "\
Examples:
  mayfly alerts test
  mayfly alerts test --note \"checking the new receiver, CHG-1234\"

The broker sends an alert of kind \"test\" to each configured output:
  webhook    a signed POST to [alerts] webhook_url
  otel_logs  a log record (event mayfly.alert) to the [telemetry] collector
trying again while a receiver is away (five tries in all, up to about a
minute), and prints one line per output:
  webhook: delivered to https://alerts.example/m after 1 try (delivery 9f3c...)
  otel_logs: NOT delivered to http://127.0.0.1:4317 after 5 tries: ...
Exit status 0 when every output took it, 1 when any did not. Each fate is
in the audit log either way (alert.delivered, alert.undelivered).";

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
            // A broker from before the outputs answered with the summary only.
            let outputs = if answer.outputs.is_empty() {
                vec![pb::AlertOutputFate {
                    output: "webhook".to_owned(),
                    url: answer.url.clone(),
                    tries: answer.tries,
                    delivered: answer.delivered,
                    error: answer.error.clone(),
                }]
            } else {
                answer.outputs
            };
            for fate in &outputs {
                output::stdout_line(&fate_line(fate, &answer.delivery))?;
            }
            Ok(outputs.iter().all(|fate| fate.delivered))
        }
    }
}

/// `<output>: delivered to <url> after <n> tries (delivery <id>)`, or `NOT delivered`
/// with the error.
fn fate_line(fate: &pb::AlertOutputFate, delivery: &str) -> String {
    let tries = match fate.tries {
        1 => "1 try".to_owned(),
        n => format!("{n} tries"),
    };
    if fate.delivered {
        format!(
            "{}: delivered to {} after {tries} (delivery {})",
            clean(&fate.output),
            clean(&fate.url),
            clean(delivery)
        )
    } else {
        format!(
            "{}: NOT delivered to {} after {tries}: {} (delivery {})",
            clean(&fate.output),
            clean(&fate.url),
            clean(&fate.error),
            clean(delivery)
        )
    }
}
