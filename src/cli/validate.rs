//! `mayfly validate`: ask the broker whether a JWT-SVID is good for an audience.

use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;

use clap::Args;
use mayfly_sdk::proto::v1::{ValidateJwtSvidRequest, ValidateJwtSvidResponse};
use serde::Serialize;
use zeroize::Zeroizing;

use super::Context;
use super::error::CliError;
use super::output::{self, time_and_relative};
use super::values::now_unix;
use mayfly_sdk::client::Secret;

/// Larger inputs are refused before anything is sent; the server's own limit is lower.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// Arguments of `mayfly validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The audience you (the relying party) expect the token to name.
    #[arg(long, value_name = "AUDIENCE")]
    audience: String,
    /// The JWT-SVID, or "-" to read it from standard input (the default: a token on the
    /// command line shows in `ps`).
    #[arg(value_name = "TOKEN", allow_hyphen_values = true)]
    token: Option<Secret>,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
}

/// The verdict as `--json` prints it.
#[derive(Debug, Serialize)]
struct VerdictView {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    spiffe_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Runs `mayfly validate`: exit 0 for a valid token, 1 for a rejected one.
pub(super) async fn run(ctx: &Context, args: ValidateArgs) -> Result<ExitCode, CliError> {
    let token = match &args.token {
        Some(token) if token.expose() != "-" => Zeroizing::new(token.expose().trim().to_string()),
        _ => read_stdin_token()?,
    };
    if token.is_empty() {
        return Err(CliError::usage("no token given (empty input)"));
    }
    let bundle_pem = mayfly_sdk::client::read_bundle(&ctx.attest_bundle_path())?;
    let mut broker = mayfly_sdk::client::connect_broker(&ctx.server, &bundle_pem, None).await?;
    let request = ValidateJwtSvidRequest {
        token: token.as_str().to_owned(),
        audience: args.audience.clone(),
    };
    match broker.validate_jwt_svid(request).await {
        Ok(response) => {
            let valid = response.into_inner();
            if args.json {
                output::json(&accepted_view(&valid))?;
            } else {
                output::stdout_line(&valid_line(&valid, now_unix()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => {
            let message = output::clean(status.message());
            let error = CliError::from(status);
            if args.json {
                output::json(&VerdictView {
                    valid: false,
                    error: Some(error.to_string()),
                    ..rejected_view()
                })?;
            } else {
                output::stderr_line(&format!("rejected: {message}"));
            }
            Ok(ExitCode::from(error.exit_code()))
        }
    }
}

/// "valid: <spiffe id>, audience <a>, expires <rfc3339> (in 4m12s), jti <jti>, key <kid>".
fn valid_line(valid: &ValidateJwtSvidResponse, now: i64) -> String {
    format!(
        "valid: {}, audience {}, expires {}, jti {}, key {}",
        output::clean(&valid.spiffe_id),
        output::clean(&valid.audience),
        time_and_relative(valid.expires_at, now),
        output::clean(&valid.jti),
        output::clean(&valid.key_id),
    )
}

fn accepted_view(valid: &ValidateJwtSvidResponse) -> VerdictView {
    VerdictView {
        valid: true,
        spiffe_id: Some(valid.spiffe_id.clone()),
        audience: Some(valid.audience.clone()),
        expires_at: Some(output::rfc3339(valid.expires_at)),
        issued_at: Some(output::rfc3339(valid.issued_at)),
        jti: Some(valid.jti.clone()),
        key_id: Some(valid.key_id.clone()),
        error: None,
    }
}

fn rejected_view() -> VerdictView {
    VerdictView {
        valid: false,
        spiffe_id: None,
        audience: None,
        expires_at: None,
        issued_at: None,
        jti: None,
        key_id: None,
        error: None,
    }
}

fn read_stdin_token() -> Result<Zeroizing<String>, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        output::stderr_line("reading the token from standard input (end with Ctrl-D)");
    }
    let mut text = Zeroizing::new(String::new());
    stdin
        .lock()
        .take(MAX_TOKEN_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| CliError::usage(format!("cannot read the token from standard input: {e}")))?;
    if text.len() as u64 > MAX_TOKEN_BYTES {
        return Err(CliError::usage(format!(
            "the input is larger than {MAX_TOKEN_BYTES} bytes, not a JWT-SVID"
        )));
    }
    Ok(Zeroizing::new(text.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_line_reads_like_the_docs() {
        let valid = ValidateJwtSvidResponse {
            spiffe_id: "spiffe://td/a".into(),
            audience: "db".into(),
            expires_at: 1_252,
            issued_at: 1_000,
            jti: "j1".into(),
            key_id: "k1".into(),
        };
        assert_eq!(
            valid_line(&valid, 1_000),
            "valid: spiffe://td/a, audience db, expires 1970-01-01T00:20:52Z (in 4m12s), \
             jti j1, key k1"
        );
    }

    #[test]
    fn rejected_json_names_the_reason() -> Result<(), serde_json::Error> {
        let view = VerdictView {
            valid: false,
            error: Some("unauthenticated: expired".into()),
            ..rejected_view()
        };
        assert_eq!(
            serde_json::to_string(&view)?,
            r#"{"valid":false,"error":"unauthenticated: expired"}"#
        );
        Ok(())
    }
}
