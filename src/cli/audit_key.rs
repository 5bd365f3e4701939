//! The root audit key an auditor pinned, as every offline `mayfly audit` check reads it.

use std::path::Path;

use mayfly::audit;

use super::error::CliError;

/// Reads a pinned root audit key (PEM, from `mayfly audit public-key`).
pub(super) fn read_public_key(path: &Path) -> Result<audit::AuditPublicKey, CliError> {
    let pem = mayfly_sdk::files::read_public_file(path)
        .map_err(|e| CliError::file("read", path, e.to_string()))?;
    Ok(audit::AuditPublicKey::from_pem(&pem)?)
}
