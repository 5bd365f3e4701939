//! `mayfly agent`: the node agent that serves the SPIFFE Workload API to local
//! workloads on a Unix socket (see [`crate::agent`]).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args};
use zeroize::Zeroizing;

use mayfly_sdk::SpiffeId;

use super::values::parse_ttl;
use super::{GlobalArgs, exit, output};
use mayfly_agent::sink::{
    FileSinkConfig, ProcessId, RenewCommand, RenewSignal, Signal, SignalTarget, SinkAudience,
};
use mayfly_agent::{AgentConfig, AgentError, DEFAULT_DATA_DIR, NodeEvidence};
use mayfly_sdk::client::{BUNDLE_FILE, Secret};

/// Longest join token file read; real tokens are well under 1 KiB.
const MAX_TOKEN_FILE: u64 = 16 * 1024;

pub(super) const AGENT_EXAMPLES: &str = "\
Examples:
  mayfly agent --socket /run/mayfly/agent.sock --join-token-file token.txt \\
      --server https://mayfly.internal:7443 --bundle root.pem
  mayfly agent --socket /run/mayfly/agent.sock     # restart: re-uses its SVID

Register the agent (its entry's SPIFFE ID is the parent of the workloads it
serves), then the workloads under it:
  mayfly entry create --spiffe-id spiffe://mayfly.internal/agent/node-1 \\
      --owner ops --purpose \"node agent\"
  mayfly token create --entry <AGENT ENTRY ID> --json | jq -r .token > token.txt
  mayfly entry create --spiffe-id spiffe://mayfly.internal/billing/api \\
      --parent spiffe://mayfly.internal/agent/node-1 --selector unix:uid:1000 \\
      --owner team-billing --purpose \"billing API\" --audience billing-db
Workloads then use SPIFFE_ENDPOINT_SOCKET=unix:///run/mayfly/agent.sock.

For a program that only reads files, register an entry the agent process
itself matches (here: the agent runs as root) and let the agent write it:
  mayfly entry create --spiffe-id spiffe://mayfly.internal/nginx \\
      --parent spiffe://mayfly.internal/agent/node-1 --selector unix:uid:0 \\
      --owner ops --purpose \"nginx TLS\" --audience billing-db
  mayfly agent --socket /run/mayfly/agent.sock --write-dir /etc/nginx/svid \\
      --write-spiffe-id spiffe://mayfly.internal/nginx \\
      --jwt-audience billing-db \\
      --on-renew-signal HUP --on-renew-pid-file /run/nginx.pid

--data-dir defaults to ./mayfly-agent; --bundle to <data-dir>/bundle.pem
once the agent has run.";

/// Arguments of `mayfly agent`. `--server`, `--bundle` and `--data-dir` are the
/// global flags.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("token").args(["join_token", "join_token_file"])))]
#[command(group(ArgGroup::new("signal_target").args(["on_renew_pid", "on_renew_pid_file"])))]
pub struct AgentArgs {
    /// Where to serve the Workload API: a Unix socket path (mode 0666; every
    /// caller is attested per request).
    #[arg(long, value_name = "PATH", env = "MAYFLY_AGENT_SOCKET")]
    socket: PathBuf,
    /// The join token for the agent's own entry; needed only on the first start
    /// (afterwards the saved SVID is used). On the command line it shows in `ps`;
    /// prefer --join-token-file or the environment variable.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MAYFLY_JOIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    join_token: Option<Secret>,
    /// A file holding the join token ("-" for standard input).
    #[arg(long, value_name = "FILE")]
    join_token_file: Option<PathBuf>,
    /// Node attestation with a Kubernetes projected service-account token file
    /// (re-read at every attestation, so the agent re-attests by itself after
    /// its SVID expired).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["join_token", "join_token_file"])]
    k8s_token_file: Option<PathBuf>,
    /// Node attestation with an OIDC ID token file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["join_token", "join_token_file", "k8s_token_file"])]
    oidc_token_file: Option<PathBuf>,
    /// Node attestation by proof of possession of a host certificate (PEM
    /// chain, leaf first); needs --x509pop-key.
    #[arg(long, value_name = "FILE", requires = "x509pop_key",
          conflicts_with_all = ["join_token", "join_token_file", "k8s_token_file", "oidc_token_file"])]
    x509pop_cert: Option<PathBuf>,
    /// The host certificate's PKCS#8 private key; it never leaves the node.
    #[arg(long, value_name = "FILE", requires = "x509pop_cert")]
    x509pop_key: Option<PathBuf>,
    /// How often to sync entries and SVIDs with the broker.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, default_value = "5s")]
    sync_interval: u32,
    /// Serve the agent's metrics as Prometheus text at http://ADDR/metrics
    /// (counts and times only, no identities), e.g. 127.0.0.1:9464. Traces and
    /// metrics also go over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT (or
    /// MAYFLY_OTEL_EXPORTER_OTLP_ENDPOINT) is set; see the README's "Observe it".
    #[arg(long, value_name = "ADDR", env = "MAYFLY_AGENT_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Also keep an SVID of the agent process itself in DIR, for programs that only
    /// read files: svid.pem, svid_key.pem (0600), bundle.pem and a
    /// jwt_AUDIENCE.token (0600) per --jwt-audience. DIR is created with mode 0700.
    #[arg(long, value_name = "DIR", requires = "write_spiffe_id")]
    write_dir: Option<PathBuf>,
    /// The identity --write-dir holds: an entry registered under this agent whose
    /// selectors the agent process itself proves (e.g. unix:uid:0 for an agent
    /// running as root).
    #[arg(long, value_name = "SPIFFE_ID", requires = "write_dir")]
    write_spiffe_id: Option<SpiffeId>,
    /// Keep a JWT-SVID for AUDIENCE in DIR/jwt_AUDIENCE.token, renewed at half its
    /// life; characters other than letters, digits, '.', '-' and '_' become '_' in the
    /// file name. Repeatable.
    #[arg(long = "jwt-audience", value_name = "AUDIENCE", requires = "write_dir")]
    jwt_audiences: Vec<SinkAudience>,
    /// Run this after each new X509-SVID or bundle is written, without a shell:
    /// "PROGRAM ARGS..." is split on whitespace. Given more than once, each
    /// occurrence is one word, not split (for arguments with spaces).
    #[arg(
        long,
        value_name = "COMMAND",
        requires = "write_dir",
        allow_hyphen_values = true
    )]
    on_renew_command: Vec<String>,
    /// How long the on-renew command may run before it is killed.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, default_value = "30s")]
    on_renew_timeout: u32,
    /// Send this signal after each new X509-SVID or bundle is written (after the
    /// command): HUP, USR1, USR2, TERM or INT.
    #[arg(
        long,
        value_name = "SIGNAL",
        requires_all = ["write_dir", "signal_target"]
    )]
    on_renew_signal: Option<Signal>,
    /// The process --on-renew-signal goes to.
    #[arg(long, value_name = "PID", requires = "on_renew_signal")]
    on_renew_pid: Option<ProcessId>,
    /// A file holding the pid --on-renew-signal goes to, read before each signal.
    #[arg(long, value_name = "FILE", requires = "on_renew_signal")]
    on_renew_pid_file: Option<PathBuf>,
}

/// Runs `mayfly agent` until SIGINT or SIGTERM.
pub(super) async fn run(global: &GlobalArgs, args: AgentArgs) -> ExitCode {
    let config = match config(global, &args) {
        Ok(config) => config,
        Err(error) => {
            mayfly_telemetry::Tracing::logs_only();
            return report(&error);
        }
    };
    let tracing = match mayfly_telemetry::Tracing::install(&config.telemetry.otlp) {
        Ok(tracing) => tracing,
        Err(error) => {
            mayfly_telemetry::Tracing::logs_only();
            output::stderr_line(&format!("error: {error}"));
            return ExitCode::from(1);
        }
    };
    let agent = match mayfly_agent::start(config).await {
        Ok(agent) => agent,
        Err(error) => {
            tracing.shutdown().await;
            return report(&error);
        }
    };
    if let Some(addr) = agent.metrics_addr() {
        output::stderr_line(&format!("mayfly agent: metrics at http://{addr}/metrics"));
    }
    output::stderr_line(&format!(
        "mayfly agent {}: serving the SPIFFE Workload API on unix://{}",
        output::clean(agent.spiffe_id().as_str()),
        agent.socket_path().display()
    ));
    if let (Some(dir), Some(id)) = (&args.write_dir, &args.write_spiffe_id) {
        output::stderr_line(&format!(
            "mayfly agent: writing {} to {}",
            output::clean(id.as_str()),
            output::clean(&dir.display().to_string())
        ));
    }
    let failed = tokio::select! {
        () = wait_for_signal() => None,
        error = agent.failed() => Some(error),
    };
    agent.shutdown().await;
    tracing.shutdown().await;
    match failed {
        Some(error) => report(&error),
        None => ExitCode::SUCCESS,
    }
}

fn config(global: &GlobalArgs, args: &AgentArgs) -> Result<AgentConfig, AgentError> {
    let data_dir = global
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let bundle_path = global
        .bundle
        .clone()
        .unwrap_or_else(|| data_dir.join(BUNDLE_FILE));
    let bundle_pem = std::fs::read(&bundle_path).map_err(|e| AgentError::Config {
        reason: format!(
            "--bundle {}: {e}; give the broker's root CA (`mayfly server` writes \
             <its data-dir>/bundle.pem)",
            bundle_path.display()
        ),
    })?;
    let mut config = AgentConfig::new(global.server.clone(), bundle_pem, args.socket.clone());
    config.data_dir = data_dir;
    config.sync_interval = Duration::from_secs(args.sync_interval.into());
    config.telemetry.metrics_listen = args.metrics_listen;
    config.telemetry.otlp = config
        .telemetry
        .otlp
        .apply_env(|name| std::env::var(name).ok())
        .map_err(|error| AgentError::Config {
            reason: error.to_string(),
        })?;
    config.join_token = match (&args.join_token, &args.join_token_file) {
        (Some(token), _) => Some(Secret::from(token.expose().trim().to_owned())),
        (None, Some(path)) => Some(read_token_file(path)?),
        (None, None) => None,
    };
    if config
        .join_token
        .as_ref()
        .is_some_and(|t| t.expose().is_empty())
    {
        return Err(AgentError::Config {
            reason: "the join token is empty".to_owned(),
        });
    }
    config.node_evidence = match (
        &args.k8s_token_file,
        &args.oidc_token_file,
        &args.x509pop_cert,
        &args.x509pop_key,
    ) {
        (Some(path), _, _, _) => Some(NodeEvidence::K8sPsatTokenFile(path.clone())),
        (_, Some(path), _, _) => Some(NodeEvidence::OidcTokenFile(path.clone())),
        (_, _, Some(cert), Some(key)) => Some(NodeEvidence::X509Pop {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    config.file_sink = file_sink(args)?;
    Ok(config)
}

/// The `--write-dir` flags, checked as far as they can be before starting.
fn file_sink(args: &AgentArgs) -> Result<Option<FileSinkConfig>, AgentError> {
    let (Some(dir), Some(spiffe_id)) = (&args.write_dir, &args.write_spiffe_id) else {
        return Ok(None);
    };
    let mut sink = FileSinkConfig::new(dir.clone(), spiffe_id.clone());
    sink.jwt_audiences = args.jwt_audiences.clone();
    sink.on_renew_command = match args.on_renew_command.as_slice() {
        [] => None,
        [line] => Some(RenewCommand::split(line)?),
        words => Some(RenewCommand::new(words.to_vec())?),
    };
    sink.command_timeout = Duration::from_secs(args.on_renew_timeout.into());
    if let Some(signal) = args.on_renew_signal {
        let target = match (&args.on_renew_pid, &args.on_renew_pid_file) {
            (Some(pid), _) => SignalTarget::Pid(*pid),
            (None, Some(file)) => SignalTarget::PidFile(file.clone()),
            (None, None) => {
                return Err(AgentError::Config {
                    reason: "--on-renew-signal needs --on-renew-pid or --on-renew-pid-file"
                        .to_owned(),
                });
            }
        };
        sink.on_renew_signal = Some(RenewSignal { signal, target });
    }
    Ok(Some(sink))
}

fn read_token_file(path: &Path) -> Result<Secret, AgentError> {
    let mut text = Zeroizing::new(String::new());
    let read = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_TOKEN_FILE + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_TOKEN_FILE + 1).read_to_string(&mut text))
    };
    let bad = |reason: String| AgentError::Config {
        reason: format!("--join-token-file {}: {reason}", path.display()),
    };
    read.map_err(|e| bad(e.to_string()))?;
    if text.len() as u64 > MAX_TOKEN_FILE {
        return Err(bad(format!(
            "larger than {MAX_TOKEN_FILE} bytes, not a join token"
        )));
    }
    Ok(Secret::from(text.trim().to_owned()))
}

/// Prints an error (and a hint) and returns its exit code.
fn report(error: &AgentError) -> ExitCode {
    output::stderr_line(&format!("error: {}", output::clean(&error.to_string())));
    let (code, hint) = match error {
        AgentError::Config { .. } => (exit::USAGE, None),
        AgentError::BrokerUnreachable { .. } => (
            exit::UNAVAILABLE,
            Some(
                "is `mayfly server` running at --server? If the TLS handshake failed, check \
                 that --bundle holds the broker's root CA",
            ),
        ),
        AgentError::NoIdentity { .. } | AgentError::IdentityExpired { .. } => (
            exit::FAILED,
            Some(
                "create a join token for the agent's entry (`mayfly token create --entry \
                 <AGENT ENTRY ID>`) and pass it with --join-token-file",
            ),
        ),
        _ => (exit::FAILED, None),
    };
    if let Some(hint) = hint {
        output::stderr_line(&format!("hint: {hint}"));
    }
    ExitCode::from(code)
}

async fn wait_for_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser as _;

    fn agent_args(args: &[&str]) -> Result<(GlobalArgs, AgentArgs), clap::Error> {
        let cli = Cli::try_parse_from(["mayfly", "agent"].iter().chain(args))?;
        match cli.command {
            Command::Agent(agent) => Ok((cli.global, agent)),
            _ => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
        }
    }

    #[test]
    fn socket_is_required_and_tokens_exclude_each_other() {
        if std::env::var_os("MAYFLY_AGENT_SOCKET").is_some()
            || std::env::var_os("MAYFLY_JOIN_TOKEN").is_some()
        {
            return;
        }
        assert!(agent_args(&[]).is_err());
        assert!(agent_args(&["--socket", "/s"]).is_ok());
        let both = agent_args(&[
            "--socket",
            "/s",
            "--join-token",
            "t",
            "--join-token-file",
            "f",
        ]);
        assert_eq!(
            both.err().map(|e| e.kind()),
            Some(clap::error::ErrorKind::ArgumentConflict)
        );
    }

    #[test]
    fn defaults_and_token_file() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let bundle = tmp.path().join("root.pem");
        std::fs::write(&bundle, "PEM")?;
        let token = tmp.path().join("token.txt");
        std::fs::write(&token, " jt_secret \n")?;
        let (global, args) = agent_args(&[
            "--socket",
            "/run/agent.sock",
            "--bundle",
            &bundle.to_string_lossy(),
            "--join-token-file",
            &token.to_string_lossy(),
            "--sync-interval",
            "2s",
        ])?;
        let config = config(&global, &args)?;
        assert_eq!(
            config.join_token.as_ref().map(Secret::expose),
            Some("jt_secret")
        );
        assert_eq!(config.sync_interval, Duration::from_secs(2));
        assert_eq!(config.socket_path, PathBuf::from("/run/agent.sock"));
        if std::env::var_os("MAYFLY_DATA_DIR").is_none() {
            assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        }
        assert!(!format!("{config:?}").contains("jt_secret"));
        Ok(())
    }

    #[test]
    fn write_flags_make_a_file_sink() -> Result<(), Box<dyn std::error::Error>> {
        if std::env::var_os("MAYFLY_AGENT_SOCKET").is_some() {
            return Ok(());
        }
        let tmp = tempfile::tempdir()?;
        let bundle = tmp.path().join("root.pem");
        std::fs::write(&bundle, "PEM")?;
        let bundle = bundle.to_string_lossy().into_owned();
        let with = |extra: &[&str]| {
            let mut all = vec!["--socket", "/s", "--bundle", bundle.as_str()];
            all.extend_from_slice(extra);
            agent_args(&all)
        };
        let (global, args) = with(&[])?;
        assert!(config(&global, &args)?.file_sink.is_none());

        let (global, args) = with(&[
            "--write-dir",
            "/out",
            "--write-spiffe-id",
            "spiffe://example.org/web",
            "--jwt-audience",
            "db",
            "--jwt-audience",
            "https://x.example",
            "--on-renew-command",
            "nginx -s  reload",
            "--on-renew-timeout",
            "10s",
            "--on-renew-signal",
            "sighup",
            "--on-renew-pid-file",
            "/run/nginx.pid",
        ])?;
        let sink = config(&global, &args)?.file_sink.ok_or("no sink")?;
        assert_eq!(sink.dir, PathBuf::from("/out"));
        assert_eq!(sink.spiffe_id.as_str(), "spiffe://example.org/web");
        let files: Vec<&str> = sink.jwt_audiences.iter().map(|a| a.file_name()).collect();
        assert_eq!(files, ["jwt_db.token", "jwt_https___x.example.token"]);
        let command = sink.on_renew_command.ok_or("no command")?;
        assert_eq!(command.program(), "nginx");
        assert_eq!(command.args(), ["-s", "reload"]);
        assert_eq!(sink.command_timeout, Duration::from_secs(10));
        assert_eq!(
            sink.on_renew_signal,
            Some(RenewSignal {
                signal: Signal::Hup,
                target: SignalTarget::PidFile("/run/nginx.pid".into()),
            })
        );

        // Repeated, each occurrence is one word, spaces kept.
        let (global, args) = with(&[
            "--write-dir",
            "/out",
            "--write-spiffe-id",
            "spiffe://example.org/web",
            "--on-renew-command",
            "cp",
            "--on-renew-command",
            "a b",
            "--on-renew-command",
            "-v",
            "--on-renew-signal",
            "USR2",
            "--on-renew-pid",
            "42",
        ])?;
        let sink = config(&global, &args)?.file_sink.ok_or("no sink")?;
        let command = sink.on_renew_command.ok_or("no command")?;
        assert_eq!(command.program(), "cp");
        assert_eq!(command.args(), ["a b", "-v"]);
        assert_eq!(
            sink.on_renew_signal.map(|s| s.target),
            Some(SignalTarget::Pid(ProcessId::new(42)?))
        );

        // A pid and a pid file exclude each other.
        let both = with(&[
            "--write-dir",
            "/out",
            "--write-spiffe-id",
            "spiffe://example.org/web",
            "--on-renew-signal",
            "HUP",
            "--on-renew-pid",
            "42",
            "--on-renew-pid-file",
            "/p",
        ]);
        assert_eq!(
            both.err().map(|e| e.kind()),
            Some(clap::error::ErrorKind::ArgumentConflict)
        );
        Ok(())
    }

    #[test]
    fn a_missing_bundle_is_a_usage_error() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let missing = tmp.path().join("nope.pem");
        let (global, args) =
            agent_args(&["--socket", "/s", "--bundle", &missing.to_string_lossy()])?;
        let error = config(&global, &args).err();
        assert!(matches!(error, Some(AgentError::Config { .. })));
        Ok(())
    }
}
