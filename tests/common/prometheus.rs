//! Prometheus for tests: the `prometheus` and `promtool` binaries from
//! Debian's `prometheus` package, a server of our own scraping a test
//! broker every second, its HTTP query API, and a broker with known traffic
//! to read metrics from.
//!
//! Without the binaries a test says so and passes, except under `CI=true`,
//! where it fails: CI must not pass by testing nothing (`.ci/run` installs
//! the package when missing).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Svid, TestBroker};

/// A tool from Debian's `prometheus` package, or `None` (a failure under CI).
pub fn tool(name: &str) -> Option<&'static str> {
    let path: &'static str = match name {
        "promtool" => "promtool",
        _ => "prometheus",
    };
    let found = Command::new(path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{name} is not installed (Debian package prometheus; .ci/run installs it)"
    );
    eprintln!("skipping: {name} is not installed (apt-get install prometheus)");
    None
}

/// A broker with 3 JWT-SVIDs granted, 2 refused by policy (an audience the
/// entry does not allow) and 1 refused as unproven (a used join token).
pub async fn broker_with_known_traffic() -> TestBroker {
    let broker = TestBroker::start().await;
    known_traffic(&broker).await;
    broker
}

/// The traffic of [`broker_with_known_traffic`], on `broker`: one entry
/// (`/billing`, audience `db`), one X.509-SVID granted and one refused, 3
/// JWT-SVIDs for `db` granted (TTLs 60, 61, 62: three cache misses) and 2
/// for `payments` refused. Returns the SVID.
pub async fn known_traffic(broker: &TestBroker) -> Svid {
    let entry = broker.create_entry("/billing", &["db"]).await;
    let token = broker.join_token(&entry.id, 0).await;
    let svid = broker.attest(&token).await.unwrap();
    // The same join token again: refused, unproven.
    assert!(broker.attest(&token).await.is_err());
    for ttl in [60, 61, 62] {
        broker.mint(&svid, "db", ttl).await.unwrap();
    }
    for _ in 0..2 {
        let refused = broker.mint(&svid, "payments", 60).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    }
    svid
}

/// A free TCP port on 127.0.0.1 (bound, then released for Prometheus).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What Prometheus' instant query API answered for `query`: its `data`
/// (`resultType` and `result`) when the status is `success`, else the
/// error Prometheus gave (`bad_data: 1:5: parse error: ...`) or why there
/// was no answer (not started yet, say). Never panics, so callers can poll
/// while Prometheus starts.
pub async fn prometheus_query(port: u16, query: &str) -> Result<serde_json::Value, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let path = format!("/api/v1/query?query={}", percent_encode(query));
    // HTTP/1.0: no chunked body.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("send: {error}"))?;
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .map_err(|_| "no answer within 10 s".to_owned())?
    .map_err(|error| format!("read: {error}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not HTTP: {response}"))?;
    let status_line = head.lines().next().unwrap_or_default();
    // Errors come as JSON too (400 bad_data, 422 execution), with a status.
    let answer: serde_json::Value = serde_json::from_str(body)
        .map_err(|error| format!("{status_line}: not JSON ({error}): {body}"))?;
    if answer["status"] == "success" {
        Ok(answer["data"].clone())
    } else {
        Err(format!(
            "{}: {}",
            answer["errorType"].as_str().unwrap_or(status_line),
            answer["error"].as_str().unwrap_or(body)
        ))
    }
}

/// The value Prometheus' query API returns for `query`, if it has one.
pub async fn prometheus_value(port: u16, query: &str) -> Option<f64> {
    let data = prometheus_query(port, query).await.ok()?;
    let sample = data["result"].as_array()?.first()?;
    sample["value"][1].as_str()?.parse().ok()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server scraping `target` every second as job `mayfly`,
/// with its data and its log (`prometheus.log`) in `dir`. Dropping it kills
/// the server.
pub struct Prometheus {
    child: std::process::Child,
    pub port: u16,
}

impl Prometheus {
    pub fn start(binary: &str, dir: &Path, target: std::net::SocketAddr) -> Self {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: mayfly\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Prometheus { child, port }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
