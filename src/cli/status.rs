//! `mayfly status`: what the running server says about itself.

use clap::Args;
use mayfly_sdk::proto::v1::{AuditAnchor, ServerStatusRequest, ServerStatusResponse};
use serde::Serialize;

use super::Context;
use super::error::CliError;
use super::output::{self, key_values};

/// Arguments of `mayfly status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

/// The status as `--json` prints it (the API's fields).
#[derive(Debug, Serialize)]
struct StatusView<'a> {
    trust_domain: &'a str,
    grpc_address: &'a str,
    http_address: &'a str,
    data_dir: &'a str,
    root_fingerprint_sha256: &'a str,
    entries: u64,
    bundle_sequence: u64,
    version: &'a str,
    audit_signed_seq: u64,
    audit_key_epoch: u64,
    audit_root_key: &'a str,
    audit_anchor: &'a str,
    audit_anchors: Vec<AnchorView<'a>>,
}

/// One anchor as `--json` prints it.
#[derive(Debug, Serialize)]
struct AnchorView<'a> {
    sink: &'a str,
    target: &'a str,
    failures: u64,
    first_error: &'a str,
}

/// Runs `mayfly status`.
pub(super) async fn run(ctx: &Context, args: StatusArgs) -> Result<(), CliError> {
    let mut admin = ctx.admin().await?;
    let status = admin
        .server_status(ServerStatusRequest {})
        .await?
        .into_inner();
    if args.json {
        return output::json(&StatusView {
            trust_domain: &status.trust_domain,
            grpc_address: &status.grpc_address,
            http_address: &status.http_address,
            data_dir: &status.data_dir,
            root_fingerprint_sha256: &status.root_fingerprint_sha256,
            entries: status.entries,
            bundle_sequence: status.bundle_sequence,
            version: &status.version,
            audit_signed_seq: status.audit_signed_seq,
            audit_key_epoch: status.audit_key_epoch,
            audit_root_key: &status.audit_root_key,
            audit_anchor: &status.audit_anchor,
            audit_anchors: status
                .audit_anchors
                .iter()
                .map(|anchor| AnchorView {
                    sink: &anchor.sink,
                    target: &anchor.target,
                    failures: anchor.failures,
                    first_error: &anchor.first_error,
                })
                .collect(),
        });
    }
    output::stdout(&status_text(&status))
}

fn status_text(status: &ServerStatusResponse) -> String {
    let mut lines = vec![
        ("trust domain", status.trust_domain.clone()),
        ("broker (gRPC, TLS)", status.grpc_address.clone()),
        ("http", status.http_address.clone()),
        ("data dir", status.data_dir.clone()),
        ("root CA sha256", status.root_fingerprint_sha256.clone()),
        ("entries", status.entries.to_string()),
        ("bundle sequence", status.bundle_sequence.to_string()),
        ("version", status.version.clone()),
        (
            "audit signed",
            format!(
                "seq {} (key epoch {}, root key {})",
                status.audit_signed_seq, status.audit_key_epoch, status.audit_root_key
            ),
        ),
    ];
    lines.extend(anchor_lines(&status.audit_anchors));
    key_values(&lines)
}

/// One line per anchor outside the host (`anchor (file)`, `anchor (http)`,
/// `anchor (syslog)`), or `audit anchor: none`.
fn anchor_lines(anchors: &[AuditAnchor]) -> Vec<(&'static str, String)> {
    if anchors.is_empty() {
        return vec![("audit anchor", "none".to_owned())];
    }
    anchors
        .iter()
        .map(|anchor| {
            let label = match anchor.sink.as_str() {
                "file" => "anchor (file)",
                "http" => "anchor (http)",
                "syslog" => "anchor (syslog)",
                _ => "anchor (other)",
            };
            let status = mayfly::audit::AnchorStatus {
                sink: anchor.sink.clone(),
                target: anchor.target.clone(),
                failures: anchor.failures,
                first_error: anchor.first_error.clone(),
            };
            (label, status.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let status = ServerStatusResponse {
            trust_domain: "mayfly.internal".into(),
            entries: 3,
            ..Default::default()
        };
        let text = status_text(&status);
        assert!(
            text.starts_with("trust domain:       mayfly.internal\n"),
            "{text}"
        );
        assert!(text.contains("entries:            3\n"), "{text}");
        assert!(text.contains("http:               -\n"), "{text}");
        assert!(text.contains("audit anchor:       none\n"), "{text}");
        let anchor = |sink: &str, target: &str, failures, first_error: &str| AuditAnchor {
            sink: sink.into(),
            target: target.into(),
            failures,
            first_error: first_error.into(),
        };
        let status = ServerStatusResponse {
            audit_signed_seq: 42,
            audit_key_epoch: 3,
            audit_root_key: "0123456789abcdef".into(),
            audit_anchors: vec![
                anchor("file", "/mnt/w/cp.json", 0, ""),
                anchor("http", "https://w.example/a", 2, "status 500"),
                anchor("syslog", "udp:127.0.0.1:514", 0, ""),
            ],
            ..Default::default()
        };
        let text = status_text(&status);
        assert!(
            text.contains("seq 42 (key epoch 3, root key 0123456789abcdef)"),
            "{text}"
        );
        for line in [
            "anchor (file):      /mnt/w/cp.json: ok\n",
            "anchor (http):      https://w.example/a: FAILING since 2 tries (first error: status 500)\n",
            "anchor (syslog):    udp:127.0.0.1:514: ok\n",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        assert!(!text.contains("audit anchor:"), "{text}");
    }
}
