//! The `mayfly` command line.
//!
//! One binary for every role: `mayfly server` runs the broker; `entry`, `token`, `status`
//! and `audit` are the operator's commands (over the admin Unix socket in the data
//! directory, or reading the data directory directly); `client` is what a workload runs to
//! attest and use its credentials; `validate` is for relying parties.
//!
//! ```no_run
//! use clap::Parser as _;
//!
//! # async fn demo() -> std::process::ExitCode {
//! let cli = mayfly::cli::Cli::parse_from(["mayfly", "entry", "list", "--json"]);
//! mayfly::cli::run(cli).await
//! # }
//! ```
//!
//! Exit codes ([`exit`]): 0 success; 1 refused or failed; 2 command-line syntax (clap);
//! 64 a flag value that cannot be used (with [`parse_args`]); 69 the server or the admin
//! socket cannot be reached.
//!
//! The pieces other code reuses: [`connect`] (clients for both APIs) and [`keygen`]
//! (key pair and CSR).

mod agent;
mod alerts;
mod audience;
mod audit_export;
mod audit_key;
mod audit_log;
mod bench;
mod breakglass;
mod ca;
mod client;
mod entry;
mod error;
mod output;
mod pages;
mod report;
mod revoke;
mod server;
mod status;
mod token;
mod validate;
mod values;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use mayfly_sdk::proto::v1::admin_client::AdminClient;
use tonic::transport::Channel;

use agent::AgentArgs;
use audit_log::AuditCommand;
use ca::CaCommand;
use client::ClientCommand;
use entry::EntryCommand;
use error::{CliError, exit};
use revoke::{RevokeArgs, UnrevokeArgs};
use status::StatusArgs;
use token::TokenCommand;
use validate::ValidateArgs;

/// The data directory when neither `--data-dir` nor `MAYFLY_DATA_DIR` names one.
pub use mayfly_sdk::data_dir::DEFAULT_DATA_DIR;
/// The broker when neither `--server` nor `MAYFLY_SERVER` names one.
pub const DEFAULT_SERVER: &str = "https://127.0.0.1:7443";

const QUICK_START: &str = "\
Quick start (one machine):
  mayfly server                  # in another terminal; creates ./mayfly-data
  mayfly entry create --spiffe-id spiffe://mayfly.internal/billing/api \\
      --owner team-billing --purpose \"billing API\" --audience billing-db
  mayfly token create --entry <ID> --json | jq -r .token > token.txt
  mayfly client attest --join-token-file token.txt       # writes ./svid/
  mayfly client jwt --audience billing-db > token.jwt
  mayfly validate --audience billing-db < token.jwt

Every command has --help with examples.";

/// Mayfly: short-lived SPIFFE credentials for attested workloads.
#[derive(Debug, Parser)]
#[command(
    name = "mayfly",
    version,
    about = "Mayfly: short-lived SPIFFE credentials (X509-SVIDs and JWT-SVIDs) for attested workloads",
    long_about = "Mayfly: short-lived SPIFFE credentials (X509-SVIDs and JWT-SVIDs) for attested \
                  workloads.\n\nEvery identity has an owner, a purpose and an expiry; every \
                  credential lives minutes, names one identity and is good for one audience; \
                  every decision lands in a hash-chained audit log.",
    after_help = QUICK_START,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes: where the server's files are and where the broker listens.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The data directory [default: ./mayfly-data; for `mayfly agent`:
    /// ./mayfly-agent]. The server's holds the admin socket, the audit log
    /// and bundle.pem; the agent's its own SVID and key.
    #[arg(long, global = true, env = "MAYFLY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The broker's URL (https only).
    #[arg(
        long,
        global = true,
        env = "MAYFLY_SERVER",
        value_name = "URL",
        default_value = DEFAULT_SERVER
    )]
    pub server: String,
    /// The root CA(s) to trust for the broker, PEM; by default `<data-dir>/bundle.pem`, or
    /// for `client renew` and `client jwt` the `bundle.pem` next to the SVID.
    #[arg(
        long,
        global = true,
        env = "MAYFLY_BUNDLE",
        value_name = "FILE",
        help = "The root CA(s) to trust for the broker, PEM [default: <data-dir>/bundle.pem; \
                for `client renew` and `client jwt`: <dir>/bundle.pem]"
    )]
    pub bundle: Option<PathBuf>,
    /// The admin socket [default: <data-dir>/admin.sock]; set it when the
    /// server's [admin] socket_path puts it elsewhere.
    #[arg(long, global = true, env = "MAYFLY_ADMIN_SOCKET", value_name = "PATH")]
    pub admin_socket: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker (creates the data directory, CA and keys on first start).
    #[command(after_help = SERVER_EXAMPLES)]
    Server(ServerArgs),
    /// Register and manage identities (registration entries).
    #[command(subcommand)]
    Entry(EntryCommand),
    /// Create one-time join tokens for workloads.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Workload side: attest, renew the X509-SVID, mint JWT-SVIDs.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Check a JWT-SVID for an audience (exit 0 valid, 1 rejected).
    #[command(after_help = VALIDATE_EXAMPLES)]
    Validate(ValidateArgs),
    /// Verify, read, prove or export the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Revoke credentials by entry, SPIFFE ID, jti, serial or agent; `revoke list` shows them.
    #[command(after_help = revoke::REVOKE_EXAMPLES)]
    Revoke(RevokeArgs),
    /// Lift an entry, SPIFFE ID or agent revocation (minting resumes).
    #[command(after_help = revoke::REVOKE_EXAMPLES)]
    Unrevoke(UnrevokeArgs),
    /// The CA: status of every key, and the operator's root rotation (see docs/operations.md).
    #[command(subcommand)]
    Ca(CaCommand),
    /// The alert webhook: `alerts test` sends a test alert.
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
    /// Reports for owners and compliance: `report inventory`, `report owners`.
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// Show what the running server says about itself.
    #[command(after_help = "Examples:\n  mayfly status\n  mayfly status --json")]
    Status(StatusArgs),
    /// Run the node agent: serve the SPIFFE Workload API to local workloads.
    #[command(after_help = agent::AGENT_EXAMPLES)]
    Agent(AgentArgs),
    /// Load-test a broker: throughput and latency of each path against the raw ES256 limit.
    #[command(after_help = bench::BENCH_EXAMPLES)]
    Bench(bench::BenchArgs),
    /// Register the audiences JWT-SVIDs are for (owner, environment, data class).
    #[command(subcommand)]
    Audience(audience::AudienceCommand),
    /// Emergency access: a grant two operators agree on, for a short time.
    #[command(subcommand)]
    Breakglass(breakglass::BreakglassCommand),
}

const SERVER_EXAMPLES: &str = "\
Examples:
  mayfly server           # ./mayfly-data, 127.0.0.1:7443 and 127.0.0.1:7080
  mayfly server --trust-domain example.org --grpc-listen 0.0.0.0:7443
  mayfly server --config /etc/mayfly/mayfly.toml --data-dir /var/lib/mayfly
  mayfly server --store redis://10.0.0.5:6379   # one of several replicas

Several replicas share one root CA: `mayfly ca export-root` on the first
replica writes root.crt and root.key; put them in each new replica's
<data>/ca before its first start. Each makes its own intermediate CA and
JWT key.

Flags win over MAYFLY_* environment variables, which win over the config
file.";

const VALIDATE_EXAMPLES: &str = "\
Examples:
  mayfly validate --audience billing-db < token.jwt
  mayfly client jwt --audience db -q | mayfly validate --audience db
  mayfly validate --audience billing-db --json - < token.jwt

The token is read from standard input unless given as an argument:
arguments show in `ps`.";

/// What `mayfly server` is given. `data_dir` comes from the global `--data-dir` (or
/// `MAYFLY_DATA_DIR`) and is `None` when neither is set, so that a config file's
/// `data_dir` can apply.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// A TOML config file.
    #[arg(long, value_name = "FILE", env = "MAYFLY_CONFIG")]
    pub config: Option<PathBuf>,
    /// The global `--data-dir`, if given.
    #[arg(skip)]
    pub data_dir: Option<PathBuf>,
    /// The trust domain of every identity, e.g. example.org (also MAYFLY_TRUST_DOMAIN)
    /// [default: mayfly.internal].
    #[arg(long, value_name = "TD")]
    pub trust_domain: Option<String>,
    /// Where the broker (gRPC over TLS) listens (also MAYFLY_GRPC_LISTEN)
    /// [default: 127.0.0.1:7443].
    #[arg(long, value_name = "ADDR")]
    pub grpc_listen: Option<String>,
    /// Where plain HTTP (OIDC discovery, JWKS, bundle, health) listens (also
    /// MAYFLY_HTTP_LISTEN) [default: 127.0.0.1:7080].
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// Where shared state lives: `embedded` (one replica, the default) or a
    /// Redis URL shared by several replicas, e.g. redis://10.0.0.5:6379 (also
    /// MAYFLY_STORE; key prefix from MAYFLY_REDIS_PREFIX or [store] prefix).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Start although the audit log does not continue its anchored history (it
    /// was rolled back, or forked, or its audit key is of another epoch): the
    /// server refuses that by default. REASON is audited as the first record,
    /// and a new root audit key starts (auditors must pin its public key).
    #[arg(long, value_name = "REASON", value_parser = non_empty_reason)]
    pub accept_audit_rollback: Option<String>,
}

/// A reason an operator gives: words, not nothing.
fn non_empty_reason(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.chars().count() < 8 {
        return Err("say why, in a few words (at least 8 characters)".into());
    }
    if text.chars().any(char::is_control) {
        return Err("one line of text, without control characters".into());
    }
    Ok(text.to_owned())
}

/// What every command handler needs from the global flags, with defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The data directory.
    pub(crate) data_dir: PathBuf,
    /// The broker URL.
    pub(crate) server: String,
    /// `--bundle` if given.
    pub(crate) bundle: Option<PathBuf>,
    /// `--admin-socket` if given.
    pub(crate) admin_socket: Option<PathBuf>,
}

impl Context {
    fn new(global: &GlobalArgs) -> Self {
        Context {
            data_dir: global
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            server: global.server.clone(),
            bundle: global.bundle.clone(),
            admin_socket: global.admin_socket.clone(),
        }
    }

    /// `--admin-socket`, else `<data-dir>/admin.sock`.
    pub(crate) fn admin_socket(&self) -> PathBuf {
        self.admin_socket
            .clone()
            .unwrap_or_else(|| mayfly_sdk::data_dir::DataDir::new(&self.data_dir).admin_socket())
    }

    /// `--bundle`, else `<data-dir>/bundle.pem`.
    pub(crate) fn attest_bundle_path(&self) -> PathBuf {
        self.bundle
            .clone()
            .unwrap_or_else(|| mayfly_sdk::data_dir::DataDir::new(&self.data_dir).bundle_pem())
    }

    /// A connected admin client.
    pub(crate) async fn admin(&self) -> Result<AdminClient<Channel>, CliError> {
        Ok(mayfly_sdk::client::connect_admin(&self.admin_socket()).await?)
    }
}

/// Parses the process's arguments like [`Cli::parse`], except that a flag value clap
/// rejects (a bad duration, date, SPIFFE ID or kind) exits with 64 (`EX_USAGE`) instead of
/// 2. `--help` and `--version` exit 0; other syntax errors keep clap's 2.
pub fn parse_args() -> Cli {
    let matches = Cli::command().try_get_matches();
    match matches.and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let value_error = matches!(
                e.kind(),
                ErrorKind::ValueValidation | ErrorKind::InvalidValue
            );
            // Printing to a closed stderr is the only failure; there is nothing else to do.
            let _ = e.print();
            let code = if value_error {
                i32::from(exit::USAGE)
            } else {
                e.exit_code()
            };
            std::process::exit(code)
        }
    }
}

/// Runs a parsed command line and returns the process exit code. Errors are printed to
/// standard error as "error: …", with a "hint: …" line when there is something to try.
pub async fn run(cli: Cli) -> ExitCode {
    // `server` and `agent` install theirs once their config is read: it
    // says whether spans are exported.
    if !matches!(cli.command, Command::Server(_) | Command::Agent(_)) {
        mayfly_telemetry::Tracing::logs_only();
    }
    let ctx = Context::new(&cli.global);
    let result = match cli.command {
        Command::Server(mut args) => {
            args.data_dir.clone_from(&cli.global.data_dir);
            return server::run(&args).await;
        }
        Command::Entry(command) => entry::run(&ctx, command).await.map(|()| ExitCode::SUCCESS),
        Command::Token(command) => token::run(&ctx, command).await.map(|()| ExitCode::SUCCESS),
        Command::Client(command) => client::run(&ctx, command).await.map(|()| ExitCode::SUCCESS),
        Command::Validate(args) => validate::run(&ctx, args).await,
        Command::Audit(command) => audit_log::run(&ctx, command),
        Command::Revoke(args) => revoke::run_revoke(&ctx, args).await,
        Command::Unrevoke(args) => revoke::run_unrevoke(&ctx, args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Ca(command) => ca::run(&ctx, command).await.map(|()| ExitCode::SUCCESS),
        Command::Alerts(command) => alerts::run(&ctx, command).await.map(|delivered| {
            if delivered {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        Command::Report(command) => report::run(&ctx, command).await.map(|()| ExitCode::SUCCESS),
        Command::Status(args) => status::run(&ctx, args).await.map(|()| ExitCode::SUCCESS),
        Command::Agent(args) => return agent::run(&cli.global, args).await,
        Command::Bench(args) => return bench::run(&cli.global, args).await,
        Command::Audience(command) => audience::run(&ctx, command)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Breakglass(command) => breakglass::run(&ctx, command)
            .await
            .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(error) => report(&error),
    }
}

/// Prints an error and its hint, and returns its exit code.
fn report(error: &CliError) -> ExitCode {
    if !error.is_silent() {
        output::stderr_line(&format!("error: {}", output::clean(&error.to_string())));
        if let Some(hint) = error.hint() {
            output::stderr_line(&format!("hint: {hint}"));
        }
    }
    ExitCode::from(error.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "mayfly",
            "entry",
            "list",
            "--data-dir",
            "/d",
            "--server",
            "https://h:1",
        ])?;
        let ctx = Context::new(&cli.global);
        assert_eq!(ctx.admin_socket(), PathBuf::from("/d/admin.sock"));
        assert_eq!(ctx.attest_bundle_path(), PathBuf::from("/d/bundle.pem"));
        assert_eq!(ctx.server, "https://h:1");
        Ok(())
    }

    #[test]
    fn defaults() -> Result<(), clap::Error> {
        // Only meaningful without the environment overrides.
        if ["MAYFLY_DATA_DIR", "MAYFLY_SERVER", "MAYFLY_BUNDLE"]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
        {
            return Ok(());
        }
        let cli = Cli::try_parse_from(["mayfly", "status"])?;
        let ctx = Context::new(&cli.global);
        assert_eq!(
            ctx.admin_socket(),
            PathBuf::from("./mayfly-data/admin.sock")
        );
        assert_eq!(ctx.server, DEFAULT_SERVER);
        assert_eq!(cli.global.data_dir, None);
        Ok(())
    }

    #[test]
    fn server_args_parse() -> Result<(), Box<dyn std::error::Error>> {
        let cli = Cli::try_parse_from([
            "mayfly",
            "server",
            "--trust-domain",
            "example.org",
            "--grpc-listen",
            "0.0.0.0:7443",
        ])?;
        let Command::Server(args) = cli.command else {
            return Err("not server".into());
        };
        assert_eq!(args.trust_domain.as_deref(), Some("example.org"));
        assert_eq!(args.grpc_listen.as_deref(), Some("0.0.0.0:7443"));
        assert_eq!(args.http_listen, None);
        Ok(())
    }

    #[test]
    fn every_command_teaches() {
        fn walk(command: &clap::Command, path: &str) {
            let name = format!("{path} {}", command.get_name());
            assert!(command.get_about().is_some(), "{name} has no about text");
            let has_children = command.get_subcommands().next().is_some();
            if !has_children {
                let after = command
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                assert!(after.contains("mayfly "), "{name} has no examples");
            }
            // Longer lines would be wrapped on an 80-column terminal, breaking the commands.
            let after = command
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            for line in after.lines() {
                assert!(line.chars().count() <= 80, "{name}: line too long: {line}");
            }
            for sub in command.get_subcommands() {
                walk(sub, &name);
            }
        }
        walk(&Cli::command(), "");
    }

    #[test]
    fn validate_token_is_redacted_and_optional() -> Result<(), Box<dyn std::error::Error>> {
        let cli = Cli::try_parse_from(["mayfly", "validate", "--audience", "a", "eyJ.secret.sig"])?;
        assert!(!format!("{cli:?}").contains("eyJ.secret.sig"));
        Cli::try_parse_from(["mayfly", "validate", "--audience", "a"])?;
        Cli::try_parse_from(["mayfly", "validate", "--audience", "a", "-"])?;
        Ok(())
    }

    #[test]
    fn audit_tail_count() -> Result<(), Box<dyn std::error::Error>> {
        let cli = Cli::try_parse_from(["mayfly", "audit", "tail", "-n", "5", "--json"])?;
        assert!(matches!(cli.command, Command::Audit(AuditCommand::Tail(_))));
        assert!(Cli::try_parse_from(["mayfly", "audit", "tail", "-n", "x"]).is_err());
        Ok(())
    }
}
