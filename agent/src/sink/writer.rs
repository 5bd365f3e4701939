//! The sink's loop: after every published snapshot, and every interval
//! (for JWT-SVIDs reaching half their life and for writes that failed),
//! write the files whose content changed, then notify if the X509-SVID or
//! bundle did.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use mayfly_sdk::files;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use zeroize::Zeroizing;

use super::notify::Notifier;
use super::{FileSinkConfig, SinkAudience};
use crate::jwt_issue::JwtIssuer;
use crate::snapshot::{RegisteredEntry, Snapshot};
use crate::state::AgentState;
use crate::status::WorkloadError;
use mayfly_sdk::Selector;
use mayfly_sdk::backoff::jittered;
use mayfly_sdk::client::{BUNDLE_FILE, KEY_FILE, SVID_FILE};
use mayfly_sdk::clock::Clock;

/// Problem topics that are not a JWT file's name.
const ENTRY_TOPIC: &str = "entry";
const X509_TOPIC: &str = "x509";
/// The longest wait before asking for a JWT-SVID again after a failure.
const MAX_JWT_RETRY: Duration = Duration::from_secs(30);

/// Who may read a file.
#[derive(Debug, Clone, Copy)]
enum Visibility {
    /// 0644: certificates and bundles.
    Public,
    /// 0600: keys and tokens.
    Secret,
}

/// The running sink; only its own task touches it.
pub(super) struct FileSink {
    config: FileSinkConfig,
    /// The agent process's own selectors.
    selectors: Vec<Selector>,
    notifier: Notifier,
    state: Arc<AgentState>,
    issuer: Arc<JwtIssuer>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    /// What each file was last written with, by file name.
    written: HashMap<String, Zeroizing<String>>,
    /// A new X509-SVID or bundle was written since the last notification.
    notify_pending: bool,
    /// JWT file name → the entry revision the broker refused to mint for;
    /// asking again cannot help until the entry changes.
    refused: HashMap<String, u64>,
    /// JWT file name → when to ask the broker again after a failed renewal,
    /// and how long to wait after the next failure.
    retry: HashMap<String, (Instant, Duration)>,
    /// What is wrong now, by topic, so that each problem is logged once.
    problems: HashMap<String, String>,
}

impl fmt::Debug for FileSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSink")
            .field("config", &self.config)
            .field("selectors", &self.selectors)
            .field("written", &self.written.keys().collect::<Vec<_>>())
            .field("notify_pending", &self.notify_pending)
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

impl FileSink {
    pub(super) fn new(
        config: FileSinkConfig,
        selectors: Vec<Selector>,
        notifier: Notifier,
        state: Arc<AgentState>,
        issuer: Arc<JwtIssuer>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> Self {
        FileSink {
            config,
            selectors,
            notifier,
            state,
            issuer,
            clock,
            interval,
            written: HashMap::new(),
            notify_pending: false,
            refused: HashMap::new(),
            retry: HashMap::new(),
            problems: HashMap::new(),
        }
    }

    /// Writes until `cancel` fires or the agent closes its state.
    pub(super) async fn run(mut self, cancel: CancellationToken) {
        // Subscribed before the first round, so no publication is missed.
        let mut changes = self.state.subscribe();
        loop {
            tokio::select! {
                // The round first: it kills a running command itself when
                // cancelled, which dropping it would not.
                biased;
                () = self.round(&cancel) => {}
                () = cancel.cancelled() => return,
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() || changes.borrow().closing {
                        return;
                    }
                }
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// Writes what changed; notifies after a new X509-SVID or bundle.
    async fn round(&mut self, cancel: &CancellationToken) {
        let snapshot = self.state.snapshot();
        let now = self.clock.unix_now();
        let entries: Vec<Arc<RegisteredEntry>> = snapshot
            .matching(&self.selectors, now)
            .into_iter()
            .filter(|entry| entry.spiffe_id == self.config.spiffe_id)
            .collect();
        if entries.is_empty() {
            let problem = self.why_no_entry(&snapshot, now);
            self.set_problem(ENTRY_TOPIC, problem);
            return;
        }
        self.set_problem(ENTRY_TOPIC, None);
        let x509_current = self.write_x509(&snapshot, &entries, now);
        // JWT-SVIDs before notifying, so that a program (re)started by the
        // command finds its token files too.
        self.write_jwts(&entries, now).await;
        if x509_current && self.notify_pending {
            self.notify_pending = false;
            self.notifier.notify(cancel).await;
        }
    }

    /// Why no entry gives the agent process the identity, or `None` while
    /// the agent has not synced yet.
    fn why_no_entry(&self, snapshot: &Snapshot, now: i64) -> Option<String> {
        self.state.health().last_sync?;
        let id = &self.config.spiffe_id;
        let registered: Vec<&Arc<RegisteredEntry>> = snapshot
            .entries
            .iter()
            .filter(|entry| &entry.spiffe_id == id)
            .collect();
        let selectors = |list: &[Selector]| {
            list.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        Some(match registered.first() {
            None => format!(
                "no entry for {id} is registered under this agent (--parent <the agent's SPIFFE ID>)"
            ),
            Some(_) if registered.iter().all(|entry| !entry.is_live(now)) => {
                format!("the entry for {id} has expired")
            }
            Some(entry) => format!(
                "the entry for {id} needs selectors [{}]; the agent process proves [{}]",
                selectors(&entry.selectors),
                selectors(&self.selectors)
            ),
        })
    }

    /// Writes the bundle, certificate chain and key where they changed.
    /// Returns whether all three are current.
    fn write_x509(
        &mut self,
        snapshot: &Snapshot,
        entries: &[Arc<RegisteredEntry>],
        now: i64,
    ) -> bool {
        if !entries.iter().any(|entry| entry.x509) {
            let problem = format!(
                "the entry for {} does not allow X509-SVIDs; only JWT-SVID files are written",
                self.config.spiffe_id
            );
            self.set_problem(X509_TOPIC, Some(problem));
            return false;
        }
        let held = entries
            .iter()
            .filter(|entry| entry.x509)
            .filter_map(|entry| snapshot.x509.get(&entry.id))
            .find(|svid| now < svid.expires_at);
        // Not minted yet, or expired while the broker is away: the sync
        // loop says why; the next snapshot brings one.
        let (Some(svid), Some(bundle)) = (held, &snapshot.bundle) else {
            return false;
        };
        let chain = match chain_pem(&svid.chain_der) {
            Ok(chain) => chain,
            Err(reason) => {
                self.set_problem(X509_TOPIC, Some(reason));
                return false;
            }
        };
        let roots = mayfly_sdk::pem::certificates(bundle.roots_der.iter().map(Vec::as_slice));
        // The bundle first: it only gains roots the new certificate may need.
        let files = [
            (BUNDLE_FILE, Zeroizing::new(roots), Visibility::Public),
            (SVID_FILE, Zeroizing::new(chain), Visibility::Public),
            (
                KEY_FILE,
                private_key_pem(&svid.key_pkcs8),
                Visibility::Secret,
            ),
        ];
        let mut wrote = false;
        for (name, contents, visibility) in files {
            match self.write_if_changed(name, contents, visibility) {
                Ok(changed) => wrote |= changed,
                Err(reason) => {
                    // Stop here, so no later file gets ahead of this one;
                    // the next round tries again.
                    self.set_problem(X509_TOPIC, Some(reason));
                    return false;
                }
            }
        }
        if wrote {
            self.notify_pending = true;
            tracing::info!(
                spiffe_id = %svid.spiffe_id,
                serial = %svid.serial,
                dir = %self.config.dir.display(),
                "X509-SVID files written"
            );
        }
        self.set_problem(X509_TOPIC, None);
        true
    }

    /// Keeps a JWT-SVID file per audience, renewed at half its lifetime.
    async fn write_jwts(&mut self, entries: &[Arc<RegisteredEntry>], now: i64) {
        for audience in self.config.jwt_audiences.clone() {
            let file = audience.file_name();
            let Some(entry) = entries
                .iter()
                .find(|entry| entry.allows_audience(audience.audience().as_str()))
            else {
                let problem = format!(
                    "the entry for {} does not allow JWT-SVIDs for audience {:?}",
                    self.config.spiffe_id,
                    audience.audience().as_str()
                );
                self.set_problem(file, Some(problem));
                continue;
            };
            let cached = self.state.jwt.fresh(
                &entry.spiffe_id,
                audience.audience().as_str(),
                entry.revision,
                now,
            );
            if cached.is_some_and(|jwt| self.written.get(file) == Some(&jwt.token)) {
                continue;
            }
            let problem = match self.fetch_jwt(entry, &audience, now).await {
                Some(Ok(token)) => match self.write_if_changed(file, token, Visibility::Secret) {
                    Ok(true) => {
                        tracing::info!(
                            spiffe_id = %entry.spiffe_id,
                            audience = %audience,
                            file,
                            "JWT-SVID file written"
                        );
                        None
                    }
                    Ok(false) => None,
                    Err(reason) => Some(reason),
                },
                Some(Err(problem)) => Some(problem),
                // Waiting before asking again.
                None => continue,
            };
            self.set_problem(file, problem);
        }
    }

    /// A JWT-SVID for `audience`: a fresh one, or while the broker cannot
    /// mint, the last unexpired one. `None` while backing off after a
    /// failure, or after a refusal until the entry changes.
    async fn fetch_jwt(
        &mut self,
        entry: &Arc<RegisteredEntry>,
        audience: &SinkAudience,
        now: i64,
    ) -> Option<Result<Zeroizing<String>, String>> {
        let file = audience.file_name();
        if self.refused.get(file) == Some(&entry.revision)
            || self
                .retry
                .get(file)
                .is_some_and(|(at, _)| Instant::now() < *at)
        {
            return None;
        }
        let result = self
            .issuer
            .svids(std::slice::from_ref(entry), audience.audience())
            .await;
        let renewed = self
            .state
            .jwt
            .fresh(
                &entry.spiffe_id,
                audience.audience().as_str(),
                entry.revision,
                now,
            )
            .is_some();
        if renewed {
            self.retry.remove(file);
        } else {
            let wait = self
                .retry
                .get(file)
                .map_or(self.interval, |(_, wait)| *wait);
            let next = wait.saturating_mul(2).min(MAX_JWT_RETRY);
            self.retry
                .insert(file.to_owned(), (Instant::now() + jittered(wait), next));
        }
        Some(match result {
            Ok(svids) => svids
                .into_iter()
                .next()
                .map(|svid| Zeroizing::new(svid.svid))
                .ok_or_else(|| "the broker minted no JWT-SVID".to_owned()),
            Err(error) => {
                if matches!(
                    error,
                    WorkloadError::Denied(_) | WorkloadError::InvalidArgument(_)
                ) {
                    self.refused.insert(file.to_owned(), entry.revision);
                }
                Err(format!(
                    "cannot get a JWT-SVID for audience {:?}: {}",
                    audience.audience().as_str(),
                    tonic::Status::from(error).message()
                ))
            }
        })
    }

    /// Replaces `name` atomically unless it was last written with
    /// `contents`. Returns whether it wrote.
    fn write_if_changed(
        &mut self,
        name: &str,
        contents: Zeroizing<String>,
        visibility: Visibility,
    ) -> Result<bool, String> {
        if self.written.get(name) == Some(&contents) {
            return Ok(false);
        }
        let dir = &self.config.dir;
        // Again each time: someone may have removed the directory.
        files::ensure_private_dir(dir).map_err(|e| e.to_string())?;
        let path = dir.join(name);
        match visibility {
            Visibility::Public => files::write_public_atomic(&path, contents.as_bytes()),
            Visibility::Secret => files::write_secret_atomic(&path, contents.as_bytes()),
        }
        .map_err(|e| e.to_string())?;
        self.written.insert(name.to_owned(), contents);
        Ok(true)
    }

    /// Logs a problem when it appears or changes, and when it is gone.
    fn set_problem(&mut self, topic: &str, problem: Option<String>) {
        let spiffe_id = &self.config.spiffe_id;
        match problem {
            Some(problem) => {
                if self.problems.get(topic) != Some(&problem) {
                    tracing::warn!(%spiffe_id, %problem, "the file sink cannot write");
                    self.problems.insert(topic.to_owned(), problem);
                }
            }
            None => {
                if let Some(solved) = self.problems.remove(topic) {
                    tracing::info!(%spiffe_id, %solved, "the file sink writes again");
                }
            }
        }
    }
}

/// The concatenated DER chain the agent holds, as PEM blocks, leaf first.
fn chain_pem(chain_der: &[u8]) -> Result<String, String> {
    let mut rest = chain_der;
    let mut certificates = Vec::new();
    while !rest.is_empty() {
        let (after, _) = X509Certificate::from_der(rest)
            .map_err(|e| format!("the held certificate chain does not parse: {e}"))?;
        let (certificate, after) = rest.split_at(rest.len() - after.len());
        certificates.push(certificate);
        rest = after;
    }
    if certificates.is_empty() {
        return Err("the held certificate chain is empty".to_owned());
    }
    Ok(mayfly_sdk::pem::certificates(certificates))
}

/// A PKCS#8 key as a `PRIVATE KEY` PEM block, in zeroizing memory.
fn private_key_pem(pkcs8: &[u8]) -> Zeroizing<String> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----\n";
    const END: &str = "-----END PRIVATE KEY-----\n";
    const LINE: usize = 64;
    let body = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pkcs8));
    // Sized up front: growing would leave copies of the key behind.
    let lines = body.len().div_ceil(LINE);
    let mut pem = Zeroizing::new(String::with_capacity(
        BEGIN.len() + body.len() + lines + END.len(),
    ));
    pem.push_str(BEGIN);
    for line in body.as_bytes().chunks(LINE) {
        // Base64 is ASCII, so every chunk is valid UTF-8.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(END);
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;

    fn certificate(name: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn a_concatenated_chain_becomes_one_pem_block_per_certificate() {
        let leaf = certificate("leaf.example");
        let intermediate = certificate("ca.example");
        let pem = chain_pem(&[leaf.clone(), intermediate.clone()].concat()).unwrap();
        let parsed: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.unwrap().to_vec())
            .collect();
        assert_eq!(parsed, [leaf.clone(), intermediate]);
        assert!(chain_pem(&[]).is_err());
        assert!(chain_pem(&leaf[..leaf.len() - 1]).is_err());
        assert!(chain_pem(b"junk").is_err());
    }

    #[test]
    fn the_key_is_pkcs8_pem_that_parses_back() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = private_key_pem(&key.serialize_der());
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|line| line.len() <= 64));
        let parsed = rcgen::KeyPair::from_pem(&pem).unwrap();
        assert_eq!(parsed.public_key_pem(), key.public_key_pem());
        assert_eq!(&*pem, &key.serialize_pem());
    }
}
