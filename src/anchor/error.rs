//! Why an anchor sink cannot be set up, and why one try to send a checkpoint failed.

use std::path::PathBuf;
use std::time::Duration;

use mayfly_sdk::files::FileError;

/// Why an anchor sink cannot be set up from its settings (`[audit] anchor_url`,
/// `anchor_url_ca`, `anchor_url_token_file`, `anchor_syslog`). Each message names what is
/// wrong; none repeats a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// `anchor_url` is not an absolute `http` or `https` URL without credentials or
    /// fragment.
    #[error(transparent)]
    Url(#[from] crate::outbound::UrlError),
    /// The private CA file cannot be read.
    #[error("cannot read the CA file {}: {source}", path.display())]
    CaFile {
        /// `anchor_url_ca`.
        path: PathBuf,
        /// Why.
        #[source]
        source: FileError,
    },
    /// The private CA file holds no PEM certificate, or one that cannot be read.
    #[error("{}: {reason}", path.display())]
    CaCertificates {
        /// `anchor_url_ca`.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The bearer token file cannot be read, or others may read it.
    #[error("cannot read the token file {}: {source}", path.display())]
    TokenFile {
        /// `anchor_url_token_file`.
        path: PathBuf,
        /// Why (a mode other than 0600 or 0400 is refused).
        #[source]
        source: FileError,
    },
    /// The bearer token file is empty or holds more than one line of visible ASCII.
    #[error(
        "{}: the token must be one line of 1 to {max} visible ASCII characters",
        path.display()
    )]
    TokenFormat {
        /// `anchor_url_token_file`.
        path: PathBuf,
        /// The longest token accepted.
        max: usize,
    },
    /// A bearer token would cross the network in clear.
    #[error(
        "a bearer token is sent only over https (or plain http to a loopback address), \
         not to {url}"
    )]
    TokenInClear {
        /// `anchor_url`.
        url: String,
    },
    /// The HTTPS client cannot be set up (no system root certificates, a CA certificate
    /// rustls refuses).
    #[error("HTTPS client: {reason}")]
    Tls {
        /// What failed.
        reason: String,
    },
    /// `anchor_syslog` is not `unix:<absolute path>` or `udp:<IP>:<port>`.
    #[error("{spec:?} is not a syslog address: {reason}")]
    Syslog {
        /// The spec as given.
        spec: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Why one try to send a checkpoint to a sink failed: what `mayfly status` and the
/// recovery record show, kept short.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The witness answered with a status other than 2xx (other than 200 or 404 for the
    /// read at start).
    #[error("status {0}")]
    Status(u16),
    /// No answer: no connection, a TLS failure, a broken exchange.
    #[error("{0}")]
    Request(String),
    /// No complete answer within the time limit.
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(Duration),
    /// The answer to the read at start is larger than allowed.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The answer to the read at start is not an audit anchor record.
    #[error("the answer is not an audit anchor record: {0}")]
    NotARecord(String),
    /// The checkpoint could not be encoded for the sink.
    #[error("cannot encode the checkpoint: {0}")]
    Encode(String),
    /// The key hand-overs to send along cannot be read.
    #[error("cannot read the key hand-overs: {0}")]
    Keys(String),
    /// A datagram could not be sent.
    #[error("send to {target}: {source}")]
    Send {
        /// The syslog address.
        target: String,
        /// The socket's error.
        #[source]
        source: std::io::Error,
    },
}
