//! The agent's `:authority` rewriter (`mayfly_agent`'s `authority` module),
//! which parses every HTTP/2 frame and HPACK header block a local process
//! sends to the Workload API socket: never panics, and what it hands h2 does
//! not depend on how the socket cut the bytes (whole, byte by byte, or at a
//! fuzzer-chosen point).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly_agent::fuzz_authority_rewrite as rewrite;

/// The client connection preface, so that most inputs reach the frames.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fuzz_target!(|input: (u16, &[u8])| {
    let (cut, frames) = input;
    let mut bytes = PREFACE.to_vec();
    bytes.extend_from_slice(frames);

    let whole = rewrite([bytes.as_slice()]).map_err(|e| e.to_string());
    let at = usize::from(cut) % (bytes.len() + 1);
    let (head, tail) = bytes.split_at(at);
    let split = rewrite([head, tail]).map_err(|e| e.to_string());
    let byte_by_byte = rewrite(bytes.chunks(1)).map_err(|e| e.to_string());

    // An error may come earlier when bytes arrive early, never a different output.
    match (&whole, &split, &byte_by_byte) {
        (Ok(a), Ok(b), Ok(c)) => {
            assert_eq!(a, b);
            assert_eq!(a, c);
        }
        (Err(_), Err(_), Err(_)) => {}
        other => panic!("outcomes differ with the cut: {other:?}"),
    }
});
