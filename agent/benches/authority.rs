//! The cost of the Workload API socket's `:authority` rewriter
//! (`mayfly_agent`'s `authority` module) per connection: every client header
//! block is HPACK-decoded there, on the agent's hottest path (a cached
//! FetchJWTSVID).
//!
//! `cargo bench -p mayfly-agent --bench authority`.
//!
//! The input is what a real HTTP/2 client writes: the `h2` crate's client
//! (the one tonic sends with) is driven over an in-memory pipe and its bytes
//! captured: the preface, its SETTINGS and WINDOW_UPDATE, then [`REQUESTS`]
//! unary FetchJWTSVID calls, each a HEADERS frame and a DATA frame. Its
//! encoder does what real encoders do: every string literal Huffman-coded,
//! fields indexed incrementally and referred to from the dynamic table on
//! later requests, `:path` never indexed (so Huffman-coded in every block),
//! and a `grpc-timeout` that counts down as a client's deadline does (a new
//! Huffman-coded literal, inserted into the table, in every block).
//!
//! Two connections are measured:
//! - `localhost`: `:authority: localhost`, as tonic sends it; every block is
//!   decoded and passes through unchanged.
//! - `socket_path`: the same requests behind a first one whose `:authority`
//!   is a percent-encoded socket path, as grpc C-core sends it; that block
//!   and every one after it is decoded and re-encoded.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mayfly_agent::fuzz_authority_rewrite as rewrite;
use tokio::io::AsyncReadExt as _;
use tonic::codegen::http::{Method, Request};

/// Requests on one connection.
const REQUESTS: usize = 100;
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PATH: &str = "/SpiffeWorkloadAPI/FetchJWTSVID";
/// What grpcio sends as `:authority` over a Unix socket.
const SOCKET_PATH_AUTHORITY: &str = "tmp%2Fmayfly%2Fagent.sock";

/// One frame of a captured connection.
struct Frame<'a> {
    kind: u8,
    flags: u8,
    stream_id: u32,
    /// The whole frame, header included.
    bytes: &'a [u8],
}

/// The complete frames in `bytes` (which start at a frame boundary).
fn frames(mut bytes: &[u8]) -> Vec<Frame<'_>> {
    let mut frames = Vec::new();
    while bytes.len() >= FRAME_HEADER_LEN {
        let length =
            usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        if bytes.len() < FRAME_HEADER_LEN + length {
            break;
        }
        let (frame, rest) = bytes.split_at(FRAME_HEADER_LEN + length);
        frames.push(Frame {
            kind: frame[3],
            flags: frame[4],
            stream_id: u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff,
            bytes: frame,
        });
        bytes = rest;
    }
    frames
}

/// A FetchJWTSVID request body: the gRPC length prefix and a
/// `JWTSVIDRequest { audience: ["spiffe://example.org/api"] }`.
fn request_body() -> Vec<u8> {
    let audience = b"spiffe://example.org/api";
    let mut message = vec![0x0a, u8::try_from(audience.len()).unwrap()];
    message.extend_from_slice(audience);
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&message);
    body
}

/// What an `h2` client writes for `requests` unary FetchJWTSVID calls to
/// `http://localhost`, up to the last request's END_STREAM.
async fn capture(requests: usize) -> Vec<u8> {
    let (client, mut server) = tokio::io::duplex(1 << 22);
    let (mut sender, connection) = h2::client::handshake(client).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    // Kept until the capture ends: a dropped stream would be reset.
    let mut open = Vec::new();
    for i in 0..requests {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://localhost{PATH}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", "tonic/0.14.2")
            .header("workload.spiffe.io", "true")
            // A 30 s deadline, a little less left on each call.
            .header("grpc-timeout", format!("{}u", 29_999_000 - 137 * i))
            .body(())
            .unwrap();
        sender = sender.ready().await.unwrap();
        let (response, mut stream) = sender.send_request(request, false).unwrap();
        stream.send_data(request_body().into(), true).unwrap();
        open.push((response, stream));
    }
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let ended = bytes
            .get(PREFACE_LEN..)
            .map(|frames_bytes| {
                frames(frames_bytes)
                    .iter()
                    .filter(|f| f.kind == DATA && f.flags & END_STREAM != 0)
                    .count()
            })
            .unwrap_or(0);
        if ended == requests {
            break;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), server.read(&mut chunk))
            .await
            .expect("the h2 client wrote every request")
            .unwrap();
        assert!(n > 0, "the h2 client closed the connection");
        bytes.extend_from_slice(&chunk[..n]);
    }
    driver.abort();
    drop(open);
    bytes
}

/// An HPACK literal field without indexing, new name, no Huffman coding.
fn literal(name: &str, value: &str, block: &mut Vec<u8>) {
    block.push(0x00);
    for string in [name, value] {
        block.push(u8::try_from(string.len()).unwrap());
        block.extend_from_slice(string.as_bytes());
    }
}

/// `connection` with one more request on stream 1, before the others (whose
/// stream IDs move up by 2), whose `:authority` is a socket path. Its block
/// leaves the dynamic table alone, so the client's later blocks still
/// decode.
fn behind_a_socket_path_request(connection: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", PATH),
        (":authority", SOCKET_PATH_AUTHORITY),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("workload.spiffe.io", "true"),
    ] {
        literal(name, value, &mut block);
    }
    let mut out = connection[..PREFACE_LEN].to_vec();
    let mut inserted = false;
    for frame in frames(&connection[PREFACE_LEN..]) {
        if frame.stream_id == 0 {
            out.extend_from_slice(frame.bytes);
            continue;
        }
        if !inserted {
            push_frame(HEADERS, END_HEADERS, 1, &block, &mut out);
            push_frame(DATA, END_STREAM, 1, &request_body(), &mut out);
            inserted = true;
        }
        let mut moved = frame.bytes.to_vec();
        moved[5..9].copy_from_slice(&(frame.stream_id + 2).to_be_bytes());
        out.extend_from_slice(&moved);
    }
    out
}

/// Appends a frame of `kind` to `out`.
fn push_frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Checks that `connection` is what the benchmark claims to measure.
fn check_capture(connection: &[u8]) {
    let frames = frames(&connection[PREFACE_LEN..]);
    let blocks = frames.iter().filter(|f| f.kind == HEADERS).count();
    assert_eq!(blocks, REQUESTS, "one HEADERS frame per request");
    // Huffman-coded: none of the strings appears in plain text.
    for plain in [
        &b"FetchJWTSVID"[..],
        b"application/grpc",
        b"localhost",
        b"29999",
    ] {
        assert!(
            !connection.windows(plain.len()).any(|w| w == plain),
            "{} is not Huffman-coded",
            String::from_utf8_lossy(plain)
        );
    }
    // Passing through leaves the bytes as they are.
    assert_eq!(rewrite([connection]).unwrap(), connection);
}

/// Both connections through the rewriter, as one socket read each.
fn rewriter(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let localhost = runtime.block_on(capture(REQUESTS));
    check_capture(&localhost);
    let socket_path = behind_a_socket_path_request(&localhost);
    let rewritten = rewrite([socket_path.as_slice()]).unwrap();
    assert!(
        !rewritten
            .windows(SOCKET_PATH_AUTHORITY.len())
            .any(|w| w == SOCKET_PATH_AUTHORITY.as_bytes()),
        "the socket path was rewritten"
    );
    println!(
        "authority: {REQUESTS} requests, {} bytes (localhost), {} bytes (socket_path)",
        localhost.len(),
        socket_path.len()
    );

    let mut group = c.benchmark_group("authority");
    group.throughput(Throughput::Elements(REQUESTS as u64));
    group.bench_function("localhost", |b| {
        b.iter(|| rewrite([black_box(localhost.as_slice())]))
    });
    group.bench_function("socket_path", |b| {
        b.iter(|| rewrite([black_box(socket_path.as_slice())]))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(50);
    targets = rewriter
}
criterion_main!(benches);
