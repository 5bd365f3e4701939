//! Redis for tests: the shared server (`MAYFLY_TEST_REDIS`, default
//! `redis://127.0.0.1:6379`) with a unique key prefix per test, or a private
//! `redis-server` that a test may stop and restart.
//!
//! Without Redis (or without the `redis-server` binary) a test is skipped
//! with a note on stderr, except under `CI=true`, where it fails: CI must
//! not pass by testing nothing.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared server's URL when none is configured.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// How long to wait for a server to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// Fails the test under `CI=true`; otherwise notes the skip on stderr.
/// Returns `None` so callers can `let Some(..) = .. else { return };`.
fn skip<T>(why: &str) -> Option<T> {
    if in_ci() {
        panic!("{why}; CI=true, so Redis tests must run, not skip");
    }
    // Straight to stderr: the test harness captures `eprintln!`, and a skip
    // should be seen.
    let _ = writeln!(
        std::io::stderr(),
        "skipping: {why} (set CI=true to make this a failure)"
    );
    None
}

/// The shared test server's URL (`MAYFLY_TEST_REDIS`, default
/// `redis://127.0.0.1:6379`), or `None` (the test returns early) when it
/// does not answer PING. Panics instead under `CI=true`.
pub fn redis_url_or_skip() -> Option<String> {
    let url = std::env::var("MAYFLY_TEST_REDIS").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
    match ping(&url) {
        Ok(()) => Some(url),
        Err(error) => skip(&format!("no Redis answers at MAYFLY_TEST_REDIS ({error})")),
    }
}

/// PINGs the server at `url` with a short timeout.
fn ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|error| error.to_string())?;
    let mut connection = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(|error| error.to_string())?;
    redis::cmd("PING")
        .query::<String>(&mut connection)
        .map(drop)
        .map_err(|error| error.to_string())
}

/// A key prefix no other test uses.
pub fn unique_prefix(test: &str) -> String {
    let mut bytes = [0u8; 6];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    format!("mayfly-test:{test}:{}", hex::encode(bytes))
}

/// Deletes every key under `{prefix}:` (best effort), e.g. from a guard's
/// `Drop`, so that it also runs when the test panics.
pub fn delete_prefix(url: &str, prefix: &str) {
    let attempt = || -> redis::RedisResult<()> {
        let client = redis::Client::open(url)?;
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", escape_glob(prefix)))
            .query(&mut connection)?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(keys).exec(&mut connection)?;
        }
        Ok(())
    };
    if let Err(error) = attempt() {
        eprintln!("could not clean up redis keys under {prefix}: {error}");
    }
}

fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Deletes a test's keys when dropped.
pub struct PrefixGuard {
    pub url: String,
    pub prefix: String,
}

impl PrefixGuard {
    /// A fresh prefix for `test` on the server at `url`.
    pub fn new(url: &str, test: &str) -> Self {
        PrefixGuard {
            url: url.to_owned(),
            prefix: unique_prefix(test),
        }
    }

    /// The full name of key `name` under this prefix, as the store spells it.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// A plain connection, to write behind the store's back.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        delete_prefix(&self.url, &self.prefix);
    }
}

/// How often [`Replicas::b`]'s change feed polls: short, so that a test
/// waiting for a poll waits less.
pub const FEED_POLL: Duration = Duration::from_millis(100);

/// Two connections to the shared test server under one fresh prefix: two
/// replicas sharing a store.
pub struct Replicas {
    pub a: mayfly::store::RedisStore,
    /// Its change feed polls every [`FEED_POLL`].
    pub b: mayfly::store::RedisStore,
    /// The prefix, whose keys are deleted on drop.
    pub keys: PrefixGuard,
}

impl Replicas {
    /// `None` when the test is skipped (no Redis, not in CI).
    pub async fn connect(test: &str) -> Option<Replicas> {
        use mayfly::store::RedisStore;
        let url = redis_url_or_skip()?;
        let keys = PrefixGuard::new(&url, test);
        let a = RedisStore::connect(&url, &keys.prefix).await.unwrap();
        let b = RedisStore::connect(&url, &keys.prefix)
            .await
            .unwrap()
            .with_poll_interval(FEED_POLL);
        Some(Replicas { a, b, keys })
    }
}

/// A private `redis-server` on a free loopback port, without persistence,
/// killed on drop. [`TestRedis::stop`] and [`TestRedis::restart`] (same
/// port, empty data) simulate an outage.
pub struct TestRedis {
    port: u16,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl TestRedis {
    /// Starts a server, or returns `None` (the test returns early) when the
    /// `redis-server` binary (or `MAYFLY_TEST_REDIS_SERVER`) is missing.
    /// Panics instead under `CI=true`.
    pub fn start() -> Option<TestRedis> {
        Self::start_with(&[])
    }

    /// [`TestRedis::start`] with extra server arguments, e.g.
    /// `["--requirepass", "secret"]`.
    pub fn start_with(extra_args: &[&str]) -> Option<TestRedis> {
        let mut redis = TestRedis {
            port: free_port(),
            extra_args: extra_args.iter().map(|&arg| arg.to_owned()).collect(),
            child: None,
        };
        match redis.spawn() {
            Ok(()) => Some(redis),
            Err(error) if error.kind() == ErrorKind::NotFound => {
                skip(&format!("{} is not installed", server_binary()))
            }
            Err(error) => panic!("cannot start {}: {error}", server_binary()),
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (as a crash would) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with empty data, and waits
    /// until it answers PING.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn()
            .unwrap_or_else(|error| panic!("cannot restart {}: {error}", server_binary()));
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new(server_binary())
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().display().to_string()])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        self.wait_until_ready();
        Ok(())
    }

    /// Waits until the server answers PING (or, with `--requirepass`, asks
    /// for a password: it is up).
    fn wait_until_ready(&mut self) {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            if raw_ping(address).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within {READY_TIMEOUT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The server binary: `MAYFLY_TEST_REDIS_SERVER`, or `redis-server` on PATH.
fn server_binary() -> String {
    std::env::var("MAYFLY_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Sends PING in the inline protocol and accepts `+PONG` or an
/// authentication error (the server is up, it just wants a password).
fn raw_ping(address: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0u8; 64];
    let read = stream.read(&mut reply)?;
    let reply = &reply[..read];
    if reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(reply)
        )))
    }
}
