//! `mayfly client …`: what a workload runs to get and use its credentials.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, Subcommand};
use mayfly_sdk::proto::v1::attest_and_issue_request::Evidence;
use mayfly_sdk::proto::v1::broker_client::BrokerClient;
use mayfly_sdk::proto::v1::{
    AttestAndIssueRequest, Bundle, CreateX509PopChallengeRequest, JoinTokenEvidence,
    K8sPsatEvidence, MintJwtSvidRequest, MintJwtSvidResponse, MintJwtSvidWithEvidenceRequest,
    OidcEvidence, RenewX509SvidRequest, X509PopEvidence, X509Svid,
};
use serde::Serialize;
use tonic::transport::Channel;
use zeroize::Zeroizing;

use super::Context;
use super::error::CliError;
use super::output::{self, key_values, time_and_relative};
use super::values::{now_unix, parse_ttl};
use mayfly_sdk::client::Secret;
use mayfly_sdk::client::{SvidDir, SvidFiles, check_issued, read_bundle};

/// Longest join token file read; real tokens are well under 1 KiB.
const MAX_TOKEN_FILE: u64 = 16 * 1024;

/// Get, renew and use a workload's credentials.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Trade a join token for an X509-SVID: makes a key here, sends only a CSR.
    #[command(after_help = ATTEST_EXAMPLES)]
    Attest(AttestArgs),
    /// Replace the X509-SVID in --dir with a fresh one (new key), authenticating with it.
    #[command(after_help = RENEW_EXAMPLES)]
    Renew(RenewArgs),
    /// Mint a JWT-SVID for one audience, authenticating with the X509-SVID in --dir.
    #[command(after_help = JWT_EXAMPLES)]
    Jwt(JwtArgs),
}

const ATTEST_EXAMPLES: &str = "\
Examples:
  mayfly client attest --join-token-file token.txt
  mayfly client attest --k8s-token-file /var/run/secrets/tokens/mayfly
  mayfly client attest --oidc-token-file \"$CI_ID_TOKEN_FILE\"
  mayfly client attest --x509pop-cert device.pem --x509pop-key device.key
  MAYFLY_JOIN_TOKEN=… mayfly client attest --out /run/svid \\
      --server https://mayfly.internal:7443 --bundle root.pem

Writes DIR/svid.pem (certificate chain), DIR/svid_key.pem (private key,
mode 0600) and DIR/bundle.pem (root CAs). Later commands (renew, jwt) read
them from --dir.";

const RENEW_EXAMPLES: &str = "\
Examples:
  mayfly client renew
  mayfly client renew --dir /run/svid --server https://mayfly.internal:7443

Run it before the certificate expires (say, at half its lifetime): renewal
authenticates with the current certificate.";

const JWT_EXAMPLES: &str = "\
Examples:
  TOKEN=$(mayfly client jwt --audience billing-db -q)
  TOKEN=$(mayfly client jwt --oidc-token-file id-token.txt --audience deploy -q)
  curl -H \"Authorization: Bearer $TOKEN\" https://billing-db.internal/
  mayfly client jwt --audience billing-db --ttl 2m --json

Only the token goes to standard output; the details go to standard error
(silence them with -q).";

/// Arguments of `mayfly client attest`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("token").required(true).args([
    "join_token", "join_token_file", "k8s_token_file", "oidc_token_file", "x509pop_cert"
])))]
pub struct AttestArgs {
    /// The join token. On the command line it shows in `ps`; prefer --join-token-file or
    /// the environment variable.
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
    #[command(flatten)]
    platform: PlatformEvidenceArgs,
    /// Where to write the SVID, its key and the bundle.
    #[arg(long, value_name = "DIR", default_value = "svid")]
    out: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `mayfly client renew`.
#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The directory `mayfly client attest` wrote.
    #[arg(long, value_name = "DIR", default_value = "svid")]
    dir: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `mayfly client jwt`.
#[derive(Debug, Args)]
pub struct JwtArgs {
    /// The audience (the relying party) the token is for; the entry must allow it.
    #[arg(long, value_name = "AUDIENCE")]
    audience: String,
    /// A lifetime shorter than the entry's JWT TTL.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    ttl: Option<u32>,
    /// The directory `mayfly client attest` wrote.
    #[arg(long, value_name = "DIR", default_value = "svid")]
    dir: PathBuf,
    /// Attest with platform evidence instead of the SVID in --dir.
    #[command(flatten)]
    platform: PlatformEvidenceArgs,
    /// Print nothing but the token.
    #[arg(long, short)]
    quiet: bool,
    /// Print {token, spiffe_id, expires_at, jti} as JSON.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
}

/// Platform evidence: instead of a join token (attest) or an SVID (jwt).
#[derive(Debug, Args)]
pub struct PlatformEvidenceArgs {
    /// A Kubernetes projected service-account token file.
    #[arg(long, value_name = "FILE")]
    k8s_token_file: Option<PathBuf>,
    /// An OIDC ID token file ("-" for standard input), e.g. from the CI system.
    #[arg(long, value_name = "FILE", conflicts_with = "k8s_token_file")]
    oidc_token_file: Option<PathBuf>,
    /// A device certificate chain (PEM, leaf first) for x509pop; needs --x509pop-key.
    #[arg(long, value_name = "FILE", requires = "x509pop_key", conflicts_with_all = ["k8s_token_file", "oidc_token_file"])]
    x509pop_cert: Option<PathBuf>,
    /// The device certificate's private key (PKCS#8 PEM); it never leaves this machine:
    /// only a signature over the broker's challenge is sent.
    #[arg(long, value_name = "FILE", requires = "x509pop_cert")]
    x509pop_key: Option<PathBuf>,
    /// When the evidence matches several entries: the SPIFFE ID wanted.
    #[arg(long, value_name = "SPIFFE_ID")]
    spiffe_id: Option<String>,
}

/// Platform evidence ready for the wire.
enum PlatformEvidence {
    K8s(K8sPsatEvidence),
    Oidc(OidcEvidence),
    X509Pop(X509PopEvidence),
}

impl PlatformEvidenceArgs {
    fn given(&self) -> bool {
        self.k8s_token_file.is_some()
            || self.oidc_token_file.is_some()
            || self.x509pop_cert.is_some()
    }

    /// Reads the evidence; for x509pop, asks the broker for a challenge and
    /// signs it with the device key.
    async fn collect(
        &self,
        broker: &mut BrokerClient<Channel>,
    ) -> Result<PlatformEvidence, CliError> {
        if let Some(path) = &self.k8s_token_file {
            let token = read_token_file(path)?.expose().to_string();
            return Ok(PlatformEvidence::K8s(K8sPsatEvidence { token }));
        }
        if let Some(path) = &self.oidc_token_file {
            let token = read_token_file(path)?.expose().to_string();
            return Ok(PlatformEvidence::Oidc(OidcEvidence { token }));
        }
        let (Some(cert), Some(key)) = (&self.x509pop_cert, &self.x509pop_key) else {
            return Err(CliError::usage(
                "give --k8s-token-file, --oidc-token-file or --x509pop-cert with --x509pop-key",
            ));
        };
        let cert_chain = read_pem_chain(cert)?;
        let key_pem =
            Zeroizing::new(std::fs::read(key).map_err(|e| CliError::file("read", key, e))?);
        let challenge = broker
            .create_x509_pop_challenge(CreateX509PopChallengeRequest {})
            .await?
            .into_inner();
        let signature = mayfly_sdk::client::x509pop::sign_challenge(&key_pem, &challenge.nonce)
            .map_err(|reason| {
                CliError::usage(format!("--x509pop-key {}: {reason}", key.display()))
            })?;
        Ok(PlatformEvidence::X509Pop(X509PopEvidence {
            challenge_id: challenge.challenge_id,
            cert_chain,
            signature,
        }))
    }

    fn spiffe_id(&self) -> String {
        self.spiffe_id.clone().unwrap_or_default()
    }
}

/// DER certificates from a PEM file, in file order.
fn read_pem_chain(path: &Path) -> Result<Vec<Vec<u8>>, CliError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| CliError::file("read", path, e))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .map(|cert| cert.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            CliError::usage(format!(
                "{}: not a PEM certificate chain: {e}",
                path.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(CliError::usage(format!(
            "{}: holds no certificate",
            path.display()
        )));
    }
    Ok(chain)
}

/// An issued X509-SVID as `--json` prints it.
#[derive(Debug, Serialize)]
struct IssuedView<'a> {
    spiffe_id: &'a str,
    entry_id: &'a str,
    serial: &'a str,
    expires_at: String,
    files: SvidFiles,
}

/// A JWT-SVID as `--json` prints it.
#[derive(Serialize)]
struct JwtView<'a> {
    token: &'a str,
    spiffe_id: &'a str,
    expires_at: String,
    jti: &'a str,
}

/// Runs one `mayfly client` command.
pub(super) async fn run(ctx: &Context, command: ClientCommand) -> Result<(), CliError> {
    match command {
        ClientCommand::Attest(args) => attest(ctx, args).await,
        ClientCommand::Renew(args) => renew(ctx, args).await,
        ClientCommand::Jwt(args) => jwt(ctx, args).await,
    }
}

async fn attest(ctx: &Context, args: AttestArgs) -> Result<(), CliError> {
    let bundle_pem = read_bundle(&ctx.attest_bundle_path())?;
    let (key, csr) = mayfly_sdk::client::new_key_and_csr()?;
    let mut broker = mayfly_sdk::client::connect_broker(&ctx.server, &bundle_pem, None).await?;
    let evidence = if args.platform.given() {
        match args.platform.collect(&mut broker).await? {
            PlatformEvidence::K8s(evidence) => Evidence::K8sPsat(evidence),
            PlatformEvidence::Oidc(evidence) => Evidence::Oidc(evidence),
            PlatformEvidence::X509Pop(evidence) => Evidence::X509pop(evidence),
        }
    } else {
        let token = join_token(&args)?;
        Evidence::JoinToken(JoinTokenEvidence {
            token: token.expose().to_string(),
        })
    };
    let request = AttestAndIssueRequest {
        evidence: Some(evidence),
        csr,
        spiffe_id: args.platform.spiffe_id(),
    };
    let response = broker.attest_and_issue(request).await?.into_inner();
    let (svid, bundle) = check_issued(response)?;
    save(
        &SvidDir::new(&args.out),
        &svid,
        &bundle,
        &key,
        "attested",
        args.json,
    )
}

async fn renew(ctx: &Context, args: RenewArgs) -> Result<(), CliError> {
    let dir = SvidDir::new(&args.dir);
    let mut broker = mtls_broker(ctx, &dir, &args.dir).await?;
    let (key, csr) = mayfly_sdk::client::new_key_and_csr()?;
    let response = broker
        .renew_x509_svid(RenewX509SvidRequest { csr })
        .await?
        .into_inner();
    let (svid, bundle) = check_issued(response)?;
    save(&dir, &svid, &bundle, &key, "renewed", args.json)
}

async fn jwt(ctx: &Context, args: JwtArgs) -> Result<(), CliError> {
    let minted = if args.platform.given() {
        jwt_with_evidence(ctx, &args).await?
    } else {
        let dir = SvidDir::new(&args.dir);
        let mut broker = mtls_broker(ctx, &dir, &args.dir).await?;
        let request = MintJwtSvidRequest {
            audience: args.audience.clone(),
            ttl_seconds: args.ttl.unwrap_or(0),
        };
        broker.mint_jwt_svid(request).await?.into_inner()
    };
    let token = Zeroizing::new(minted.token);
    if token.is_empty() {
        return Err(CliError::bad_response("the JWT-SVID is empty"));
    }
    if args.json {
        return output::json(&JwtView {
            token: &token,
            spiffe_id: &minted.spiffe_id,
            expires_at: output::rfc3339(minted.expires_at),
            jti: &minted.jti,
        });
    }
    output::stdout_line(&token)?;
    if !args.quiet {
        output::stderr_line(&format!(
            "JWT-SVID for {}, audience {}, expires {}, jti {}",
            output::clean(&minted.spiffe_id),
            output::clean(&args.audience),
            time_and_relative(minted.expires_at, now_unix()),
            output::clean(&minted.jti),
        ));
    }
    Ok(())
}

/// Attests with platform evidence and mints in one call (no SVID needed).
async fn jwt_with_evidence(ctx: &Context, args: &JwtArgs) -> Result<MintJwtSvidResponse, CliError> {
    use mayfly_sdk::proto::v1::mint_jwt_svid_with_evidence_request::Evidence as Wire;
    let bundle_pem = read_bundle(&ctx.attest_bundle_path())?;
    let mut broker = mayfly_sdk::client::connect_broker(&ctx.server, &bundle_pem, None).await?;
    let evidence = match args.platform.collect(&mut broker).await? {
        PlatformEvidence::K8s(evidence) => Wire::K8sPsat(evidence),
        PlatformEvidence::Oidc(evidence) => Wire::Oidc(evidence),
        PlatformEvidence::X509Pop(evidence) => Wire::X509pop(evidence),
    };
    let request = MintJwtSvidWithEvidenceRequest {
        evidence: Some(evidence),
        audience: args.audience.clone(),
        ttl_seconds: args.ttl.unwrap_or(0),
        spiffe_id: args.platform.spiffe_id(),
    };
    Ok(broker
        .mint_jwt_svid_with_evidence(request)
        .await?
        .into_inner())
}

/// A broker client that authenticates with the SVID in `dir`, trusting `--bundle` if given,
/// else the bundle saved next to the SVID.
async fn mtls_broker(
    ctx: &Context,
    dir: &SvidDir,
    dir_path: &Path,
) -> Result<mayfly_sdk::proto::v1::broker_client::BrokerClient<tonic::transport::Channel>, CliError>
{
    let (chain, key) = dir.read_identity()?;
    let bundle_path = ctx
        .bundle
        .clone()
        .unwrap_or_else(|| dir_path.join(mayfly_sdk::client::BUNDLE_FILE));
    let bundle_pem = read_bundle(&bundle_path)?;
    Ok(mayfly_sdk::client::connect_broker(&ctx.server, &bundle_pem, Some((&chain, &key))).await?)
}

/// Checks the certificate is for our key, writes the three files, and reports.
fn save(
    dir: &SvidDir,
    svid: &X509Svid,
    bundle: &Bundle,
    key: &rcgen::KeyPair,
    verb: &str,
    json: bool,
) -> Result<(), CliError> {
    let leaf = svid
        .cert_chain
        .first()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !mayfly_sdk::client::certifies_key(leaf, key)? {
        return Err(CliError::bad_response(
            "the certificate is not for the key we sent; nothing was written",
        ));
    }
    let key_pem = Zeroizing::new(key.serialize_pem());
    let files = dir.write(svid, bundle, &key_pem)?;
    if json {
        return output::json(&IssuedView {
            spiffe_id: &svid.spiffe_id,
            entry_id: &svid.entry_id,
            serial: &svid.serial,
            expires_at: output::rfc3339(svid.expires_at),
            files,
        });
    }
    output::stdout_line(&format!("{verb}: {}", output::clean(&svid.spiffe_id)))?;
    output::stdout(&key_values(&[
        ("entry", svid.entry_id.clone()),
        ("serial", svid.serial.clone()),
        ("expires", time_and_relative(svid.expires_at, now_unix())),
        ("certificate", files.svid.display().to_string()),
        ("private key", format!("{} (0600)", files.key.display())),
        ("bundle", files.bundle.display().to_string()),
    ]))
}

/// The join token from `--join-token` (or its environment variable) or `--join-token-file`.
fn join_token(args: &AttestArgs) -> Result<Secret, CliError> {
    let token = match (&args.join_token, &args.join_token_file) {
        (Some(token), _) => Secret::from(token.expose().trim().to_string()),
        (None, Some(path)) => read_token_file(path)?,
        // clap's "token" group requires one of the two.
        (None, None) => return Err(CliError::usage("give --join-token or --join-token-file")),
    };
    if token.expose().is_empty() {
        return Err(CliError::usage("the join token is empty"));
    }
    Ok(token)
}

fn read_token_file(path: &Path) -> Result<Secret, CliError> {
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
    read.map_err(|e| CliError::file("read", path, e))?;
    if text.len() as u64 > MAX_TOKEN_FILE {
        return Err(CliError::usage(format!(
            "--join-token-file {}: larger than {MAX_TOKEN_FILE} bytes, not a join token",
            path.display()
        )));
    }
    Ok(Secret::from(text.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn client_command(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        let cli = Cli::try_parse_from(["mayfly", "client"].iter().chain(args))?;
        match cli.command {
            Command::Client(command) => Ok(command),
            _ => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
        }
    }

    #[test]
    fn attest_needs_exactly_one_token_source() {
        use clap::error::ErrorKind;
        // The environment variable would satisfy the group; these tests run without it.
        if std::env::var_os("MAYFLY_JOIN_TOKEN").is_some() {
            return;
        }
        let none = client_command(&["attest"]).err().map(|e| e.kind());
        assert_eq!(none, Some(ErrorKind::MissingRequiredArgument));
        let both = client_command(&["attest", "--join-token", "t", "--join-token-file", "f"]);
        assert_eq!(
            both.err().map(|e| e.kind()),
            Some(ErrorKind::ArgumentConflict)
        );
    }

    #[test]
    fn join_token_never_shows_in_debug() -> Result<(), Box<dyn std::error::Error>> {
        let command = client_command(&["attest", "--join-token", "-secret-token-123"])?;
        let debug = format!("{command:?}");
        assert!(!debug.contains("secret-token-123"), "{debug}");
        let ClientCommand::Attest(args) = command else {
            return Err("not attest".into());
        };
        assert_eq!(join_token(&args)?.expose(), "-secret-token-123");
        Ok(())
    }

    #[test]
    fn token_file_is_trimmed_and_bounded() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("token.txt");
        std::fs::write(&path, "  jt_abc\n")?;
        assert_eq!(read_token_file(&path)?.expose(), "jt_abc");
        std::fs::write(&path, vec![b'a'; 20_000])?;
        assert_eq!(
            read_token_file(&path).err().map(|e| e.exit_code()),
            Some(64)
        );
        let missing = read_token_file(&tmp.path().join("nope")).err();
        assert_eq!(missing.map(|e| e.exit_code()), Some(1));
        Ok(())
    }

    #[test]
    fn empty_token_is_a_usage_error() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("token.txt");
        std::fs::write(&path, "\n")?;
        let path_arg = path.to_string_lossy().to_string();
        let ClientCommand::Attest(args) =
            client_command(&["attest", "--join-token-file", &path_arg])?
        else {
            return Err("not attest".into());
        };
        assert_eq!(join_token(&args).err().map(|e| e.exit_code()), Some(64));
        Ok(())
    }

    #[test]
    fn jwt_flags() -> Result<(), Box<dyn std::error::Error>> {
        let ClientCommand::Jwt(args) =
            client_command(&["jwt", "--audience", "db", "--ttl", "2m", "-q"])?
        else {
            return Err("not jwt".into());
        };
        assert_eq!(args.ttl, Some(120));
        assert!(args.quiet);
        assert_eq!(args.dir, PathBuf::from("svid"));
        assert!(client_command(&["jwt"]).is_err());
        Ok(())
    }
}
