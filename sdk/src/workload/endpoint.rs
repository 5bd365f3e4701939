//! The Workload API endpoint address, as `SPIFFE_ENDPOINT_SOCKET` gives it
//! (SPIFFE_Workload_Endpoint.md §4): `unix:///path/to/socket` or
//! `unix:/path/to/socket`.

use std::path::PathBuf;

use super::WorkloadError;

/// The environment variable that names the Workload API endpoint.
pub const ENDPOINT_SOCKET_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// The socket path of a `unix:` endpoint address.
///
/// The spec also allows `tcp://ip:port`; a Mayfly agent serves only a Unix
/// socket, whose peer credentials are how it knows the caller, so TCP
/// endpoints are refused rather than half supported.
pub(crate) fn socket_path(endpoint: &str) -> Result<PathBuf, WorkloadError> {
    let invalid = |reason: &'static str| WorkloadError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    if endpoint.starts_with("tcp:") {
        return Err(invalid(
            "tcp endpoints are not supported; the Mayfly agent serves a Unix socket",
        ));
    }
    let rest = endpoint
        .strip_prefix("unix:")
        .ok_or_else(|| invalid("the scheme must be unix (unix:///path/to/socket)"))?;
    let path = match rest.strip_prefix("//") {
        // `unix://host/path` names a host, which a Unix socket cannot have.
        Some(after_authority) if !after_authority.starts_with('/') => {
            return Err(invalid(
                "a unix endpoint has no authority (use unix:///path, three slashes)",
            ));
        }
        Some(path) => path,
        None => rest,
    };
    if !path.starts_with('/') {
        return Err(invalid("the socket path must be absolute"));
    }
    if path.len() < 2 {
        return Err(invalid("the socket path is empty"));
    }
    if path.contains(['?', '#']) {
        return Err(invalid("a unix endpoint has no query or fragment"));
    }
    if path.contains('%') {
        return Err(invalid("percent-encoded socket paths are not supported"));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_unix_forms_give_the_path() {
        for endpoint in ["unix:///run/agent.sock", "unix:/run/agent.sock"] {
            assert_eq!(
                socket_path(endpoint),
                Ok(PathBuf::from("/run/agent.sock")),
                "{endpoint}"
            );
        }
    }

    #[test]
    fn malformed_endpoints_are_refused() {
        for endpoint in [
            "",
            "/run/agent.sock",
            "unix:run/agent.sock",
            "unix://host/run/agent.sock",
            "unix://",
            "unix:/",
            "unix:///run/agent.sock?x=1",
            "unix:///run/agent.sock#frag",
            "unix:///run/agent%2esock",
            "tcp://127.0.0.1:8080",
            "http://localhost/agent.sock",
        ] {
            assert!(
                matches!(
                    socket_path(endpoint),
                    Err(WorkloadError::InvalidEndpoint { .. })
                ),
                "{endpoint:?} was accepted"
            );
        }
    }
}
