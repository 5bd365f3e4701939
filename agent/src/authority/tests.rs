//! The rewriter against a real h2 server (the one tonic serves with), with
//! header blocks built by an independent HPACK encoder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use loona_hpack::Encoder;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

use super::*;

/// What grpcio sends over a Unix socket.
const SOCKET_PATH_AUTHORITY: &str = "tmp%2Fmayfly%2Fagent.sock";
const SETTINGS: u8 = 0x4;
const DATA: u8 = 0x0;
const RST_STREAM: u8 = 0x3;

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    write_frame(kind, flags, stream_id, payload, &mut out);
    out.to_vec()
}

fn request_fields<'a>(authority: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/spiffe.workload.SpiffeWorkloadAPI/FetchJWTSVID"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    fields.extend_from_slice(extra);
    fields
}

fn hpack(encoder: &mut Encoder<'_>, fields: &[(&str, &str)]) -> Vec<u8> {
    encoder.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

/// A request without a body: one HEADERS frame with END_HEADERS and
/// END_STREAM.
fn request(encoder: &mut Encoder<'_>, stream_id: u32, fields: &[(&str, &str)]) -> Vec<u8> {
    frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        stream_id,
        &hpack(encoder, fields),
    )
}

fn connection_start() -> Vec<u8> {
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[]));
    bytes
}

/// A request as the h2 server saw it.
#[derive(Debug)]
struct Seen {
    authority: Option<String>,
    headers: HashMap<String, String>,
}

/// Serves h2 on `io`, answering every request with 200 and reporting it.
fn serve<T>(io: T) -> tokio::sync::mpsc::UnboundedReceiver<Seen>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Ok(mut connection) = h2::server::handshake(io).await else {
            return;
        };
        while let Some(Ok((request, mut respond))) = connection.accept().await {
            let headers = request
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let _ = sender.send(Seen {
                authority: request.uri().authority().map(|a| a.to_string()),
                headers,
            });
            let response = tonic::codegen::http::Response::new(());
            let _ = respond.send_response(response, true);
        }
    });
    receiver
}

/// How the server ended each stream the client opened: `true` for a
/// response, `false` for RST_STREAM. Reads until every stream in
/// `streams` has an answer.
async fn answers(client: &mut DuplexStream, streams: &[u32]) -> HashMap<u32, bool> {
    let mut answered = HashMap::new();
    let mut buffer = Vec::new();
    while streams.iter().any(|s| !answered.contains_key(s)) {
        while let Some(header) = FrameHeader::peek(&buffer) {
            if buffer.len() < FRAME_HEADER_LEN + header.length {
                break;
            }
            match header.kind {
                HEADERS => {
                    answered.entry(header.stream_id).or_insert(true);
                }
                RST_STREAM => {
                    answered.entry(header.stream_id).or_insert(false);
                }
                _ => {}
            }
            buffer.drain(..FRAME_HEADER_LEN + header.length);
        }
        if streams.iter().all(|s| answered.contains_key(s)) {
            break;
        }
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "the server closed the connection; answers so far: {answered:?}"
        );
        buffer.extend_from_slice(&chunk[..n]);
    }
    answered
}

/// Sends `bytes` as a client would, to an h2 server behind the rewriter
/// (`lenient`) or bare, and returns how each stream was answered and what
/// the server saw.
async fn exchange(
    bytes: Vec<u8>,
    streams: &[u32],
    lenient: bool,
) -> (HashMap<u32, bool>, Vec<Seen>) {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let mut seen = if lenient {
        serve(LenientAuthority::new(server))
    } else {
        serve(server)
    };
    client.write_all(&bytes).await.unwrap();
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        answers(&mut client, streams),
    )
    .await
    .expect("the server answered every stream");
    let mut requests = Vec::new();
    while let Ok(request) = seen.try_recv() {
        requests.push(request);
    }
    (answered, requests)
}

#[tokio::test]
async fn bare_h2_refuses_a_socket_path_authority_and_the_rewriter_lets_it_through() {
    let mut bytes = connection_start();
    bytes.extend(request(
        &mut Encoder::new(),
        1,
        &request_fields(SOCKET_PATH_AUTHORITY, &[("workload.spiffe.io", "true")]),
    ));

    // The bug this module exists for: h2 resets the stream.
    let (answered, seen) = exchange(bytes.clone(), &[1], false).await;
    assert!(!answered[&1], "bare h2 must refuse it");
    assert!(seen.is_empty());

    let (answered, seen) = exchange(bytes, &[1], true).await;
    assert!(answered[&1]);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authority.as_deref(), Some("localhost"));
    assert_eq!(seen[0].headers["workload.spiffe.io"], "true");
}

#[tokio::test]
async fn a_valid_authority_passes_through_byte_for_byte() {
    let mut encoder = Encoder::new();
    let mut bytes = connection_start();
    bytes.extend(request(
        &mut encoder,
        1,
        &request_fields("localhost", &[("x-trace", "a")]),
    ));
    bytes.extend(frame(DATA, END_STREAM, 1, b"\0\0\0\0\0"));
    bytes.extend(request(
        &mut encoder,
        3,
        &request_fields("localhost:80", &[("x-trace", "a")]),
    ));

    let mut input = BytesMut::from(&bytes[..]);
    let mut output = BytesMut::new();
    let mut rewriter = Rewriter::new();
    rewriter.process(&mut input, &mut output).unwrap();
    assert!(input.is_empty());
    assert_eq!(output.to_vec(), bytes);
    assert!(!rewriter.reencoding);
}

#[tokio::test]
async fn the_dynamic_table_stays_right_before_and_after_the_first_rewrite() {
    // The encoder indexes x-trace on its first use and refers to the table
    // entry afterwards: request 1 passes through (h2 indexes it too),
    // request 2 is rewritten, request 3 is valid but must be re-encoded,
    // since h2's table no longer mirrors the client's.
    let mut encoder = Encoder::new();
    let mut bytes = connection_start();
    let extra = [("x-trace", "abc"), ("workload.spiffe.io", "true")];
    bytes.extend(request(
        &mut encoder,
        1,
        &request_fields("localhost", &extra),
    ));
    bytes.extend(request(
        &mut encoder,
        3,
        &request_fields(SOCKET_PATH_AUTHORITY, &extra),
    ));
    bytes.extend(request(
        &mut encoder,
        5,
        &request_fields("localhost", &[("x-trace", "abc"), ("x-new", "1")]),
    ));
    bytes.extend(request(
        &mut encoder,
        7,
        &request_fields(SOCKET_PATH_AUTHORITY, &[("x-new", "1")]),
    ));

    let (answered, seen) = exchange(bytes, &[1, 3, 5, 7], true).await;
    assert!(answered.values().all(|ok| *ok), "{answered:?}");
    assert_eq!(seen.len(), 4);
    for request in &seen {
        assert_eq!(request.authority.as_deref(), Some("localhost"));
    }
    assert_eq!(seen[0].headers["x-trace"], "abc");
    assert_eq!(seen[1].headers["x-trace"], "abc");
    assert_eq!(seen[2].headers["x-trace"], "abc");
    assert_eq!(seen[2].headers["x-new"], "1");
    assert_eq!(seen[3].headers["x-new"], "1");
}

#[tokio::test]
async fn continuation_padding_priority_and_large_blocks_are_rewritten() {
    let mut encoder = Encoder::new();
    let big = "v".repeat(20_000);
    let block = hpack(
        &mut encoder,
        &request_fields(SOCKET_PATH_AUTHORITY, &[("x-big", &big)]),
    );
    let (first, rest) = block.split_at(100);
    // HEADERS with padding and priority, then two CONTINUATIONs.
    let mut payload = vec![3];
    payload.extend_from_slice(&[0, 0, 0, 0, 15]);
    payload.extend_from_slice(first);
    payload.extend_from_slice(&[0, 0, 0]);
    let mut bytes = connection_start();
    bytes.extend(frame(HEADERS, END_STREAM | PADDED | PRIORITY, 1, &payload));
    let (middle, last) = rest.split_at(rest.len() / 2);
    bytes.extend(frame(CONTINUATION, 0, 1, middle));
    bytes.extend(frame(CONTINUATION, END_HEADERS, 1, last));

    let (answered, seen) = exchange(bytes, &[1], true).await;
    assert!(answered[&1]);
    assert_eq!(seen[0].authority.as_deref(), Some("localhost"));
    assert_eq!(seen[0].headers["x-big"].len(), big.len());
}

#[test]
fn bytes_arriving_one_at_a_time_give_the_same_output() {
    let mut encoder = Encoder::new();
    let mut bytes = connection_start();
    bytes.extend(request(
        &mut encoder,
        1,
        &request_fields(SOCKET_PATH_AUTHORITY, &[]),
    ));
    bytes.extend(frame(DATA, END_STREAM, 1, b"\0\0\0\0\0"));
    bytes.extend(request(
        &mut encoder,
        3,
        &request_fields(SOCKET_PATH_AUTHORITY, &[]),
    ));

    let whole = {
        let mut input = BytesMut::from(&bytes[..]);
        let mut output = BytesMut::new();
        Rewriter::new().process(&mut input, &mut output).unwrap();
        output
    };
    let mut rewriter = Rewriter::new();
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    for byte in &bytes {
        input.put_u8(*byte);
        rewriter.process(&mut input, &mut output).unwrap();
    }
    assert!(input.is_empty());
    assert_eq!(output, whole);
    assert_ne!(output.to_vec(), bytes, "the authority was rewritten");
}

/// What `process` makes of `frames` after a valid connection start.
fn outcome(frames: &[Vec<u8>]) -> io::Result<()> {
    let mut bytes = connection_start();
    for frame in frames {
        bytes.extend_from_slice(frame);
    }
    let mut input = BytesMut::from(&bytes[..]);
    Rewriter::new().process(&mut input, &mut BytesMut::new())
}

#[test]
fn protocol_violations_in_header_frames_end_the_connection() {
    let block = hpack(
        &mut Encoder::new(),
        &request_fields(SOCKET_PATH_AUTHORITY, &[]),
    );
    let (first, second) = block.split_at(10);
    let open = frame(HEADERS, 0, 1, first);
    let close = frame(CONTINUATION, END_HEADERS, 1, second);

    // Positive control: the same frames in order.
    assert!(outcome(&[open.clone(), close.clone()]).is_ok());

    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("CONTINUATION first", vec![close.clone()]),
        (
            "CONTINUATION on another stream",
            vec![open.clone(), frame(CONTINUATION, END_HEADERS, 3, second)],
        ),
        (
            "DATA inside a block",
            vec![open.clone(), frame(DATA, 0, 1, b"x"), close.clone()],
        ),
        ("HEADERS inside a block", vec![open.clone(), open.clone()]),
        (
            "PUSH_PROMISE",
            vec![frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2])],
        ),
        (
            "padding longer than the payload",
            vec![frame(HEADERS, END_HEADERS | PADDED, 1, &[200, 0x82])],
        ),
        (
            "priority fields cut short",
            vec![frame(HEADERS, END_HEADERS | PRIORITY, 1, &[0, 0])],
        ),
        (
            "an index past both tables",
            vec![frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0x7f])],
        ),
        (
            "a table size over h2's",
            vec![frame(
                HEADERS,
                END_HEADERS,
                1,
                &[0x3f, 0xe1, 0xff, 0x03, 0x82],
            )],
        ),
    ];
    for (name, frames) in cases {
        assert!(outcome(&frames).is_err(), "{name} was accepted");
    }
}

#[test]
fn oversized_blocks_end_the_connection() {
    let mut huge_frame = vec![0u8; FRAME_HEADER_LEN];
    let length = u32::try_from(MAX_HEADER_BLOCK_BYTES + 1)
        .unwrap()
        .to_be_bytes();
    huge_frame[..3].copy_from_slice(&length[1..]);
    huge_frame[3] = HEADERS;
    let mut input = BytesMut::from(&connection_start()[..]);
    input.extend_from_slice(&huge_frame);
    assert!(
        Rewriter::new()
            .process(&mut input, &mut BytesMut::new())
            .is_err()
    );

    // Many CONTINUATIONs that add up past the limit.
    let mut frames = vec![frame(HEADERS, 0, 1, &[0x82])];
    for _ in 0..=(MAX_HEADER_BLOCK_BYTES / 16_000) {
        frames.push(frame(CONTINUATION, 0, 1, &[0x82; 16_000]));
    }
    assert!(outcome(&frames).is_err());

    // A small block that decodes to a huge one: an indexed 4 KiB entry,
    // referred to again and again.
    let mut encoder = Encoder::new();
    let value = "x".repeat(4000);
    let mut block = hpack(&mut encoder, &[("x-bomb", &value)]);
    for _ in 0..20 {
        block.extend(hpack(&mut encoder, &[("x-bomb", &value)]));
    }
    assert!(block.len() < 5000, "the encoder refers to its table");
    assert!(outcome(&[frame(HEADERS, END_HEADERS, 1, &block)]).is_err());
    // Control: twice is fine.
    let mut encoder = Encoder::new();
    let mut block = hpack(&mut encoder, &[("x-bomb", &value)]);
    block.extend(hpack(&mut encoder, &[("x-bomb", &value)]));
    assert!(outcome(&[frame(HEADERS, END_HEADERS, 1, &block)]).is_ok());
}

#[test]
fn a_connection_that_is_not_http2_is_refused() {
    let mut input = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
    assert!(
        Rewriter::new()
            .process(&mut input, &mut BytesMut::new())
            .is_err()
    );
    // A preface arriving in pieces is fine.
    let mut rewriter = Rewriter::new();
    let mut output = BytesMut::new();
    for piece in PREFACE.chunks(5) {
        let mut input = BytesMut::from(piece);
        rewriter.process(&mut input, &mut output).unwrap();
    }
    assert_eq!(&output[..], &PREFACE[..]);
}

#[test]
fn authorities_h2_takes_are_left_alone() {
    for valid in ["localhost", "localhost:8080", "[::1]:1", "example.org"] {
        assert!(is_valid_authority(valid.as_bytes()), "{valid}");
    }
    for invalid in [SOCKET_PATH_AUTHORITY, "/tmp/agent.sock", "a b", ""] {
        assert!(!is_valid_authority(invalid.as_bytes()), "{invalid}");
    }
}
