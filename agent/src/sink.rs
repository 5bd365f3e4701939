//! The file sink: the agent keeps one identity's X509-SVID, trust bundle
//! and JWT-SVIDs in a directory, for programs that only read files (what
//! spiffe-helper does for SPIRE).
//!
//! Here the agent process itself is the workload. The sink writes the
//! identity named by [`FileSinkConfig::spiffe_id`] (`--write-spiffe-id`),
//! which must be an entry registered under this agent whose selectors the
//! agent process proves, exactly as a Workload API caller would have to:
//! the agent attests itself once at start (`unix:uid:…`, `unix:path:…`,
//! `unix:sha256:…` of its own executable). So registering
//!
//! ```text
//! mayfly entry create --spiffe-id spiffe://example.org/nginx \
//!     --parent spiffe://example.org/agent/node-1 --selector unix:uid:0 …
//! ```
//!
//! and running the agent as root with
//! `--write-dir /run/nginx/svid --write-spiffe-id spiffe://example.org/nginx`
//! keeps in `/run/nginx/svid`:
//!
//! | file | content | mode |
//! |---|---|---|
//! | `svid.pem` | the leaf certificate, then the intermediates | 0644 |
//! | `svid_key.pem` | its private key, PKCS#8 | 0600 |
//! | `bundle.pem` | the trust domain's root CAs | 0644 |
//! | `jwt_<audience>.token` | a JWT-SVID per [`FileSinkConfig::jwt_audiences`] | 0600 |
//!
//! The directory is created with mode 0700 if missing (an existing one
//! keeps its mode, so it may be shared with a group on purpose). Each file
//! is replaced atomically (a temporary file in the directory, flushed, then
//! renamed), and only when its content changed. The three X.509 files
//! together are not replaced atomically: the bundle goes first (it only
//! gains roots the new certificate may need), then the certificate, then
//! the key; the JWT-SVID files follow, and the on-renew command and signal
//! come after all of them.
//!
//! After a new X509-SVID or bundle was written, and only then, the sink
//! runs [`FileSinkConfig::on_renew_command`] (no shell) and sends
//! [`FileSinkConfig::on_renew_signal`]; the first write after the agent
//! starts counts. New JWT-SVIDs (each renewed at half its lifetime) do not
//! trigger them: a program reading a token file reads it when it needs it.
//!
//! Files are never deleted: if the entry goes away, the last files stay
//! until they expire, and the log says why nothing new comes.

mod notify;
mod writer;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use mayfly_sdk::SpiffeId;
use mayfly_sdk::files;
use mayfly_sdk::jwt::Audience;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use notify::{
    DEFAULT_COMMAND_TIMEOUT, ProcessId, RenewCommand, RenewSignal, Signal, SignalTarget,
};

use super::error::AgentError;
use super::jwt_issue::JwtIssuer;
use super::state::AgentState;
use super::workload_attest::{PeerCredentials, WorkloadAttestor};
use mayfly_sdk::Selector;
use mayfly_sdk::clock::Clock;
use notify::Notifier;
use writer::FileSink;

/// Prefix of a JWT-SVID file's name.
const JWT_FILE_PREFIX: &str = "jwt_";
/// Suffix of a JWT-SVID file's name.
const JWT_FILE_SUFFIX: &str = ".token";
/// The longest file name most file systems take.
const MAX_FILE_NAME: usize = 255;

/// What the file sink writes, where, and whom it tells.
#[derive(Debug, Clone)]
pub struct FileSinkConfig {
    /// The directory of the files; created with mode 0700 if missing. Not
    /// the agent's data directory, which holds the agent's own SVID under
    /// the same file names.
    pub dir: PathBuf,
    /// The identity to write: an entry registered under this agent whose
    /// selectors the agent process itself proves.
    pub spiffe_id: SpiffeId,
    /// A `jwt_<audience>.token` file is kept for each; the entry must allow
    /// the audience.
    pub jwt_audiences: Vec<SinkAudience>,
    /// Run after each new X509-SVID or bundle was written.
    pub on_renew_command: Option<RenewCommand>,
    /// Sent after each new X509-SVID or bundle was written (after the
    /// command).
    pub on_renew_signal: Option<RenewSignal>,
    /// How long the command may run before it is killed.
    pub command_timeout: Duration,
}

impl FileSinkConfig {
    /// Writes `spiffe_id` to `dir`: no JWT-SVIDs, no command, no signal,
    /// [`DEFAULT_COMMAND_TIMEOUT`].
    pub fn new(dir: impl Into<PathBuf>, spiffe_id: SpiffeId) -> Self {
        FileSinkConfig {
            dir: dir.into(),
            spiffe_id,
            jwt_audiences: Vec::new(),
            on_renew_command: None,
            on_renew_signal: None,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }

    /// Checks what can be checked before the agent attests itself, so that
    /// a mistake here does not spend a join token.
    ///
    /// # Errors
    /// [`AgentError::Config`] if two audiences share a file name, the
    /// command timeout is zero, or the directory is the agent's data
    /// directory.
    pub fn check(&self, data_dir: &Path) -> Result<(), AgentError> {
        let mut names: HashMap<&str, &Audience> = HashMap::new();
        for audience in &self.jwt_audiences {
            if let Some(other) = names.insert(audience.file_name(), audience.audience())
                && other != audience.audience()
            {
                return Err(AgentError::Config {
                    reason: format!(
                        "audiences {:?} and {:?} would both be written to {}; \
                         keep one of them",
                        other.as_str(),
                        audience.audience().as_str(),
                        audience.file_name()
                    ),
                });
            }
        }
        if self.command_timeout.is_zero() {
            return Err(AgentError::Config {
                reason: "the on-renew command timeout must be positive".to_owned(),
            });
        }
        if same_directory(&self.dir, data_dir) {
            return Err(AgentError::Config {
                reason: format!(
                    "--write-dir {} is the agent's data directory, where the agent keeps \
                     its own SVID under the same file names; give another directory",
                    self.dir.display()
                ),
            });
        }
        Ok(())
    }
}

/// A JWT audience with the name of the file its token is written to:
/// `jwt_<audience>.token`, where every character of the audience that is
/// not an ASCII letter, digit, `.`, `-` or `_` becomes `_`
/// (`https://db.example.org` → `jwt_https___db.example.org.token`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SinkAudience {
    audience: Audience,
    file_name: String,
}

impl SinkAudience {
    /// Checks an audience and names its file.
    ///
    /// # Errors
    /// [`AgentError::Config`] if it is not an audience (empty, too long,
    /// whitespace or control characters), has characters outside ASCII
    /// (which could not be told apart once replaced), has no letter or
    /// digit, or would make a file name longer than 255 bytes.
    pub fn new(audience: &str) -> Result<Self, AgentError> {
        let bad = |why: String| AgentError::Config {
            reason: format!("JWT audience {audience:?} cannot name a file: {why}"),
        };
        let checked = Audience::new(audience).map_err(|e| bad(e.to_string()))?;
        if !audience.is_ascii() {
            return Err(bad("only ASCII characters are allowed".to_owned()));
        }
        if !audience.bytes().any(|b| b.is_ascii_alphanumeric()) {
            return Err(bad("it has no letter or digit".to_owned()));
        }
        let safe: String = audience
            .chars()
            .map(|ch| match ch {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => ch,
                _ => '_',
            })
            .collect();
        let file_name = format!("{JWT_FILE_PREFIX}{safe}{JWT_FILE_SUFFIX}");
        if file_name.len() > MAX_FILE_NAME {
            return Err(bad(format!(
                "the file name would be longer than {MAX_FILE_NAME} bytes"
            )));
        }
        Ok(SinkAudience {
            audience: checked,
            file_name,
        })
    }

    /// The audience.
    pub fn audience(&self) -> &Audience {
        &self.audience
    }

    /// The name of its token file, in the sink's directory.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }
}

impl FromStr for SinkAudience {
    type Err = AgentError;

    fn from_str(audience: &str) -> Result<Self, Self::Err> {
        SinkAudience::new(audience)
    }
}

impl fmt::Display for SinkAudience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.audience.fmt(f)
    }
}

/// A sink ready to run: its directory exists and the agent process's own
/// selectors are known.
#[derive(Debug)]
pub(crate) struct PreparedSink {
    config: FileSinkConfig,
    selectors: Vec<Selector>,
    /// The agent process's effective uid.
    agent_uid: u32,
}

/// Creates the directory and attests the agent process, once the agent
/// knows its own SPIFFE ID (`agent_id`).
///
/// # Errors
/// [`AgentError::Config`] if the identity is in another trust domain than
/// the agent's; [`AgentError::WriteDir`] if the directory cannot be
/// created; [`AgentError::Config`] if the agent cannot attest itself.
pub(crate) async fn prepare(
    config: &FileSinkConfig,
    agent_id: &SpiffeId,
) -> Result<PreparedSink, AgentError> {
    if config.spiffe_id.trust_domain() != agent_id.trust_domain() {
        return Err(AgentError::Config {
            reason: format!(
                "--write-spiffe-id {} is not in the agent's trust domain ({})",
                config.spiffe_id,
                agent_id.trust_domain_name()
            ),
        });
    }
    files::ensure_private_dir(&config.dir).map_err(|e| AgentError::WriteDir {
        path: config.dir.clone(),
        reason: e.to_string(),
    })?;
    let (agent_process, selectors) = attest_self().await?;
    tracing::info!(
        spiffe_id = %config.spiffe_id,
        dir = %config.dir.display(),
        selectors = %selectors.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        "writing an SVID to files for the agent process"
    );
    Ok(PreparedSink {
        config: config.clone(),
        selectors,
        agent_uid: agent_process.uid,
    })
}

impl PreparedSink {
    /// Starts writing in the background until `cancel` fires or the agent
    /// closes its state. `interval` is how often JWT-SVIDs and failed
    /// writes are looked at again without a new snapshot.
    pub(crate) fn spawn(
        self,
        state: Arc<AgentState>,
        issuer: Arc<JwtIssuer>,
        clock: Arc<dyn Clock>,
        interval: Duration,
        cancel: CancellationToken,
    ) -> JoinHandle<()> {
        let notifier = Notifier::new(
            self.config.on_renew_command.clone(),
            self.config.on_renew_signal.clone(),
            self.config.command_timeout,
            self.agent_uid,
        );
        let sink = FileSink::new(
            self.config,
            self.selectors,
            notifier,
            state,
            issuer,
            clock,
            interval,
        );
        tokio::spawn(sink.run(cancel))
    }
}

/// The agent process's selectors, as a Workload API caller's would be
/// found: the kernel reports this process's credentials on one end of a
/// socket pair, and the attestor reads `/proc` for them.
async fn attest_self() -> Result<(PeerCredentials, Vec<Selector>), AgentError> {
    let cannot = |reason: String| AgentError::Config {
        reason: format!("the agent cannot attest itself for --write-dir: {reason}"),
    };
    let (ours, _theirs) = tokio::net::UnixStream::pair().map_err(|e| cannot(e.to_string()))?;
    let credentials = ours.peer_cred().map_err(|e| cannot(e.to_string()))?;
    let peer = PeerCredentials::from_ucred(&credentials);
    let selectors = tokio::task::spawn_blocking(move || WorkloadAttestor::new().attest(&peer))
        .await
        .map_err(|e| cannot(e.to_string()))?
        .map_err(|e| cannot(e.to_string()))?;
    Ok((peer, selectors))
}

/// Whether `a` and `b` name the same directory: compared after resolving
/// links when both exist, else as absolute paths.
fn same_directory(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => match (std::path::absolute(a), std::path::absolute(b)) {
            (Ok(a), Ok(b)) => a.components().eq(b.components()),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(path: &str) -> SpiffeId {
        format!("spiffe://example.org{path}").parse().unwrap()
    }

    #[test]
    fn audiences_become_safe_file_names() {
        for (audience, file) in [
            ("billing-db", "jwt_billing-db.token"),
            ("https://db.example.org", "jwt_https___db.example.org.token"),
            (
                "spiffe://example.org/db",
                "jwt_spiffe___example.org_db.token",
            ),
            ("../../etc/passwd", "jwt_.._.._etc_passwd.token"),
            ("a\\b", "jwt_a_b.token"),
        ] {
            let sink = SinkAudience::new(audience).unwrap();
            assert_eq!(sink.file_name(), file, "{audience}");
            assert_eq!(sink.audience().as_str(), audience);
            assert!(!sink.file_name().contains('/'));
        }
    }

    #[test]
    fn audiences_that_cannot_name_a_file_are_refused() {
        for bad in [
            "",
            "two words",
            "tab\there",
            "café",
            "db\u{202e}",
            "///",
            "..",
            &"a".repeat(250),
        ] {
            let refused = SinkAudience::new(bad);
            assert!(
                matches!(refused, Err(AgentError::Config { .. })),
                "{bad:?}: {refused:?}"
            );
        }
        assert!(SinkAudience::new(&"a".repeat(245)).is_ok());
    }

    #[test]
    fn colliding_audiences_and_the_data_directory_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = FileSinkConfig::new(tmp.path().join("out"), id("/a"));
        config.jwt_audiences = vec![
            SinkAudience::new("a:b").unwrap(),
            SinkAudience::new("a:b").unwrap(),
        ];
        assert!(config.check(&tmp.path().join("agent")).is_ok());
        config.jwt_audiences.push(SinkAudience::new("a/b").unwrap());
        let error = config.check(&tmp.path().join("agent")).unwrap_err();
        assert!(error.to_string().contains("jwt_a_b.token"), "{error}");

        let config = FileSinkConfig::new(tmp.path().join("agent"), id("/a"));
        assert!(config.check(&tmp.path().join("agent")).is_err());
        assert!(config.check(&tmp.path().join("agent/")).is_err());
        std::fs::create_dir(tmp.path().join("agent")).unwrap();
        assert!(config.check(&tmp.path().join("./agent/.")).is_err());

        let mut zero = FileSinkConfig::new(tmp.path().join("out"), id("/a"));
        zero.command_timeout = Duration::ZERO;
        assert!(zero.check(&tmp.path().join("agent")).is_err());
    }

    #[tokio::test]
    async fn the_agent_attests_itself() {
        let (_, selectors) = attest_self().await.unwrap();
        let texts: Vec<String> = selectors.iter().map(ToString::to_string).collect();
        assert!(
            texts.iter().any(|s| s.starts_with("unix:uid:")),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|s| s.starts_with("unix:sha256:")),
            "{texts:?}"
        );
    }

    #[tokio::test]
    async fn another_trust_domain_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let config = FileSinkConfig::new(
            tmp.path().join("out"),
            "spiffe://other.org/a".parse().unwrap(),
        );
        let refused = prepare(&config, &id("/agent")).await;
        assert!(matches!(refused, Err(AgentError::Config { .. })));
        assert!(!tmp.path().join("out").exists());
    }
}
