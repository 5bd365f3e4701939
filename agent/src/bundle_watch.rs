//! The agent follows the broker's `WatchBundle` stream, so that a bundle
//! change (a new root, a new JWT key) reaches the Workload API streams at
//! once instead of at the next periodic sync.
//!
//! Each message wakes the syncer, which fetches entries and bundle as
//! usual: one code path for what the agent serves. The stream is opened
//! over plain TLS (it needs no client certificate), and again with the new
//! roots whenever they change.

use std::sync::Arc;
use std::time::Duration;

use mayfly_sdk::proto::v1 as pb;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::upstream::Upstream;

/// Wakes `wake` on every bundle the broker pushes, until `cancel` fires.
pub(crate) async fn follow(upstream: Arc<Upstream>, wake: Arc<Notify>, cancel: CancellationToken) {
    let mut roots_changed = upstream.roots_changed();
    let mut delay = Duration::from_millis(100);
    loop {
        let roots = upstream.trusted_roots_pem();
        let opened = async {
            let mut client = mayfly_sdk::client::connect_broker(upstream.server(), &roots, None)
                .await
                .map_err(|e| e.to_string())?;
            client
                .watch_bundle(pb::WatchBundleRequest {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| status.message().to_owned())
        };
        let mut stream = tokio::select! {
            () = cancel.cancelled() => return,
            opened = opened => match opened {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%error, "cannot watch the broker's bundle yet; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        delay = Duration::from_millis(100);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                // New roots: reconnect trusting them.
                Ok(()) = roots_changed.changed() => break,
                message = stream.message() => match message {
                    Ok(Some(bundle)) => {
                        tracing::debug!(sequence = bundle.sequence, "the broker pushed a bundle");
                        wake.notify_one();
                    }
                    Ok(None) | Err(_) => break,
                },
            }
        }
    }
}
