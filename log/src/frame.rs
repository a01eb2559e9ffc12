//! The frame: the unit of one atomic append.
//!
//! A frame is a 40-byte header followed by the payload, padded with zeros to a multiple of
//! [`FRAME_ALIGN_BYTES`]. All integers are little-endian.
//!
//! ```text
//! byte  0..4   magic            u32  = FRAME_MAGIC ("SSJ1" read as little-endian bytes)
//! byte  4..8   header_crc       u32  CRC-32C over bytes 8..40, seeded with the journal salt
//! byte  8..16  offset           u64  journal offset of this frame's first header byte
//! byte 16..24  write_begin      u64  journal offset where the group-commit write holding
//!                                    this frame began (<= offset)
//! byte 24..28  payload_len      u32  payload bytes, excluding padding
//! byte 28..30  kind             u16  FRAME_KIND_BATCH (1); other values are refused
//! byte 30..32  reserved         u16  zero
//! byte 32..36  payload_crc      u32  CRC-32C over the payload, seeded with the journal salt
//! byte 36..40  message_count    u32  messages in the payload
//! byte 40..    payload          payload_len bytes, then zero padding to an 8-byte boundary
//! ```
//!
//! The header checksum covers the offset (so a frame copied elsewhere, or a stale frame from an
//! earlier life of a zero-filled or reused region, never validates), the length, the kind and the
//! payload checksum, so it transitively covers the payload. Seeding both checksums with a salt
//! derived from the journal name means a frame copied into another journal does not validate.
//! An all-zero header reads as "end of data" ([`FrameError::Zeroed`]).
//!
//! The payload of a batch frame is a sequence of messages, each a `u32` little-endian length
//! followed by that many bytes.

/// Magic number at byte 0 of every frame header.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"SSJ1");
/// Frames start at offsets that are multiples of this.
pub const FRAME_ALIGN_BYTES: u64 = 8;
/// Kind of a frame carrying a batch of length-prefixed messages.
pub const FRAME_KIND_BATCH: u16 = 1;

pub const MAGIC_OFFSET: usize = 0;
pub const HEADER_CRC_OFFSET: usize = 4;
pub const OFFSET_OFFSET: usize = 8;
pub const WRITE_BEGIN_OFFSET: usize = 16;
pub const PAYLOAD_LEN_OFFSET: usize = 24;
pub const KIND_OFFSET: usize = 28;
pub const RESERVED_OFFSET: usize = 30;
pub const PAYLOAD_CRC_OFFSET: usize = 32;
pub const MESSAGE_COUNT_OFFSET: usize = 36;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 40;
/// Bytes of a message's length prefix inside a batch payload.
pub const MESSAGE_LEN_PREFIX_BYTES: usize = 4;

const _: () = assert!(HEADER_CRC_OFFSET == MAGIC_OFFSET + 4);
const _: () = assert!(OFFSET_OFFSET == HEADER_CRC_OFFSET + 4);
const _: () = assert!(WRITE_BEGIN_OFFSET == OFFSET_OFFSET + 8);
const _: () = assert!(PAYLOAD_LEN_OFFSET == WRITE_BEGIN_OFFSET + 8);
const _: () = assert!(KIND_OFFSET == PAYLOAD_LEN_OFFSET + 4);
const _: () = assert!(RESERVED_OFFSET == KIND_OFFSET + 2);
const _: () = assert!(PAYLOAD_CRC_OFFSET == RESERVED_OFFSET + 2);
const _: () = assert!(MESSAGE_COUNT_OFFSET == PAYLOAD_CRC_OFFSET + 4);
const _: () = assert!(HEADER_LEN == MESSAGE_COUNT_OFFSET + 4);
const _: () = assert!((HEADER_LEN as u64).is_multiple_of(FRAME_ALIGN_BYTES));

/// Why bytes at a position are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("zeroed bytes (no frame was written here)")]
    Zeroed,
    #[error("incomplete frame: {needed} bytes needed, {available} available")]
    Truncated { needed: u64, available: u64 },
    #[error("bad magic {found:#010x}")]
    BadMagic { found: u32 },
    #[error("header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderChecksum { stored: u32, computed: u32 },
    #[error("frame claims offset {found}, but sits at offset {expected}")]
    OffsetMismatch { expected: u64, found: u64 },
    #[error("bad header field: {detail}")]
    BadHeader { detail: String },
    #[error("payload checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    PayloadChecksum { stored: u32, computed: u32 },
    #[error("malformed message list: {detail}")]
    BadMessages { detail: String },
    #[error(
        "the fragment's file ends at journal offset {file_end}, but the journal goes on to offset \
         {next} (the next fragment's begin, or the head): offsets {file_end}..{next} ({} bytes) are \
         in no file (a fragment file was removed, or this one truncated)",
        next - file_end
    )]
    FragmentShort { file_end: u64, next: u64 },
}

/// Checksum salt of a journal: CRC-32C of its name, so frames never validate in another journal.
pub fn journal_salt(journal_name: &str) -> u32 {
    crc32c::crc32c(journal_name.as_bytes())
}

/// Bytes a frame with `payload_len` payload bytes occupies, padding included.
pub fn frame_len_bytes(payload_len: usize) -> u64 {
    align_up(HEADER_LEN as u64 + payload_len as u64)
}

pub fn align_up(len: u64) -> u64 {
    len.div_ceil(FRAME_ALIGN_BYTES) * FRAME_ALIGN_BYTES
}

/// A decoded, fully validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub offset: u64,
    pub write_begin: u64,
    pub payload_len: u32,
    pub kind: u16,
    pub payload_crc: u32,
    pub message_count: u32,
}

impl FrameHeader {
    /// Total bytes this frame occupies, padding included.
    pub fn frame_len_bytes(&self) -> u64 {
        frame_len_bytes(self.payload_len as usize)
    }
}

/// Appends one encoded frame to `out`. `payload_crc` must be [`payload_crc`] of `payload`.
pub fn encode_frame(out: &mut Vec<u8>, salt: u32, header: &FrameHeader, payload: &[u8]) {
    debug_assert_eq!(header.payload_len as usize, payload.len());
    debug_assert!(header.write_begin <= header.offset);
    let start = out.len();
    let mut h = [0u8; HEADER_LEN];
    h[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    h[OFFSET_OFFSET..OFFSET_OFFSET + 8].copy_from_slice(&header.offset.to_le_bytes());
    h[WRITE_BEGIN_OFFSET..WRITE_BEGIN_OFFSET + 8].copy_from_slice(&header.write_begin.to_le_bytes());
    h[PAYLOAD_LEN_OFFSET..PAYLOAD_LEN_OFFSET + 4].copy_from_slice(&header.payload_len.to_le_bytes());
    h[KIND_OFFSET..KIND_OFFSET + 2].copy_from_slice(&header.kind.to_le_bytes());
    h[PAYLOAD_CRC_OFFSET..PAYLOAD_CRC_OFFSET + 4].copy_from_slice(&header.payload_crc.to_le_bytes());
    h[MESSAGE_COUNT_OFFSET..MESSAGE_COUNT_OFFSET + 4].copy_from_slice(&header.message_count.to_le_bytes());
    let crc = crc32c::crc32c_append(salt, &h[OFFSET_OFFSET..]);
    h[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let end = start + header.frame_len_bytes() as usize;
    out.resize(end, 0);
}

/// CRC-32C of a payload as stored in the header.
pub fn payload_crc(salt: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(salt, payload)
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// The `header_crc` stored in the frame header at the start of `buf` (not checked), if `buf` holds
/// that field.
pub fn stored_header_crc(buf: &[u8]) -> Option<u32> {
    (buf.len() >= HEADER_CRC_OFFSET + 4).then(|| read_u32(buf, HEADER_CRC_OFFSET))
}

/// Validates the header at the start of `buf`, which must sit at journal offset `expected_offset`.
/// Does not look at the payload.
pub fn decode_header(buf: &[u8], salt: u32, expected_offset: u64) -> Result<FrameHeader, FrameError> {
    if buf.len() < HEADER_LEN {
        if buf.iter().all(|&b| b == 0) {
            return Err(FrameError::Zeroed);
        }
        return Err(FrameError::Truncated {
            needed: HEADER_LEN as u64,
            available: buf.len() as u64,
        });
    }
    let h = &buf[..HEADER_LEN];
    let magic = read_u32(h, MAGIC_OFFSET);
    if magic != FRAME_MAGIC {
        if magic == 0 && h.iter().all(|&b| b == 0) {
            return Err(FrameError::Zeroed);
        }
        return Err(FrameError::BadMagic { found: magic });
    }
    let stored = read_u32(h, HEADER_CRC_OFFSET);
    let computed = crc32c::crc32c_append(salt, &h[OFFSET_OFFSET..]);
    if stored != computed {
        return Err(FrameError::HeaderChecksum { stored, computed });
    }
    let header = FrameHeader {
        offset: read_u64(h, OFFSET_OFFSET),
        write_begin: read_u64(h, WRITE_BEGIN_OFFSET),
        payload_len: read_u32(h, PAYLOAD_LEN_OFFSET),
        kind: read_u16(h, KIND_OFFSET),
        payload_crc: read_u32(h, PAYLOAD_CRC_OFFSET),
        message_count: read_u32(h, MESSAGE_COUNT_OFFSET),
    };
    if header.offset != expected_offset {
        return Err(FrameError::OffsetMismatch {
            expected: expected_offset,
            found: header.offset,
        });
    }
    if header.kind != FRAME_KIND_BATCH {
        return Err(FrameError::BadHeader {
            detail: format!("unknown kind {}", header.kind),
        });
    }
    if read_u16(h, RESERVED_OFFSET) != 0 {
        return Err(FrameError::BadHeader {
            detail: "reserved bytes not zero".into(),
        });
    }
    if header.write_begin > header.offset || !header.offset.is_multiple_of(FRAME_ALIGN_BYTES) {
        return Err(FrameError::BadHeader {
            detail: format!(
                "write_begin {} after offset {}",
                header.write_begin, header.offset
            ),
        });
    }
    Ok(header)
}

/// Validates the whole frame (header and payload) at the start of `buf`, which must sit at journal
/// offset `expected_offset`. Returns the header; the payload is
/// `buf[HEADER_LEN..HEADER_LEN + payload_len]`.
pub fn decode_frame(buf: &[u8], salt: u32, expected_offset: u64) -> Result<FrameHeader, FrameError> {
    let header = decode_header(buf, salt, expected_offset)?;
    let total = header.frame_len_bytes();
    if (buf.len() as u64) < total {
        return Err(FrameError::Truncated {
            needed: total,
            available: buf.len() as u64,
        });
    }
    let payload = &buf[HEADER_LEN..HEADER_LEN + header.payload_len as usize];
    let computed = payload_crc(salt, payload);
    if computed != header.payload_crc {
        return Err(FrameError::PayloadChecksum {
            stored: header.payload_crc,
            computed,
        });
    }
    Ok(header)
}

/// Iterates the length-prefixed messages of a batch payload, checking that they exactly fill it.
pub fn messages(payload: &[u8]) -> Messages<'_> {
    Messages { rest: payload }
}

/// Iterator over the messages of a batch payload; yields an error once if the list is malformed.
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<&'a [u8], FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < MESSAGE_LEN_PREFIX_BYTES {
            let n = self.rest.len();
            self.rest = &[];
            return Some(Err(FrameError::BadMessages {
                detail: format!("{n} stray bytes"),
            }));
        }
        let len = read_u32(self.rest, 0) as usize;
        let body = &self.rest[MESSAGE_LEN_PREFIX_BYTES..];
        if body.len() < len {
            self.rest = &[];
            return Some(Err(FrameError::BadMessages {
                detail: format!("message of {len} bytes with {} left", body.len()),
            }));
        }
        let (msg, rest) = body.split_at(len);
        self.rest = rest;
        Some(Ok(msg))
    }
}

/// A batch of messages under construction: what one append writes as one frame.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    payload: Vec<u8>,
    count: u32,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn with_capacity(bytes: usize) -> Batch {
        Batch {
            payload: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// A batch of one message.
    pub fn single(message: &[u8]) -> Batch {
        let mut b = Batch::with_capacity(message.len() + MESSAGE_LEN_PREFIX_BYTES);
        b.push(message);
        b
    }

    pub fn push(&mut self, message: &[u8]) {
        let len = u32::try_from(message.len()).expect("message longer than 4 GiB");
        self.payload.extend_from_slice(&len.to_le_bytes());
        self.payload.extend_from_slice(message);
        self.count += 1;
    }

    /// Appends a message written by `write` into the batch buffer, avoiding a copy.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let at = self.payload.len();
        self.payload.extend_from_slice(&[0; MESSAGE_LEN_PREFIX_BYTES]);
        write(&mut self.payload);
        let len = u32::try_from(self.payload.len() - at - MESSAGE_LEN_PREFIX_BYTES)
            .expect("message longer than 4 GiB");
        self.payload[at..at + MESSAGE_LEN_PREFIX_BYTES].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
    }

    pub fn message_count(&self) -> u32 {
        self.count
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn clear(&mut self) {
        self.payload.clear();
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(offset: u64, payload: &[u8]) -> Vec<u8> {
        let salt = journal_salt("j");
        let mut out = Vec::new();
        let header = FrameHeader {
            offset,
            write_begin: offset,
            payload_len: payload.len() as u32,
            kind: FRAME_KIND_BATCH,
            payload_crc: payload_crc(salt, payload),
            message_count: 1,
        };
        encode_frame(&mut out, salt, &header, payload);
        out
    }

    #[test]
    fn round_trip_validates_and_pads_to_alignment() {
        let f = encode(64, b"hello");
        assert_eq!(f.len() as u64, frame_len_bytes(5));
        assert_eq!(f.len() % 8, 0);
        let h = decode_frame(&f, journal_salt("j"), 64).unwrap();
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn frame_at_another_offset_or_journal_does_not_validate() {
        let f = encode(64, b"hello");
        assert!(matches!(
            decode_frame(&f, journal_salt("j"), 72),
            Err(FrameError::OffsetMismatch { .. })
        ));
        assert!(matches!(
            decode_frame(&f, journal_salt("other"), 64),
            Err(FrameError::HeaderChecksum { .. })
        ));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let f = encode(0, b"some payload bytes");
        let salt = journal_salt("j");
        // Padding bytes are not covered; flip only header and payload bits.
        for byte in 0..HEADER_LEN + 18 {
            for bit in 0..8 {
                let mut g = f.clone();
                g[byte] ^= 1 << bit;
                assert!(
                    decode_frame(&g, salt, 0).is_err(),
                    "flip at byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn zeroes_read_as_end_of_data() {
        assert_eq!(decode_frame(&[0; 64], 1, 0), Err(FrameError::Zeroed));
        assert_eq!(decode_frame(&[0; 7], 1, 0), Err(FrameError::Zeroed));
    }

    #[test]
    fn messages_round_trip_and_malformed_lists_error() {
        let mut b = Batch::new();
        b.push(b"a");
        b.push(b"");
        b.push_with(|v| v.extend_from_slice(b"xyz"));
        let got: Vec<_> = messages(b.payload()).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, vec![&b"a"[..], &b""[..], &b"xyz"[..]]);
        assert_eq!(b.message_count(), 3);
        let bad = [5u8, 0, 0, 0, 1];
        assert!(messages(&bad).next().unwrap().is_err());
    }
}
