//! `deploy/grafana/mayfly.json`, the operators' Grafana dashboard, checked
//! without Grafana:
//!
//! - Its shape: unique panel ids, a title and a description on every panel,
//!   every query panel on the `${datasource}` variable with at least one
//!   PromQL expression, a layout inside 24 columns without overlaps, and the
//!   `datasource`, `job` and `instance` variables. Dashboard variables are
//!   only used as regular expressions (`job=~"$job"`), since "All" and
//!   multi-value selections become `(a|b)`.
//! - Every metric the queries name is one a broker on a shared store
//!   (Redis) exports after known traffic, except [`PENDING_METRICS`]; a
//!   made-up name is caught (the negative control).
//! - A real Prometheus scrapes such a broker, and every panel's and
//!   variable's query, with Grafana's variables filled in, is accepted by
//!   its query API; the panels in [`PANELS_WITH_DATA`] return series. A
//!   broken expression comes back as an error from the same function, and a
//!   made-up metric as an empty result (the negative controls).
//!
//! The Prometheus test needs Debian's `prometheus` package, and the broker
//! Redis: without either it says so and passes, except under `CI=true`,
//! where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::TestBroker;
use common::prometheus::{Prometheus, known_traffic, prometheus_query, prometheus_value, tool};
use common::redis::{PrefixGuard, redis_url_or_skip};
use serde_json::Value;

/// Metrics the dashboard may show before the broker exports them (a
/// dashboard change that lands ahead of its metric); the name test fails
/// for an entry the broker exports, so the list cannot go stale. Empty.
const PENDING_METRICS: &[&str] = &[];

/// Panels every query of which must return series from a broker on Redis
/// after known traffic.
const PANELS_WITH_DATA: &[&str] = &[
    "Ready",
    "Shared store connected",
    "Scraped",
    "Credentials issued",
    "Refusals by class",
    "Refusal ratio",
    "Attestations",
    "JWT validations",
    "RPC latency p50 / p99 by method",
    "RPCs by status code",
    "RPC errors by method",
    "Cache hit ratio",
    "Cache look-ups",
    "Audit commit latency p99",
    "Audit records per commit",
    "Failed audit commits",
    "Audit head sequence",
    "Entries",
    "Revocations in force",
    "Revocation data age vs bound",
    "Time to expiry",
    "Successor prepared",
];

/// Panels that may be empty in this test, and why. Every panel is in this
/// list or in [`PANELS_WITH_DATA`], so a new panel is a decision.
const PANELS_WITHOUT_DATA: &[(&str, &str)] = &[
    ("Open connections", "mayfly_connections is pending"),
    (
        "Signing time p99 by kind",
        "mayfly_signing_duration_seconds is pending",
    ),
    (
        "Next automatic rotation step",
        "mayfly_ca_rotation_due_seconds is pending",
    ),
    ("Workload API latency p50 / p99", "no agent is scraped"),
    ("Workload API calls by status code", "no agent is scraped"),
    ("Agent JWT-SVID cache hit ratio", "no agent is scraped"),
];

/// What Grafana's built-in interval variables become in the tests.
const BUILT_INS: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__range", "5m"),
];

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/mayfly.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every panel, rows included, and the panels of collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

/// The panels that query (every one but rows).
fn query_panels(dashboard: &Value) -> Vec<&Value> {
    panels(dashboard)
        .into_iter()
        .filter(|panel| panel["type"] != "row")
        .collect()
}

fn title(panel: &Value) -> &str {
    panel["title"].as_str().unwrap_or_default()
}

fn exprs(panel: &Value) -> Vec<&str> {
    panel["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|target| target["expr"].as_str())
        .collect()
}

/// The dashboard's template variables by name.
fn variables(dashboard: &Value) -> BTreeMap<&str, &Value> {
    dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|variable| (variable["name"].as_str().unwrap(), variable))
        .collect()
}

/// The PromQL selector and label of a `label_values(selector, label)`
/// variable query.
fn label_values(query: &str) -> (&str, &str) {
    let body = query
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(..): {query}"));
    let (selector, label) = body.rsplit_once(',').unwrap();
    (selector.trim(), label.trim())
}

/// `expr` as Prometheus gets it from Grafana with every variable on "All":
/// interval built-ins as in [`BUILT_INS`], dashboard variables as `.*`.
/// Refuses an unknown variable, and a dashboard variable anywhere but in a
/// regular-expression matcher (`label=~"$var"`), where a multi-value
/// selection would match nothing.
fn substitute(expr: &str, variables: &[&str]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        rest = &after[name_len..];
        if let Some((_, value)) = BUILT_INS.iter().find(|(built_in, _)| *built_in == name) {
            out.push_str(value);
        } else if variables.contains(&name) {
            if !out.ends_with("=~\"") || !rest.starts_with('"') {
                return Err(format!("${name} outside a =~\"..\" matcher in {expr}"));
            }
            out.push_str(".*");
        } else {
            return Err(format!("unknown variable ${name} in {expr}"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The metric names a PromQL expression holds: identifiers outside string
/// literals that start with `mayfly_` or `rpc_server_`, as written.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut outside_strings = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in expr.chars() {
        match (in_string, escaped, c) {
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (true, _, _) => escaped = false,
            (false, _, '"') => {
                in_string = true;
                outside_strings.push(' ');
            }
            (false, _, c) => outside_strings.push(c),
        }
    }
    outside_strings
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| token.starts_with("mayfly_") || token.starts_with("rpc_server_"))
        .map(str::to_owned)
        .collect()
}

/// A metric's family: its name without a histogram's `_bucket`, `_sum` or
/// `_count`.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// The metric families with at least one sample in a Prometheus text
/// exposition.
fn exported_families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(|name| family(name).to_owned())
        .collect()
}

/// The names in `exprs` whose family is neither exported nor pending.
fn unknown_metrics<'a>(
    exprs: impl IntoIterator<Item = &'a str>,
    exported: &BTreeSet<String>,
) -> BTreeSet<String> {
    exprs
        .into_iter()
        .flat_map(metric_names)
        .filter(|name| {
            let family = family(name);
            !exported.contains(family) && !PENDING_METRICS.contains(&family)
        })
        .collect()
}

/// Every PromQL expression of the dashboard with the title of the panel
/// (or variable) it belongs to: panel targets, and each query variable's
/// `label_values` as the equivalent `count by (label) (selector)`.
fn all_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in query_panels(dashboard) {
        for expr in exprs(panel) {
            queries.push((title(panel).to_owned(), expr.to_owned()));
        }
    }
    for (name, variable) in variables(dashboard) {
        if variable["type"] == "query" {
            let (selector, label) = label_values(variable["definition"].as_str().unwrap());
            queries.push((
                format!("variable {name}"),
                format!("count by ({label}) ({selector})"),
            ));
        }
    }
    queries
}

/// A grid rectangle: x, y, width, height.
type Rect = (i64, i64, i64, i64);

fn grid(panel: &Value) -> Rect {
    let at = |key: &str| panel["gridPos"][key].as_i64().unwrap();
    (at("x"), at("y"), at("w"), at("h"))
}

fn overlap(a: Rect, b: Rect) -> bool {
    a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
}

#[test]
fn the_dashboard_is_well_formed() {
    let dashboard = dashboard();
    assert!(
        dashboard["schemaVersion"].as_i64().unwrap() >= 36,
        "datasource references by uid need schemaVersion 36 or later"
    );
    assert_eq!(dashboard["uid"], "mayfly-broker");
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));

    let variables = variables(&dashboard);
    let datasource = variables["datasource"];
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    assert_eq!(
        variables["job"]["definition"],
        "label_values(mayfly_ready, job)"
    );
    assert_eq!(
        variables["instance"]["definition"],
        r#"label_values(mayfly_ready{job=~"$job"}, instance)"#
    );
    let names: Vec<&str> = variables.keys().copied().collect();
    for (name, variable) in &variables {
        if variable["type"] == "query" {
            assert_eq!(variable["datasource"]["uid"], "${datasource}", "{name}");
            assert_eq!(variable["query"]["query"], variable["definition"], "{name}");
            let (selector, _) = label_values(variable["definition"].as_str().unwrap());
            substitute(selector, &names).unwrap();
        }
    }

    let all = panels(&dashboard);
    let ids: BTreeSet<i64> = all.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "panel ids are not unique");
    for panel in &all {
        assert!(!title(panel).is_empty(), "a panel without a title: {panel}");
        let (x, y, w, h) = grid(panel);
        assert!(
            x >= 0 && y >= 0 && w >= 1 && h >= 1 && x + w <= 24,
            "{}: gridPos {:?}",
            title(panel),
            grid(panel)
        );
    }
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert!(
                !overlap(grid(a), grid(b)),
                "{} and {} overlap",
                title(a),
                title(b)
            );
        }
    }

    let query_panels = query_panels(&dashboard);
    assert!(query_panels.len() >= 20, "{} panels", query_panels.len());
    for panel in &query_panels {
        let title = title(panel);
        assert_eq!(panel["datasource"]["type"], "prometheus", "{title}");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        assert!(
            panel["description"].as_str().is_some_and(|d| d.len() >= 40),
            "{title}: an operator needs a description saying what a bad value means"
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no targets");
        let ref_ids: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(ref_ids.len(), targets.len(), "{title}: refIds repeat");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "{title}: a target without expr");
            substitute(expr, &names).unwrap();
        }
        let with_data = PANELS_WITH_DATA.contains(&title);
        let without = PANELS_WITHOUT_DATA.iter().any(|(t, _)| *t == title);
        assert!(
            with_data != without,
            "{title}: in exactly one of PANELS_WITH_DATA and PANELS_WITHOUT_DATA"
        );
    }
    let titles: BTreeSet<&str> = query_panels.iter().map(|p| title(p)).collect();
    for listed in PANELS_WITH_DATA
        .iter()
        .chain(PANELS_WITHOUT_DATA.iter().map(|(t, _)| t))
    {
        assert!(titles.contains(listed), "no panel is titled {listed}");
    }
    // Each pending metric is on the dashboard (else its entry is dead).
    let named: BTreeSet<String> = all_queries(&dashboard)
        .iter()
        .flat_map(|(_, expr)| metric_names(expr))
        .map(|name| family(&name).to_owned())
        .collect();
    for pending in PENDING_METRICS {
        assert!(named.contains(*pending), "{pending} is on no panel");
    }

    // Negative controls: the checks above can fail.
    assert!(overlap((0, 0, 12, 8), (8, 4, 8, 8)));
    assert!(!overlap((0, 0, 12, 8), (12, 0, 12, 8)));
    assert!(substitute(r#"up{job="$job"}"#, &names).is_err());
    assert!(substitute(r#"up{job=~"$jbo"}"#, &names).is_err());
    assert_eq!(
        substitute(r#"rate(up{job=~"$job"}[$__rate_interval])"#, &names).unwrap(),
        r#"rate(up{job=~".*"}[1m])"#
    );
}

/// A broker on Redis (so that the shared-store gauges exist) at `url`,
/// under the guard's prefix.
async fn broker_on_redis(url: &str, guard: &PrefixGuard) -> TestBroker {
    let (url, prefix) = (url.to_owned(), guard.prefix.clone());
    TestBroker::start_configured(move |config| {
        config.store = mayfly::config::StoreLocation::Redis {
            url: url.clone(),
            prefix: prefix.clone(),
        };
    })
    .await
}

/// [`known_traffic`], a JWT-SVID validated, and a cache hit. Returns the
/// SVID.
async fn traffic(broker: &TestBroker) -> common::Svid {
    let svid = known_traffic(broker).await;
    let minted = broker.mint(&svid, "db", 60).await.unwrap();
    broker.validate(&minted.token, "db").await.unwrap();
    svid
}

/// The broker's exposition once the shared-store gauges are in it (the
/// change feed connects shortly after start).
async fn exposition(broker: &mut TestBroker) -> String {
    let started = Instant::now();
    loop {
        let (status, body) = broker.http_get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        let ready = [
            "mayfly_store_connected",
            "mayfly_revocation_staleness_seconds",
        ]
        .iter()
        .all(|name| body.lines().any(|line| line.starts_with(name)));
        if ready || started.elapsed() > Duration::from_secs(20) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_names_is_exported() {
    let Some(url) = redis_url_or_skip() else {
        return;
    };
    let guard = PrefixGuard::new(&url, "dashboard-names");
    let mut broker = broker_on_redis(&url, &guard).await;
    traffic(&broker).await;
    let body = exposition(&mut broker).await;
    broker.stop().await;
    drop(guard);

    let exported = exported_families(&body);
    let dashboard = dashboard();
    let queries = all_queries(&dashboard);
    let named: BTreeSet<String> = queries
        .iter()
        .flat_map(|(_, expr)| metric_names(expr))
        .collect();
    // Positive control for the parser: it finds the names there are.
    assert!(named.len() >= 18, "{named:?}");
    for name in [
        "mayfly_credentials_total",
        "rpc_server_call_duration_seconds_bucket",
        "mayfly_audit_commit_records_sum",
    ] {
        assert!(named.contains(name), "{name} not found in {named:?}");
    }
    let unknown = unknown_metrics(queries.iter().map(|(_, expr)| expr.as_str()), &exported);
    assert!(
        unknown.is_empty(),
        "the dashboard names {unknown:?}, which the broker does not export:\n{body}"
    );
    for pending in PENDING_METRICS {
        assert!(
            !exported.contains(*pending),
            "{pending} is exported now: remove it from PENDING_METRICS in tests/dashboard.rs"
        );
    }

    // Negative control: a made-up name is caught, wherever it stands.
    let made_up = unknown_metrics(
        [
            r#"sum by (kind) (rate(mayfly_made_up_total{job=~".*",cache="mayfly_entries"}[1m])) / mayfly_entries"#,
        ],
        &exported,
    );
    assert_eq!(made_up, BTreeSet::from(["mayfly_made_up_total".to_owned()]));
}

#[tokio::test]
async fn every_panel_query_runs_on_a_real_prometheus() {
    let Some(binary) = tool("prometheus") else {
        return;
    };
    let Some(url) = redis_url_or_skip() else {
        return;
    };
    let guard = PrefixGuard::new(&url, "dashboard-prometheus");
    let mut broker = broker_on_redis(&url, &guard).await;
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(binary, dir.path(), broker.server().http_addr());
    let port = prometheus.port;
    let log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();

    // Traffic once Prometheus scrapes, and more once it has seen that, so
    // that counters move inside its rate windows. The deadlines only bound
    // a broken setup.
    let scraped = r#"up{job="mayfly"}"#;
    assert!(
        poll(|| async { prometheus_value(port, scraped).await == Some(1.0) }).await,
        "the broker was never scraped:\n{}",
        log()
    );
    let svid = traffic(&broker).await;
    // 1 X.509-SVID and 4 JWT-SVIDs granted.
    let granted = r#"sum(mayfly_credentials_total{job="mayfly",outcome="granted"})"#;
    assert!(
        poll(|| async { prometheus_value(port, granted).await == Some(5.0) }).await,
        "prometheus log:\n{}",
        log()
    );
    for _ in 0..2 {
        broker.mint(&svid, "db", 60).await.unwrap();
    }

    let dashboard = dashboard();
    let names: Vec<&str> = variables(&dashboard).keys().copied().collect();
    let queries: Vec<(String, String)> = all_queries(&dashboard)
        .into_iter()
        .map(|(title, expr)| {
            let expr = substitute(&expr, &names).unwrap();
            (title, expr)
        })
        .collect();
    let must_have_data = |title: &str| {
        PANELS_WITH_DATA.contains(&title) || title == "variable job" || title == "variable instance"
    };
    let granting = r#"sum(rate(mayfly_credentials_total{job="mayfly",outcome="granted"}[1m]))"#;
    // Settled once every panel that must have data has it and the grants
    // after the first scrape show as a rate; what is missing otherwise is
    // named by the assertions below.
    let settled = poll(|| async {
        for (_, expr) in queries.iter().filter(|(title, _)| must_have_data(title)) {
            if !prometheus_query(port, expr)
                .await
                .is_ok_and(|data| has_series(&data))
            {
                return false;
            }
        }
        prometheus_value(port, granting)
            .await
            .is_some_and(|rate| rate > 0.0)
    })
    .await;

    for (title, expr) in &queries {
        let data = prometheus_query(port, expr)
            .await
            .unwrap_or_else(|error| panic!("{title}: {expr}: {error}"));
        assert_eq!(data["resultType"], "vector", "{title}: {expr}");
        if must_have_data(title) {
            assert!(has_series(&data), "{title}: {expr} is empty");
        }
    }
    assert!(settled, "no grant rate above 0:\n{}", log());
    // What two panels say, not only that they say something.
    let ready = queries.iter().find(|(title, _)| title == "Ready").unwrap();
    assert_eq!(prometheus_value(port, &ready.1).await, Some(1.0));
    let issued = &queries
        .iter()
        .find(|(title, _)| title == "Credentials issued")
        .unwrap()
        .1;
    let series = prometheus_query(port, issued).await.unwrap();
    let kinds: BTreeSet<(&str, &str)> = series["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["kind"].as_str().unwrap(),
                s["metric"]["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(kinds.contains(&("jwt", "granted")), "{series}");
    assert!(kinds.contains(&("x509", "refused")), "{series}");

    // Negative controls: the same function reports a broken expression as
    // Prometheus' error, and a made-up metric returns no series.
    let broken = prometheus_query(port, "sum(rate(mayfly_credentials_total[1m])").await;
    assert!(
        broken
            .as_ref()
            .is_err_and(|error| error.contains("bad_data") && error.contains("parse error")),
        "{broken:?}"
    );
    let made_up = prometheus_query(port, "sum by (kind) (rate(mayfly_made_up_total[1m]))")
        .await
        .unwrap();
    assert!(!has_series(&made_up), "{made_up}");

    drop(prometheus);
    broker.stop().await;
    drop(guard);
}

fn has_series(data: &Value) -> bool {
    data["result"].as_array().is_some_and(|r| !r.is_empty())
}

/// Whether `check` passed within 60 seconds, tried every 250 ms.
async fn poll<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}
