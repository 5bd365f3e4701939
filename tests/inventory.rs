//! `mayfly report inventory` against a real broker on a clock the test
//! controls: a fleet of entries is driven into every governance state
//! (active, expiring, expired, dormant, disabled, revoked by entry and by
//! SPIFFE ID, review overdue), and the real CLI binary reports it.
//!
//! The JSON and CSV reports are read twice: by the test (serde_json, and the
//! raw text) and by Python's `json` and `csv` modules as an independent
//! reader. The HTML report is rendered by headless Chromium: the table is
//! checked in the DOM the browser built, and a screenshot is checked to be a
//! PNG of the window's size that is not blank (next to a blank page as the
//! control). Filters each run next to the unfiltered control.
//!
//! Python 3 (stdlib only) is required. Chromium (`chromium` or
//! `chromium-browser`) is required under `CI=true`; elsewhere the HTML test
//! says why it skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{TRUST_DOMAIN, TestBroker};
use mayfly_sdk::clock::rfc3339;
use mayfly_sdk::proto::v1 as pb;
use serde_json::Value;
use tonic::Code;

const MAYFLY: &str = env!("CARGO_BIN_EXE_mayfly");
const DAY: u64 = 86_400;

/// An owner and purpose that would be markup, quotes and CSV separators if
/// any format let them through unescaped; the purpose is also a spreadsheet
/// formula.
const HOSTILE_OWNER: &str = "<script>alert(\"owned\")</script>";
const HOSTILE_PURPOSE: &str = "=1+1, say \"hi\", then 'bye' & <b>leave</b>";

/// The fleet's entries by short name, and the states each must be in at
/// the report's time (day 40).
const EXPECTED: [(&str, &[&str]); 9] = [
    ("active", &["active"]),
    ("expiring", &["expiring"]),
    ("expired", &["expired"]),
    ("dormant", &["dormant"]),
    ("disabled", &["disabled"]),
    ("revoked-entry", &["revoked"]),
    ("revoked-id", &["revoked"]),
    ("overdue", &["review-overdue"]),
    ("hostile", &["active"]),
];

fn spiffe_id(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/inventory/{name}")
}

/// A broker on the manual clock (dormant after 30 days, reviews every 90)
/// with one entry in each state at `t0` + 40 days.
struct Fleet {
    broker: TestBroker,
    t0: i64,
}

fn days(n: u64) -> i64 {
    i64::try_from(n * DAY).unwrap()
}

async fn fleet() -> Fleet {
    let broker = TestBroker::start_on_manual_clock(|config| {
        // The periodic sweep never runs within a test (default actions
        // only report anyway); dormancy is on.
        config.governance.sweep_every = Duration::from_secs(DAY);
        config.governance.dormant_after = Some(Duration::from_secs(30 * DAY));
    })
    .await;
    let t0 = broker.clock_dyn().unix_now();
    let mut ids = BTreeMap::new();
    for (name, _) in EXPECTED {
        let audiences: &[&str] = if name == "active" {
            &["orders", "ledger"]
        } else {
            &["orders"]
        };
        let mut spec = TestBroker::entry_spec(&format!("/inventory/{name}"), audiences, &[]);
        spec.expires_at = Some(
            t0 + match name {
                "expiring" => days(50),
                "expired" => days(30),
                _ => days(365),
            },
        );
        match name {
            "overdue" => spec.review_every_seconds = Some(30 * DAY),
            "dormant" => {
                spec.owner = Some("team-b".into());
                spec.environment = Some("prod".into());
                spec.data_class = Some("pii".into());
            }
            "hostile" => {
                spec.owner = Some(HOSTILE_OWNER.into());
                spec.purpose = Some(HOSTILE_PURPOSE.into());
            }
            _ => {}
        }
        let entry = broker.create_entry_from(spec).await.unwrap();
        ids.insert(name, entry.id);
    }

    // Day 0: the active entry mints JWT-SVIDs (now, while the broker's
    // clock and the TLS stack's agree on the client SVID's validity).
    let svid = attest(&broker, &ids["active"]).await;
    for audience in ["orders", "orders", "ledger"] {
        broker.mint(&svid, audience, 0).await.unwrap();
    }
    // Day 20: the one that expires on day 30 mints last, so that on day 40
    // it is expired but not dormant.
    broker.clock.advance(Duration::from_secs(20 * DAY));
    attest(&broker, &ids["expired"]).await;
    // Day 35: every other entry but the dormant one mints.
    broker.clock.advance(Duration::from_secs(15 * DAY));
    for name in [
        "active",
        "expiring",
        "disabled",
        "revoked-entry",
        "revoked-id",
        "overdue",
        "hostile",
    ] {
        attest(&broker, &ids[name]).await;
    }
    broker
        .admin()
        .await
        .disable_entry(pb::DisableEntryRequest {
            id: ids["disabled"].clone(),
            reason: "owner left the company".into(),
        })
        .await
        .unwrap();
    let admin = || async { broker.admin().await };
    common::revoke_via(admin().await, "entry", &ids["revoked-entry"], "key leaked")
        .await
        .unwrap();
    common::revoke_via(
        admin().await,
        "spiffe-id",
        &spiffe_id("revoked-id"),
        "service retired",
    )
    .await
    .unwrap();
    broker.clock.advance(Duration::from_secs(5 * DAY));
    Fleet { broker, t0 }
}

async fn attest(broker: &TestBroker, entry_id: &str) -> common::Svid {
    let token = broker.join_token(entry_id, 0).await;
    broker.attest(&token).await.unwrap()
}

/// Runs the real `mayfly` binary against the broker's admin socket (off the
/// runtime's threads: the broker answers on them).
async fn mayfly(fleet: &Fleet, args: &[&str]) -> Output {
    let data_dir = fleet.broker.data_dir();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(MAYFLY)
            .args(&args)
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("MAYFLY_DATA_DIR")
            .env_remove("MAYFLY_SERVER")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
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

/// Runs a Python 3 script (stdlib only) with `input` on its stdin and
/// parses the JSON it prints.
fn python(script: &str, input: &[u8]) -> Value {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is required by tests/inventory.rs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Python's reading of a JSON report: spiffe_id → the fields checked.
const PY_JSON: &str = r#"
import json, sys
doc = json.load(sys.stdin)
out = {"keys": sorted(doc.keys()), "rows": {}}
for i in doc["identities"]:
    out["rows"][i["spiffe_id"]] = {
        "states": i["states"], "owner": i["owner"], "purpose": i["purpose"],
        "mint_count": i["mint_count"], "last_minted_at": i["last_minted_at"],
        "audiences": {a["audience"]: a["mint_count"] for a in i["audiences"]},
    }
print(json.dumps(out))
"#;

/// Python's reading of a CSV report: the header and every row as a dict.
const PY_CSV: &str = r#"
import csv, io, json, sys
reader = csv.DictReader(io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline=""))
rows = list(reader)
print(json.dumps({"header": reader.fieldnames, "rows": rows}))
"#;

fn by_spiffe_id(rows: &[Value]) -> BTreeMap<String, Value> {
    rows.iter()
        .map(|row| (row["spiffe_id"].as_str().unwrap().to_owned(), row.clone()))
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_and_csv_reports_show_every_state_and_usage() {
    let fleet = fleet().await;
    let at = |day: u64| rfc3339(fleet.t0 + days(day));

    // JSON, as the test reads it.
    let json = ok(&mayfly(&fleet, &["report", "inventory", "--format", "json"]).await);
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert!(
        doc["generated_at"].as_str().unwrap().ends_with('Z'),
        "{doc}"
    );
    assert!(
        doc["broker"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{doc}"
    );
    assert_eq!(doc["filters"]["owner"], Value::Null);
    let rows = by_spiffe_id(doc["identities"].as_array().unwrap());
    assert_eq!(rows.len(), EXPECTED.len(), "{json}");
    for (name, states) in EXPECTED {
        let row = &rows[&spiffe_id(name)];
        assert_eq!(strings(&row["states"]), states, "{name}: {row}");
    }
    let active = &rows[&spiffe_id("active")];
    assert_eq!(active["mint_count"], 5, "two X509-SVIDs, three JWT-SVIDs");
    assert_eq!(active["x509_mint_count"], 2);
    assert_eq!(active["last_minted_at"], at(35));
    assert_eq!(active["created_at"], at(0));
    assert_eq!(active["expires_at"], at(365));
    let audiences: BTreeMap<String, (u64, Value)> = active["audiences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["audience"].as_str().unwrap().to_owned(),
                (
                    a["mint_count"].as_u64().unwrap(),
                    a["last_minted_at"].clone(),
                ),
            )
        })
        .collect();
    assert_eq!(audiences["orders"], (2, Value::from(at(0))));
    assert_eq!(audiences["ledger"], (1, Value::from(at(0))));
    let dormant = &rows[&spiffe_id("dormant")];
    assert_eq!(dormant["last_minted_at"], Value::Null, "never: null");
    assert_eq!(dormant["mint_count"], 0);
    assert_eq!(dormant["audiences"][0]["mint_count"], 0);
    assert_eq!(rows[&spiffe_id("expired")]["last_minted_at"], at(20));
    assert_eq!(rows[&spiffe_id("overdue")]["review_due_at"], at(30));
    assert_eq!(rows[&spiffe_id("hostile")]["owner"], HOSTILE_OWNER);

    // JSON, as Python reads it.
    let py = python(PY_JSON, json.as_bytes());
    assert_eq!(
        strings(&py["keys"]),
        ["broker", "filters", "generated_at", "identities"]
    );
    for (name, states) in EXPECTED {
        assert_eq!(strings(&py["rows"][spiffe_id(name)]["states"]), states);
    }
    let active = &py["rows"][spiffe_id("active")];
    assert_eq!(active["audiences"]["orders"], 2);
    assert_eq!(active["audiences"]["ledger"], 1);
    assert_eq!(
        py["rows"][spiffe_id("dormant")]["last_minted_at"],
        Value::Null
    );
    assert_eq!(py["rows"][spiffe_id("hostile")]["purpose"], HOSTILE_PURPOSE);

    // CSV: RFC 4180 lines, and Python's csv module reads back every value.
    let csv = ok(&mayfly(&fleet, &["report", "inventory", "--format", "csv"]).await);
    assert!(
        csv.starts_with("id,spiffe_id,owner,purpose,environment,data_class,kinds,audiences,")
            && csv.ends_with("\r\n"),
        "{csv}"
    );
    assert_eq!(csv.matches("\r\n").count(), EXPECTED.len() + 1, "{csv}");
    let py = python(PY_CSV, csv.as_bytes());
    let header = strings(&py["header"]);
    assert!(
        header.contains(&"audience_mint_counts".to_owned()),
        "{header:?}"
    );
    let rows = by_spiffe_id(py["rows"].as_array().unwrap());
    assert_eq!(rows.len(), EXPECTED.len());
    for (name, states) in EXPECTED {
        assert_eq!(rows[&spiffe_id(name)]["states"], states.join(";"), "{name}");
    }
    let active = &rows[&spiffe_id("active")];
    let mut counts: Vec<&str> = active["audience_mint_counts"]
        .as_str()
        .unwrap()
        .split(';')
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, ["ledger=1", "orders=2"]);
    assert_eq!(active["mint_count"], "5");
    assert_eq!(active["x509_mint_count"], "2");
    assert_eq!(active["last_minted_at"], at(35));
    assert_eq!(rows[&spiffe_id("dormant")]["last_minted_at"], "", "never");
    let hostile = &rows[&spiffe_id("hostile")];
    // The owner starts with no formula character: it is exactly as given.
    assert_eq!(hostile["owner"], HOSTILE_OWNER);
    // The purpose starts with `=`: a leading `'` makes a spreadsheet show it,
    // and the quotes and commas after it survive.
    assert_eq!(
        hostile["purpose"],
        format!("'{HOSTILE_PURPOSE}"),
        "defused, quotes and commas intact"
    );

    // The table: a header and one line per identity, states included.
    let table = ok(&mayfly(&fleet, &["report", "inventory"]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SPIFFE ID"), "{table}");
    assert_eq!(lines.len(), EXPECTED.len() + 1, "{table}");
    let overdue = lines
        .iter()
        .find(|l| l.contains(&spiffe_id("overdue")))
        .unwrap();
    assert!(overdue.contains("  review-overdue  "), "{overdue}");
    // Nothing is registered here: the last column flags the entry's audiences.
    assert!(overdue.ends_with("orders"), "{overdue}");
}

/// The SPIFFE IDs a JSON report with `filters` lists, sorted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_audiences_are_flagged_until_registered() {
    let broker = TestBroker::start().await;
    let spec = TestBroker::entry_spec("/billing/api", &["orders", "ledger"], &[]);
    broker.create_entry_from(spec).await.unwrap();
    let data_dir = broker.data_dir();
    let report = |format: &'static str| {
        let data_dir = data_dir.clone();
        tokio::task::spawn_blocking(move || {
            let output = Command::new(MAYFLY)
                .args(["report", "inventory", "--format", format, "--data-dir"])
                .arg(&data_dir)
                .env_remove("MAYFLY_DATA_DIR")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            ok(&output)
        })
    };
    let flags = |json: &str| -> (Vec<String>, Vec<(String, Value)>) {
        let report: Value = serde_json::from_str(json).unwrap();
        let identity = &report["identities"][0];
        let registered = identity["audiences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["audience"].as_str().unwrap().to_owned(),
                    a["registered"].clone(),
                )
            })
            .collect();
        (strings(&identity["unregistered_audiences"]), registered)
    };
    // Nothing is registered: both audiences are flagged, in JSON and CSV.
    let (unregistered, registered) = flags(&report("json").await.unwrap());
    assert_eq!(unregistered, ["ledger", "orders"]);
    assert!(
        registered.iter().all(|(_, r)| *r == Value::Bool(false)),
        "{registered:?}"
    );
    let csv = python(PY_CSV, report("csv").await.unwrap().as_bytes());
    let row = &csv["rows"][0];
    assert_eq!(
        row["spiffe_id"],
        format!("spiffe://{TRUST_DOMAIN}/billing/api")
    );
    assert_eq!(row["unregistered_audiences"], "ledger;orders", "{csv}");

    // Registering one takes its flag away; the other stays flagged.
    broker
        .admin()
        .await
        .create_audience(pb::CreateAudienceRequest {
            name: "orders".into(),
            owner: "team-orders".into(),
            environment: "test".into(),
            data_class: "internal".into(),
            description: String::new(),
        })
        .await
        .unwrap();
    let (unregistered, registered) = flags(&report("json").await.unwrap());
    assert_eq!(unregistered, ["ledger"]);
    assert!(
        registered.contains(&("orders".to_owned(), Value::Bool(true))),
        "{registered:?}"
    );
    assert!(
        registered.contains(&("ledger".to_owned(), Value::Bool(false))),
        "{registered:?}"
    );
    let html = report("html").await.unwrap();
    assert!(html.contains("ledger=0 (unregistered)"), "{html}");
    assert!(!html.contains("orders=0 (unregistered)"), "{html}");
}

async fn listed(fleet: &Fleet, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["report", "inventory", "--format", "json"];
    args.extend_from_slice(filters);
    let doc: Value = serde_json::from_str(&ok(&mayfly(fleet, &args).await)).unwrap();
    let mut ids: Vec<String> = doc["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["spiffe_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_the_report_and_a_bad_state_is_refused() {
    let fleet = fleet().await;
    // Control: no filter lists everything.
    assert_eq!(listed(&fleet, &[]).await.len(), EXPECTED.len());
    let dormant = vec![spiffe_id("dormant")];
    assert_eq!(listed(&fleet, &["--owner", "team-b"]).await, dormant);
    assert_eq!(listed(&fleet, &["--environment", "prod"]).await, dormant);
    assert_eq!(listed(&fleet, &["--data-class", "pii"]).await, dormant);
    assert!(
        listed(&fleet, &["--owner", "nobody"]).await.is_empty(),
        "a filter that matches nothing lists nothing"
    );
    let revoked = vec![spiffe_id("revoked-entry"), spiffe_id("revoked-id")];
    assert_eq!(listed(&fleet, &["--state", "revoked"]).await, revoked);
    let mut either = revoked.clone();
    either.push(spiffe_id("expired"));
    either.sort();
    assert_eq!(
        listed(&fleet, &["--state", "revoked", "--state", "expired"]).await,
        either,
        "any of the given states"
    );
    assert_eq!(
        listed(&fleet, &["--state", "active"]).await,
        [spiffe_id("active"), spiffe_id("hostile")]
    );
    // Filters combine.
    assert!(
        listed(&fleet, &["--owner", "team-b", "--state", "active"])
            .await
            .is_empty()
    );
    // The JSON says which filters were used.
    let doc: Value = serde_json::from_str(&ok(&mayfly(
        &fleet,
        &[
            "report",
            "inventory",
            "--format",
            "json",
            "--state",
            "dormant",
        ],
    )
    .await))
    .unwrap();
    assert_eq!(strings(&doc["filters"]["states"]), ["dormant"]);

    // A state that does not exist: a usage error naming the valid ones.
    let refused = mayfly(&fleet, &["report", "inventory", "--state", "stale"]).await;
    assert_eq!(refused.status.code(), Some(64), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("stale") && stderr.contains("review-overdue"),
        "{stderr}"
    );
    assert!(refused.stdout.is_empty());

    // The server refuses it too, as the client's mistake; control: a known
    // state is answered.
    let mut admin = fleet.broker.admin().await;
    let request = |state: &str| pb::ListEntriesRequest {
        page_size: Some(0),
        states: vec![state.into()],
        ..Default::default()
    };
    let known = admin.list_entries(request("dormant")).await.unwrap();
    assert_eq!(known.into_inner().entries.len(), 1);
    let unknown = admin.list_entries(request("stale")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument, "{unknown:?}");
    assert!(unknown.message().contains("review-overdue"), "{unknown:?}");

    // GetEntry carries the states and per-audience usage too.
    let entry = admin
        .get_entry(pb::GetEntryRequest {
            id: spiffe_id("active"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(entry.states, ["active"]);
    let usage: BTreeMap<String, u64> = entry
        .audience_usage
        .iter()
        .map(|u| (u.audience.clone(), u.mint_count))
        .collect();
    assert_eq!(
        usage,
        BTreeMap::from([("ledger".into(), 1), ("orders".into(), 2)])
    );
    assert_eq!(entry.x509_mint_count, 2);
}

// ---------------------------------------------------------------------------
// The HTML report in a real browser.

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// Chromium on the PATH, or `None` (a panic under `CI=true`).
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        let why = "chromium (or chromium-browser) is not installed: apt-get install chromium";
        assert!(!ci(), "{why}; CI=true, so the HTML report must be rendered");
        eprintln!("skipping the HTML rendering test: {why}");
    }
    found
}

/// Runs headless Chromium on `page` with `args`, its profile in `profile`.
fn run_chromium(chromium: &Path, profile: &Path, args: &[String], page: &Path) -> Output {
    let output = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .env("HOME", profile)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Python's reading of the DOM Chromium dumped: the cells of each row of
/// the tables `inventory` and `state-counts`, and how many elements could
/// run or load anything.
const PY_DOM: &str = r#"
import json, sys
from html.parser import HTMLParser

class Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.current, self.row, self.cell = {}, None, None, None
        self.active = {"script": 0, "img": 0, "link": 0, "iframe": 0, "object": 0}
    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in self.active:
            self.active[tag] += 1
        if tag == "table":
            self.current = attrs.get("id")
            self.tables[self.current] = []
        elif tag == "tr" and self.current is not None:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = ""
    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.tables[self.current].append(self.row)
            self.row = None
        elif tag == "table":
            self.current = None
    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

parser = Tables()
parser.feed(sys.stdin.read())
print(json.dumps({"tables": parser.tables, "active": parser.active}))
"#;

/// Python's reading of a PNG: signature, IHDR size, and how many distinct
/// byte values its decompressed image data holds (a blank page: a few).
const PY_PNG: &str = r#"
import json, struct, sys, zlib
data = sys.stdin.buffer.read()
out = {"signature": data[:8] == b"\x89PNG\r\n\x1a\n"}
pos, idat = 8, b""
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        out["width"], out["height"] = struct.unpack(">II", body[:8])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + length
out["distinct"] = len(set(zlib.decompress(idat)))
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_in_chromium_escaped_and_self_contained() {
    let Some(chromium) = chromium() else {
        return;
    };
    let fleet = fleet().await;
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("inventory.html");
    let out = page.to_str().unwrap().to_owned();
    ok(&mayfly(
        &fleet,
        &["report", "inventory", "--format", "html", "--out", &out],
    )
    .await);
    let html = std::fs::read_to_string(&page).unwrap();

    // The file: a CSP that loads nothing, no script, the hostile owner
    // escaped (and, as control, present escaped).
    assert!(
        html.contains(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
             style-src 'unsafe-inline'\">"
        ),
        "{html}"
    );
    assert!(!html.to_lowercase().contains("<script"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;"));
    for external in ["http://", "https://", "src=", "<link", "url("] {
        assert!(!html.contains(external), "{external} in {html}");
    }

    // The DOM the browser built from it.
    let profile = dir.path().join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    let dom = run_chromium(&chromium, &profile, &["--dump-dom".into()], &page).stdout;
    let read = python(PY_DOM, &dom);
    assert_eq!(read["active"]["script"], 0, "{read}");
    assert_eq!(read["active"]["img"], 0);
    assert_eq!(read["active"]["link"], 0);
    let table = read["tables"]["inventory"].as_array().unwrap();
    let header = strings(&table[0]);
    assert_eq!(header[0], "SPIFFE ID");
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (owner, purpose, states) = (column("Owner"), column("Purpose"), column("States"));
    let rows: BTreeMap<String, Vec<String>> = table[1..]
        .iter()
        .map(|row| {
            let cells = strings(row);
            (cells[0].clone(), cells)
        })
        .collect();
    assert_eq!(rows.len(), EXPECTED.len(), "{read}");
    for (name, expected) in EXPECTED {
        assert_eq!(rows[&spiffe_id(name)][states], expected.join(" "), "{name}");
    }
    // The hostile values are text in the page, exactly as given.
    let hostile = &rows[&spiffe_id("hostile")];
    assert_eq!(hostile[owner], HOSTILE_OWNER);
    assert_eq!(hostile[purpose], HOSTILE_PURPOSE);
    let counts: BTreeMap<String, String> = read["tables"]["state-counts"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|row| {
            let cells = strings(row);
            (cells[0].clone(), cells[1].clone())
        })
        .collect();
    assert_eq!(counts["revoked"], "2");
    assert_eq!(counts["active"], "2");
    assert_eq!(counts["dormant"], "1");
    // No break-glass grant here: both of its states are counted, at zero.
    assert_eq!(counts["breakglass"], "0");
    assert_eq!(counts["breakglass-review-overdue"], "0");
    // Every state, and the identities with an unregistered audience (all:
    // nothing is registered here).
    assert_eq!(counts.len(), 10, "every state counted: {counts:?}");
    assert_eq!(counts["unregistered audience"], EXPECTED.len().to_string());

    // A screenshot: a PNG of the window's size with something drawn on it,
    // next to a blank page as the control of the blankness check.
    let shoot = |page: &Path, name: &str| {
        let png = dir.path().join(name);
        run_chromium(
            &chromium,
            &profile,
            &[
                format!("--screenshot={}", png.display()),
                "--window-size=1400,900".into(),
            ],
            page,
        );
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((width, height), (1400, 900));
        python(PY_PNG, &bytes)
    };
    let report = shoot(&page, "inventory.png");
    assert_eq!(report["signature"], true);
    assert_eq!(
        (report["width"].clone(), report["height"].clone()),
        (1400.into(), 900.into())
    );
    let blank_page = dir.path().join("blank.html");
    std::fs::write(&blank_page, "<!DOCTYPE html><title>blank</title>").unwrap();
    let blank = shoot(&blank_page, "blank.png");
    let (drawn, empty) = (
        report["distinct"].as_u64().unwrap(),
        blank["distinct"].as_u64().unwrap(),
    );
    assert!(empty <= 8, "a blank page has few byte values: {blank}");
    assert!(drawn >= 32, "the report draws text and colours: {report}");
}
