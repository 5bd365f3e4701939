//! The README's walk-through, run with the real `mayfly` binary: a server
//! with no configuration in a fresh directory, then the operator and
//! workload commands exactly as a person types them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

mod common;

const MAYFLY: &str = env!("CARGO_BIN_EXE_mayfly");

struct ServerProcess {
    child: Child,
    url: String,
    banner: String,
}

/// A test that fails half-way must not leave its broker running.
impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// `mayfly server` in `dir`, on ephemeral ports, waiting for its banner.
    fn start(dir: &Path) -> ServerProcess {
        Self::start_with(dir, &[])
    }

    fn start_with(dir: &Path, extra: &[&str]) -> ServerProcess {
        Self::start_env(dir, extra, &[])
    }

    fn start_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let mut child = Command::new(MAYFLY)
            .args([
                "server",
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .current_dir(dir)
            .env_remove("MAYFLY_DATA_DIR")
            .env("MAYFLY_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (banner, url) = common::server_banner(child.stdout.take().unwrap());
        ServerProcess { child, url, banner }
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

fn mayfly(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(MAYFLY)
        .args(args)
        .current_dir(dir)
        .env_remove("MAYFLY_DATA_DIR")
        .env_remove("MAYFLY_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(output)).unwrap()
}

#[test]
fn readme_walkthrough_with_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let server = ServerProcess::start(cwd);
    assert!(
        server.banner.contains("trust domain     mayfly.internal"),
        "{}",
        server.banner
    );
    assert!(server.banner.contains("Next steps"));
    for file in [
        "ca/rotation.json",
        "store.redb",
        "audit/audit.log",
        "admin.sock",
        "bundle.pem",
    ] {
        assert!(
            cwd.join("mayfly-data").join(file).exists(),
            "missing {file}"
        );
    }
    for kind in ["root", "intermediate", "jwt-key"] {
        let key = common::active_ca_file(&cwd.join("mayfly-data"), kind, "key");
        assert!(key.exists(), "missing {}", key.display());
    }
    let url = server.url.clone();

    let status = json(&mayfly(cwd, &["status", "--json"], None));
    assert_eq!(status["trust_domain"], "mayfly.internal");
    // The audit log is signed from the first start; its root key is what auditors pin.
    assert_eq!(status["audit_anchor"], "none");
    assert_eq!(status["audit_key_epoch"], 0, "{status}");
    let pem = mayfly(cwd, &["audit", "public-key"], None);
    assert!(pem.status.success(), "{pem:?}");
    let pinned = mayfly::audit::AuditPublicKey::from_pem(&pem.stdout).unwrap();
    assert_eq!(status["audit_root_key"], pinned.id().as_str(), "{status}");

    let entry = json(&mayfly(
        cwd,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://mayfly.internal/billing/api",
            "--owner",
            "billing-team@example.org",
            "--purpose",
            "bills patients' insurers",
            "--environment",
            "prod",
            "--data-class",
            "phi",
            "--audience",
            "payments",
            "--audience",
            "ledger",
            "--expires",
            "90d",
            "--json",
        ],
        None,
    ));
    let entry_id = entry["id"].as_str().unwrap().to_owned();
    // Missing governance fields are refused with a clear message; nothing is created.
    let refused = mayfly(
        cwd,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://mayfly.internal/x",
            "--owner",
            "o",
            "--purpose",
            " ",
            "--audience",
            "a",
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("purpose"));
    let listed = ok(&mayfly(cwd, &["entry", "list"], None));
    assert!(
        listed.contains(&entry_id)
            && listed.contains("billing/api")
            && !listed.contains("mayfly.internal/x ")
    );

    let token = json(&mayfly(
        cwd,
        &[
            "token", "create", "--entry", &entry_id, "--ttl", "10m", "--json",
        ],
        None,
    ));
    let token = token["token"].as_str().unwrap().to_owned();

    let attested = json(&mayfly(
        cwd,
        &[
            "--server",
            &url,
            "client",
            "attest",
            "--join-token",
            &token,
            "--json",
        ],
        None,
    ));
    assert_eq!(
        attested["spiffe_id"],
        "spiffe://mayfly.internal/billing/api"
    );
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(cwd.join("svid/svid_key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key_mode, 0o600);
    // Reuse of the token is refused.
    let reused = mayfly(
        cwd,
        &[
            "--server",
            &url,
            "client",
            "attest",
            "--join-token",
            &token,
            "--out",
            "svid2",
        ],
        None,
    );
    assert_eq!(reused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&reused.stderr).contains("already used"));

    ok(&mayfly(cwd, &["--server", &url, "client", "renew"], None));
    let jwt = ok(&mayfly(
        cwd,
        &[
            "--server",
            &url,
            "client",
            "jwt",
            "--audience",
            "payments",
            "--quiet",
        ],
        None,
    ));
    let jwt = jwt.trim();
    assert_eq!(jwt.split('.').count(), 3);
    let denied = mayfly(
        cwd,
        &["--server", &url, "client", "jwt", "--audience", "marketing"],
        None,
    );
    assert_eq!(denied.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("permission denied") && stderr.contains("marketing"),
        "{stderr}"
    );

    let valid = ok(&mayfly(
        cwd,
        &["--server", &url, "validate", "--audience", "payments"],
        Some(jwt),
    ));
    assert!(
        valid.contains("spiffe://mayfly.internal/billing/api"),
        "{valid}"
    );
    let rejected = mayfly(
        cwd,
        &["--server", &url, "validate", "--audience", "ledger"],
        Some(jwt),
    );
    assert_eq!(rejected.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&rejected.stderr).contains("audience"));

    let tail = ok(&mayfly(cwd, &["audit", "tail", "-n", "50"], None));
    assert!(tail.contains("jwt.mint") && tail.contains("attest"));
    assert!(
        !tail.contains(&token) && !tail.contains(jwt),
        "no secrets in the audit log"
    );
    let verified = ok(&mayfly(cwd, &["audit", "verify"], None));
    assert!(verified.contains("OK"), "{verified}");

    let status = server.stop();
    assert!(status.success(), "graceful stop on SIGTERM: {status:?}");

    // Someone edits a record: verify fails and names the line.
    let log = cwd.join("mayfly-data/audit/audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let edited = text.replacen("\"marketing\"", "\"marketinG\"", 1);
    assert_ne!(edited, text);
    std::fs::write(&log, edited).unwrap();
    let broken = mayfly(cwd, &["audit", "verify"], None);
    assert_eq!(broken.status.code(), Some(1));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&broken.stdout),
        String::from_utf8_lossy(&broken.stderr)
    );
    assert!(
        report.contains("BROKEN") && report.contains("line"),
        "{report}"
    );
}

#[test]
fn bad_configuration_exits_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mayfly.toml");
    std::fs::write(&config, "trust_domain = \"Not Valid\"\n").unwrap();
    let output = mayfly(
        dir.path(),
        &["server", "--config", config.to_str().unwrap()],
        None,
    );
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("trust_domain"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one-line error: {stderr}");
    assert!(
        !dir.path().join("mayfly-data").exists(),
        "nothing created for a bad config"
    );

    // Positive control: a valid file passes config validation (the server then
    // fails only because the port is taken, not with 64).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std::fs::write(
        &config,
        format!(
            "trust_domain = \"good.example\"\n[listen]\ngrpc = \"{}\"\nhttp = \"127.0.0.1:0\"\n",
            taken.local_addr().unwrap()
        ),
    )
    .unwrap();
    let output = mayfly(
        dir.path(),
        &["server", "--config", config.to_str().unwrap()],
        None,
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot listen"));
}

#[test]
fn help_teaches_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["entry", "create", "--help"],
        &["client", "attest", "--help"],
        &["audit", "verify", "--help"],
    ] {
        let out = ok(&mayfly(dir.path(), args, None));
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
    for command in ["create", "update"] {
        let out = ok(&mayfly(dir.path(), &["entry", command, "--help"], None));
        assert!(
            out.contains("--unique-jti") && out.contains("replayed"),
            "entry {command} --help: {out}"
        );
    }
    let unreachable = mayfly(dir.path(), &["entry", "list"], None);
    assert_eq!(unreachable.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("mayfly server"));
}

#[test]
fn entry_unique_jti_is_set_shown_and_cleared_with_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let server = ServerProcess::start(cwd);
    let created = json(&mayfly(
        cwd,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://mayfly.internal/audit/exporter",
            "--owner",
            "compliance@example.org",
            "--purpose",
            "ships audit logs to a SIEM that rejects replayed jtis",
            "--audience",
            "siem",
            "--unique-jti",
            "--json",
        ],
        None,
    ));
    assert_eq!(created["unique_jti"], true, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let shown = ok(&mayfly(cwd, &["entry", "show", &id], None));
    assert!(
        shown.contains("unique jti:  yes: a fresh JWT-SVID on every request"),
        "{shown}"
    );
    // Another change leaves it alone; --unique-jti=false clears it.
    let renamed = json(&mayfly(
        cwd,
        &["entry", "update", &id, "--owner", "secops", "--json"],
        None,
    ));
    assert_eq!(renamed["unique_jti"], true, "{renamed}");
    let cleared = json(&mayfly(
        cwd,
        &["entry", "update", &id, "--unique-jti=false", "--json"],
        None,
    ));
    assert_eq!(cleared["unique_jti"], false, "{cleared}");
    let shown = ok(&mayfly(cwd, &["entry", "show", &id], None));
    assert!(
        shown.contains("unique jti:  no: a JWT-SVID is reused until half its life"),
        "{shown}"
    );
    assert!(server.stop().success());
}

#[test]
fn ci_job_gets_a_jwt_from_its_oidc_token_in_one_command() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = key.public_key().as_ref();
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "ci-1",
        "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65])}]});
    let issuer = "https://ci.example.org";

    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let config = cwd.join("mayfly.toml");
    std::fs::write(
        &config,
        format!(
            "[[attestors.oidc]]\nalias = \"ci\"\nissuer = \"{issuer}\"\naudience = \"mayfly\"\nclaims = [\"sub\", \"repository\"]\njwks = {}\n",
            serde_json::Value::String(jwks.to_string())
        ),
    )
    .unwrap();
    let server = ServerProcess::start_with(cwd, &["--config", config.to_str().unwrap()]);
    assert!(server.banner.contains("oidc"), "{}", server.banner);
    let url = server.url.clone();
    ok(&mayfly(
        cwd,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://mayfly.internal/ci/deploy",
            "--owner",
            "platform@example.org",
            "--purpose",
            "deploys acme/app",
            "--audience",
            "deploy",
            "--selector",
            "oidc:ci:repository:acme/app",
        ],
        None,
    ));

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({"iss": issuer, "aud": "mayfly", "sub": "repo:acme/app:ref:main",
        "repository": "acme/app", "jti": "run-77", "exp": now + 300, "iat": now - 1});
    let header = serde_json::json!({"alg": "ES256", "kid": "ci-1", "typ": "JWT"});
    let input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let signature = key.sign(&rng, input.as_bytes()).unwrap();
    let token_file = cwd.join("id-token");
    std::fs::write(
        &token_file,
        format!("{input}.{}\n", b64.encode(signature.as_ref())),
    )
    .unwrap();

    let args = [
        "--server",
        &url,
        "client",
        "jwt",
        "--oidc-token-file",
        token_file.to_str().unwrap(),
        "--audience",
        "deploy",
        "-q",
    ];
    let jwt = ok(&mayfly(cwd, &args, None));
    let valid = ok(&mayfly(
        cwd,
        &["--server", &url, "validate", "--audience", "deploy"],
        Some(jwt.trim()),
    ));
    assert!(
        valid.contains("spiffe://mayfly.internal/ci/deploy"),
        "{valid}"
    );
    // The same ID token again is a replay.
    let replay = mayfly(cwd, &args, None);
    assert_eq!(replay.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&replay.stderr).contains("already used"));
    assert!(server.stop().success());
}

#[test]
fn a_revocation_acknowledged_just_before_kill_9_is_in_force_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let mut server = ServerProcess::start(cwd);
    let url = server.url.clone();
    let entry = json(&mayfly(
        cwd,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://mayfly.internal/api",
            "--owner",
            "team@example.org",
            "--purpose",
            "revocation test",
            "--audience",
            "db",
            "--json",
        ],
        None,
    ));
    let entry_id = entry["id"].as_str().unwrap().to_owned();
    let token = json(&mayfly(
        cwd,
        &["token", "create", "--entry", &entry_id, "--json"],
        None,
    ));
    let token = token["token"].as_str().unwrap().to_owned();
    ok(&mayfly(
        cwd,
        &["--server", &url, "client", "attest", "--join-token", &token],
        None,
    ));
    let jwt = ok(&mayfly(
        cwd,
        &[
            "--server",
            &url,
            "client",
            "jwt",
            "--audience",
            "db",
            "--quiet",
        ],
        None,
    ));
    let jwt = jwt.trim().to_owned();
    // Positive control: valid before the revocation.
    ok(&mayfly(
        cwd,
        &["--server", &url, "validate", "--audience", "db"],
        Some(&jwt),
    ));

    let revoked = ok(&mayfly(
        cwd,
        &["revoke", "entry", &entry_id, "--reason", "host compromised"],
        None,
    ));
    assert!(revoked.contains("revoked: entry"), "{revoked}");
    // SIGKILL right after the command returned: no drain, no flush.
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let server = ServerProcess::start(cwd);
    let url = server.url.clone();
    let listed = ok(&mayfly(cwd, &["revoke", "list", "--json"], None));
    assert!(
        listed.contains(&entry_id) && listed.contains("host compromised"),
        "{listed}"
    );
    let rejected = mayfly(
        cwd,
        &["--server", &url, "validate", "--audience", "db"],
        Some(&jwt),
    );
    assert_eq!(rejected.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(stderr.contains("revoked"), "{stderr}");
    let denied = mayfly(
        cwd,
        &["--server", &url, "client", "jwt", "--audience", "db"],
        None,
    );
    assert_eq!(denied.status.code(), Some(1));
    // Bad input: a clear error and nothing revoked.
    let bad = mayfly(cwd, &["revoke", "serial", "not-hex", "--reason", "x"], None);
    assert_ne!(bad.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("hex"),
        "{bad:?}"
    );
    let missing_reason = mayfly(cwd, &["revoke", "jti", "abc"], None);
    assert_ne!(missing_reason.status.code(), Some(0));
    assert_eq!(
        ok(&mayfly(cwd, &["revoke", "list", "--json"], None))
            .lines()
            .count(),
        1
    );
    server.stop();
}

/// A broker killed at a rotation step (a failpoint aborts the process right
/// there, as `kill -9` would) restarts consistent: one active root,
/// intermediate and JWT key, the step either done or not, and it issues
/// certificates that verify.
#[test]
fn a_broker_killed_at_each_rotation_step_restarts_consistent() {
    // (failpoint, the commands that reach it, whether the step took effect)
    let cases: [(&str, &[&[&str]], bool); 5] = [
        ("root.prepare.key-written", &[&["ca", "prepare"]], false),
        ("root.prepare.committed", &[&["ca", "prepare"]], true),
        (
            "root.activate.intermediate-written",
            &[&["ca", "prepare"], &["ca", "activate", "--force"]],
            false,
        ),
        (
            "root.activate.committed",
            &[&["ca", "prepare"], &["ca", "activate", "--force"]],
            true,
        ),
        (
            "root.retire.committed",
            &[
                &["ca", "prepare"],
                &["ca", "activate", "--force"],
                &["ca", "retire", "--force"],
            ],
            true,
        ),
    ];
    for (failpoint, steps, took_effect) in cases {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        let mut server = ServerProcess::start_env(cwd, &[], &[("MAYFLY_FAILPOINT", failpoint)]);
        let before = json(&mayfly(cwd, &["ca", "status", "--json"], None));
        let (last, leading) = steps.split_last().unwrap();
        for step in leading {
            ok(&mayfly(cwd, step, None));
        }
        let crashed = mayfly(cwd, last, None);
        assert!(
            !crashed.status.success(),
            "{failpoint}: the step should not complete"
        );
        let status = server.child.wait().unwrap();
        assert!(
            !status.success(),
            "{failpoint}: the server should have died: {status:?}"
        );

        let server = ServerProcess::start(cwd);
        let after = json(&mayfly(cwd, &["ca", "status", "--json"], None));
        let states = |status: &serde_json::Value, kind: &str, state: &str| {
            status["authorities"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["kind"] == kind && a["state"] == state)
                .count()
        };
        for kind in ["root", "intermediate", "jwt-key"] {
            assert_eq!(states(&after, kind, "active"), 1, "{failpoint}: {after}");
        }
        // Which authorities exist and in which state; not the times, which
        // move with the clock.
        let shape = |status: &serde_json::Value| -> Vec<(String, String, String)> {
            status["authorities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    let text = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
                    (text("kind"), text("id"), text("state"))
                })
                .collect()
        };
        let changed = shape(&after) != shape(&before);
        if took_effect {
            assert!(changed, "{failpoint}: the committed step is kept: {after}");
        }
        if failpoint == "root.prepare.key-written" {
            assert!(!changed, "{failpoint}: nothing half-done is kept: {after}");
        }
        // It works: a workload attests and its SVID verifies with openssl
        // against the served bundle.
        attest_a_workload(cwd, &server.url, "crash test");
        let verified = Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                "mayfly-data/bundle.pem",
                "-untrusted",
                "svid/svid.pem",
            ])
            .arg("svid/svid.pem")
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(
            verified.status.success(),
            "{failpoint}: {}",
            String::from_utf8_lossy(&verified.stdout)
        );
        server.stop();
    }
}

/// The offline-root runbook of docs/operations.md, command by command: the
/// root key never touches the server's data directory.
#[test]
fn offline_root_rotation_with_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let offline = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(cwd);
    let root_dir = offline.path().join("root-2026");
    let root_dir_arg = root_dir.display().to_string();

    // Offline machine: a new root.
    ok(&mayfly(
        offline.path(),
        &[
            "ca",
            "new-root",
            "--trust-domain",
            "mayfly.internal",
            "--out-dir",
            &root_dir_arg,
        ],
        None,
    ));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root_dir.join("root.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Refused: making it again over the same directory.
    let again = mayfly(
        offline.path(),
        &[
            "ca",
            "new-root",
            "--trust-domain",
            "mayfly.internal",
            "--out-dir",
            &root_dir_arg,
        ],
        None,
    );
    assert_ne!(again.status.code(), Some(0));

    // Server: publish it, get a CSR.
    let root_cert = root_dir.join("root.crt").display().to_string();
    ok(&mayfly(
        cwd,
        &["ca", "prepare", "--root-cert", &root_cert],
        None,
    ));
    let csr = cwd.join("next.csr").display().to_string();
    ok(&mayfly(
        cwd,
        &["ca", "intermediate-csr", "--out", &csr],
        None,
    ));

    // Offline machine: sign it. A wrong trust domain is refused first.
    let cert = cwd.join("next.crt").display().to_string();
    let root_key = root_dir.join("root.key").display().to_string();
    let sign = |trust_domain: &str| {
        mayfly(
            offline.path(),
            &[
                "ca",
                "sign-intermediate",
                "--root-cert",
                &root_cert,
                "--root-key",
                &root_key,
                "--csr",
                &csr,
                "--trust-domain",
                trust_domain,
                "--out",
                &cert,
            ],
            None,
        )
    };
    assert_ne!(sign("other.example").status.code(), Some(0));
    ok(&sign("mayfly.internal"));

    // Server: install it; the offline root becomes active, its key is not here.
    let imported = json(&mayfly(
        cwd,
        &["ca", "import-intermediate", "--cert", &cert, "--json"],
        None,
    ));
    assert!(
        imported
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "root" && e["to"] == "active"),
        "{imported}"
    );
    let status = json(&mayfly(cwd, &["ca", "status", "--json"], None));
    let active_root = status["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "root" && a["state"] == "active")
        .unwrap()
        .clone();
    assert_eq!(active_root["key_on_server"], false, "{status}");

    // A workload's new SVID chains to the offline root: openssl agrees with
    // that root alone.
    attest_a_workload(cwd, &server.url, "offline root");
    let verify = |root: &str| {
        Command::new("openssl")
            .args([
                "verify",
                "-CAfile",
                root,
                "-untrusted",
                "svid/svid.pem",
                "svid/svid.pem",
            ])
            .current_dir(cwd)
            .output()
            .unwrap()
    };
    assert!(verify(&root_cert).status.success());
    // Negative control: the server's first root does not verify it.
    let old_root = status["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "root" && a["state"] == "old")
        .unwrap();
    let old_file = std::fs::read_dir(cwd.join("mayfly-data/ca"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("root-")
                && p.extension().is_some_and(|x| x == "crt")
                && old_root["id"]
                    .as_str()
                    .unwrap()
                    .starts_with(&p.file_stem().unwrap().to_string_lossy()[5..])
        })
        .expect("the old root's certificate");
    assert!(!verify(&old_file.display().to_string()).status.success());
    server.stop();
}

/// Registers spiffe://mayfly.internal/api for `purpose` and attests it with
/// a join token: the SVID lands in `cwd/svid`.
fn attest_a_workload(cwd: &Path, server: &str, purpose: &str) {
    let entry = json(&mayfly(
        cwd,
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://mayfly.internal/api",
            "--owner",
            "team@example.org",
            "--purpose",
            purpose,
            "--audience",
            "db",
            "--json",
        ],
        None,
    ));
    let token = json(&mayfly(
        cwd,
        &[
            "token",
            "create",
            "--entry",
            entry["id"].as_str().unwrap(),
            "--json",
        ],
        None,
    ));
    ok(&mayfly(
        cwd,
        &[
            "--server",
            server,
            "client",
            "attest",
            "--join-token",
            token["token"].as_str().unwrap(),
        ],
        None,
    ));
}

/// `mayfly bench` for a smoke run (300 ms per path, 4 in flight over 2
/// connections, batches of 2, no half load, no openssl) plus `extra`: its
/// JSON report.
fn quick_bench(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "bench",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "--concurrency",
        "4",
        "--connections",
        "2",
        "--batch-size",
        "2",
        "--no-half-load",
        "--openssl-seconds",
        "0",
        "--json",
    ];
    args.extend_from_slice(extra);
    json(&mayfly(dir, &args, None))
}

/// `--memory` on a small load, end to end: the entries and revocations are made, and a
/// subscriber's first revocation sync (more than a page of them) reaches its end, with
/// the broker's peak while it ran.
#[test]
fn the_memory_load_reads_the_broker_through_a_first_revocation_sync() {
    let dir = tempfile::tempdir().unwrap();
    let report = quick_bench(
        dir.path(),
        &[
            "--paths",
            "floor",
            "--memory",
            "--memory-entries",
            "20",
            "--memory-revocations",
            "5000",
        ],
    );
    let loaded = &report["memory"]["loaded"];
    assert_eq!(loaded["revocations"], 5000, "{loaded}");
    let sync = &loaded["first_sync"];
    assert_eq!(sync["revocations"], 5000, "every page: {sync}");
    let peak = sync["peak"]["rss_mib"].as_f64().unwrap();
    let after = sync["after_mib"].as_f64().unwrap();
    assert!(peak > 0.0 && after > 0.0 && peak >= after * 0.5, "{sync}");
}

/// The load generator, end to end with the real binary: it starts its own
/// broker and agent, and every path answers without an error. (A smoke run:
/// the figures themselves are for BENCHMARKS.md, never asserted.)
#[test]
fn the_load_generator_drives_every_path_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let report = quick_bench(dir.path(), &[]);
    let paths = report["paths"].as_array().unwrap();
    let names: Vec<&str> = paths.iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "floor",
            "mint",
            "mint-cached",
            "batch",
            "x509",
            "validate",
            "workload"
        ]
    );
    for path in paths {
        assert!(path["requests"].as_u64().unwrap() > 0, "{path}");
        assert_eq!(path["errors"].as_u64(), Some(0), "{path}");
    }
    assert!(report["memory"]["idle"].is_object(), "{}", report["memory"]);
    // Negative control: an unknown path is refused before anything starts.
    let refused = mayfly(dir.path(), &["bench", "--paths", "mint,renew"], None);
    assert_eq!(refused.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("mint-cached"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn the_load_spreads_over_processes() {
    let dir = tempfile::tempdir().unwrap();
    let report = quick_bench(
        dir.path(),
        &["--paths", "floor,batch,workload", "--load-processes", "2"],
    );
    assert_eq!(report["settings"]["load_processes"], 2);
    let paths = report["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 3);
    for path in paths {
        // Both workers reported, over the broker (mTLS) and the agent (Unix socket).
        assert_eq!(path["load_processes"], 2, "{path}");
        assert!(path["requests"].as_u64().unwrap() > 0, "{path}");
        assert_eq!(path["errors"].as_u64(), Some(0), "{path}");
    }
    // The control: one process, as before.
    let single = quick_bench(dir.path(), &["--paths", "floor"]);
    assert_eq!(single["paths"][0]["load_processes"], 1);
    // A worker without a readable plan says so and fails.
    let refused = mayfly(
        dir.path(),
        &["bench", "--load-worker", "/nonexistent/plan.json"],
        None,
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("/nonexistent/plan.json"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(refused.stdout.is_empty());
    use std::os::unix::fs::PermissionsExt as _;
    // A plan holds keys: one others may read is refused before it is parsed; the same
    // file at 0600 gets as far as its (here broken) contents.
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, b"{not json").unwrap();
    let plan_arg = plan.to_str().unwrap();
    for (mode, says) in [(0o644, "has mode 644"), (0o600, "key must be a string")] {
        std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(mode)).unwrap();
        let refused = mayfly(dir.path(), &["bench", "--load-worker", plan_arg], None);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{mode:o}: {stderr}");
        assert!(stderr.contains(says), "{mode:o}: {stderr}");
    }
}

#[test]
fn a_broker_elsewhere_is_named_in_the_banner_and_the_token_hint() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    // The ephemeral port is not the CLI's default: both must say --server.
    assert_ne!(server.url, "https://127.0.0.1:7443");
    assert!(
        server.banner.contains(&format!(
            "mayfly client attest --join-token <TOKEN> --server {}",
            server.url
        )),
        "{}",
        server.banner
    );
    assert!(
        server
            .banner
            .contains(&format!("Clients elsewhere: --server {}", server.url)),
        "{}",
        server.banner
    );
    let created = json(&mayfly(
        dir.path(),
        &[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://mayfly.internal/hint",
            "--owner",
            "o",
            "--purpose",
            "p",
            "--audience",
            "a",
            "--json",
        ],
        None,
    ));
    let entry_id = created["id"].as_str().unwrap().to_owned();
    // Without --server, the hint names the broker's own URL...
    let text = ok(&mayfly(
        dir.path(),
        &["token", "create", "--entry", &entry_id],
        None,
    ));
    assert!(
        text.contains(&format!("--server {} ", server.url)),
        "{text}"
    );
    // ...and with one, that one (the admin socket is what the CLI talks to).
    let text = ok(&mayfly(
        dir.path(),
        &[
            "--server",
            "https://broker.example.org:7443",
            "token",
            "create",
            "--entry",
            &entry_id,
        ],
        None,
    ));
    assert!(
        text.contains("--server https://broker.example.org:7443 "),
        "{text}"
    );
}

#[test]
fn agent_help_gives_the_agents_own_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let agent = ok(&mayfly(dir.path(), &["agent", "--help"], None));
    assert!(agent.contains("./mayfly-agent"), "{agent}");
    assert!(
        !agent.contains("[default: ./mayfly-data]"),
        "the server's default shown for the agent: {agent}"
    );
    let server = ok(&mayfly(dir.path(), &["server", "--help"], None));
    assert!(server.contains("./mayfly-data"), "{server}");
}

/// A revocation list too large for one gRPC message (the 4 MiB a client
/// accepts by default) is listed whole by `mayfly revoke list`, a page at a
/// time; a client from before paging is refused with a message that says
/// to page, instead of getting a cut list or an undecodable one.
#[test]
fn a_revocation_list_larger_than_one_grpc_message_is_listed_whole_through_pages() {
    use mayfly_sdk::proto::v1 as pb;
    use mayfly_sdk::revocation::{Revocation, RevocationKind};
    use prost::Message as _;

    const GRPC_LIMIT: usize = 4 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    ServerProcess::start(cwd).stop();

    // What one revocation costs in a response, shaped as the broker makes
    // them: a 22-character jti, an operator's reason, the admin actor.
    let now = mayfly_sdk::clock::now_unix();
    let revocation = |n: usize| {
        let mut revocation = Revocation::new(
            RevocationKind::Jti,
            &format!("load-{n:017}"),
            now,
            Some(now + 3600),
        )
        .unwrap();
        revocation.reason = "token leaked in a CI build log (INC-2041)".into();
        revocation.actor = "admin:uid=1000".into();
        revocation
    };
    let one = pb::ListRevocationsResponse {
        revocations: vec![revocation(0).to_proto()],
        next_page_token: String::new(),
    }
    .encoded_len();
    // A quarter past the limit.
    let count = GRPC_LIMIT * 5 / 4 / one + 1;
    let planted: Vec<Revocation> = (0..count).map(revocation).collect();
    let unpaged = pb::ListRevocationsResponse {
        revocations: planted.iter().map(Revocation::to_proto).collect(),
        next_page_token: String::new(),
    };
    assert!(
        unpaged.encoded_len() > GRPC_LIMIT + GRPC_LIMIT / 8,
        "{count} revocations of {one} bytes: {} bytes in one response",
        unpaged.encoded_len()
    );

    // Into the stopped broker's store in one transaction, in the layout
    // store.redb keeps them (as tests/store_contract/harness.rs plants
    // records): through the admin API, a commit and an audit record each
    // would take minutes. The broker reads them at start like any others.
    let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("revocations");
    let db = redb::Database::create(cwd.join("mayfly-data").join("store.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut revocations = txn.open_table(table).unwrap();
        for revocation in &planted {
            let json = serde_json::to_vec(revocation).unwrap();
            revocations
                .insert(revocation.key().as_str(), json.as_slice())
                .unwrap();
        }
    }
    txn.commit().unwrap();
    drop(db);

    let server = ServerProcess::start(cwd);

    // Pages of the default size (500), one JSON line per revocation.
    let listed = ok(&mayfly(cwd, &["revoke", "list", "--json"], None));
    let values: Vec<String> = listed
        .lines()
        .map(|line| {
            let view: serde_json::Value = serde_json::from_str(line).unwrap();
            view["value"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(values.len(), count);
    assert!(
        values.windows(2).all(|pair| pair[0] < pair[1]),
        "each once, in key order"
    );
    let expected: Vec<&str> = planted.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(values, expected);
    // The table, in the largest pages: a header and a row each.
    let table = ok(&mayfly(
        cwd,
        &["revoke", "list", "--page-size", "5000"],
        None,
    ));
    assert_eq!(table.lines().count(), count + 1);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let socket = cwd.join("mayfly-data").join("admin.sock");
        let mut admin = mayfly_sdk::client::connect_admin(&socket).await.unwrap();
        let status = admin
            .server_status(pb::ServerStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status.revocations,
            u64::try_from(count).unwrap(),
            "all loaded"
        );
        // A client from before paging sends no page size.
        let refused = admin
            .list_revocations(pb::ListRevocationsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{refused:?}"
        );
        assert!(refused.message().contains("page_size"), "{refused:?}");
        // A page size past the maximum is clamped, not refused.
        let clamped = admin
            .list_revocations(pb::ListRevocationsRequest {
                page_size: Some(u32::MAX),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(clamped.revocations.len(), 5000);
        assert!(!clamped.next_page_token.is_empty());
    });
    server.stop();
}
