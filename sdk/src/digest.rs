//! SHA-256 as lowercase hex: what the audit log, join-token hashes, CA
//! fingerprints and the agent's `unix:sha256:` selector all write.

use std::io::{self, Read};

use aws_lc_rs::digest::{Context, SHA256, digest};

/// The SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes))
}

/// The SHA-256 of everything `reader` yields, lowercase hex, read in
/// chunks of `buffer_size` bytes (an executable can be large).
///
/// # Errors
/// The reader's error (an interrupted read is retried).
pub fn sha256_hex_reader(mut reader: impl Read, buffer_size: usize) -> io::Result<String> {
    let mut context = Context::new(&SHA256);
    let mut buffer = vec![0u8; buffer_size.max(1)];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => context.update(&buffer[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(hex::encode(context.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256_hex(b""), empty);
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        // The reader gives the same, whatever its chunk size.
        for size in [1, 2, 64] {
            assert_eq!(
                sha256_hex_reader(&b"abc"[..], size).ok().as_deref(),
                Some(abc)
            );
        }
        assert_ne!(sha256_hex(b"abd"), abc);
    }
}
