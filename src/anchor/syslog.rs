//! The syslog anchor (`[audit] anchor_syslog`): each new signed checkpoint as one RFC 5424
//! message, over a Unix datagram socket (`unix:/dev/log`) or UDP (`udp:127.0.0.1:514`, RFC
//! 5426), for a log collector that ships it off the host.
//!
//! ```text
//! <85>1 2026-11-30T12:00:01.042Z host-a mayfly 4242 audit-checkpoint - {"seq":1042,…}
//! ```
//!
//! Facility authpriv (10) and severity notice (5) make the PRI 85; the timestamp is when the
//! message is sent; the MSG is the compact JSON of the [`SignedCheckpoint`], which the
//! collector can check with the audit root key. Write-only: nothing is read back at start.
//! A datagram that cannot be sent is a failed try; one that is sent may still be lost on
//! the way (UDP), which only the collector can tell.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use tokio::net::{UdpSocket, UnixDatagram};

use super::{AnchorError, SinkError};
use crate::audit::SignedCheckpoint;

/// PRI of every message: facility authpriv (10) × 8 + severity notice (5).
pub const PRI: u8 = 85;
/// APP-NAME of every message.
pub const APP_NAME: &str = "mayfly";
/// MSGID of every message.
pub const MSG_ID: &str = "audit-checkpoint";
/// The largest message sent: what RFC 5424 §6.1 asks every receiver to take (a checkpoint
/// takes about 450 bytes).
pub const MAX_MESSAGE_LEN: usize = 2048;

/// RFC 3339, UTC, milliseconds (RFC 5424 §6.2.3 allows up to six digits).
const TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Where syslog messages go: `unix:<absolute path>` or `udp:<IP>:<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// A Unix datagram socket (`/dev/log`).
    Unix(PathBuf),
    /// A syslog server over UDP.
    Udp(SocketAddr),
}

impl SyslogTarget {
    /// Reads `unix:/dev/log` or `udp:127.0.0.1:514` (`udp:[::1]:514`).
    ///
    /// # Errors
    /// [`AnchorError::Syslog`] for anything else: another scheme, a relative path, a host
    /// name instead of an IP address, no port.
    pub fn parse(spec: &str) -> Result<Self, AnchorError> {
        let invalid = |reason| AnchorError::Syslog {
            spec: spec.chars().take(200).collect(),
            reason,
        };
        if let Some(path) = spec.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(invalid(
                    "unix: takes an absolute socket path (unix:/dev/log)",
                ));
            }
            Ok(SyslogTarget::Unix(path))
        } else if let Some(address) = spec.strip_prefix("udp:") {
            address
                .parse()
                .map(SyslogTarget::Udp)
                .map_err(|_| invalid("udp: takes an IP address and a port (udp:127.0.0.1:514)"))
        } else {
            Err(invalid(
                "expected unix:<socket path> or udp:<IP>:<port> (unix:/dev/log, udp:127.0.0.1:514)",
            ))
        }
    }
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogTarget::Unix(path) => write!(f, "unix:{}", path.display()),
            SyslogTarget::Udp(address) => write!(f, "udp:{address}"),
        }
    }
}

/// The socket a message leaves by, made at the first send.
#[derive(Debug)]
enum Socket {
    Unix(UnixDatagram),
    Udp(UdpSocket),
}

/// Sends checkpoints to one syslog target.
#[derive(Debug)]
pub struct SyslogAnchor {
    target: SyslogTarget,
    hostname: String,
    socket: Option<Socket>,
}

impl SyslogAnchor {
    /// A sender to `target`; its socket is made at the first send, so a syslog daemon that
    /// is away at start is a failed try, not a failed start.
    pub fn new(target: SyslogTarget) -> Self {
        SyslogAnchor {
            target,
            hostname: hostname(),
            socket: None,
        }
    }

    /// Where it sends.
    pub fn target(&self) -> &SyslogTarget {
        &self.target
    }

    /// Sends `checkpoint` as one message.
    ///
    /// # Errors
    /// [`SinkError::Encode`] if the message cannot be made (or is over
    /// [`MAX_MESSAGE_LEN`]); [`SinkError::Send`] if the socket cannot be made or the
    /// datagram cannot be sent (no daemon on the socket, a UDP port that answered
    /// "unreachable" to an earlier one).
    pub async fn send(&mut self, checkpoint: &SignedCheckpoint) -> Result<(), SinkError> {
        let message = format_message(
            checkpoint,
            OffsetDateTime::now_utc(),
            &self.hostname,
            std::process::id(),
        )?;
        let failed = |source| SinkError::Send {
            target: self.target.to_string(),
            source,
        };
        let socket = match self.socket.take() {
            Some(socket) => socket,
            None => self.connect().await.map_err(failed)?,
        };
        let sent = match &socket {
            // Addressed at each send: a daemon that restarted has a new socket at the path.
            Socket::Unix(socket) => match &self.target {
                SyslogTarget::Unix(path) => socket.send_to(message.as_bytes(), path).await,
                SyslogTarget::Udp(_) => Err(std::io::Error::other("not a Unix target")),
            },
            Socket::Udp(socket) => socket.send(message.as_bytes()).await,
        };
        self.socket = Some(socket);
        match sent {
            Ok(n) if n == message.len() => Ok(()),
            Ok(n) => Err(failed(std::io::Error::other(format!(
                "{n} of {} bytes sent",
                message.len()
            )))),
            Err(e) => Err(failed(e)),
        }
    }

    async fn connect(&self) -> std::io::Result<Socket> {
        match &self.target {
            SyslogTarget::Unix(_) => UnixDatagram::unbound().map(Socket::Unix),
            SyslogTarget::Udp(address) => {
                let local: SocketAddr = if address.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let socket = UdpSocket::bind(local).await?;
                // Connected, so that a port that answers "unreachable" fails the next send.
                socket.connect(address).await?;
                Ok(Socket::Udp(socket))
            }
        }
    }
}

/// One RFC 5424 message carrying `checkpoint`, sent at `now` by process `procid` on
/// `hostname` (`-` when unknown).
///
/// # Errors
/// [`SinkError::Encode`] if the time cannot be formatted, the checkpoint cannot be encoded,
/// or the message is over [`MAX_MESSAGE_LEN`].
pub fn format_message(
    checkpoint: &SignedCheckpoint,
    now: OffsetDateTime,
    hostname: &str,
    procid: u32,
) -> Result<String, SinkError> {
    let timestamp = now
        .to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP)
        .map_err(|e| SinkError::Encode(e.to_string()))?;
    let body = serde_json::to_string(checkpoint).map_err(|e| SinkError::Encode(e.to_string()))?;
    let message = format!("<{PRI}>1 {timestamp} {hostname} {APP_NAME} {procid} {MSG_ID} - {body}");
    if message.len() > MAX_MESSAGE_LEN {
        return Err(SinkError::Encode(format!(
            "a message of {} bytes is over {MAX_MESSAGE_LEN}",
            message.len()
        )));
    }
    Ok(message)
}

/// This host's name as RFC 5424's HOSTNAME takes it (1 to 255 printable ASCII characters
/// without a space), or `-`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| {
            (1..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic())
        })
        .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests;
