//! [`WorkloadClient`]: the SPIFFE Workload API over the agent's Unix socket.

use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_stream::{Stream, StreamExt as _};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};
use zeroize::Zeroizing;

use super::endpoint::{ENDPOINT_SOCKET_ENV, socket_path};
use super::jwt_svid::{JwtBundles, JwtSvid};
use super::{WorkloadError, X509Context};
use crate::SpiffeId;
use crate::jwt::Audience;
use crate::proto::workload as wl;
use crate::proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;

/// The metadata every Workload API request carries, with the value `true`
/// (SPIFFE_Workload_Endpoint.md §3, against server-side request forgery).
const SECURITY_HEADER: &str = "workload.spiffe.io";
/// How long connecting to the socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a unary call (or a stream's first response) may take. Minting
/// a JWT-SVID may make the agent call the broker, hence not shorter.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A stream of updates from the agent; ends after its first error.
pub type UpdateStream<T> = Pin<Box<dyn Stream<Item = Result<T, WorkloadError>> + Send>>;

/// Adds the security header to every request.
#[derive(Debug, Clone, Copy)]
struct SecurityHeader;

impl Interceptor for SecurityHeader {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(
            SECURITY_HEADER,
            tonic::metadata::MetadataValue::from_static("true"),
        );
        Ok(request)
    }
}

type Api = SpiffeWorkloadApiClient<InterceptedService<Channel, SecurityHeader>>;

/// A client of the SPIFFE Workload API served by a local agent.
///
/// Cheap to clone: clones share one connection, which reconnects on its
/// own after the agent restarts (the call that finds it gone fails with
/// [`WorkloadError::Unavailable`]; the next one redials).
#[derive(Clone)]
pub struct WorkloadClient {
    api: Api,
    socket: Arc<PathBuf>,
}

impl fmt::Debug for WorkloadClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadClient")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl WorkloadClient {
    /// Connects to the agent at `endpoint`, an address in the form of
    /// `SPIFFE_ENDPOINT_SOCKET`: `unix:///path/to/socket` or
    /// `unix:/path/to/socket`.
    ///
    /// # Errors
    ///
    /// [`WorkloadError::InvalidEndpoint`] for an address that is not a
    /// `unix:` URI with an absolute path (`tcp:` endpoints are refused: a
    /// Mayfly agent attests callers by their Unix socket credentials);
    /// [`WorkloadError::Unavailable`] if nothing accepts on the socket.
    pub async fn connect(endpoint: &str) -> Result<Self, WorkloadError> {
        let path = socket_path(endpoint)?;
        Self::connect_to_socket(&path).await
    }

    /// Connects to the agent named by the `SPIFFE_ENDPOINT_SOCKET`
    /// environment variable.
    ///
    /// # Errors
    ///
    /// [`WorkloadError::EndpointNotSet`] if the variable is unset or not
    /// UTF-8; otherwise as [`connect`](Self::connect).
    pub async fn from_env() -> Result<Self, WorkloadError> {
        let endpoint =
            std::env::var(ENDPOINT_SOCKET_ENV).map_err(|_| WorkloadError::EndpointNotSet)?;
        Self::connect(&endpoint).await
    }

    /// Connects to the agent's socket at `path`.
    ///
    /// # Errors
    ///
    /// [`WorkloadError::Unavailable`] if nothing accepts on the socket.
    pub async fn connect_to_socket(path: &Path) -> Result<Self, WorkloadError> {
        let socket = Arc::new(path.to_owned());
        let dial = socket.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let dial = dial.clone();
            async move {
                tokio::net::UnixStream::connect(dial.as_path())
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        });
        // The URI only satisfies HTTP/2's `:authority`; the connector
        // ignores it and dials the socket.
        let channel = Endpoint::from_static("http://localhost")
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .connect_with_connector(connector)
            .await
            .map_err(|e| WorkloadError::Unavailable {
                message: format!(
                    "cannot connect to {}: {}",
                    socket.display(),
                    crate::error_chain(&e)
                ),
            })?;
        Ok(WorkloadClient {
            api: SpiffeWorkloadApiClient::with_interceptor(channel, SecurityHeader),
            socket,
        })
    }

    /// The agent's socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The workload's X509-SVIDs and bundles, once.
    ///
    /// # Errors
    ///
    /// The agent's refusal ([`WorkloadError::NoIdentityIssued`],
    /// [`WorkloadError::PermissionDenied`], [`WorkloadError::Unavailable`]
    /// while it has nothing to serve yet, …),
    /// [`WorkloadError::InvalidResponse`] for an SVID or bundle this crate
    /// cannot use, [`WorkloadError::StreamEnded`] if the agent hung up.
    pub async fn fetch_x509_context(&self) -> Result<X509Context, WorkloadError> {
        let mut stream = self.stream_x509_contexts().await?;
        stream
            .next()
            .await
            .unwrap_or(Err(WorkloadError::StreamEnded))
    }

    /// The workload's X509-SVIDs and bundles: the current state first, then
    /// again on every change (rotation, bundle update, entry change).
    ///
    /// The stream ends after its first error, which says why (the agent
    /// revoked the workload's last identity: [`WorkloadError::NoIdentityIssued`]).
    ///
    /// # Errors
    ///
    /// As [`fetch_x509_context`](Self::fetch_x509_context), for opening the
    /// stream.
    pub async fn stream_x509_contexts(&self) -> Result<UpdateStream<X509Context>, WorkloadError> {
        let stream = self
            .api
            .clone()
            .fetch_x509svid(wl::X509svidRequest {})
            .await
            .map_err(|status| WorkloadError::from_status(&status))?
            .into_inner();
        Ok(until_first_error(stream, X509Context::parse))
    }

    /// A JWT-SVID for `audience`, for the identity `spiffe_id` or, when
    /// `None`, the first the workload holds that may have one.
    ///
    /// # Errors
    ///
    /// [`WorkloadError::PermissionDenied`] when the audience is not allowed
    /// for the workload's entry or it holds no such SPIFFE ID,
    /// [`WorkloadError::NoIdentityIssued`], [`WorkloadError::Unavailable`]
    /// when the agent cannot reach the broker and has nothing cached,
    /// [`WorkloadError::InvalidResponse`] for a token that is not a
    /// JWT-SVID for that audience and SPIFFE ID.
    pub async fn fetch_jwt_svid(
        &self,
        audience: &Audience,
        spiffe_id: Option<&SpiffeId>,
    ) -> Result<JwtSvid, WorkloadError> {
        let request = wl::JwtsvidRequest {
            audience: vec![audience.as_str().to_owned()],
            spiffe_id: spiffe_id.map(ToString::to_string).unwrap_or_default(),
        };
        let response = self
            .api
            .clone()
            .fetch_jwtsvid(request)
            .await
            .map_err(|status| WorkloadError::from_status(&status))?
            .into_inner();
        let svid = response
            .svids
            .into_iter()
            .next()
            .ok_or_else(|| WorkloadError::invalid_response("no JWT-SVID in the response"))?;
        let token = Zeroizing::new(svid.svid);
        let jwt = JwtSvid::parse(token, &svid.spiffe_id, svid.hint)?;
        if !jwt.audience().iter().any(|a| a == audience.as_str()) {
            return Err(WorkloadError::invalid_response(format!(
                "asked for audience {:?}, got a token for {:?}",
                audience.as_str(),
                jwt.audience()
            )));
        }
        if let Some(wanted) = spiffe_id
            && jwt.spiffe_id() != wanted
        {
            return Err(WorkloadError::invalid_response(format!(
                "asked for {wanted}, got a token for {}",
                jwt.spiffe_id()
            )));
        }
        Ok(jwt)
    }

    /// The JWT bundles (one JWK Set per trust domain), once.
    ///
    /// # Errors
    ///
    /// The agent's refusal, as for [`fetch_x509_context`](Self::fetch_x509_context);
    /// [`WorkloadError::InvalidResponse`] for a JWK Set this crate cannot parse.
    pub async fn fetch_jwt_bundles(&self) -> Result<JwtBundles, WorkloadError> {
        let mut stream = self.stream_jwt_bundles().await?;
        stream
            .next()
            .await
            .unwrap_or(Err(WorkloadError::StreamEnded))
    }

    /// The JWT bundles: the current ones first, then again on every change
    /// (key rotation). Ends after its first error.
    ///
    /// # Errors
    ///
    /// As [`fetch_jwt_bundles`](Self::fetch_jwt_bundles), for opening the stream.
    pub async fn stream_jwt_bundles(&self) -> Result<UpdateStream<JwtBundles>, WorkloadError> {
        let stream = self
            .api
            .clone()
            .fetch_jwt_bundles(wl::JwtBundlesRequest {})
            .await
            .map_err(|status| WorkloadError::from_status(&status))?
            .into_inner();
        Ok(until_first_error(
            stream,
            |response: wl::JwtBundlesResponse| JwtBundles::parse(response.bundles),
        ))
    }

    /// Has the agent validate `token` for `audience`. A relying party with
    /// a [`JwtVerifier`](super::JwtVerifier) validates locally instead,
    /// without a round trip.
    ///
    /// # Errors
    ///
    /// [`WorkloadError::InvalidArgument`] when the token is invalid (the
    /// message says why) or the audience is empty;
    /// [`WorkloadError::NoIdentityIssued`] if the caller itself has no
    /// identity (agents only serve registered workloads);
    /// [`WorkloadError::InvalidResponse`] for an answer without a valid
    /// SPIFFE ID.
    pub async fn validate_jwt_svid(
        &self,
        token: &str,
        audience: &Audience,
    ) -> Result<AgentValidatedJwt, WorkloadError> {
        let request = wl::ValidateJwtsvidRequest {
            audience: audience.as_str().to_owned(),
            svid: token.to_owned(),
        };
        let response = self
            .api
            .clone()
            .validate_jwtsvid(request)
            .await
            .map_err(|status| WorkloadError::from_status(&status))?
            .into_inner();
        let spiffe_id = response.spiffe_id.parse().map_err(|e| {
            WorkloadError::invalid_response(format!(
                "validated SPIFFE ID {:?}: {e}",
                response.spiffe_id
            ))
        })?;
        Ok(AgentValidatedJwt {
            spiffe_id,
            claims: response.claims.map(struct_to_json).unwrap_or_default(),
        })
    }
}

/// What the agent says about a JWT-SVID it validated.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AgentValidatedJwt {
    /// The token's subject.
    pub spiffe_id: SpiffeId,
    /// All its claims, as JSON.
    pub claims: Map<String, Value>,
}

/// Parses every message of a server stream, ending after the first error.
fn until_first_error<M, T>(
    stream: tonic::Streaming<M>,
    parse: impl Fn(M) -> Result<T, WorkloadError> + Send + 'static,
) -> UpdateStream<T>
where
    M: Send + 'static,
    T: Send + 'static,
{
    let mut failed = false;
    Box::pin(stream.map_while(move |message| {
        if failed {
            return None;
        }
        let parsed = message
            .map_err(|status| WorkloadError::from_status(&status))
            .and_then(&parse);
        failed = parsed.is_err();
        Some(parsed)
    }))
}

/// A protobuf `Struct` as JSON.
fn struct_to_json(value: prost_types::Struct) -> Map<String, Value> {
    value
        .fields
        .into_iter()
        .map(|(name, value)| (name, value_to_json(value)))
        .collect()
}

fn value_to_json(value: prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(n)) => number_to_json(n),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.into_iter().map(value_to_json).collect())
        }
        Some(Kind::StructValue(object)) => Value::Object(struct_to_json(object)),
    }
}

/// Protobuf numbers are doubles; whole ones (`exp`, `iat`) become integers
/// again, as they were in the token.
fn number_to_json(n: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer up to it is exact
    if n.fract() == 0.0 && n.abs() <= EXACT {
        // In range and whole, so the cast is exact.
        #[allow(clippy::cast_possible_truncation)]
        return Value::from(n as i64);
    }
    serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_come_back_as_integers() {
        assert_eq!(
            number_to_json(1_767_323_045.0),
            Value::from(1_767_323_045_i64)
        );
        assert_eq!(number_to_json(0.5), Value::from(0.5));
        assert_eq!(number_to_json(f64::NAN), Value::Null);
    }

    #[test]
    fn the_interceptor_adds_the_security_header() {
        let request = SecurityHeader.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get(SECURITY_HEADER).unwrap().as_bytes(),
            b"true"
        );
    }
}
