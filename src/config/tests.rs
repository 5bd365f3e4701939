#[test]
fn the_broker_url_is_what_a_client_can_reach() {
    let mut config = Config::default();
    let at = |addr: &str| config.broker_url(addr.parse().unwrap());
    assert_eq!(at("127.0.0.1:7443"), "https://127.0.0.1:7443");
    assert_eq!(at("[::1]:9000"), "https://[::1]:9000");
    assert_eq!(at("0.0.0.0:7443"), "https://localhost:7443");
    assert_eq!(at("[::]:7443"), "https://localhost:7443");
    config.server_dns_names = vec!["mayfly.example.org".into()];
    assert_eq!(
        config.broker_url("0.0.0.0:8443".parse().unwrap()),
        "https://mayfly.example.org:8443"
    );
}

use super::*;
use std::collections::HashMap;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load_text(text: &str, env: HashMap<&str, &str>) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mayfly.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(
        Some(&path),
        |k| env.get(k).map(|v| (*v).to_owned()),
        &Overrides::default(),
    )
}

#[test]
fn defaults_need_no_file() {
    let config = Config::load(None, no_env, &Overrides::default()).unwrap();
    assert_eq!(config.trust_domain.as_str(), DEFAULT_TRUST_DOMAIN);
    assert_eq!(config.grpc_listen.to_string(), DEFAULT_GRPC_LISTEN);
    assert_eq!(config.http_listen.to_string(), DEFAULT_HTTP_LISTEN);
    assert_eq!(config.ttl.jwt_default, Duration::from_secs(300));
}

#[test]
fn file_then_env_then_flags() {
    let text = "trust_domain = \"file.org\"\n[listen]\ngrpc = \"127.0.0.1:9000\"\n[ttl]\njwt_max = \"30m\"\n";
    let config = load_text(text, HashMap::new()).unwrap();
    assert_eq!(config.trust_domain.as_str(), "file.org");
    assert_eq!(config.grpc_listen.port(), 9000);
    assert_eq!(config.ttl.jwt_max, Duration::from_secs(1800));

    let env = HashMap::from([("MAYFLY_TRUST_DOMAIN", "env.org")]);
    let config = load_text(text, env).unwrap();
    assert_eq!(config.trust_domain.as_str(), "env.org");

    let overrides = Overrides {
        trust_domain: Some("flag.org".into()),
        ..Overrides::default()
    };
    let config = Config::load(
        None,
        |k| (k == "MAYFLY_TRUST_DOMAIN").then(|| "env.org".into()),
        &overrides,
    )
    .unwrap();
    assert_eq!(config.trust_domain.as_str(), "flag.org");
}

#[test]
fn bad_values_are_one_line_errors_naming_the_setting() {
    let err = load_text("trust_domain = \"Bad.Org\"", HashMap::new()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("trust_domain (from config file)"),
        "{err}"
    );
    let err = load_text("[ttl]\njwt_max = \"2h\"", HashMap::new()).unwrap_err();
    assert!(err.to_string().contains("ttl.jwt_max"), "{err}");
    let err = load_text("[listen]\ngrpc = \"nowhere\"", HashMap::new()).unwrap_err();
    assert!(err.to_string().contains("listen.grpc"), "{err}");
    let err = load_text("unknown_key = 1", HashMap::new()).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    assert!(!err.to_string().contains('\n'));
    let err = load_text("", HashMap::from([("MAYFLY_GRPC_LISTEN", "x")])).unwrap_err();
    assert!(err.to_string().contains("MAYFLY_GRPC_LISTEN"), "{err}");
    // positive control: the same shapes with good values load.
    assert!(
        load_text(
            "trust_domain = \"good.org\"\n[ttl]\njwt_max = \"10m\"\njwt_default = \"1m\"",
            HashMap::new()
        )
        .is_ok()
    );
}

#[test]
fn default_longer_than_max_is_refused() {
    assert!(load_text("[ttl]\njwt_max = \"1m\"", HashMap::new()).is_err());
    assert!(
        load_text(
            "[ttl]\njwt_max = \"1m\"\njwt_default = \"1m\"",
            HashMap::new()
        )
        .is_ok()
    );
}

#[test]
fn store_location_from_file_env_and_flag_without_leaking_the_password() {
    let env = |name: &str| match name {
        "MAYFLY_STORE" => Some("redis://:s3cret@10.0.0.5:6379/0".to_owned()),
        "MAYFLY_REDIS_PREFIX" => Some("prod-a".to_owned()),
        _ => None,
    };
    let config = Config::load(None, env, &Overrides::default()).unwrap();
    assert_eq!(
        config.store,
        StoreLocation::Redis {
            url: "redis://:s3cret@10.0.0.5:6379/0".into(),
            prefix: "prod-a".into()
        }
    );
    assert!(!format!("{config:?}").contains("s3cret"));
    let flag = Overrides {
        store: Some("embedded".into()),
        ..Overrides::default()
    };
    assert_eq!(
        Config::load(None, env, &flag).unwrap().store,
        StoreLocation::Embedded
    );
    assert_eq!(
        Config::load(None, |_| None, &Overrides::default())
            .unwrap()
            .store,
        StoreLocation::Embedded
    );
    let bad = Overrides {
        store: Some("postgres://:s3cret@db".into()),
        ..Overrides::default()
    };
    let error = Config::load(None, |_| None, &bad).unwrap_err().to_string();
    assert!(error.contains("redis://"), "{error}");
    assert!(!error.contains("s3cret"), "{error}");
    let stale = |name: &str| (name == "MAYFLY_REVOCATION_STALENESS").then(|| "0s".to_owned());
    assert!(Config::load(None, stale, &Overrides::default()).is_err());
}

#[test]
fn connection_limits_load_from_the_file_with_defaults() {
    let defaults = Config::load(None, no_env, &Overrides::default()).unwrap();
    assert_eq!(defaults.limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(defaults.limits.idle_timeout, Duration::from_secs(300));
    assert_eq!(defaults.limits.max_connections_per_peer, 1000);
    assert_eq!(defaults.limits.anonymous_connection_cap(), 5000);
    let text = "[limits]\nmax_connections = 20\nhandshake_timeout = \"2s\"\n\
                    idle_timeout = \"90s\"\nmax_connections_per_peer = 0\n";
    let config = load_text(text, HashMap::new()).unwrap();
    assert_eq!(config.limits.handshake_timeout, Duration::from_secs(2));
    assert_eq!(config.limits.idle_timeout, Duration::from_secs(90));
    assert_eq!(config.limits.max_connections_per_peer, 0, "0 is off");
    assert_eq!(
        config.limits.anonymous_connection_cap(),
        10,
        "half of max_connections unless set"
    );
    let text = "[limits]\nmax_connections = 20\nmax_anonymous_connections = 20\n";
    let config = load_text(text, HashMap::new()).unwrap();
    assert_eq!(config.limits.anonymous_connection_cap(), 20);
}

#[test]
fn meaningless_connection_limits_are_refused_by_name() {
    for (text, setting) in [
        ("handshake_timeout = \"0s\"", "limits.handshake_timeout"),
        ("idle_timeout = \"0s\"", "limits.idle_timeout"),
        ("request_timeout = \"0s\"", "limits.request_timeout"),
        ("idle_timeout = \"soon\"", "limits.idle_timeout"),
        ("idle_timeout = \"1000000000y\"", "limits.idle_timeout"),
        ("handshake_timeout = \"6m\"", "limits.handshake_timeout"),
        ("max_connections = 0", "limits.max_connections"),
        ("max_connections = 1000001", "limits.max_connections"),
        (
            "max_concurrent_streams = 0",
            "limits.max_concurrent_streams",
        ),
        (
            "max_anonymous_connections = 0",
            "limits.max_anonymous_connections",
        ),
        (
            "max_connections = 10\nmax_anonymous_connections = 11",
            "limits.max_anonymous_connections",
        ),
    ] {
        let error = load_text(&format!("[limits]\n{text}\n"), HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(setting), "{text}: {error}");
    }
    // positive control: the same settings with usable values load.
    let text = "[limits]\nhandshake_timeout = \"500ms\"\nidle_timeout = \"1s\"\n\
                    max_connections = 10\nmax_anonymous_connections = 10\n\
                    max_connections_per_peer = 1\n";
    assert!(load_text(text, HashMap::new()).is_ok());
    let text = "[limits]\nhandshake_timeout = \"5m\"\nidle_timeout = \"24h\"\n";
    assert!(load_text(text, HashMap::new()).is_ok());
}

#[test]
fn prometheus_metrics_are_on_by_default_and_can_be_turned_off() {
    // Positive control: on without a word.
    let defaults = Config::load(None, no_env, &Overrides::default()).unwrap();
    assert!(defaults.telemetry.prometheus);
    let off = load_text("[telemetry]\nprometheus = false\n", HashMap::new()).unwrap();
    assert!(!off.telemetry.prometheus);
    // The environment wins over the file.
    let on = load_text(
        "[telemetry]\nprometheus = false\n",
        HashMap::from([("MAYFLY_PROMETHEUS", "true")]),
    )
    .unwrap();
    assert!(on.telemetry.prometheus);
    // Anything else is refused by name, not read as false.
    let error = load_text("", HashMap::from([("MAYFLY_PROMETHEUS", "no")])).unwrap_err();
    assert!(
        matches!(
            &error,
            ConfigError::Invalid {
                setting: "telemetry.prometheus",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(load_text("[telemetry]\nprometheus = \"yes\"\n", HashMap::new()).is_err());
    assert!(load_text("[telemetry]\notlp = true\n", HashMap::new()).is_err());
}

#[test]
fn the_group_commit_linger_loads_and_a_long_or_malformed_one_is_refused() {
    let default = load_text("", HashMap::new()).unwrap().audit_options("r");
    assert_eq!(default.commit_linger, crate::audit::DEFAULT_COMMIT_LINGER);
    for (value, expected) in [
        ("0s", Duration::ZERO),
        ("500us", Duration::from_micros(500)),
        ("10ms", Duration::from_millis(10)),
    ] {
        let text = format!("[audit]\ncommit_linger = \"{value}\"\n");
        let options = load_text(&text, HashMap::new()).unwrap().audit_options("r");
        assert_eq!(options.commit_linger, expected, "{value}");
    }
    for value in ["11ms", "1s", "soon", "-1ms"] {
        let text = format!("[audit]\ncommit_linger = \"{value}\"\n");
        let error = load_text(&text, HashMap::new()).unwrap_err().to_string();
        assert!(error.contains("audit.commit_linger"), "{value}: {error}");
    }
}

#[test]
fn audit_segments_and_retention_load_and_bad_ones_are_refused_by_name() {
    // Defaults: 64 MiB or a day per segment, every segment kept.
    let config = load_text("", HashMap::new()).unwrap();
    let rotation = config.audit_options("r").rotation;
    assert_eq!(rotation, crate::audit::Rotation::default());
    assert_eq!(rotation.retention, None);

    let text =
        "[audit]\nsegment_max_size = \"8MiB\"\nsegment_max_age = \"6h\"\nretention = \"2190d\"\n";
    let rotation = load_text(text, HashMap::new())
        .unwrap()
        .audit_options("r")
        .rotation;
    assert_eq!(rotation.max_bytes, 8 << 20);
    assert_eq!(rotation.max_age, Duration::from_secs(6 * 3600));
    assert_eq!(rotation.retention, Some(Duration::from_secs(2190 * 86_400)));
    for (size, bytes) in [("4KiB", 4096), ("65536", 65536), ("1GiB", 1 << 30)] {
        let text = format!("[audit]\nsegment_max_size = \"{size}\"\n");
        let config = load_text(&text, HashMap::new()).unwrap();
        assert_eq!(config.audit.segment_max_bytes, Some(bytes), "{size}");
    }

    for (text, setting) in [
        ("segment_max_size = \"64MB\"", "audit.segment_max_size"),
        ("segment_max_size = \"1KiB\"", "audit.segment_max_size"),
        ("segment_max_size = \"-1\"", "audit.segment_max_size"),
        ("segment_max_age = \"10s\"", "audit.segment_max_age"),
        ("segment_max_age = \"soon\"", "audit.segment_max_age"),
        ("retention = \"5m\"", "audit.retention"),
    ] {
        let err = load_text(&format!("[audit]\n{text}\n"), HashMap::new()).unwrap_err();
        assert!(err.to_string().contains(setting), "{text}: {err}");
        assert!(!err.to_string().contains('\n'), "{err}");
    }
}

#[test]
fn audit_anchor_sinks_load_from_the_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("witness.token");
    std::fs::write(&token, "t0ken\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = load_text(
        &format!(
            "[audit]\nanchor_url = \"https://witness.example/mayfly/replica-a\"\n\
             anchor_url_token_file = '{}'\nanchor_syslog = \"udp:127.0.0.1:514\"\n",
            token.display()
        ),
        HashMap::new(),
    )
    .unwrap();
    let http = config.audit.anchor_http.unwrap();
    assert_eq!(
        http.url.to_string(),
        "https://witness.example/mayfly/replica-a"
    );
    assert_eq!(http.token_file.as_deref(), Some(token.as_path()));
    assert_eq!(
        config.audit.anchor_syslog,
        Some(crate::anchor::SyslogTarget::Udp(
            "127.0.0.1:514".parse().unwrap()
        ))
    );
    // Off unless set.
    let config = Config::load(None, no_env, &Overrides::default()).unwrap();
    assert!(config.audit.anchor_http.is_none() && config.audit.anchor_syslog.is_none());
}

#[test]
fn audit_anchor_sinks_that_cannot_be_used_are_refused_by_name() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("witness.token");
    std::fs::write(&token, "t0ken\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let missing_ca = dir.path().join("missing-ca.pem");
    let url = "anchor_url = \"https://witness.example/a\"";
    for (audit, setting, needle) in [
        (
            "anchor_url = \"ftp://witness.example/a\"".to_owned(),
            "audit.anchor_url",
            "http or https",
        ),
        (
            "anchor_syslog = \"/dev/log\"".to_owned(),
            "audit.anchor_syslog",
            "unix:<socket path> or udp:<IP>:<port>",
        ),
        (
            "anchor_syslog = \"udp:syslog.example:514\"".to_owned(),
            "audit.anchor_syslog",
            "IP address and a port",
        ),
        (
            format!("{url}\nanchor_url_ca = '{}'", missing_ca.display()),
            "audit.anchor_url_ca",
            "missing-ca.pem",
        ),
        (
            format!("anchor_url_ca = '{}'", missing_ca.display()),
            "audit.anchor_url_ca",
            "needs audit.anchor_url",
        ),
        (
            format!("{url}\nanchor_url_token_file = '{}'", token.display()),
            "audit.anchor_url_token_file",
            "witness.token",
        ),
        (
            format!(
                "anchor_url = \"http://witness.example/a\"\nanchor_url_token_file = '{}'",
                token.display()
            ),
            // Refused for its mode before the URL is looked at.
            "audit.anchor_url_token_file",
            "witness.token",
        ),
    ] {
        let error = load_text(&format!("[audit]\n{audit}\n"), HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("{setting} (from config file)")),
            "{audit}: {error}"
        );
        assert!(error.contains(needle), "{audit}: {error}");
        assert!(!error.contains("t0ken"), "{error}");
    }
    // The controls: the same settings, usable.
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let error = load_text(
        &format!(
            "[audit]\nanchor_url = \"http://witness.example/a\"\nanchor_url_token_file = '{}'\n",
            token.display()
        ),
        HashMap::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("only over https"), "{error}");
    load_text(
        &format!(
            "[audit]\n{url}\nanchor_url_token_file = '{}'\nanchor_syslog = \"unix:/dev/log\"\n",
            token.display()
        ),
        HashMap::new(),
    )
    .unwrap();
}

#[test]
fn governance_claims_are_off_by_default_and_read_from_the_jwt_section() {
    let defaults = load_text("", HashMap::new()).unwrap();
    assert!(!defaults.jwt_governance_claims);
    let on = load_text("[jwt]\ngoverness = true\n", HashMap::new());
    assert!(on.is_err(), "unknown keys are refused");
    let on = load_text("[jwt]\ngovernance_claims = true\n", HashMap::new()).unwrap();
    assert!(on.jwt_governance_claims);
    let audiences = load_text(
        "[governance]\nrequire_registered_audiences = true\ndata_classes = [\"low\", \"high\"]\n",
        HashMap::new(),
    )
    .unwrap();
    assert!(audiences.governance.require_registered_audiences);
    assert_eq!(audiences.governance.data_classes.rank("high"), Some(1));
}
