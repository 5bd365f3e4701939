//! The agent's own X509-SVID: obtained once with a join token, saved in the
//! data directory (key mode 0600) so a restart re-uses it while it is valid,
//! and renewed over mTLS at about half its lifetime.

use std::fmt;
use std::path::{Path, PathBuf};

use mayfly_sdk::SpiffeId;
use mayfly_sdk::files;
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::x509::{LeafFacts, inspect_leaf};
use rcgen::KeyPair;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use zeroize::Zeroizing;

use super::error::AgentError;
use mayfly_sdk::client::{BUNDLE_FILE, KEY_FILE, SVID_FILE};

/// An X509-SVID with its private key, ready for mTLS to the broker.
#[derive(Clone)]
pub(crate) struct AgentSvid {
    /// The agent's SPIFFE ID: the `parent_id` of the entries it serves.
    pub(crate) spiffe_id: SpiffeId,
    /// Hex serial of the leaf, for logs.
    pub(crate) serial: String,
    /// `notAfter` of the leaf, Unix seconds.
    pub(crate) expires_at: i64,
    /// When to renew it, Unix seconds.
    pub(crate) refresh_at: i64,
    chain_pem: String,
    key_pem: Zeroizing<String>,
}

impl fmt::Debug for AgentSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentSvid")
            .field("spiffe_id", &self.spiffe_id)
            .field("serial", &self.serial)
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.refresh_at)
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Reads the SPIFFE ID (the one URI SAN), validity and serial of a leaf.
pub(crate) fn leaf_facts(der: &[u8]) -> Result<LeafFacts, String> {
    inspect_leaf(der).map_err(|e| e.to_string())
}

/// Renew at half of the lifetime left when a credential arrived, never
/// sooner than a second from then.
pub(crate) fn refresh_point(received_at: i64, expires_at: i64) -> i64 {
    let lifetime = expires_at.saturating_sub(received_at);
    received_at.saturating_add((lifetime / 2).max(1))
}

impl AgentSvid {
    /// An SVID the broker just issued for `key`, received at `now`.
    ///
    /// # Errors
    /// [`AgentError::BadResponse`] if the chain is empty, does not parse, or
    /// certifies another key.
    pub(crate) fn from_issued(
        svid: &pb::X509Svid,
        key: &KeyPair,
        now: i64,
    ) -> Result<Self, AgentError> {
        let leaf = svid
            .cert_chain
            .first()
            .ok_or_else(|| AgentError::bad_response("the SVID has no certificate"))?;
        let facts = leaf_facts(leaf).map_err(AgentError::bad_response)?;
        if !mayfly_sdk::client::certifies_key(leaf, key)? {
            return Err(AgentError::bad_response(
                "the certificate is not for the key we sent",
            ));
        }
        Ok(AgentSvid {
            spiffe_id: facts.spiffe_id,
            serial: facts.serial,
            expires_at: facts.not_after,
            refresh_at: refresh_point(now.max(facts.not_before), facts.not_after),
            chain_pem: mayfly_sdk::pem::certificates(svid.cert_chain.iter().map(Vec::as_slice)),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// The certificate chain and key, PEM, for a TLS client identity.
    pub(crate) fn tls_identity(&self) -> (&[u8], &[u8]) {
        (self.chain_pem.as_bytes(), self.key_pem.as_bytes())
    }

    /// Whether it has expired at `now`.
    pub(crate) fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }
}

/// The agent's files in its data directory.
#[derive(Debug, Clone)]
pub(crate) struct IdentityFiles {
    dir: PathBuf,
}

impl IdentityFiles {
    pub(crate) fn new(dir: &Path) -> Self {
        IdentityFiles {
            dir: dir.to_owned(),
        }
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (0700), refusing a broker's data directory:
    /// the agent's `bundle.pem` and key files would mix with the CA's.
    pub(crate) fn prepare(&self) -> Result<(), AgentError> {
        for broker_file in ["store.redb", "ca"] {
            if self.dir.join(broker_file).exists() {
                return Err(AgentError::data_dir(
                    &self.dir,
                    "this is a broker's data directory; give the agent its own \
                     (--data-dir, default ./mayfly-agent)",
                ));
            }
        }
        files::ensure_private_dir(&self.dir).map_err(|e| AgentError::data_dir(&self.dir, e))
    }

    /// The trust bundle saved by an earlier run (PEM), if any.
    pub(crate) fn saved_bundle(&self) -> Option<Vec<u8>> {
        files::read_public_file(&self.dir.join(BUNDLE_FILE)).ok()
    }

    /// The SVID saved by an earlier run, if there is one and it parses.
    /// Its renewal time is computed from the certificate, so a restart
    /// renews early rather than late.
    ///
    /// # Errors
    /// [`AgentError::DataDir`] if the files exist but cannot be read (a key
    /// file others may read is refused) or do not parse.
    pub(crate) fn load(&self) -> Result<Option<AgentSvid>, AgentError> {
        let svid_path = self.dir.join(SVID_FILE);
        let key_path = self.dir.join(KEY_FILE);
        if !svid_path.exists() || !key_path.exists() {
            return Ok(None);
        }
        let chain_pem =
            files::read_public_file(&svid_path).map_err(|e| AgentError::data_dir(&svid_path, e))?;
        let key_pem =
            files::read_secret_file(&key_path).map_err(|e| AgentError::data_dir(&key_path, e))?;
        let chain: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(&chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| AgentError::data_dir(&svid_path, format!("not PEM: {e}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| AgentError::data_dir(&svid_path, "holds no certificate"))?;
        let facts = leaf_facts(leaf).map_err(|e| AgentError::data_dir(&svid_path, e))?;
        let key_text = std::str::from_utf8(&key_pem)
            .map_err(|_| AgentError::data_dir(&key_path, "not PEM text"))?;
        let key = KeyPair::from_pem(key_text)
            .map_err(|e| AgentError::data_dir(&key_path, format!("not a private key: {e}")))?;
        if !mayfly_sdk::client::certifies_key(leaf, &key)? {
            return Err(AgentError::data_dir(
                &key_path,
                "the key does not belong to the certificate in svid.pem",
            ));
        }
        Ok(Some(AgentSvid {
            spiffe_id: facts.spiffe_id,
            serial: facts.serial,
            expires_at: facts.not_after,
            refresh_at: refresh_point(facts.not_before, facts.not_after),
            chain_pem: String::from_utf8_lossy(&chain_pem).into_owned(),
            key_pem: Zeroizing::new(key_text.to_owned()),
        }))
    }

    /// Saves an SVID and the trust bundle's roots. The bundle goes first: it
    /// only gains roots the new certificate may need.
    ///
    /// # Errors
    /// [`AgentError::DataDir`] if a file cannot be written.
    pub(crate) fn save(&self, svid: &AgentSvid, roots_der: &[Vec<u8>]) -> Result<(), AgentError> {
        if !roots_der.is_empty() {
            self.save_bundle(roots_der)?;
        }
        let svid_path = self.dir.join(SVID_FILE);
        files::write_public_atomic(&svid_path, svid.chain_pem.as_bytes())
            .map_err(|e| AgentError::data_dir(&svid_path, e))?;
        let key_path = self.dir.join(KEY_FILE);
        files::write_secret_atomic(&key_path, svid.key_pem.as_bytes())
            .map_err(|e| AgentError::data_dir(&key_path, e))
    }

    /// Saves the trust bundle's roots (PEM).
    pub(crate) fn save_bundle(&self, roots_der: &[Vec<u8>]) -> Result<(), AgentError> {
        let path = self.dir.join(BUNDLE_FILE);
        let pem = mayfly_sdk::pem::certificates(roots_der.iter().map(Vec::as_slice));
        files::write_public_atomic(&path, pem.as_bytes())
            .map_err(|e| AgentError::data_dir(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svid_cert(key: &KeyPair, uri: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into()?)];
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 2);
        Ok(params.self_signed(key)?.der().to_vec())
    }

    #[test]
    fn refresh_is_at_half_life_and_never_immediate() {
        assert_eq!(refresh_point(1_000, 1_020), 1_010);
        assert_eq!(refresh_point(1_000, 1_900), 1_450);
        assert_eq!(refresh_point(1_000, 1_000), 1_001);
        assert_eq!(refresh_point(1_000, 900), 1_001);
    }

    #[test]
    fn leaf_facts_read_the_spiffe_id() -> Result<(), Box<dyn std::error::Error>> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let der = svid_cert(&key, "spiffe://example.org/agent/a")?;
        let facts = leaf_facts(&der)?;
        assert_eq!(facts.spiffe_id.as_str(), "spiffe://example.org/agent/a");
        assert_eq!(facts.not_after - facts.not_before, 86_400);
        assert!(leaf_facts(b"junk").is_err());
        let not_spiffe = svid_cert(&key, "https://example.org/")?;
        assert!(leaf_facts(&not_spiffe).is_err());
        Ok(())
    }

    #[test]
    fn saved_identity_round_trips_with_a_private_key() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir()?;
        let files = IdentityFiles::new(&tmp.path().join("agent"));
        files.prepare()?;
        assert!(files.load()?.is_none());
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let der = svid_cert(&key, "spiffe://example.org/agent/a")?;
        let issued = pb::X509Svid {
            spiffe_id: "spiffe://example.org/agent/a".into(),
            cert_chain: vec![der.clone()],
            ..Default::default()
        };
        let svid = AgentSvid::from_issued(&issued, &key, 0)?;
        files.save(&svid, &[der])?;
        let mode = std::fs::metadata(tmp.path().join("agent").join(KEY_FILE))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = files.load()?.ok_or("not loaded")?;
        assert_eq!(loaded.spiffe_id, svid.spiffe_id);
        assert_eq!(loaded.tls_identity(), svid.tls_identity());
        assert!(files.saved_bundle().is_some());
        assert!(!format!("{loaded:?}").contains("PRIVATE KEY"));
        Ok(())
    }

    #[test]
    fn a_certificate_for_another_key_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let issued = pb::X509Svid {
            cert_chain: vec![svid_cert(&other, "spiffe://example.org/agent/a")?],
            ..Default::default()
        };
        assert!(AgentSvid::from_issued(&issued, &key, 0).is_err());
        Ok(())
    }

    #[test]
    fn a_broker_data_directory_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        std::fs::write(tmp.path().join("store.redb"), b"")?;
        assert!(IdentityFiles::new(tmp.path()).prepare().is_err());
        Ok(())
    }
}
