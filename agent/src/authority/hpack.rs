//! A strict HPACK decoder (RFC 7541) for the header blocks a Workload API
//! client sends, with the client's dynamic table mirrored.
//!
//! Ours rather than a crate's: loona-hpack, which the rewriter used first,
//! builds a HashMap-based Huffman decoding table for every Huffman-coded
//! string, and that cost the agent's cached FetchJWTSVID path about 11 %
//! (`cargo bench -p mayfly-agent --bench authority` measures the
//! rewriter); no maintained crate offers a table-driven Huffman decoder
//! together with the padding checks RFC 7541 §5.2 makes mandatory. Only
//! decoding is here (the rewriter re-encodes as plain literals, and
//! [`encode_integer`] is all that takes), and every bound is explicit:
//!
//! - An integer (§5.1) takes at most [`MAX_CONTINUATION_OCTETS`] octets
//!   after its prefix, so its value stays under 2^28 + 255.
//! - A string literal (§5.2) is no longer than what is left of the block;
//!   a Huffman-coded one is decoded by [`huffman`], which rejects EOS,
//!   padding over seven bits and padding that is not a prefix of EOS.
//! - The dynamic table (§4) counts each entry as name + value + 32 octets
//!   and evicts the oldest first; a size update (§6.3) is taken only before
//!   the first field of a block and never above the maximum the decoder
//!   was given (the SETTINGS_HEADER_TABLE_SIZE the server advertised).
//! - The fields of one block may add up, counted the same way, to at most
//!   the bound the decoder was given; the field that passes it is an error
//!   before it reaches the caller.
//!
//! A block that fails to decode leaves the table in an unknown state: the
//! connection has to end.

mod huffman;

use std::collections::VecDeque;

/// The most octets an integer may take after its prefix octet: 28 bits of
/// value, far beyond any length, index or table size a block can carry.
const MAX_CONTINUATION_OCTETS: usize = 4;
/// What an entry costs in the dynamic table besides its name and value
/// (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// Why a header block does not decode. All of them are the client's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HpackError {
    /// The block ends inside a representation.
    #[error("the header block is cut short")]
    Truncated,
    /// An integer takes more octets than [`MAX_CONTINUATION_OCTETS`].
    #[error("an integer is longer than HPACK allows here")]
    IntegerOverflow,
    /// An index of 0, which names no entry (RFC 7541 §6.1).
    #[error("a field refers to index 0")]
    IndexZero,
    /// An index past the static and the dynamic table.
    #[error("a field refers to index {index}, past the {entries} entries of both tables")]
    IndexOutOfRange {
        /// The index in the block.
        index: usize,
        /// How many entries both tables hold.
        entries: usize,
    },
    /// A dynamic table size update above the maximum the server allows.
    #[error("a dynamic table size update to {size}, over the allowed {max}")]
    TableSizeTooLarge {
        /// The size the update asks for.
        size: usize,
        /// The most the server allows.
        max: usize,
    },
    /// A dynamic table size update after a field of the same block.
    #[error("a dynamic table size update after a header field")]
    LateTableSizeUpdate,
    /// A Huffman-coded string contains the EOS symbol.
    #[error("a Huffman-coded string contains EOS")]
    HuffmanEos,
    /// A Huffman-coded string ends with more than seven bits of padding.
    #[error("a Huffman-coded string has more than 7 bits of padding")]
    HuffmanPaddingTooLong,
    /// A Huffman-coded string ends with bits that are not a prefix of EOS.
    #[error("a Huffman-coded string's padding is not a prefix of EOS")]
    HuffmanPaddingNotEos,
    /// The fields of the block add up to more than the decoder takes.
    #[error("the header block decodes to more than {max} octets")]
    BlockTooLarge {
        /// The bound the decoder was given.
        max: usize,
    },
}

/// The static table (RFC 7541 Appendix A): indices 1 to 61.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// One entry of the dynamic table: name and value in one allocation.
#[derive(Debug)]
struct Entry {
    /// The name, then the value.
    bytes: Box<[u8]>,
    /// Where the value starts in `bytes`.
    name_len: usize,
}

impl Entry {
    /// An entry holding copies of `name` and `value`.
    fn new(name: &[u8], value: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        Entry {
            bytes: bytes.into_boxed_slice(),
            name_len: name.len(),
        }
    }

    /// Its name and value.
    fn field(&self) -> (&[u8], &[u8]) {
        self.bytes.split_at(self.name_len)
    }

    /// Its size as RFC 7541 §4.1 counts it.
    fn size(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD
    }
}

/// The dynamic table (RFC 7541 §2.3.2, §4): newest entry first.
#[derive(Debug)]
struct DynamicTable {
    /// The entries, newest (index 62) first.
    entries: VecDeque<Entry>,
    /// The sum of the entries' sizes.
    size: usize,
    /// The size the encoder last set (at first the most it may set).
    max_size: usize,
    /// The most the encoder may set: SETTINGS_HEADER_TABLE_SIZE.
    allowed_max_size: usize,
}

impl DynamicTable {
    /// An empty table whose encoder may set its size up to
    /// `allowed_max_size`.
    fn new(allowed_max_size: usize) -> Self {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            max_size: allowed_max_size,
            allowed_max_size,
        }
    }

    /// The field at `index` of the static and dynamic tables together.
    fn field(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        if index == 0 {
            return Err(HpackError::IndexZero);
        }
        if let Some(&field) = STATIC_TABLE.get(index - 1) {
            return Ok(field);
        }
        self.entries
            .get(index - 1 - STATIC_TABLE.len())
            .map(Entry::field)
            .ok_or(HpackError::IndexOutOfRange {
                index,
                entries: STATIC_TABLE.len() + self.entries.len(),
            })
    }

    /// Adds `entry` after evicting what it needs room from; an entry larger
    /// than the table empties it and is not added (RFC 7541 §4.4).
    fn insert(&mut self, entry: Entry) {
        let size = entry.size();
        if size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_down_to(self.max_size - size);
        self.size += size;
        self.entries.push_front(entry);
    }

    /// Takes a dynamic table size update (RFC 7541 §6.3).
    fn set_max_size(&mut self, max_size: usize) -> Result<(), HpackError> {
        if max_size > self.allowed_max_size {
            return Err(HpackError::TableSizeTooLarge {
                size: max_size,
                max: self.allowed_max_size,
            });
        }
        self.max_size = max_size;
        self.evict_down_to(max_size);
        Ok(())
    }

    /// Evicts the oldest entries until the table holds at most `size`.
    fn evict_down_to(&mut self, size: usize) {
        while self.size > size {
            match self.entries.pop_back() {
                Some(evicted) => self.size -= evicted.size(),
                None => self.size = 0,
            }
        }
    }
}

/// Decodes the header blocks of one connection, in order.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// The client's dynamic table, mirrored.
    table: DynamicTable,
    /// The most the fields of one block may add up to (RFC 7541 §4.1 sizes).
    max_block_size: usize,
    /// Where Huffman-coded names are decoded; kept between strings.
    name_buffer: Vec<u8>,
    /// Where Huffman-coded values are decoded; kept between strings.
    value_buffer: Vec<u8>,
}

/// The fields decoded so far from one block, on their way to the caller.
struct Fields<F> {
    /// The caller's callback.
    on_field: F,
    /// Their total size as RFC 7541 §4.1 counts it.
    size: usize,
    /// The most `size` may reach.
    max_size: usize,
}

impl<F: FnMut(&[u8], &[u8])> Fields<F> {
    /// Counts a field and passes it on, unless it takes the block over
    /// [`Fields::max_size`].
    fn push(&mut self, name: &[u8], value: &[u8]) -> Result<(), HpackError> {
        self.size = self
            .size
            .saturating_add(name.len() + value.len() + ENTRY_OVERHEAD);
        if self.size > self.max_size {
            return Err(HpackError::BlockTooLarge { max: self.max_size });
        }
        (self.on_field)(name, value);
        Ok(())
    }
}

impl Decoder {
    /// A decoder for a connection whose server allows the client's encoder
    /// a dynamic table of `max_table_size` octets, taking blocks whose
    /// fields add up to at most `max_block_size` octets.
    pub(crate) fn new(max_table_size: usize, max_block_size: usize) -> Self {
        Decoder {
            table: DynamicTable::new(max_table_size),
            max_block_size,
            name_buffer: Vec::new(),
            value_buffer: Vec::new(),
        }
    }

    /// Decodes one complete header block (HEADERS and CONTINUATION
    /// fragments joined), calling `on_field` with each field's name and
    /// value, in order.
    ///
    /// # Errors
    ///
    /// Any [`HpackError`]; the fields before the error have reached
    /// `on_field`, and the dynamic table is no longer the client's.
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        on_field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut fields = Fields {
            on_field,
            size: 0,
            max_size: self.max_block_size,
        };
        let mut input = block;
        let mut field_seen = false;
        while let Some(&first) = input.first() {
            if first & 0b1110_0000 == 0b0010_0000 {
                // Dynamic table size update (RFC 7541 §6.3).
                if field_seen {
                    return Err(HpackError::LateTableSizeUpdate);
                }
                let size = decode_integer(&mut input, 5)?;
                self.table.set_max_size(size)?;
                continue;
            }
            field_seen = true;
            if first & 0b1000_0000 != 0 {
                // Indexed header field (§6.1).
                let index = decode_integer(&mut input, 7)?;
                let (name, value) = self.table.field(index)?;
                fields.push(name, value)?;
            } else if first & 0b1100_0000 == 0b0100_0000 {
                // Literal with incremental indexing (§6.2.1).
                self.literal(&mut input, 6, true, &mut fields)?;
            } else {
                // Literal without indexing (0000) or never indexed (0001),
                // §6.2.2 and §6.2.3: the same to a decoder.
                self.literal(&mut input, 4, false, &mut fields)?;
            }
        }
        Ok(())
    }

    /// Decodes a literal field whose name index has a `prefix_bits` prefix,
    /// and adds it to the dynamic table if `indexing`.
    fn literal<F: FnMut(&[u8], &[u8])>(
        &mut self,
        input: &mut &[u8],
        prefix_bits: u8,
        indexing: bool,
        fields: &mut Fields<F>,
    ) -> Result<(), HpackError> {
        let name_index = decode_integer(input, prefix_bits)?;
        let name = if name_index == 0 {
            let (huffman, raw) = take_string(input)?;
            decode_string(huffman, raw, &mut self.name_buffer)?
        } else {
            self.table.field(name_index)?.0
        };
        let (huffman, raw) = take_string(input)?;
        let value = decode_string(huffman, raw, &mut self.value_buffer)?;
        fields.push(name, value)?;
        if indexing {
            // Copied before the insertion evicts anything: the name may be
            // an entry's that is about to go (RFC 7541 §4.4).
            let entry = Entry::new(name, value);
            self.table.insert(entry);
        }
        Ok(())
    }
}

/// Decodes an integer with a `prefix_bits`-bit prefix (RFC 7541 §5.1) from
/// the start of `input`, and moves `input` past it.
///
/// # Errors
///
/// [`HpackError::Truncated`] if `input` ends inside it,
/// [`HpackError::IntegerOverflow`] if it takes more than
/// [`MAX_CONTINUATION_OCTETS`] octets after the prefix.
fn decode_integer(input: &mut &[u8], prefix_bits: u8) -> Result<usize, HpackError> {
    let (&first, mut rest) = input.split_first().ok_or(HpackError::Truncated)?;
    let prefix_max = (1usize << prefix_bits) - 1;
    let mut value = usize::from(first) & prefix_max;
    if value == prefix_max {
        let mut shift = 0;
        let mut octets = 0;
        loop {
            let (&octet, after) = rest.split_first().ok_or(HpackError::Truncated)?;
            rest = after;
            octets += 1;
            if octets > MAX_CONTINUATION_OCTETS {
                return Err(HpackError::IntegerOverflow);
            }
            // At most 28 bits: no overflow, even with a 32-bit usize.
            value += usize::from(octet & 0x7f) << shift;
            shift += 7;
            if octet & 0x80 == 0 {
                break;
            }
        }
    }
    *input = rest;
    Ok(value)
}

/// Takes a string literal (RFC 7541 §5.2) from the start of `input`: whether
/// it is Huffman-coded, and its octets as sent.
fn take_string<'a>(input: &mut &'a [u8]) -> Result<(bool, &'a [u8]), HpackError> {
    let huffman = input.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let length = decode_integer(input, 7)?;
    if length > input.len() {
        return Err(HpackError::Truncated);
    }
    let (raw, rest) = input.split_at(length);
    *input = rest;
    Ok((huffman, raw))
}

/// The string `raw` stands for: itself, or its Huffman decoding in `buffer`.
fn decode_string<'a>(
    huffman: bool,
    raw: &'a [u8],
    buffer: &'a mut Vec<u8>,
) -> Result<&'a [u8], HpackError> {
    if !huffman {
        return Ok(raw);
    }
    buffer.clear();
    huffman::decode(raw, buffer)?;
    Ok(buffer)
}

/// Appends `value` as an integer with a `prefix_bits`-bit prefix (RFC 7541
/// §5.1), the prefix octet's other bits set to `flags`.
pub(crate) fn encode_integer(value: usize, prefix_bits: u8, flags: u8, out: &mut Vec<u8>) {
    let prefix_max = (1usize << prefix_bits) - 1;
    // Every `as u8` below takes a value under 256.
    if value < prefix_max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | prefix_max as u8);
    let mut rest = value - prefix_max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests;
