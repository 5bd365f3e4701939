//! The CRL this replica publishes for X.509 relying parties: every serial
//! revocation in force, signed by this replica's intermediate CA, rebuilt
//! on each change and refreshed well before its `nextUpdate`.
//!
//! A CRL lists serials. Entry, SPIFFE ID and agent revocations name
//! identities, whose certificates' serials the broker does not keep, so
//! they reach X.509 relying parties through `WatchRevocations` (the SDK and
//! the agent), not through the CRL.

use std::sync::Arc;
use std::time::Duration;

use mayfly_ca::{CertificateAuthority, RevokedSerial};
use mayfly_sdk::revocation::{RevocationChange, RevocationKind, RevocationSet};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

/// How long a CRL is valid (`nextUpdate - thisUpdate`).
pub const CRL_VALIDITY: Duration = Duration::from_secs(30 * 60);
/// How often it is re-signed when nothing changes.
pub const CRL_REFRESH: Duration = Duration::from_secs(10 * 60);

/// The published CRL (DER), `None` until the first is signed.
pub type CrlSender = watch::Sender<Option<Arc<Vec<u8>>>>;

/// Signs the CRL of the serials revoked in `set` at the clock's now.
///
/// # Errors
///
/// A message if signing fails.
pub fn build(
    ca: &CertificateAuthority,
    set: &RevocationSet,
    clock: &dyn Clock,
) -> Result<Vec<u8>, String> {
    let now = clock.unix_now();
    let mut revoked: Vec<RevokedSerial> = set
        .of_kind(RevocationKind::Serial)
        .iter()
        .filter(|r| !r.is_expired(now))
        .map(|r| RevokedSerial {
            serial: r.value.clone(),
            revoked_at: r.revoked_at,
        })
        .collect();
    revoked.sort_by(|a, b| a.serial.cmp(&b.serial));
    let validity = i64::try_from(CRL_VALIDITY.as_secs()).unwrap_or(i64::MAX);
    // Milliseconds since the epoch increase from one CRL to the next, as
    // CRL numbers must.
    let number = u64::try_from(crate::clock::unix_millis(clock.now())).unwrap_or(0);
    ca.crl(&revoked, now, now.saturating_add(validity), number)
        .map_err(|e| e.to_string())
}

/// Keeps `sender` holding a current CRL until `cancel` fires: re-signed on
/// every change to revoked serials, whenever the CA rotates (`ca_changes`:
/// a new intermediate signs it) and every [`CRL_REFRESH`].
pub async fn publish(
    ca: Arc<CertificateAuthority>,
    set: Arc<RevocationSet>,
    sender: Arc<CrlSender>,
    clock: Arc<dyn Clock>,
    mut ca_changes: watch::Receiver<u64>,
    cancel: CancellationToken,
) {
    // Only the changes: `subscribe` would also copy out every revocation,
    // a million `jti`s among them, which the CRL does not read. Subscribed
    // before the first build, so a change made meanwhile still rebuilds it.
    let mut changes = set.changes();
    loop {
        match build(&ca, &set, clock.as_ref()) {
            Ok(der) => {
                sender.send_replace(Some(Arc::new(der)));
            }
            Err(error) => tracing::error!(%error, "cannot sign the CRL; the last one stays"),
        }
        // Wait for a change that touches serials, or the refresh.
        loop {
            let rebuild = tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(CRL_REFRESH) => true,
                Ok(()) = ca_changes.changed() => true,
                change = changes.recv() => match change {
                    Ok(RevocationChange::Upserted(r)) => r.kind == RevocationKind::Serial,
                    Ok(RevocationChange::Removed(key)) => key.starts_with("serial:"),
                    Ok(RevocationChange::Full) | Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if rebuild {
                break;
            }
        }
    }
}
