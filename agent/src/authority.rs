//! Whatever `:authority` a client sends on the Workload API socket.
//!
//! Over a Unix socket the HTTP/2 `:authority` names nothing. gRPC's C core
//! (grpcio 1.57 and later: Python, Ruby, PHP, C++) and grpc-java send the
//! percent-encoded socket path there (`tmp%2Fagent.sock`), which the `h2`
//! crate refuses as a malformed authority (RST_STREAM, PROTOCOL_ERROR)
//! before tonic sees the request. SPIRE's agent accepts these clients, and
//! "any SPIFFE client works" is the point of the Workload API, so ours must.
//!
//! [`LenientAuthority`] sits between the socket and h2 and rewrites, on the
//! way in, a request whose `:authority` is not a valid URI authority to
//! `:authority: localhost`. That takes the frame layer: header blocks are
//! HPACK-compressed against a dynamic table that the client and h2 each
//! keep, so every header block of the connection is decoded here, with the
//! client's table mirrored, by the strict decoder in [`hpack`] (ours: the
//! crate it replaces rebuilt a Huffman table for every string, and this
//! runs on every Workload API request). Blocks pass through byte for byte
//! until the first one that must change. From then on every block is
//! re-encoded as literals without indexing: h2's table no longer mirrors
//! the client's, and literals never refer to it. Every other frame, and
//! everything the server sends, passes through untouched.
//!
//! Bounds: a header block over [`MAX_HEADER_BLOCK_BYTES`] (compressed, or
//! decoded as RFC 7541 counts sizes) ends the connection, and so does what
//! h2 would call a connection error in header frames (a CONTINUATION out
//! of place, another frame inside a header block, a PUSH_PROMISE from the
//! client, bad HPACK: see [`hpack`] for what it takes).

mod hpack;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, BufMut as _, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use hpack::{Decoder, encode_integer};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frames written to h2 stay within its default SETTINGS_MAX_FRAME_SIZE
/// (the agent sets no other).
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// The largest header block taken, compressed or decoded. A Workload API
/// request carries a handful of short headers.
pub(crate) const MAX_HEADER_BLOCK_BYTES: usize = 64 * 1024;
/// h2's SETTINGS_HEADER_TABLE_SIZE (its default; the agent sets none): the
/// most a client's encoder may use.
const HEADER_TABLE_SIZE: usize = 4096;
/// What an authority that is not one becomes.
const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";
/// How much is read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// A connection whose incoming header blocks carry a valid `:authority`.
pub(crate) struct LenientAuthority<S> {
    inner: S,
    /// Bytes read from the socket and not yet rewritten.
    raw: BytesMut,
    /// Bytes ready for h2.
    ready: BytesMut,
    rewriter: Rewriter,
    /// The socket said EOF, or the rewriter failed.
    done: bool,
}

impl<S> fmt::Debug for LenientAuthority<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LenientAuthority")
            .field("reencoding", &self.rewriter.reencoding)
            .finish_non_exhaustive()
    }
}

impl<S> LenientAuthority<S> {
    pub(crate) fn new(inner: S) -> Self {
        LenientAuthority {
            inner,
            raw: BytesMut::with_capacity(READ_CHUNK),
            ready: BytesMut::new(),
            rewriter: Rewriter::new(),
            done: false,
        }
    }
}

impl<S: Connected> Connected for LenientAuthority<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LenientAuthority<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.done {
                return Poll::Ready(Ok(()));
            }
            this.raw.reserve(READ_CHUNK);
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.raw
            ))?;
            if read == 0 {
                // A partial frame is h2's to judge; hand it over, then EOF.
                this.done = true;
                this.ready.unsplit(this.raw.split());
                continue;
            }
            if let Err(error) = this.rewriter.process(&mut this.raw, &mut this.ready) {
                tracing::debug!(%error, "closing a Workload API connection");
                this.done = true;
                return Poll::Ready(Err(error));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LenientAuthority<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where the rewriter is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// This many bytes of the preface seen.
    Preface(usize),
    /// At a frame boundary.
    FrameHeader,
    /// Inside a frame that passes through; this many payload bytes left.
    Passthrough(usize),
}

/// A header block being received: HEADERS and its CONTINUATIONs.
#[derive(Debug)]
struct OpenBlock {
    stream_id: u32,
    end_stream: bool,
    /// The PRIORITY fields of the HEADERS frame, if it had them.
    priority: Option<[u8; 5]>,
    /// The HPACK fragments, joined.
    fragment: Vec<u8>,
    /// The frames as received, for passing through unchanged.
    frames: Vec<u8>,
}

/// The frame-level state of one connection's client-to-server direction.
struct Rewriter {
    phase: Phase,
    decoder: Decoder,
    open: Option<OpenBlock>,
    /// The last block's fields as literals without indexing, the
    /// `:authority` rewritten if need be: what a re-encoded block carries.
    /// Kept between blocks; never much over [`MAX_HEADER_BLOCK_BYTES`], as
    /// a field takes fewer octets here than the 32 the decoder counts on
    /// top of its name and value.
    literals: Vec<u8>,
    /// A block was re-encoded: h2's HPACK table no longer mirrors the
    /// client's, so every later block is re-encoded too.
    reencoding: bool,
}

impl Rewriter {
    fn new() -> Self {
        Rewriter {
            phase: Phase::Preface(0),
            decoder: Decoder::new(HEADER_TABLE_SIZE, MAX_HEADER_BLOCK_BYTES),
            open: None,
            literals: Vec::new(),
            reencoding: false,
        }
    }

    /// Moves what it can from `input` to `output`, rewriting header blocks;
    /// leaves an incomplete header frame in `input`.
    fn process(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> io::Result<()> {
        loop {
            match self.phase {
                Phase::Preface(seen) => {
                    let n = (PREFACE.len() - seen).min(input.len());
                    if n == 0 {
                        return Ok(());
                    }
                    if input[..n] != PREFACE[seen..seen + n] {
                        return Err(invalid(
                            "the connection did not open with the HTTP/2 preface",
                        ));
                    }
                    output.extend_from_slice(&input.split_to(n));
                    self.phase = if seen + n == PREFACE.len() {
                        Phase::FrameHeader
                    } else {
                        Phase::Preface(seen + n)
                    };
                }
                Phase::Passthrough(0) => self.phase = Phase::FrameHeader,
                Phase::Passthrough(left) => {
                    let n = left.min(input.len());
                    if n == 0 {
                        return Ok(());
                    }
                    output.extend_from_slice(&input.split_to(n));
                    self.phase = Phase::Passthrough(left - n);
                }
                Phase::FrameHeader => {
                    let Some(header) = FrameHeader::peek(input) else {
                        return Ok(());
                    };
                    if !header.carries_header_block() {
                        if self.open.is_some() {
                            return Err(invalid("a frame interrupted a header block"));
                        }
                        output.extend_from_slice(&input.split_to(FRAME_HEADER_LEN));
                        self.phase = Phase::Passthrough(header.length);
                        continue;
                    }
                    if header.length > MAX_HEADER_BLOCK_BYTES {
                        return Err(invalid("a header frame is larger than the limit"));
                    }
                    if input.len() < FRAME_HEADER_LEN + header.length {
                        return Ok(());
                    }
                    let frame = input.split_to(FRAME_HEADER_LEN + header.length);
                    self.header_frame(header, &frame, output)?;
                }
            }
        }
    }

    /// Takes one HEADERS or CONTINUATION frame; writes the block to
    /// `output` once it is complete.
    fn header_frame(
        &mut self,
        header: FrameHeader,
        frame: &[u8],
        output: &mut BytesMut,
    ) -> io::Result<()> {
        let payload = &frame[FRAME_HEADER_LEN..];
        match header.kind {
            HEADERS if self.open.is_none() => {
                let (priority, fragment) = split_headers_payload(header.flags, payload)?;
                self.open = Some(OpenBlock {
                    stream_id: header.stream_id,
                    end_stream: header.flags & END_STREAM != 0,
                    priority,
                    fragment: fragment.to_vec(),
                    frames: frame.to_vec(),
                });
            }
            CONTINUATION => {
                let Some(open) = self
                    .open
                    .as_mut()
                    .filter(|open| open.stream_id == header.stream_id)
                else {
                    return Err(invalid("a CONTINUATION frame out of place"));
                };
                if open.frames.len() + frame.len() > MAX_HEADER_BLOCK_BYTES {
                    return Err(invalid("a header block is larger than the limit"));
                }
                open.fragment.extend_from_slice(payload);
                open.frames.extend_from_slice(frame);
            }
            PUSH_PROMISE => return Err(invalid("a client sent PUSH_PROMISE")),
            _ => return Err(invalid("a HEADERS frame inside another header block")),
        }
        if header.flags & END_HEADERS == 0 {
            return Ok(());
        }
        match self.open.take() {
            Some(block) => self.finish_block(block, output),
            None => Ok(()),
        }
    }

    /// Decodes a complete block and writes it on, rewritten if need be.
    fn finish_block(&mut self, block: OpenBlock, output: &mut BytesMut) -> io::Result<()> {
        let literals = &mut self.literals;
        literals.clear();
        let mut rewritten = false;
        self.decoder
            .decode(&block.fragment, |name, value| {
                let value = if name == b":authority" && !is_valid_authority(value) {
                    rewritten = true;
                    REPLACEMENT_AUTHORITY
                } else {
                    value
                };
                // Literal without indexing, new name (RFC 7541 §6.2.2).
                literals.push(0x00);
                encode_string(name, literals);
                encode_string(value, literals);
            })
            .map_err(|e| invalid(&format!("bad HPACK in a header block: {e}")))?;
        if rewritten && !self.reencoding {
            tracing::debug!(
                "a Workload API client sent an :authority that is not one (a socket path?); reading it as localhost"
            );
            self.reencoding = true;
        }
        if self.reencoding {
            write_block(&block, &self.literals, output);
        } else {
            output.extend_from_slice(&block.frames);
        }
        Ok(())
    }
}

/// The fixed part of a frame.
#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    length: usize,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHeader {
    /// The header at the start of `input`, if all nine bytes are there.
    fn peek(input: &[u8]) -> Option<Self> {
        let bytes: &[u8; FRAME_HEADER_LEN] = input.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
        Some(FrameHeader {
            length: usize::from(bytes[0]) << 16
                | usize::from(bytes[1]) << 8
                | usize::from(bytes[2]),
            kind: bytes[3],
            flags: bytes[4],
            stream_id: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        })
    }

    fn carries_header_block(self) -> bool {
        matches!(self.kind, HEADERS | CONTINUATION | PUSH_PROMISE)
    }

    fn write(self, output: &mut BytesMut) {
        // Lengths written here are at most MAX_FRAME_PAYLOAD.
        let length = u32::try_from(self.length).unwrap_or(0);
        output.put_slice(&length.to_be_bytes()[1..]);
        output.put_u8(self.kind);
        output.put_u8(self.flags);
        output.put_u32(self.stream_id);
    }
}

/// The PRIORITY fields and the HPACK fragment of a HEADERS payload, without
/// its padding.
fn split_headers_payload(flags: u8, payload: &[u8]) -> io::Result<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let mut padding = 0;
    if flags & PADDED != 0 {
        let (&pad_length, after) = rest
            .split_first()
            .ok_or_else(|| invalid("a padded HEADERS frame without its pad length"))?;
        padding = usize::from(pad_length);
        rest = after;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let (fields, after) = rest
            .split_first_chunk::<5>()
            .ok_or_else(|| invalid("a HEADERS frame too short for its PRIORITY fields"))?;
        priority = Some(*fields);
        rest = after;
    }
    if padding > rest.len() {
        return Err(invalid("a HEADERS frame with more padding than payload"));
    }
    Ok((priority, &rest[..rest.len() - padding]))
}

/// Whether `value` is an authority h2 takes (the `http` crate's rules).
fn is_valid_authority(value: &[u8]) -> bool {
    tonic::codegen::http::uri::Authority::try_from(value).is_ok()
}

/// Writes `encoded`, an HPACK header block, in place of `block` as HEADERS
/// and CONTINUATION frames.
fn write_block(block: &OpenBlock, encoded: &[u8], output: &mut BytesMut) {
    let mut first_payload = Vec::with_capacity(5 + encoded.len().min(MAX_FRAME_PAYLOAD));
    let mut flags = if block.end_stream { END_STREAM } else { 0 };
    if let Some(priority) = block.priority {
        flags |= PRIORITY;
        first_payload.extend_from_slice(&priority);
    }
    let first_len = (MAX_FRAME_PAYLOAD - first_payload.len()).min(encoded.len());
    first_payload.extend_from_slice(&encoded[..first_len]);
    let mut chunks = encoded[first_len..].chunks(MAX_FRAME_PAYLOAD).peekable();
    if chunks.peek().is_none() {
        flags |= END_HEADERS;
    }
    write_frame(HEADERS, flags, block.stream_id, &first_payload, output);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        write_frame(CONTINUATION, flags, block.stream_id, chunk, output);
    }
}

fn write_frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8], output: &mut BytesMut) {
    FrameHeader {
        length: payload.len(),
        kind,
        flags,
        stream_id,
    }
    .write(output);
    output.put_slice(payload);
}

/// An HPACK string literal without Huffman coding (RFC 7541 §5.2).
fn encode_string(bytes: &[u8], out: &mut Vec<u8>) {
    encode_integer(bytes.len(), 7, 0, out);
    out.extend_from_slice(bytes);
}

/// Feeds `chunks`, in order, to the rewriter of one new connection, as the
/// socket would deliver them, and returns what h2 would read, or the error
/// that ends the connection. For fuzzing (no input may panic it, and the
/// output must not depend on how the bytes were cut) and for the `authority`
/// benchmark.
#[doc(hidden)]
pub fn fuzz_rewrite<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> io::Result<Vec<u8>> {
    let mut rewriter = Rewriter::new();
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    for chunk in chunks {
        input.extend_from_slice(chunk);
        rewriter.process(&mut input, &mut output)?;
    }
    Ok(output.to_vec())
}

fn invalid(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.to_owned())
}

#[cfg(test)]
mod tests;
