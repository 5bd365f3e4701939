//! The decoder against RFC 7541's own examples (Appendix C, typed in from
//! the RFC), against encoders we did not write (loona-hpack's for the
//! static table, h2's for Huffman coding), and every rejection next to a
//! positive control.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use super::*;

/// The octets of an RFC hex dump ("8286 8441 ...").
fn hex(dump: &str) -> Vec<u8> {
    let digits: Vec<u8> = dump.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// Decodes `block`, returning its fields as strings.
fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
    let mut fields = Vec::new();
    decoder.decode(block, |name, value| {
        fields.push((
            String::from_utf8(name.to_vec()).unwrap(),
            String::from_utf8(value.to_vec()).unwrap(),
        ));
    })?;
    Ok(fields)
}

/// `fields` as owned strings, to compare with [`decode`]'s.
fn owned(fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// The dynamic table, newest first, as the RFC prints it, and its size.
fn table(decoder: &Decoder) -> (Vec<(String, String)>, usize) {
    let entries = decoder
        .table
        .entries
        .iter()
        .map(|entry| {
            let (name, value) = entry.field();
            (
                String::from_utf8(name.to_vec()).unwrap(),
                String::from_utf8(value.to_vec()).unwrap(),
            )
        })
        .collect();
    (entries, decoder.table.size)
}

/// A header list, or a dynamic table newest first, as the RFC prints it.
type List = &'static [(&'static str, &'static str)];
/// One block of an RFC example: its hex dump, the header list it decodes
/// to, and the dynamic table and its size after it.
type Step = (&'static str, List, List, usize);

/// Decodes the blocks in order on one decoder; after each, checks the
/// header list and the dynamic table the RFC gives.
fn check_sequence(mut decoder: Decoder, steps: &[Step]) {
    for (i, (dump, fields, entries, size)) in steps.iter().enumerate() {
        let decoded = decode(&mut decoder, &hex(dump)).unwrap();
        assert_eq!(decoded, owned(fields), "header list of step {}", i + 1);
        assert_eq!(
            table(&decoder),
            (owned(entries), *size),
            "dynamic table after step {}",
            i + 1
        );
    }
}

/// A decoder as the rewriter builds one.
fn decoder() -> Decoder {
    Decoder::new(4096, 64 * 1024)
}

// ---------------------------------------------------------------- C.1

#[test]
fn c1_integers() {
    // C.1.1: 10 on a 5-bit prefix; C.1.2: 1337 on a 5-bit prefix; C.1.3: 42
    // at an octet boundary.
    for (value, prefix, octets) in [
        (10, 5, &[0x0a][..]),
        (1337, 5, &[0x1f, 0x9a, 0x0a]),
        (42, 8, &[0x2a]),
    ] {
        let mut input = octets;
        assert_eq!(decode_integer(&mut input, prefix), Ok(value));
        assert!(input.is_empty());
        let mut encoded = Vec::new();
        encode_integer(value, prefix, 0, &mut encoded);
        assert_eq!(encoded, octets);
    }
    // The bits above the prefix are the representation's, not the value's.
    let mut input = &[0xea, 0xff][..];
    assert_eq!(decode_integer(&mut input, 5), Ok(10));
    assert_eq!(input, [0xff]);
}

#[test]
fn integers_round_trip_at_every_prefix() {
    for prefix in 1..=8 {
        for value in [
            0,
            1,
            126,
            127,
            128,
            254,
            255,
            256,
            1337,
            16_383,
            16_384,
            1 << 20,
        ] {
            let mut encoded = Vec::new();
            encode_integer(value, prefix, 0, &mut encoded);
            let mut input = encoded.as_slice();
            assert_eq!(decode_integer(&mut input, prefix), Ok(value));
            assert!(input.is_empty());
        }
    }
}

#[test]
fn an_integer_longer_than_four_continuation_octets_is_refused() {
    // Control: four continuation octets, the most allowed.
    let mut input = &[0x1f, 0xff, 0xff, 0xff, 0x7f][..];
    assert_eq!(decode_integer(&mut input, 5), Ok(31 + (1 << 28) - 1));
    // A fifth, even one that adds nothing.
    for octets in [
        &[0x1f, 0xff, 0xff, 0xff, 0xff, 0x01][..],
        &[0x1f, 0x80, 0x80, 0x80, 0x80, 0x00],
    ] {
        let mut input = octets;
        assert_eq!(
            decode_integer(&mut input, 5),
            Err(HpackError::IntegerOverflow)
        );
    }
    // In a block: an index that never ends.
    let mut block = vec![0xff];
    block.extend([0xff; 20]);
    block.push(0x00);
    assert_eq!(
        decode(&mut decoder(), &block),
        Err(HpackError::IntegerOverflow)
    );
}

#[test]
fn a_truncated_integer_is_refused() {
    let mut input = &[0x1f, 0x9a, 0x0a][..];
    assert_eq!(decode_integer(&mut input, 5), Ok(1337));
    for octets in [&[0x1f, 0x9a][..], &[0x1f], &[]] {
        let mut input = octets;
        assert_eq!(decode_integer(&mut input, 5), Err(HpackError::Truncated));
    }
    // In a block: a size update (to 1337) cut short.
    assert_eq!(decode(&mut decoder(), &[0x3f, 0x9a, 0x0a]), Ok(vec![]));
    assert_eq!(
        decode(&mut decoder(), &[0x3f, 0x9a]),
        Err(HpackError::Truncated)
    );
}

// ---------------------------------------------------------------- C.2

#[test]
fn c2_1_literal_with_indexing() {
    check_sequence(
        decoder(),
        &[(
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
            &[("custom-key", "custom-header")],
            &[("custom-key", "custom-header")],
            55,
        )],
    );
}

#[test]
fn c2_2_literal_without_indexing() {
    check_sequence(
        decoder(),
        &[(
            "040c 2f73 616d 706c 652f 7061 7468",
            &[(":path", "/sample/path")],
            &[],
            0,
        )],
    );
}

#[test]
fn c2_3_literal_never_indexed() {
    check_sequence(
        decoder(),
        &[(
            "1008 7061 7373 776f 7264 0673 6563 7265 74",
            &[("password", "secret")],
            &[],
            0,
        )],
    );
}

#[test]
fn c2_4_indexed() {
    check_sequence(decoder(), &[("82", &[(":method", "GET")], &[], 0)]);
}

// ---------------------------------------------------------------- C.3, C.4

const FIRST_REQUEST: List = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
];
const SECOND_REQUEST: List = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
    ("cache-control", "no-cache"),
];
const THIRD_REQUEST: List = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
];
const TABLE_AFTER_FIRST_REQUEST: List = &[(":authority", "www.example.com")];
const TABLE_AFTER_SECOND_REQUEST: List = &[
    ("cache-control", "no-cache"),
    (":authority", "www.example.com"),
];
const TABLE_AFTER_THIRD_REQUEST: List = &[
    ("custom-key", "custom-value"),
    ("cache-control", "no-cache"),
    (":authority", "www.example.com"),
];

#[test]
fn c3_requests_without_huffman_coding() {
    check_sequence(
        decoder(),
        &[
            (
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                FIRST_REQUEST,
                TABLE_AFTER_FIRST_REQUEST,
                57,
            ),
            (
                "8286 84be 5808 6e6f 2d63 6163 6865",
                SECOND_REQUEST,
                TABLE_AFTER_SECOND_REQUEST,
                110,
            ),
            (
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
                THIRD_REQUEST,
                TABLE_AFTER_THIRD_REQUEST,
                164,
            ),
        ],
    );
}

#[test]
fn c4_requests_with_huffman_coding() {
    check_sequence(
        decoder(),
        &[
            (
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                FIRST_REQUEST,
                TABLE_AFTER_FIRST_REQUEST,
                57,
            ),
            (
                "8286 84be 5886 a8eb 1064 9cbf",
                SECOND_REQUEST,
                TABLE_AFTER_SECOND_REQUEST,
                110,
            ),
            (
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                THIRD_REQUEST,
                TABLE_AFTER_THIRD_REQUEST,
                164,
            ),
        ],
    );
}

// ---------------------------------------------------------------- C.5, C.6

const FIRST_RESPONSE: List = &[
    (":status", "302"),
    ("cache-control", "private"),
    ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
    ("location", "https://www.example.com"),
];
const SECOND_RESPONSE: List = &[
    (":status", "307"),
    ("cache-control", "private"),
    ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
    ("location", "https://www.example.com"),
];
const THIRD_RESPONSE: List = &[
    (":status", "200"),
    ("cache-control", "private"),
    ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
    ("location", "https://www.example.com"),
    ("content-encoding", "gzip"),
    (
        "set-cookie",
        "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
    ),
];
const TABLE_AFTER_FIRST_RESPONSE: List = &[
    ("location", "https://www.example.com"),
    ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
    ("cache-control", "private"),
    (":status", "302"),
];
/// (":status", "302") evicted to make room for (":status", "307").
const TABLE_AFTER_SECOND_RESPONSE: List = &[
    (":status", "307"),
    ("location", "https://www.example.com"),
    ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
    ("cache-control", "private"),
];
/// Several entries evicted while the block is decoded.
const TABLE_AFTER_THIRD_RESPONSE: List = &[
    (
        "set-cookie",
        "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
    ),
    ("content-encoding", "gzip"),
    ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
];

/// C.5 and C.6 run with SETTINGS_HEADER_TABLE_SIZE at 256.
fn small_table_decoder() -> Decoder {
    Decoder::new(256, 64 * 1024)
}

#[test]
fn c5_responses_without_huffman_coding_and_with_eviction() {
    check_sequence(
        small_table_decoder(),
        &[
            (
                "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
                 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
                 6c65 2e63 6f6d",
                FIRST_RESPONSE,
                TABLE_AFTER_FIRST_RESPONSE,
                222,
            ),
            (
                "4803 3330 37c1 c0bf",
                SECOND_RESPONSE,
                TABLE_AFTER_SECOND_RESPONSE,
                222,
            ),
            (
                "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
                 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
                 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
                 3d31",
                THIRD_RESPONSE,
                TABLE_AFTER_THIRD_RESPONSE,
                215,
            ),
        ],
    );
}

#[test]
fn c6_responses_with_huffman_coding_and_with_eviction() {
    check_sequence(
        small_table_decoder(),
        &[
            (
                "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
                 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                FIRST_RESPONSE,
                TABLE_AFTER_FIRST_RESPONSE,
                222,
            ),
            (
                "4883 640e ffc1 c0bf",
                SECOND_RESPONSE,
                TABLE_AFTER_SECOND_RESPONSE,
                222,
            ),
            (
                "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
                 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
                 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                THIRD_RESPONSE,
                TABLE_AFTER_THIRD_RESPONSE,
                215,
            ),
        ],
    );
}

// ---------------------------------------------------------------- tables

#[test]
fn the_static_table_is_loona_hpacks() {
    // An independent encoder refers to each entry by its index.
    for (i, (name, value)) in STATIC_TABLE.iter().enumerate() {
        let encoded = loona_hpack::Encoder::new().encode([(*name, *value)]);
        let index = u8::try_from(i + 1).unwrap();
        assert_eq!(encoded, [0x80 | index], "{}", String::from_utf8_lossy(name));
        let mut fields = Vec::new();
        decoder()
            .decode(&encoded, |n, v| fields.push((n.to_vec(), v.to_vec())))
            .unwrap();
        assert_eq!(fields, [(name.to_vec(), value.to_vec())]);
    }
}

#[test]
fn index_0_is_refused() {
    assert_eq!(
        decode(&mut decoder(), &[0x82]),
        Ok(owned(&[(":method", "GET")]))
    );
    assert_eq!(decode(&mut decoder(), &[0x80]), Err(HpackError::IndexZero));
}

#[test]
fn an_index_past_the_tables_is_refused() {
    // Index 62, the first dynamic entry: there once the block before added it.
    let mut with_entry = decoder();
    decode(&mut with_entry, &hex("400a 6375 7374 6f6d 2d6b 6579 0161")).unwrap();
    assert_eq!(
        decode(&mut with_entry, &[0xbe]),
        Ok(owned(&[("custom-key", "a")]))
    );
    let refused = Err(HpackError::IndexOutOfRange {
        index: 62,
        entries: 61,
    });
    assert_eq!(decode(&mut decoder(), &[0xbe]), refused);
    // As a literal's name, too.
    assert_eq!(decode(&mut decoder(), &[0x7e, 0x00]), refused);
    assert_eq!(
        decode(&mut with_entry, &[0xbf]),
        Err(HpackError::IndexOutOfRange {
            index: 63,
            entries: 62,
        })
    );
}

#[test]
fn the_dynamic_table_evicts_oldest_first() {
    // Room for two 43-octet entries ("x-a: 1" is 3 + 8 + 32), not three.
    let mut decoder = Decoder::new(100, 64 * 1024);
    for value in ["11111111", "22222222", "33333333"] {
        let mut block = vec![0x40, 0x03];
        block.extend_from_slice(b"x-a");
        block.push(0x08);
        block.extend_from_slice(value.as_bytes());
        decode(&mut decoder, &block).unwrap();
    }
    assert_eq!(
        table(&decoder),
        (owned(&[("x-a", "33333333"), ("x-a", "22222222")]), 86)
    );
    // An entry larger than the table empties it and is not added.
    // ("x-b" and 70 octets: 105.)
    let mut block = vec![0x40, 0x03];
    block.extend_from_slice(b"x-b");
    block.push(70);
    block.extend_from_slice(&[b'v'; 70]);
    let fields = decode(&mut decoder, &block).unwrap();
    assert_eq!(fields[0].1.len(), 70, "the field still reaches the caller");
    assert_eq!(table(&decoder), (vec![], 0));
}

#[test]
fn a_new_entry_keeps_the_name_of_the_entry_it_evicts() {
    // RFC 7541 §4.4: a 60-octet table holds "custom-key: custom-header"
    // (55); the next entry takes its name by index 62 and evicts it.
    let mut decoder = Decoder::new(60, 64 * 1024);
    decode(
        &mut decoder,
        &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
    )
    .unwrap();
    let fields = decode(&mut decoder, &[0x7e, 0x01, b'v']).unwrap();
    assert_eq!(fields, owned(&[("custom-key", "v")]));
    assert_eq!(table(&decoder), (owned(&[("custom-key", "v")]), 43));
}

#[test]
fn a_size_update_above_the_allowed_maximum_is_refused() {
    // 4096 (31 + 97 + 31 * 128), then :method GET.
    let mut decoder = decoder();
    assert_eq!(
        decode(&mut decoder, &[0x3f, 0xe1, 0x1f, 0x82]),
        Ok(owned(&[(":method", "GET")]))
    );
    // 4097.
    assert_eq!(
        decode(&mut decoder, &[0x3f, 0xe2, 0x1f, 0x82]),
        Err(HpackError::TableSizeTooLarge {
            size: 4097,
            max: 4096,
        })
    );
}

#[test]
fn a_size_update_after_a_field_is_refused() {
    // Two updates before the first field are fine (RFC 7541 §4.2); the
    // smaller one evicts.
    let mut decoder = decoder();
    decode(
        &mut decoder,
        &hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
    )
    .unwrap();
    assert_eq!(
        decode(&mut decoder, &[0x20, 0x3f, 0xe1, 0x1f, 0x82]),
        Ok(owned(&[(":method", "GET")]))
    );
    assert_eq!(table(&decoder), (vec![], 0));
    assert_eq!(
        decode(&mut decoder, &[0x82, 0x20]),
        Err(HpackError::LateTableSizeUpdate)
    );
}

#[test]
fn a_truncated_string_is_refused() {
    let whole = hex("040c 2f73 616d 706c 652f 7061 7468");
    assert_eq!(
        decode(&mut decoder(), &whole),
        Ok(owned(&[(":path", "/sample/path")]))
    );
    for cut in 1..whole.len() {
        assert_eq!(
            decode(&mut decoder(), &whole[..cut]),
            Err(HpackError::Truncated),
            "cut at {cut}"
        );
    }
}

#[test]
fn a_block_over_the_bound_is_refused_before_its_field_is_passed_on() {
    // ":method: GET" counts 7 + 3 + 32 = 42.
    let mut fields = 0;
    assert_eq!(
        Decoder::new(4096, 84).decode(&[0x82, 0x82], |_, _| fields += 1),
        Ok(())
    );
    assert_eq!(
        Decoder::new(4096, 83).decode(&[0x82, 0x82], |_, _| fields += 1),
        Err(HpackError::BlockTooLarge { max: 83 })
    );
    assert_eq!(fields, 3);
}

// ---------------------------------------------------------------- Huffman

/// A block with one field, `x: value`, the value Huffman-coded as `coded`.
fn huffman_block(coded: &[u8]) -> Vec<u8> {
    let mut block = vec![0x00, 0x01, b'x'];
    encode_integer(coded.len(), 7, 0x80, &mut block);
    block.extend_from_slice(coded);
    block
}

/// The Huffman decoding of `coded`.
fn huffman_decode(coded: &[u8]) -> Result<Vec<u8>, HpackError> {
    let mut output = Vec::new();
    huffman::decode(coded, &mut output)?;
    Ok(output)
}

#[test]
fn every_symbol_decodes_alone_and_in_a_row() {
    let all: Vec<u8> = (0..=255).collect();
    for octet in &all {
        let coded = huffman::encode(&[*octet]);
        assert_eq!(huffman_decode(&coded), Ok(vec![*octet]), "{octet}");
    }
    assert_eq!(huffman_decode(&huffman::encode(&all)), Ok(all.clone()));
    let reversed: Vec<u8> = all.iter().rev().copied().collect();
    assert_eq!(huffman_decode(&huffman::encode(&reversed)), Ok(reversed));
    assert_eq!(huffman_decode(&[]), Ok(vec![]));
}

#[test]
fn the_code_is_canonical() {
    // Appendix B is a canonical code: ordered by length then symbol, each
    // code is the one before plus one, shifted to its length.
    let mut symbols: Vec<usize> = (0..=256).collect();
    symbols.sort_by_key(|&symbol| (huffman::code(symbol).1, symbol));
    assert_eq!(huffman::code(symbols[0]), (0, 5));
    for pair in symbols.windows(2) {
        let (previous, previous_length) = huffman::code(pair[0]);
        let (code, length) = huffman::code(pair[1]);
        assert_eq!(
            code,
            (previous + 1) << (length - previous_length),
            "{pair:?}"
        );
    }
    assert_eq!(huffman::code(256), ((1 << 30) - 1, 30));
}

#[test]
fn padding_over_seven_bits_is_refused() {
    // "a" is 00011: three bits of padding, then a whole octet more.
    assert_eq!(huffman_decode(&[0x1f]), Ok(b"a".to_vec()));
    assert_eq!(
        huffman_decode(&[0x1f, 0xff]),
        Err(HpackError::HuffmanPaddingTooLong)
    );
    // Nothing but padding: eight 1s.
    assert_eq!(
        huffman_decode(&[0xff]),
        Err(HpackError::HuffmanPaddingTooLong)
    );
    // Through the decoder.
    assert_eq!(
        decode(&mut decoder(), &huffman_block(&[0x1f])),
        Ok(owned(&[("x", "a")]))
    );
    assert_eq!(
        decode(&mut decoder(), &huffman_block(&[0x1f, 0xff])),
        Err(HpackError::HuffmanPaddingTooLong)
    );
}

#[test]
fn padding_that_is_not_a_prefix_of_eos_is_refused() {
    // "a" then 110, 011, 000 instead of 111.
    for octet in [0x1e, 0x1b, 0x18] {
        assert_eq!(
            huffman_decode(&[octet]),
            Err(HpackError::HuffmanPaddingNotEos),
            "{octet:#04x}"
        );
    }
    assert_eq!(
        decode(&mut decoder(), &huffman_block(&[0x1e])),
        Err(HpackError::HuffmanPaddingNotEos)
    );
    // Control: "0a" is 00000 00011, then six 1s of padding.
    assert_eq!(huffman_decode(&[0x00, 0xff]), Ok(b"0a".to_vec()));
}

#[test]
fn eos_in_a_string_is_refused() {
    // EOS alone (30 1s, then two of padding), and after "a" (00011, then
    // 30 1s and five of padding).
    for coded in [
        &[0xff, 0xff, 0xff, 0xff][..],
        &[0x1f, 0xff, 0xff, 0xff, 0xff],
    ] {
        assert_eq!(huffman_decode(coded), Err(HpackError::HuffmanEos));
    }
    // Control: "a" padded with three 1s.
    assert_eq!(huffman_decode(&[0x1f]), Ok(b"a".to_vec()));
    // One 1 short of EOS, after "a/" (00011 011000, then 29 1s): not EOS,
    // but too long a padding.
    assert_eq!(
        huffman_decode(&[0x1b, 0x1f, 0xff, 0xff, 0xff]),
        Err(HpackError::HuffmanPaddingTooLong)
    );
    assert_eq!(
        decode(&mut decoder(), &huffman_block(&[0xff, 0xff, 0xff, 0xff])),
        Err(HpackError::HuffmanEos)
    );
}

/// The HPACK block of the first HEADERS frame an h2 client sends for a
/// request carrying `value` in an `x-all` header.
async fn h2_client_block(value: &[u8]) -> Vec<u8> {
    let (client, mut server) = tokio::io::duplex(1 << 16);
    let (mut sender, connection) = h2::client::handshake(client).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = tonic::codegen::http::Request::builder()
        .method("POST")
        .uri("http://localhost/SpiffeWorkloadAPI/FetchJWTSVID")
        .header("x-all", value)
        .body(())
        .unwrap();
    sender = sender.ready().await.unwrap();
    let (_response, _stream) = sender.send_request(request, true).unwrap();
    let mut bytes = Vec::new();
    let block = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), server.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        bytes.extend_from_slice(&chunk[..n]);
        // Frames after the 24-octet preface: HEADERS has type 1, and h2
        // sends it unpadded, without priority, in one frame.
        let mut frames = bytes.get(24..).unwrap_or_default();
        let mut found = None;
        while frames.len() >= 9 {
            let length =
                usize::from(frames[0]) << 16 | usize::from(frames[1]) << 8 | usize::from(frames[2]);
            if frames.len() < 9 + length {
                break;
            }
            if frames[3] == 1 {
                found = Some(frames[9..9 + length].to_vec());
            }
            frames = &frames[9 + length..];
        }
        if let Some(block) = found {
            break block;
        }
    };
    driver.abort();
    block
}

#[tokio::test]
async fn h2s_huffman_coding_decodes() {
    // Every octet an HTTP field value may hold: tab, visible ASCII, space,
    // and obs-text.
    let mut value = vec![b'\t'];
    value.extend(0x20..=0x7e);
    value.extend(0x80..=0xff);
    let block = h2_client_block(&value).await;
    let mut fields = Vec::new();
    decoder()
        .decode(&block, |name, value| {
            fields.push((name.to_vec(), value.to_vec()));
        })
        .unwrap();
    let all = fields
        .iter()
        .find(|(name, _)| name == b"x-all")
        .expect("the x-all field");
    assert_eq!(all.1, value);
    assert!(
        !block.windows(b"x-all".len()).any(|w| w == b"x-all"),
        "h2 Huffman-codes the name too"
    );
    let path = fields.iter().find(|(name, _)| name == b":path").unwrap();
    assert_eq!(path.1, b"/SpiffeWorkloadAPI/FetchJWTSVID");
}
