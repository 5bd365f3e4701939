//! `mayfly ca …`: the operator's view of the CA and the root rotation.
//!
//! `status`, `prepare`, `activate`, `retire`, `intermediate-csr` and
//! `import-intermediate` talk to the running server over the admin socket.
//! `new-root` and `sign-intermediate` are for the offline machine that
//! keeps an offline root's key: they need no server.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use mayfly_sdk::TrustDomain;
use mayfly_sdk::proto::v1 as pb;
use serde::Serialize;

use super::Context;
use super::error::CliError;
use super::output::{self, Table, time_and_relative};
use super::values::now_unix;

/// The CA's authorities and the operator's rotation steps.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Every root, intermediate and JWT key: state, validity, fingerprint, what it signed that is still live.
    #[command(after_help = "Examples:\n  mayfly ca status\n  mayfly ca status --json")]
    Status(CaStatusArgs),
    /// Root rotation, step 1: a new root joins the bundle (nothing signs with it yet).
    #[command(after_help = ROTATION_EXAMPLES)]
    Prepare(CaPrepareArgs),
    /// Root rotation, step 2: new intermediates chain to the prepared root.
    #[command(after_help = ROTATION_EXAMPLES)]
    Activate(CaForceArgs),
    /// Root rotation, step 3: the old root leaves the bundle.
    #[command(after_help = ROTATION_EXAMPLES)]
    Retire(CaForceArgs),
    /// Offline root: a CSR for the next intermediate (its key stays on the server).
    #[command(after_help = OFFLINE_EXAMPLES)]
    IntermediateCsr(CaCsrArgs),
    /// Offline root: install the intermediate certificate signed offline.
    #[command(after_help = OFFLINE_EXAMPLES)]
    ImportIntermediate(CaImportArgs),
    /// On the offline machine: sign an intermediate CSR with the root key (no server needed).
    #[command(after_help = OFFLINE_EXAMPLES)]
    SignIntermediate(CaSignArgs),
    /// On the offline machine: make a new root key and certificate (no server needed).
    #[command(after_help = OFFLINE_EXAMPLES)]
    NewRoot(CaNewRootArgs),
    /// Copy this data directory's active root (root.crt, root.key) for a new replica.
    #[command(after_help = EXPORT_EXAMPLES)]
    ExportRoot(CaExportArgs),
}

const EXPORT_EXAMPLES: &str = "\
Examples (several replicas share one root):
  # on the first replica's host
  mayfly --data-dir /var/lib/mayfly ca export-root --out-dir ./shared-root
  # on the new replica's host, before its first start
  install -d -m 700 /var/lib/mayfly/ca
  install -m 600 shared-root/root.crt shared-root/root.key /var/lib/mayfly/ca/
  mayfly --data-dir /var/lib/mayfly server --store redis://10.0.0.5:6379";

/// Arguments of `mayfly ca export-root`.
#[derive(Debug, Args)]
pub struct CaExportArgs {
    /// The directory to write root.crt and root.key (0600) to.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

const ROTATION_EXAMPLES: &str = "\
Examples:
  mayfly ca status
  mayfly ca prepare                       # a new root joins the bundle
  # wait [ca] publish_ahead (15m), and for relying parties to reload
  mayfly ca activate                      # new intermediates chain to it
  # wait until nothing the old root signed is valid (see LIVE UNTIL)
  mayfly ca retire                        # the old root leaves the bundle

`activate --force` skips the wait for publication; `retire --force` retires
while credentials the old root signed are still valid, and says which.
The runbook: docs/operations.md.";

const OFFLINE_EXAMPLES: &str = "\
Examples (offline root; the root key never touches the server):
  # offline machine
  mayfly ca new-root --trust-domain example.org --out-dir ./root-2026
  # server
  mayfly ca prepare --root-cert root-2026/root.crt
  mayfly ca intermediate-csr --out next.csr
  # offline machine
  mayfly ca sign-intermediate --root-cert root-2026/root.crt \\
      --root-key root-2026/root.key --csr next.csr \\
      --trust-domain example.org --out next.crt
  # server
  mayfly ca import-intermediate --cert next.crt";

/// Arguments of `mayfly ca status`.
#[derive(Debug, Args)]
pub struct CaStatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mayfly ca prepare`.
#[derive(Debug, Args)]
pub struct CaPrepareArgs {
    /// An offline root's certificate (PEM); without it the server makes the new root and keeps its key.
    #[arg(long, value_name = "FILE")]
    pub root_cert: Option<PathBuf>,
    /// Print the steps taken as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mayfly ca activate` and `mayfly ca retire`.
#[derive(Debug, Args)]
pub struct CaForceArgs {
    /// Do it even though the CA advises against it now (it says what that risks).
    #[arg(long)]
    pub force: bool,
    /// Print the steps taken as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mayfly ca intermediate-csr`.
#[derive(Debug, Args)]
pub struct CaCsrArgs {
    /// Write the CSR here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Arguments of `mayfly ca import-intermediate`.
#[derive(Debug, Args)]
pub struct CaImportArgs {
    /// The intermediate certificate (PEM) signed on the offline machine.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// Print the steps taken as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mayfly ca sign-intermediate`.
#[derive(Debug, Args)]
pub struct CaSignArgs {
    /// The root certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub root_cert: PathBuf,
    /// The root key (PKCS#8 PEM; must not be readable by others).
    #[arg(long, value_name = "FILE")]
    pub root_key: PathBuf,
    /// The CSR from `mayfly ca intermediate-csr`.
    #[arg(long, value_name = "FILE")]
    pub csr: PathBuf,
    /// The trust domain the intermediate serves.
    #[arg(long, value_name = "TD")]
    pub trust_domain: String,
    /// The intermediate's lifetime (capped at the root's).
    #[arg(long, value_name = "DURATION", default_value = "8760h", value_parser = parse_long_ttl)]
    pub ttl: Duration,
    /// Where to write the certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `mayfly ca new-root`.
#[derive(Debug, Args)]
pub struct CaNewRootArgs {
    /// The trust domain the root anchors.
    #[arg(long, value_name = "TD")]
    pub trust_domain: String,
    /// The root's lifetime.
    #[arg(long, value_name = "DURATION", default_value = "87600h", value_parser = parse_long_ttl)]
    pub ttl: Duration,
    /// A new directory for root.crt and root.key (0600).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

fn parse_long_ttl(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}; expected a duration such as 8760h or 365d"))?;
    if duration.as_secs() == 0 {
        return Err("must be at least 1s".into());
    }
    Ok(duration)
}

/// An authority as `--json` prints it.
#[derive(Serialize)]
struct AuthorityView<'a> {
    kind: &'a str,
    id: &'a str,
    state: &'a str,
    not_before: Option<String>,
    not_after: Option<String>,
    issuer: Option<&'a str>,
    key_on_server: bool,
    live_until: Option<String>,
    since: Option<String>,
}

#[derive(Serialize)]
struct StatusView<'a> {
    authorities: Vec<AuthorityView<'a>>,
    warnings: &'a [String],
    bundle_sequence: u64,
}

#[derive(Serialize)]
struct EventView<'a> {
    kind: &'a str,
    id: &'a str,
    from: Option<&'a str>,
    to: &'a str,
    detail: &'a str,
}

/// Runs one `mayfly ca` command.
pub(super) async fn run(ctx: &Context, command: CaCommand) -> Result<(), CliError> {
    match command {
        CaCommand::Status(args) => status(ctx, args).await,
        CaCommand::Prepare(args) => {
            let root_certificate_pem = match &args.root_cert {
                Some(path) => read(path)?,
                None => Vec::new(),
            };
            let response = ctx
                .admin()
                .await?
                .ca_prepare(pb::CaPrepareRequest {
                    root_certificate_pem,
                })
                .await?
                .into_inner();
            print_events(
                &response,
                args.json,
                "prepared a new root; it is in the bundle now. Activate it after [ca] publish_ahead with `mayfly ca activate`.",
            )
        }
        CaCommand::Activate(args) => {
            let response = ctx
                .admin()
                .await?
                .ca_activate(pb::CaActivateRequest { force: args.force })
                .await?
                .into_inner();
            print_events(
                &response,
                args.json,
                "new credentials chain to the new root. Retire the old root once nothing it signed is valid: `mayfly ca status`, then `mayfly ca retire`.",
            )
        }
        CaCommand::Retire(args) => {
            let response = ctx
                .admin()
                .await?
                .ca_retire(pb::CaRetireRequest { force: args.force })
                .await?
                .into_inner();
            print_events(&response, args.json, "retired.")
        }
        CaCommand::IntermediateCsr(args) => {
            let response = ctx
                .admin()
                .await?
                .ca_intermediate_csr(pb::CaIntermediateCsrRequest {})
                .await?
                .into_inner();
            match &args.out {
                Some(path) => {
                    write_public(path, response.csr_pem.as_bytes())?;
                    output::stdout(&format!(
                        "wrote {}; sign it on the offline machine with `mayfly ca sign-intermediate`, then `mayfly ca import-intermediate --cert FILE`\n",
                        path.display()
                    ))
                }
                None => output::stdout(&response.csr_pem),
            }
        }
        CaCommand::ImportIntermediate(args) => {
            let certificate_pem = read(&args.cert)?;
            let response = ctx
                .admin()
                .await?
                .ca_import_intermediate(pb::CaImportIntermediateRequest { certificate_pem })
                .await?
                .into_inner();
            print_events(
                &response,
                args.json,
                "the imported intermediate signs from now on.",
            )
        }
        CaCommand::SignIntermediate(args) => sign_intermediate(&args),
        CaCommand::NewRoot(args) => new_root(&args),
        CaCommand::ExportRoot(args) => {
            let ca_dir = mayfly_sdk::data_dir::DataDir::new(&ctx.data_dir).ca();
            let written = mayfly_ca::export_active_root(&ca_dir, &args.out_dir)
                .map_err(|e| CliError::file("export the root from", &ca_dir, e))?;
            let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            output::stdout(&format!(
                "wrote {}. Keep the key as secret as the data directory's; put both in the new \
                 replica's <data>/ca before its first start.\n",
                names.join(" and ")
            ))
        }
    }
}

async fn status(ctx: &Context, args: CaStatusArgs) -> Result<(), CliError> {
    let status = ctx
        .admin()
        .await?
        .ca_status(pb::CaStatusRequest {})
        .await?
        .into_inner();
    let time = |unix: i64| (unix != 0).then(|| output::rfc3339(unix));
    if args.json {
        return output::json(&StatusView {
            authorities: status
                .authorities
                .iter()
                .map(|a| AuthorityView {
                    kind: &a.kind,
                    id: &a.id,
                    state: &a.state,
                    not_before: time(a.not_before),
                    not_after: time(a.not_after),
                    issuer: (!a.issuer.is_empty()).then_some(a.issuer.as_str()),
                    key_on_server: a.key_on_server,
                    live_until: time(a.live_until),
                    since: time(a.since),
                })
                .collect(),
            warnings: &status.warnings,
            bundle_sequence: status.bundle_sequence,
        });
    }
    output::stdout(&status_text(&status, now_unix()))
}

fn status_text(status: &pb::CaStatusResponse, now: i64) -> String {
    let mut table = Table::new(&["KIND", "ID", "STATE", "NOT AFTER", "LIVE UNTIL", "KEY"]);
    for a in &status.authorities {
        let short: String = a.id.chars().take(16).collect();
        table.row([
            output::clean(&a.kind),
            output::clean(&short),
            output::clean(&a.state),
            if a.not_after == 0 {
                "-".to_owned()
            } else {
                time_and_relative(a.not_after, now)
            },
            if a.live_until == 0 {
                "-".to_owned()
            } else {
                time_and_relative(a.live_until, now)
            },
            if a.key_on_server {
                "here"
            } else {
                "offline/none"
            }
            .to_owned(),
        ]);
    }
    let mut text = table.render();
    text.push_str(&format!("bundle sequence {}\n", status.bundle_sequence));
    for warning in &status.warnings {
        text.push_str(&format!("warning: {}\n", output::clean(warning)));
    }
    text
}

fn print_events(response: &pb::CaRotationResponse, json: bool, done: &str) -> Result<(), CliError> {
    if json {
        let events: Vec<EventView<'_>> = response
            .events
            .iter()
            .map(|e| EventView {
                kind: &e.kind,
                id: &e.id,
                from: (!e.from.is_empty()).then_some(e.from.as_str()),
                to: &e.to,
                detail: &e.detail,
            })
            .collect();
        return output::json(&events);
    }
    output::stdout(&events_text(response, done))
}

fn events_text(response: &pb::CaRotationResponse, done: &str) -> String {
    let mut text = String::new();
    for e in &response.events {
        let from = if e.from.is_empty() {
            "new"
        } else {
            e.from.as_str()
        };
        text.push_str(&format!(
            "{} {}: {} -> {} ({})\n",
            output::clean(&e.kind),
            output::clean(&e.id.chars().take(16).collect::<String>()),
            output::clean(from),
            output::clean(&e.to),
            output::clean(&e.detail)
        ));
    }
    text.push_str(&format!(
        "{done}\nbundle sequence {}\n",
        response.bundle_sequence
    ));
    text
}

fn sign_intermediate(args: &CaSignArgs) -> Result<(), CliError> {
    let trust_domain = TrustDomain::new(&args.trust_domain)
        .map_err(|e| CliError::usage(format!("--trust-domain: {e}")))?;
    let root_cert = read(&args.root_cert)?;
    let root_key = mayfly_sdk::files::read_secret_file(&args.root_key)
        .map_err(|e| CliError::file("read", &args.root_key, e))?;
    let csr = read(&args.csr)?;
    let certificate = mayfly_ca::sign_intermediate_csr(
        &root_cert,
        &root_key,
        &csr,
        &trust_domain,
        args.ttl,
        SystemTime::now(),
    )
    .map_err(|e| CliError::usage(format!("cannot sign the intermediate: {e}")))?;
    write_public(&args.out, certificate.as_bytes())?;
    output::stdout(&format!(
        "signed; install it on the server with `mayfly ca import-intermediate --cert {}`\n",
        args.out.display()
    ))
}

fn new_root(args: &CaNewRootArgs) -> Result<(), CliError> {
    let trust_domain = TrustDomain::new(&args.trust_domain)
        .map_err(|e| CliError::usage(format!("--trust-domain: {e}")))?;
    if args.out_dir.exists() {
        return Err(CliError::usage(format!(
            "{} exists; give a new directory, so that no root key is overwritten",
            args.out_dir.display()
        )));
    }
    mayfly_sdk::files::ensure_private_dir(&args.out_dir)
        .map_err(|e| CliError::file("create", &args.out_dir, e))?;
    let (certificate, key) = mayfly_ca::create_root(&trust_domain, args.ttl, SystemTime::now())
        .map_err(|e| CliError::usage(format!("cannot make the root: {e}")))?;
    let key_path = args.out_dir.join("root.key");
    mayfly_sdk::files::write_secret_atomic(&key_path, key.as_bytes())
        .map_err(|e| CliError::file("write", &key_path, e))?;
    let cert_path = args.out_dir.join("root.crt");
    write_public(&cert_path, certificate.as_bytes())?;
    output::stdout(&format!(
        "wrote {} and {} (0600). Keep the key offline; publish the root with `mayfly ca prepare --root-cert {}` on the server.\n",
        cert_path.display(),
        key_path.display(),
        cert_path.display()
    ))
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::file("read", path, e))
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    mayfly_sdk::files::write_public_atomic(path, bytes)
        .map_err(|e| CliError::file("write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_events_read_well_and_are_cleaned() {
        let status = pb::CaStatusResponse {
            authorities: vec![pb::CaAuthority {
                kind: "root".into(),
                id: "ab".repeat(32),
                state: "active".into(),
                not_before: 1_000,
                not_after: 100_000,
                issuer: String::new(),
                key_on_server: true,
                live_until: 0,
                since: 1_000,
            }],
            warnings: vec!["intermediate needs an offline signature\u{1b}[0m".into()],
            bundle_sequence: 7,
        };
        let text = status_text(&status, 2_000);
        assert!(
            text.contains("root") && text.contains("abababababababab"),
            "{text}"
        );
        assert!(text.contains("bundle sequence 7"), "{text}");
        assert!(text.contains("warning: intermediate needs"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");

        let response = pb::CaRotationResponse {
            events: vec![pb::CaRotationEvent {
                kind: "root".into(),
                id: "cd".repeat(32),
                from: String::new(),
                to: "prepared".into(),
                detail: "operator".into(),
            }],
            bundle_sequence: 8,
        };
        let text = events_text(&response, "done.");
        assert!(
            text.starts_with("root cdcdcdcdcdcdcdcd: new -> prepared (operator)\n"),
            "{text}"
        );
        assert!(text.ends_with("done.\nbundle sequence 8\n"), "{text}");
    }

    #[test]
    fn long_lifetimes_parse_and_zero_is_refused() {
        assert_eq!(
            parse_long_ttl("8760h").unwrap(),
            Duration::from_secs(8760 * 3600)
        );
        assert!(parse_long_ttl("0s").is_err());
        assert!(parse_long_ttl("soon").is_err());
    }
}
