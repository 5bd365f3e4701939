//! Talking to the broker from outside it: connections to the broker (TLS,
//! optionally mTLS) and to its admin API (the Unix socket in its data
//! directory), key pairs and CSRs made locally, the directory a workload
//! keeps its X509-SVID in, and minting with platform evidence in one call.
//!
//! The CLI, the agent and the load generator all connect through here, so
//! every client checks the broker's address and trust bundle the same way.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mayfly_sdk::client::{connect_broker, new_key_and_csr};
//!
//! let bundle = std::fs::read("/etc/mayfly/bundle.pem")?;
//! let broker = connect_broker("https://mayfly.example.org:7443", &bundle, None).await?;
//! let (key, csr) = new_key_and_csr()?; // the key never leaves this process
//! # let _ = (broker, key, csr);
//! # Ok(()) }
//! ```

mod connect;
mod error;
mod keygen;
mod oidc;
mod secret;
mod svid_dir;
pub mod x509pop;

pub use connect::{
    CONNECT_TIMEOUT, REQUEST_TIMEOUT, connect_admin, connect_broker, root_certificates,
};
pub use error::ClientError;
pub use keygen::{certifies_key, new_key_and_csr};
pub use oidc::{MintedJwtSvid, mint_jwt_svid_with_oidc_token};
pub use secret::Secret;
pub use svid_dir::{
    BUNDLE_FILE, KEY_FILE, SVID_FILE, SvidDir, SvidFiles, check_issued, read_bundle,
};
