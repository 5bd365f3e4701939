//! The Workload Endpoint: a Unix socket, mode 0666, serving the Workload
//! API over gRPC without TLS (SPIFFE_Workload_Endpoint.md §3).
//!
//! The socket is open to every local user on purpose: access control is
//! per request, by attesting the caller's peer credentials.

use std::io;
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::Duration;

use mayfly_sdk::proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use tokio::net::UnixListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::service::interceptor::InterceptedService;

use super::authority::LenientAuthority;
use super::error::AgentError;
use super::workload_api::{WorkloadApi, require_security_header};

/// Mode of the socket: any local process may connect.
const SOCKET_MODE: u32 = 0o666;
/// Largest request accepted; the biggest legitimate one is a JWT to validate.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Streams one connection may hold open at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// Requests one connection may have in flight at once.
const MAX_REQUESTS_PER_CONNECTION: usize = 64;

/// Binds the socket, removing a stale one a previous run left.
///
/// # Errors
/// [`AgentError::Socket`] if another process is serving on it, the path is
/// something other than a socket, or binding fails.
pub(crate) fn bind(path: &Path) -> Result<UnixListener, AgentError> {
    let fail = |reason: String| AgentError::Socket {
        path: path.to_owned(),
        reason,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| fail(format!("cannot create its directory: {e}")))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(fail(
                        "another process is serving on it (a second agent?)".to_owned(),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)
                        .map_err(|e| fail(format!("cannot remove the stale socket: {e}")))?;
                    tracing::info!(socket = %path.display(), "removed a stale socket");
                }
                Err(e) => return Err(fail(format!("exists and cannot be probed: {e}"))),
            }
        }
        Ok(_) => {
            return Err(fail(
                "exists and is not a socket; refusing to replace it".to_owned(),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| fail(format!("cannot set its mode: {e}")))?;
    Ok(listener)
}

/// Serves the Workload API on `listener` until `shutdown` resolves, then
/// drains the connections. Every connection goes through
/// [`LenientAuthority`], so that gRPC clients that send the socket path as
/// `:authority` (grpcio, grpc-java) are served.
pub(crate) async fn serve(
    listener: UnixListener,
    api: WorkloadApi,
    rpc: Option<mayfly_telemetry::RpcLayer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let service = InterceptedService::new(
        SpiffeWorkloadApiServer::new(api).max_decoding_message_size(MAX_REQUEST_BYTES),
        require_security_header,
    );
    let incoming =
        UnixListenerStream::new(listener).map(|accepted| accepted.map(LenientAuthority::new));
    // One service, so no router: tonic serves it directly. Without
    // telemetry the calls carry no layer at all.
    let builder = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .concurrency_limit_per_connection(MAX_REQUESTS_PER_CONNECTION)
        .http2_keepalive_interval(Some(Duration::from_secs(30)));
    let served = match rpc {
        Some(rpc) => {
            builder
                .layer(rpc)
                .serve_with_incoming_shutdown(service, incoming, shutdown)
                .await
        }
        None => {
            builder
                .serve_with_incoming_shutdown(service, incoming, shutdown)
                .await
        }
    };
    if let Err(error) = served {
        tracing::error!(%error, "the Workload API server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_the_mode_is_0666()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("run").join("agent.sock");
        let first = bind(&path)?;
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            SOCKET_MODE
        );
        // Live: refused.
        assert!(bind(&path).is_err());
        drop(first);
        // Stale: replaced.
        let _second = bind(&path)?;
        Ok(())
    }

    #[tokio::test]
    async fn a_regular_file_is_never_replaced() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("agent.sock");
        std::fs::write(&path, b"precious")?;
        assert!(bind(&path).is_err());
        assert_eq!(std::fs::read(&path)?, b"precious");
        Ok(())
    }
}
