use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

fn sample() -> Entry {
    Entry {
        id: "e1".into(),
        spiffe_id: "spiffe://td/billing/api".into(),
        audiences: vec!["billing-db".into(), "reports".into()],
        owner: "team-billing".into(),
        environment: "prod".into(),
        data_class: "phi".into(),
        expires_at: 1_801_353_600,
        last_minted_at: 1_000 - 252,
        jwt_ttl_seconds: 300,
        ..Default::default()
    }
}

fn entry_command(args: &[&str]) -> Result<EntryCommand, clap::Error> {
    let cli = Cli::try_parse_from(["mayfly", "entry"].iter().chain(args))?;
    match cli.command {
        Command::Entry(command) => Ok(command),
        _ => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
    }
}

#[test]
fn list_table_has_the_promised_columns() {
    let text = entry_table(&[sample()], 1_000);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "ID  SPIFFE ID                OWNER         ENV   DATA  AUDIENCES           \
                 EXPIRES               LAST MINTED  STATE"
        )
    );
    assert_eq!(
        lines.next(),
        Some(
            "e1  spiffe://td/billing/api  team-billing  prod  phi   billing-db,reports  \
                 2027-01-31T00:00:00Z  4m12s ago    active"
        )
    );
}

#[test]
fn details_show_every_field() {
    let text = entry_details(&sample(), 1_000);
    assert!(text.contains("jwt ttl:     5m\n"), "{text}");
    assert!(text.contains("x509 ttl:    default\n"), "{text}");
    assert!(text.contains("selectors:   -\n"), "{text}");
    assert!(text.contains("created:     never\n"), "{text}");
    assert!(
        text.contains("unique jti:  no: a JWT-SVID is reused until half its life\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 24);
    assert!(text.contains("state:       active\n"), "{text}");
    let unique = Entry {
        unique_jti: true,
        ..sample()
    };
    let text = entry_details(&unique, 1_000);
    assert!(
        text.contains("unique jti:  yes: a fresh JWT-SVID on every request\n"),
        "{text}"
    );
}

#[test]
fn a_disabled_entry_says_so_in_the_table_the_details_and_json() -> Result<(), serde_json::Error> {
    let disabled = Entry {
        disabled: Some(mayfly_sdk::proto::v1::EntryDisabled {
            at: 1_000 - 60,
            by: "admin:uid=0".into(),
            reason: "owner left".into(),
        }),
        ..sample()
    };
    let table = entry_table(std::slice::from_ref(&disabled), 1_000);
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap_or_default()
            .ends_with("disabled"),
        "{table}"
    );
    let details = entry_details(&disabled, 1_000);
    assert!(
        details.contains(
            "state:       disabled since 1970-01-01T00:15:40Z (1m ago) by admin:uid=0: owner left\n"
        ),
        "{details}"
    );
    let json = serde_json::to_value(EntryView::from(&disabled))?;
    assert_eq!(json["state"], "disabled");
    assert_eq!(json["disabled"]["reason"], "owner left");
    assert_eq!(json["disabled"]["at"], "1970-01-01T00:15:40Z");
    // Positive control: an entry past its expiry is expired, not disabled.
    let expired = Entry {
        expires_at: 10,
        ..sample()
    };
    assert_eq!(entry_state(&expired, 1_000), "expired");
    assert_eq!(
        serde_json::to_value(EntryView::from(&sample()))?["disabled"],
        serde_json::Value::Null
    );
    Ok(())
}

#[test]
fn disable_and_enable_require_a_reason() {
    assert!(entry_command(&["disable", "0123456789abcdef"]).is_err());
    assert!(entry_command(&["enable", "0123456789abcdef"]).is_err());
    // Positive control.
    assert!(entry_command(&["disable", "0123456789abcdef", "--reason", "why"]).is_ok());
    assert!(entry_command(&["enable", "0123456789abcdef", "--reason", "why"]).is_ok());
}

#[test]
fn review_needs_a_note_and_review_every_takes_never() -> Result<(), Box<dyn std::error::Error>> {
    assert!(entry_command(&["review", "0123456789abcdef"]).is_err());
    assert!(entry_command(&["review", "0123456789abcdef", "--note", "ok"]).is_ok());
    let spec_of = |args: &[&str]| -> Result<Option<u64>, Box<dyn std::error::Error>> {
        match entry_command(args)? {
            EntryCommand::Update(update) => Ok(update.spec(0)?.review_every_seconds),
            other => Err(format!("{other:?}").into()),
        }
    };
    assert_eq!(
        spec_of(&["update", "e1", "--review-every", "30d"])?,
        Some(30 * 86_400)
    );
    assert_eq!(
        spec_of(&["update", "e1", "--review-every", "never"])?,
        Some(0)
    );
    assert!(entry_command(&["update", "e1", "--review-every", "soon"]).is_err());
    // An overdue review shows in the state; before it is due it does not.
    let due = Entry {
        review_due_at: 900,
        ..sample()
    };
    assert_eq!(entry_state(&due, 1_000), "review-overdue");
    assert_eq!(entry_state(&due, 899), "active");
    Ok(())
}

#[test]
fn purge_needs_a_threshold_and_deletes_only_with_yes() -> Result<(), Box<dyn std::error::Error>> {
    assert!(entry_command(&["purge"]).is_err());
    match entry_command(&["purge", "--expired-for", "90d"])? {
        EntryCommand::Purge(args) => {
            assert_eq!(args.expired_for, 90 * 86_400);
            assert!(!args.yes, "a dry run unless --yes");
        }
        other => return Err(format!("{other:?}").into()),
    }
    match entry_command(&["purge", "--expired-for", "90d", "--yes"])? {
        EntryCommand::Purge(args) => assert!(args.yes),
        other => return Err(format!("{other:?}").into()),
    }
    Ok(())
}

#[test]
fn json_view_uses_rfc3339_and_null_for_never() -> Result<(), serde_json::Error> {
    let json = serde_json::to_value(EntryView::from(&sample()))?;
    assert_eq!(json["expires_at"], "2027-01-31T00:00:00Z");
    assert_eq!(json["created_at"], serde_json::Value::Null);
    assert_eq!(json["jwt_ttl_seconds"], 300);
    assert_eq!(json["unique_jti"], false);
    Ok(())
}

#[test]
fn create_flags_become_a_spec() -> Result<(), Box<dyn std::error::Error>> {
    let command = entry_command(&[
        "create",
        "--spiffe-id",
        "spiffe://td/a",
        "--owner",
        "o",
        "--purpose",
        "p",
        "--audience",
        "x",
        "--audience",
        "y",
        "--kind",
        "jwt",
        "--kind",
        "jwt",
        "--jwt-ttl",
        "5m",
        "--expires",
        "1h",
    ])?;
    let EntryCommand::Create(args) = command else {
        return Err("not create".into());
    };
    let spec = args.spec(1_000)?;
    assert_eq!(spec.spiffe_id.as_deref(), Some("spiffe://td/a"));
    assert_eq!(
        spec.audiences.map(|l| l.values),
        Some(vec!["x".into(), "y".into()])
    );
    assert_eq!(spec.kinds.map(|l| l.values), Some(vec!["jwt".into()]));
    assert_eq!(spec.jwt_ttl_seconds, Some(300));
    assert_eq!(spec.x509_ttl_seconds, None);
    assert_eq!(spec.selectors, None);
    assert_eq!(spec.expires_at, Some(4_600));
    Ok(())
}

#[test]
fn create_requires_owner_and_purpose() {
    let err = entry_command(&["create", "--spiffe-id", "spiffe://td/a"]).err();
    assert_eq!(
        err.map(|e| e.kind()),
        Some(clap::error::ErrorKind::MissingRequiredArgument)
    );
}

#[test]
fn bad_values_are_refused_by_the_parser() {
    for args in [
        &[
            "create",
            "--spiffe-id",
            "spiffe://TD/a",
            "--owner",
            "o",
            "--purpose",
            "p",
        ][..],
        &[
            "create",
            "--spiffe-id",
            "spiffe://td/a",
            "--owner",
            "o",
            "--purpose",
            "p",
            "--jwt-ttl",
            "5",
        ],
        &[
            "create",
            "--spiffe-id",
            "spiffe://td/a",
            "--owner",
            "o",
            "--purpose",
            "p",
            "--kind",
            "pgp",
        ],
        &["update", "e1", "--expires", "someday"],
    ] {
        let kind = entry_command(args).err().map(|e| e.kind());
        assert!(
            matches!(
                kind,
                Some(
                    clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
                )
            ),
            "{args:?}: {kind:?}"
        );
    }
}

#[test]
fn update_sends_only_what_was_given() -> Result<(), Box<dyn std::error::Error>> {
    let EntryCommand::Update(args) =
        entry_command(&["update", "e1", "--owner", "new", "--clear-dns-names"])?
    else {
        return Err("not update".into());
    };
    let spec = args.spec(1_000)?;
    assert_eq!(spec.owner.as_deref(), Some("new"));
    assert_eq!(spec.dns_names, Some(StringList::default()));
    assert_eq!(spec.audiences, None);
    assert_eq!(spec.purpose, None);
    Ok(())
}

#[test]
fn unique_jti_is_sent_only_when_given() -> Result<(), Box<dyn std::error::Error>> {
    let spec_of = |args: &[&str]| -> Result<EntrySpec, Box<dyn std::error::Error>> {
        match entry_command(args)? {
            EntryCommand::Update(args) => Ok(args.spec(1_000)?),
            _ => Err("not update".into()),
        }
    };
    assert_eq!(
        spec_of(&["update", "e1", "--unique-jti"])?.unique_jti,
        Some(true)
    );
    assert_eq!(
        spec_of(&["update", "e1", "--unique-jti=false"])?.unique_jti,
        Some(false)
    );
    assert_eq!(
        spec_of(&["update", "e1", "--owner", "o"])?.unique_jti,
        None,
        "not given: unchanged"
    );
    assert!(entry_command(&["update", "e1", "--unique-jti=maybe"]).is_err());
    let EntryCommand::Create(create) = entry_command(&[
        "create",
        "--spiffe-id",
        "spiffe://td/a",
        "--owner",
        "o",
        "--purpose",
        "p",
        "--unique-jti",
    ])?
    else {
        return Err("not create".into());
    };
    assert_eq!(create.spec(1_000)?.unique_jti, Some(true));
    Ok(())
}

#[test]
fn empty_update_is_a_usage_error() -> Result<(), Box<dyn std::error::Error>> {
    let EntryCommand::Update(args) = entry_command(&["update", "e1"])? else {
        return Err("not update".into());
    };
    assert_eq!(args.spec(1_000).err().map(|e| e.exit_code()), Some(64));
    Ok(())
}

#[test]
fn clear_conflicts_with_setting() {
    let err = entry_command(&["update", "e1", "--selector", "a:b", "--clear-selectors"]).err();
    assert_eq!(
        err.map(|e| e.kind()),
        Some(clap::error::ErrorKind::ArgumentConflict)
    );
}

#[test]
fn expiry_in_the_past_is_a_usage_error() -> Result<(), Box<dyn std::error::Error>> {
    let EntryCommand::Update(args) = entry_command(&["update", "e1", "--expires", "2001-01-01"])?
    else {
        return Err("not update".into());
    };
    assert_eq!(args.spec(now_unix()).err().map(|e| e.exit_code()), Some(64));
    Ok(())
}

#[test]
fn list_flags_become_the_requests_filters() -> Result<(), Box<dyn std::error::Error>> {
    let list = |args: &[&str]| -> Result<ListArgs, Box<dyn std::error::Error>> {
        match entry_command(&[&["list"], args].concat())? {
            EntryCommand::List(args) => Ok(args),
            _ => Err("not list".into()),
        }
    };
    let args = list(&[
        "--owner",
        "team-billing",
        "--environment",
        "prod",
        "--data-class",
        "phi",
        "--spiffe-id-prefix",
        "spiffe://td/billing/",
        "--parent",
        "spiffe://td/agent/1",
        "--page-size",
        "50",
    ])?;
    assert!(args.filtered());
    assert_eq!(
        args.request(),
        ListEntriesRequest {
            page_size: Some(50),
            page_token: String::new(),
            owner: "team-billing".into(),
            environment: "prod".into(),
            data_class: "phi".into(),
            spiffe_id_prefix: "spiffe://td/billing/".into(),
            parent_id: "spiffe://td/agent/1".into(),
            states: Vec::new(),
        }
    );
    // Without flags: no filter, and always a page size, so that the
    // server pages (0 is its default size).
    let plain = list(&[])?;
    assert!(!plain.filtered());
    assert_eq!(
        plain.request(),
        ListEntriesRequest {
            page_size: Some(0),
            ..Default::default()
        }
    );
    assert!(list(&["--parent", "node-7"]).is_err());
    assert!(list(&["--page-size", "0"]).is_err());
    Ok(())
}
