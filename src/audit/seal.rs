//! The audit key and what it signs: checkpoints of the Merkle tree, and the hand-over from
//! one key epoch to the next.
//!
//! # Forward security
//! The key signs for one epoch (an hour by default, and a new one at every start). To move
//! on, the writer makes a new key, has the old key sign a *hand-over*: the new public key
//! together with the tree size, Merkle root and head hash at that moment, appends it to the
//! log as an `audit.key.rotate` record, and only then replaces the key file, which erases
//! the old private key. A key stolen later can sign checkpoints of its own epoch, but not
//! re-sign an earlier one: every hand-over pins the tree as it was when the previous key
//! still existed, so rewriting a record from before it breaks a signature no one holds
//! any more.
//!
//! The first key of a chain (epoch 0, the *root key*) is introduced unsigned: its public
//! key is what an auditor pins (`mayfly audit public-key`, then `audit verify
//! --public-key`). The chain is followed from there, one hand-over at a time.
//!
//! # Signed bytes
//! Both statements are short UTF-8 texts, one field per line, each line ending in `\n`,
//! so that any tool can rebuild and check them ([`checkpoint_body`], [`handover_body`]).
//! Signatures are Ed25519 (RFC 8032).

use std::fmt;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::AuditError;
use super::merkle::{self, Hash};

/// The key file: the current epoch's private key (mode 0600).
pub(super) const KEY_FILE: &str = "audit-key.json";
/// The next epoch's key while a hand-over is under way (see [`super::log`]).
pub(super) const NEXT_KEY_FILE: &str = "audit-key.next.json";
/// The root key's public half, PEM (mode 0644): what an auditor pins.
pub const ROOT_PUBLIC_KEY_FILE: &str = "audit-root.pub";

/// The action of the records that introduce a key.
pub const KEY_ACTION: &str = "audit.key.rotate";
/// The actor of records the audit log writes about itself.
pub const AUDIT_ACTOR: &str = "mayfly-audit";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// An Ed25519 public key of the audit log.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditPublicKey([u8; 32]);

impl AuditPublicKey {
    /// The key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        AuditPublicKey(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The raw bytes in standard base64, as the log's key records hold them.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Reads standard base64 of exactly 32 bytes.
    ///
    /// # Errors
    /// [`AuditError::Key`] for anything else.
    pub fn from_base64(text: &str) -> Result<Self, AuditError> {
        let bytes = STANDARD
            .decode(text)
            .map_err(|_| AuditError::key("a public key is not base64"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| AuditError::key("an Ed25519 public key is 32 bytes"))?;
        Ok(AuditPublicKey(bytes))
    }

    /// A PEM `PUBLIC KEY` block (SubjectPublicKeyInfo), as openssl writes and reads it.
    pub fn to_pem(&self) -> String {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        mayfly_sdk::pem::encode("PUBLIC KEY", &der).to_string()
    }

    /// Reads a PEM `PUBLIC KEY` block holding an Ed25519 key.
    ///
    /// # Errors
    /// [`AuditError::Key`] if it is not PEM, or not an Ed25519 key.
    pub fn from_pem(text: &[u8]) -> Result<Self, AuditError> {
        let der = mayfly_sdk::pem::decode("PUBLIC KEY", text)
            .map_err(|e| AuditError::key(format!("not a PEM public key: {e}")))?;
        let key = der
            .strip_prefix(&ED25519_SPKI_PREFIX)
            .ok_or_else(|| AuditError::key("not an Ed25519 public key (RFC 8410)"))?;
        let bytes: [u8; 32] = key
            .try_into()
            .map_err(|_| AuditError::key("an Ed25519 public key is 32 bytes"))?;
        Ok(AuditPublicKey(bytes))
    }

    /// A short name for messages: the first 16 hex digits of SHA-256 of the key.
    pub fn id(&self) -> String {
        let mut id = mayfly_sdk::digest::sha256_hex(&self.0);
        id.truncate(16);
        id
    }

    /// Checks `signature` (base64) over `message`.
    pub(super) fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Ok(signature) = STANDARD.decode(signature) else {
            return false;
        };
        UnparsedPublicKey::new(&signature::ED25519, &self.0)
            .verify(message, &signature)
            .is_ok()
    }
}

impl fmt::Debug for AuditPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditPublicKey({})", self.id())
    }
}

impl fmt::Display for AuditPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

/// One epoch's private key. Its `Debug` shows the epoch and the public key's id only.
pub(super) struct AuditSigner {
    epoch: u64,
    pair: Ed25519KeyPair,
    public: AuditPublicKey,
}

impl fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSigner")
            .field("epoch", &self.epoch)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The key file's contents.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    epoch: u64,
    /// PKCS#8 v2 (RFC 5958) of the Ed25519 key, base64.
    pkcs8: String,
}

impl AuditSigner {
    /// A new key for `epoch`, with its PKCS#8 bytes for the key file.
    pub(super) fn generate(epoch: u64) -> Result<(AuditSigner, Zeroizing<Vec<u8>>), AuditError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| AuditError::key("the system's random generator failed"))?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        let signer = Self::from_pkcs8(epoch, &pkcs8)?;
        Ok((signer, pkcs8))
    }

    fn from_pkcs8(epoch: u64, pkcs8: &[u8]) -> Result<AuditSigner, AuditError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| AuditError::key("the key file does not hold an Ed25519 key"))?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| AuditError::key("an Ed25519 public key is 32 bytes"))?;
        Ok(AuditSigner {
            epoch,
            pair,
            public: AuditPublicKey(public),
        })
    }

    /// The epoch this key signs for.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The public half.
    pub(super) fn public(&self) -> AuditPublicKey {
        self.public
    }

    /// Signs `message`; the signature in base64.
    pub(super) fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.pair.sign(message).as_ref())
    }

    /// Writes the key to `path` (0600, atomically, synced).
    pub(super) fn store(&self, pkcs8: &[u8], path: &Path) -> Result<(), AuditError> {
        let file = KeyFile {
            epoch: self.epoch,
            pkcs8: STANDARD.encode(pkcs8),
        };
        let bytes =
            Zeroizing::new(serde_json::to_vec(&file).map_err(|e| AuditError::key(e.to_string()))?);
        let pkcs8 = Zeroizing::new(file.pkcs8);
        drop(pkcs8);
        mayfly_sdk::files::write_secret_atomic(path, &bytes)
            .map_err(|e| AuditError::key(format!("cannot write {}: {e}", path.display())))
    }

    /// Reads the key at `path`; `None` if there is no file. A file others may read is
    /// refused.
    pub(super) fn load(path: &Path) -> Result<Option<AuditSigner>, AuditError> {
        let bytes = match mayfly_sdk::files::read_secret_file(path) {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => {
                return Err(AuditError::key(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| {
            AuditError::key(format!("{} is not an audit key file: {e}", path.display()))
        })?;
        let pkcs8 =
            Zeroizing::new(STANDARD.decode(&file.pkcs8).map_err(|_| {
                AuditError::key(format!("{}: the key is not base64", path.display()))
            })?);
        drop(Zeroizing::new(file.pkcs8));
        Self::from_pkcs8(file.epoch, &pkcs8).map(Some)
    }
}

/// What a signed checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// The tree size: the seq of the last record it covers.
    pub seq: u64,
    /// The hash of that record (the chain's head).
    pub hash: String,
    /// The Merkle root (RFC 9162) over records 1 to `seq`, hex.
    pub root: String,
    /// When it was signed: RFC 3339, UTC.
    pub time: String,
    /// The replica whose log it is.
    pub replica: String,
    /// The key epoch that signed it.
    pub epoch: u64,
    /// The id of the signing key (see [`AuditPublicKey::id`]).
    pub key: String,
    /// Ed25519 over [`checkpoint_body`], base64.
    pub signature: String,
}

impl SignedCheckpoint {
    /// Signs a checkpoint of the tree of `seq` records.
    pub(super) fn sign(
        signer: &AuditSigner,
        seq: u64,
        hash: String,
        root: &Hash,
        time: String,
        replica: String,
    ) -> SignedCheckpoint {
        let mut checkpoint = SignedCheckpoint {
            seq,
            hash,
            root: merkle::to_hex(root),
            time,
            replica,
            epoch: signer.epoch(),
            key: signer.public().id(),
            signature: String::new(),
        };
        checkpoint.signature = signer.sign(checkpoint_body(&checkpoint).as_bytes());
        checkpoint
    }

    /// Whether `key` signed this checkpoint.
    pub fn verifies_with(&self, key: &AuditPublicKey) -> bool {
        self.key == key.id() && key.verifies(checkpoint_body(self).as_bytes(), &self.signature)
    }

    /// The root as a hash.
    ///
    /// # Errors
    /// [`AuditError::Key`] if it is not 64 hex digits.
    pub fn root_hash(&self) -> Result<Hash, AuditError> {
        merkle::from_hex(&self.root).map_err(|e| AuditError::key(format!("checkpoint root: {e}")))
    }
}

/// The bytes a checkpoint's signature covers.
pub fn checkpoint_body(checkpoint: &SignedCheckpoint) -> String {
    format!(
        "mayfly audit checkpoint v1\nreplica {}\nsize {}\nroot {}\nhead {}\ntime {}\nepoch {}\n",
        checkpoint.replica,
        checkpoint.seq,
        checkpoint.root,
        checkpoint.hash,
        checkpoint.time,
        checkpoint.epoch
    )
}

/// What an `audit.key.rotate` record's `detail` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handover {
    /// The epoch the new key signs for.
    pub epoch: u64,
    /// The new public key, base64 of its 32 bytes.
    pub public_key: String,
    /// The tree size when the key was introduced (the record itself is the next one).
    pub size: u64,
    /// The Merkle root at `size`, hex.
    pub root: String,
    /// The head hash at `size`.
    pub head: String,
    /// The previous key's Ed25519 signature over [`handover_body`], base64; absent for a
    /// root key (epoch 0), which is trusted by being pinned, not by a signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Why a new root key was started over an existing chain (an operator's acceptance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Handover {
    /// The new key.
    ///
    /// # Errors
    /// [`AuditError::Key`] if `public_key` is not a key.
    pub fn key(&self) -> Result<AuditPublicKey, AuditError> {
        AuditPublicKey::from_base64(&self.public_key)
    }

    /// Whether `previous` signed this hand-over.
    pub fn verifies_with(&self, previous: &AuditPublicKey) -> bool {
        self.signature
            .as_deref()
            .is_some_and(|signature| previous.verifies(handover_body(self).as_bytes(), signature))
    }
}

/// The bytes a hand-over's signature covers.
pub fn handover_body(handover: &Handover) -> String {
    format!(
        "mayfly audit key v1\nepoch {}\nkey {}\nsize {}\nroot {}\nhead {}\n",
        handover.epoch, handover.public_key, handover.size, handover.root, handover.head
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn handover(signer: &AuditSigner, next: &AuditSigner) -> Handover {
        let mut handover = Handover {
            epoch: next.epoch(),
            public_key: next.public().to_base64(),
            size: 7,
            root: merkle::to_hex(&merkle::empty_root()),
            head: "ab".repeat(32),
            signature: None,
            reason: None,
        };
        handover.signature = Some(signer.sign(handover_body(&handover).as_bytes()));
        handover
    }

    #[test]
    fn a_handover_verifies_with_the_previous_key_only() {
        let (first, _) = AuditSigner::generate(0).unwrap();
        let (second, _) = AuditSigner::generate(1).unwrap();
        let signed = handover(&first, &second);
        assert!(signed.verifies_with(&first.public()), "control");
        assert!(!signed.verifies_with(&second.public()));
        let moved = Handover {
            size: 6,
            ..signed.clone()
        };
        assert!(!moved.verifies_with(&first.public()), "the size is signed");
        let unsigned = Handover {
            signature: None,
            ..signed
        };
        assert!(!unsigned.verifies_with(&first.public()));
    }

    #[test]
    fn a_checkpoint_verifies_with_its_key_only() {
        let (signer, _) = AuditSigner::generate(3).unwrap();
        let (other, _) = AuditSigner::generate(3).unwrap();
        let checkpoint = SignedCheckpoint::sign(
            &signer,
            5,
            "cd".repeat(32),
            &merkle::empty_root(),
            "2026-01-01T00:00:00.000Z".into(),
            "r1".into(),
        );
        assert!(checkpoint.verifies_with(&signer.public()), "control");
        assert!(!checkpoint.verifies_with(&other.public()));
        for edited in [
            SignedCheckpoint {
                seq: 4,
                ..checkpoint.clone()
            },
            SignedCheckpoint {
                replica: "r2".into(),
                ..checkpoint.clone()
            },
            SignedCheckpoint {
                epoch: 2,
                ..checkpoint.clone()
            },
        ] {
            assert!(!edited.verifies_with(&signer.public()), "{edited:?}");
        }
    }

    #[test]
    fn keys_round_trip_through_their_files_and_pem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        assert!(AuditSigner::load(&path).unwrap().is_none());
        let (signer, pkcs8) = AuditSigner::generate(4).unwrap();
        signer.store(&pkcs8, &path).unwrap();
        let loaded = AuditSigner::load(&path).unwrap().unwrap();
        assert_eq!(loaded.epoch(), 4);
        assert_eq!(loaded.public(), signer.public());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !format!("{loaded:?}").contains(&text[20..40]),
            "no secret in Debug"
        );

        let pem = signer.public().to_pem();
        assert_eq!(
            AuditPublicKey::from_pem(pem.as_bytes()).unwrap(),
            signer.public()
        );
        assert!(AuditPublicKey::from_pem(b"not pem").is_err());
        std::fs::write(&path, b"{\"epoch\":1}").unwrap();
        assert!(AuditSigner::load(&path).is_err());
    }

    #[test]
    fn openssl_verifies_a_checkpoint_signature() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, _) = AuditSigner::generate(0).unwrap();
        let checkpoint = SignedCheckpoint::sign(
            &signer,
            9,
            "ef".repeat(32),
            &merkle::empty_root(),
            "2026-01-01T00:00:00.000Z".into(),
            "r1".into(),
        );
        let public = dir.path().join("key.pem");
        let body = dir.path().join("body");
        let signature = dir.path().join("sig");
        std::fs::write(&public, signer.public().to_pem()).unwrap();
        std::fs::write(&body, checkpoint_body(&checkpoint)).unwrap();
        std::fs::write(&signature, STANDARD.decode(&checkpoint.signature).unwrap()).unwrap();
        let verify = |body: &Path| {
            std::process::Command::new("openssl")
                .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
                .arg(&public)
                .arg("-in")
                .arg(body)
                .arg("-sigfile")
                .arg(&signature)
                .output()
                .expect("openssl runs")
        };
        let good = verify(&body);
        assert!(
            good.status.success(),
            "{}",
            String::from_utf8_lossy(&good.stderr)
        );
        let edited = dir.path().join("edited");
        std::fs::write(
            &edited,
            checkpoint_body(&SignedCheckpoint {
                seq: 10,
                ..checkpoint
            }),
        )
        .unwrap();
        assert!(!verify(&edited).status.success());
    }
}
