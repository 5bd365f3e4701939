//! The directory a workload keeps its X509-SVID in: `svid.pem` (leaf, then
//! intermediates), `svid_key.pem` (PKCS#8, mode 0600) and `bundle.pem` (the trust domain's
//! root CAs).
//!
//! Each file is replaced atomically. The three together are not: a crash between two
//! renames can leave a new certificate next to the old key. The window is a few
//! microseconds; should it happen, attesting again with a new join token starts afresh.

use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroizing;

use super::connect::root_certificates;
use super::error::ClientError;
use crate::files::{self, FileError};
use crate::pem;
use crate::proto::v1::{Bundle, X509Svid};

/// File name of the certificate chain, leaf first.
pub const SVID_FILE: &str = "svid.pem";
/// File name of the private key (PKCS#8 PEM, mode 0600).
pub const KEY_FILE: &str = "svid_key.pem";
/// File name of the trust bundle (root CAs, PEM).
pub const BUNDLE_FILE: &str = "bundle.pem";

/// A directory holding one X509-SVID.
#[derive(Debug, Clone)]
pub struct SvidDir {
    dir: PathBuf,
}

/// Where the files went, for the command's output.
#[derive(Debug, Clone, Serialize)]
pub struct SvidFiles {
    /// The certificate chain.
    pub svid: PathBuf,
    /// The private key.
    pub key: PathBuf,
    /// The trust bundle.
    pub bundle: PathBuf,
}

impl SvidDir {
    /// The SVID directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SvidDir { dir: dir.into() }
    }

    /// The paths of the three files.
    pub fn files(&self) -> SvidFiles {
        SvidFiles {
            svid: self.dir.join(SVID_FILE),
            key: self.dir.join(KEY_FILE),
            bundle: self.dir.join(BUNDLE_FILE),
        }
    }

    /// Reads the certificate chain and the key for mTLS.
    ///
    /// # Errors
    /// [`ClientError::File`] if either file is missing or unreadable, or the key file is
    /// readable by others.
    pub fn read_identity(&self) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), ClientError> {
        let paths = self.files();
        let chain =
            files::read_public_file(&paths.svid).map_err(|e| self.missing_or(&paths.svid, e))?;
        let key =
            files::read_secret_file(&paths.key).map_err(|e| self.missing_or(&paths.key, e))?;
        Ok((chain, key))
    }

    /// Writes a new SVID, its key and the bundle, creating the directory (mode 0700) if
    /// needed. The bundle goes first: it only ever gains roots the new certificate may
    /// need, so it is safe to have it ahead of the certificate.
    ///
    /// # Errors
    /// [`ClientError::File`] if the directory or a file cannot be written.
    pub fn write(
        &self,
        svid: &X509Svid,
        bundle: &Bundle,
        key_pem: &str,
    ) -> Result<SvidFiles, ClientError> {
        let paths = self.files();
        files::ensure_private_dir(&self.dir)
            .map_err(|e| ClientError::file("create", &self.dir, e))?;
        let bundle_pem = pem::certificates(bundle.x509_authorities.iter().map(Vec::as_slice));
        let chain_pem = pem::certificates(svid.cert_chain.iter().map(Vec::as_slice));
        files::write_public_atomic(&paths.bundle, bundle_pem.as_bytes())
            .map_err(|e| ClientError::file("write", &paths.bundle, e))?;
        files::write_public_atomic(&paths.svid, chain_pem.as_bytes())
            .map_err(|e| ClientError::file("write", &paths.svid, e))?;
        files::write_secret_atomic(&paths.key, key_pem.as_bytes())
            .map_err(|e| ClientError::file("write", &paths.key, e))?;
        Ok(paths)
    }

    fn missing_or(&self, path: &Path, error: FileError) -> ClientError {
        if !error.is_not_found() {
            return ClientError::file("read", path, error);
        }
        ClientError::File {
            action: "read",
            path: path.to_owned(),
            reason: format!(
                "no such file; run `mayfly client attest --out {}` first",
                self.dir.display()
            ),
            source: Some(error),
        }
    }
}

/// Reads a trust bundle file (PEM root CAs), explaining where it usually comes from.
///
/// # Errors
/// [`ClientError::File`] if it is missing or unreadable; [`ClientError::TlsMaterial`] if it
/// holds no certificate.
pub fn read_bundle(path: &Path) -> Result<Vec<u8>, ClientError> {
    let pem = files::read_public_file(path).map_err(|e| {
        if !e.is_not_found() {
            return ClientError::file("read", path, e);
        }
        ClientError::File {
            action: "read",
            path: path.to_owned(),
            reason: "no such file; pass --bundle FILE (MAYFLY_BUNDLE) with the server's root \
                     CA, which `mayfly server` writes to <data-dir>/bundle.pem"
                .to_owned(),
            source: Some(e),
        }
    })?;
    // Checked here as well as when connecting, so that the message names the file.
    if let Err(ClientError::TlsMaterial { reason, .. }) = root_certificates(&pem) {
        return Err(ClientError::TlsMaterial {
            what: format!("trust bundle {}", path.display()),
            reason,
        });
    }
    Ok(pem)
}

/// Checks that an issuance answer has what the API promises, and returns its parts.
///
/// # Errors
/// [`ClientError::BadResponse`] naming the missing part.
pub fn check_issued(
    response: crate::proto::v1::X509SvidResponse,
) -> Result<(X509Svid, Bundle), ClientError> {
    let svid = response
        .svid
        .ok_or_else(|| ClientError::bad_response("no SVID in the answer"))?;
    let bundle = response
        .bundle
        .ok_or_else(|| ClientError::bad_response("no trust bundle in the answer"))?;
    if svid.cert_chain.is_empty() {
        return Err(ClientError::bad_response("the SVID has no certificate"));
    }
    if bundle.x509_authorities.is_empty() {
        return Err(ClientError::bad_response("the trust bundle has no root CA"));
    }
    Ok((svid, bundle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::X509SvidResponse;

    fn issued(chain: Vec<Vec<u8>>, roots: Vec<Vec<u8>>) -> X509SvidResponse {
        X509SvidResponse {
            svid: Some(X509Svid {
                spiffe_id: "spiffe://td/a".into(),
                cert_chain: chain,
                ..Default::default()
            }),
            bundle: Some(Bundle {
                x509_authorities: roots,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn incomplete_answers_are_refused() {
        assert!(check_issued(X509SvidResponse::default()).is_err());
        assert!(check_issued(issued(vec![], vec![vec![1]])).is_err());
        assert!(check_issued(issued(vec![vec![1]], vec![])).is_err());
        assert!(check_issued(issued(vec![vec![1]], vec![vec![2]])).is_ok());
    }

    #[test]
    fn writes_three_files_with_a_private_key() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir()?;
        let dir = SvidDir::new(tmp.path().join("svid"));
        let (svid, bundle) = check_issued(issued(vec![vec![1, 2], vec![3]], vec![vec![4]]))?;
        let files = dir.write(&svid, &bundle, "KEY PEM")?;
        let chain = std::fs::read_to_string(&files.svid)?;
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        let key_mode = std::fs::metadata(&files.key)?.permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);
        let (read_chain, read_key) = dir.read_identity()?;
        assert_eq!(read_chain, chain.as_bytes());
        assert_eq!(read_key.as_slice(), b"KEY PEM");
        Ok(())
    }

    #[test]
    fn missing_svid_says_how_to_get_one() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let err = SvidDir::new(tmp.path()).read_identity().err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("mayfly client attest"), "{text}");
        Ok(())
    }
}
