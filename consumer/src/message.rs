//! Messages of stream-sum, versioned, little-endian.
//!
//! Every message starts with a tag byte and a version byte. Chunk journals hold only chunks;
//! shard logs hold, per transaction frame, the outputs (sums, expiries) followed by exactly one
//! checkpoint (see [`crate::checkpoint`]).
//!
//! ```text
//! Chunk   'C' 1  stream u64  seq u32  flags u8 (bit 0: final)  data (rest of the message)
//! Sum     'S' 1  stream u64  last_seq u32  sha1 [20]
//! Expired 'E' 1  stream u64  last_seq u32  last_active_offset u64
//! ```

use std::fmt;

pub const TAG_CHUNK: u8 = b'C';
pub const TAG_SUM: u8 = b'S';
pub const TAG_EXPIRED: u8 = b'E';
pub const TAG_CHECKPOINT: u8 = b'K';
pub const MESSAGE_VERSION: u8 = 1;

pub const CHUNK_HEADER_BYTES: usize = 2 + 8 + 4 + 1;
pub const SUM_BYTES: usize = 2 + 8 + 4 + 20;
pub const EXPIRED_BYTES: usize = 2 + 8 + 4 + 8;
const CHUNK_FLAG_FINAL: u8 = 1;

/// Identifies one stream ("file") for its whole life; never reused. Printed as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for StreamId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<StreamId, Self::Err> {
        u64::from_str_radix(s, 16).map(StreamId)
    }
}

/// A message failed to decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {what}: {detail}")]
pub struct DecodeError {
    pub what: &'static str,
    pub detail: String,
}

impl DecodeError {
    pub fn new(what: &'static str, detail: impl Into<String>) -> DecodeError {
        DecodeError {
            what,
            detail: detail.into(),
        }
    }
}

/// A piece of one stream's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub stream: StreamId,
    /// 0 for the first chunk of a stream, then +1 per chunk.
    pub seq: u32,
    /// The last chunk of its stream.
    pub is_final: bool,
    pub data: &'a [u8],
}

/// The SHA-1 of a finished stream's whole content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sum {
    pub stream: StreamId,
    /// Sequence number of the stream's final chunk.
    pub last_seq: u32,
    pub sha1: [u8; 20],
}

/// A stream abandoned by its chunker, dropped from a summer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    pub stream: StreamId,
    pub last_seq: u32,
    /// Input offset of the stream's last chunk.
    pub last_active_offset: u64,
}

/// Any stream-sum message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    Chunk(Chunk<'a>),
    Sum(Sum),
    Expired(Expired),
    /// A shard checkpoint; decode it with [`crate::checkpoint::Checkpoint::decode`].
    Checkpoint(&'a [u8]),
}

/// Little-endian cursor used by all decoders.
pub(crate) struct Cursor<'a> {
    pub bytes: &'a [u8],
    pub what: &'static str,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8], what: &'static str) -> Cursor<'a> {
        Cursor { bytes, what }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::new(
                self.what,
                format!("needs {n} more bytes, has {}", self.bytes.len()),
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    pub fn expect_end(&self) -> Result<(), DecodeError> {
        if !self.bytes.is_empty() {
            return Err(DecodeError::new(
                self.what,
                format!("{} trailing bytes", self.bytes.len()),
            ));
        }
        Ok(())
    }

    /// Checks the tag and version bytes.
    pub fn header(&mut self, tag: u8) -> Result<(), DecodeError> {
        let t = self.u8()?;
        if t != tag {
            return Err(DecodeError::new(
                self.what,
                format!("tag {t:#04x}, expected {tag:#04x}"),
            ));
        }
        let v = self.u8()?;
        if v != MESSAGE_VERSION {
            return Err(DecodeError::new(self.what, format!("unsupported version {v}")));
        }
        Ok(())
    }
}

impl<'a> Chunk<'a> {
    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(CHUNK_HEADER_BYTES + self.data.len());
        out.extend_from_slice(&[TAG_CHUNK, MESSAGE_VERSION]);
        out.extend_from_slice(&self.stream.0.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.push(if self.is_final { CHUNK_FLAG_FINAL } else { 0 });
        out.extend_from_slice(self.data);
    }

    pub fn decode(bytes: &'a [u8]) -> Result<Chunk<'a>, DecodeError> {
        let mut c = Cursor::new(bytes, "chunk");
        c.header(TAG_CHUNK)?;
        let stream = StreamId(c.u64()?);
        let seq = c.u32()?;
        let flags = c.u8()?;
        if flags & !CHUNK_FLAG_FINAL != 0 {
            return Err(DecodeError::new("chunk", format!("unknown flags {flags:#04x}")));
        }
        Ok(Chunk {
            stream,
            seq,
            is_final: flags & CHUNK_FLAG_FINAL != 0,
            data: c.bytes,
        })
    }
}

impl Sum {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[TAG_SUM, MESSAGE_VERSION]);
        out.extend_from_slice(&self.stream.0.to_le_bytes());
        out.extend_from_slice(&self.last_seq.to_le_bytes());
        out.extend_from_slice(&self.sha1);
    }

    pub fn decode(bytes: &[u8]) -> Result<Sum, DecodeError> {
        let mut c = Cursor::new(bytes, "sum");
        c.header(TAG_SUM)?;
        let sum = Sum {
            stream: StreamId(c.u64()?),
            last_seq: c.u32()?,
            sha1: c.array()?,
        };
        c.expect_end()?;
        Ok(sum)
    }
}

impl Expired {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[TAG_EXPIRED, MESSAGE_VERSION]);
        out.extend_from_slice(&self.stream.0.to_le_bytes());
        out.extend_from_slice(&self.last_seq.to_le_bytes());
        out.extend_from_slice(&self.last_active_offset.to_le_bytes());
    }

    pub fn decode(bytes: &[u8]) -> Result<Expired, DecodeError> {
        let mut c = Cursor::new(bytes, "expired");
        c.header(TAG_EXPIRED)?;
        let e = Expired {
            stream: StreamId(c.u64()?),
            last_seq: c.u32()?,
            last_active_offset: c.u64()?,
        };
        c.expect_end()?;
        Ok(e)
    }
}

impl<'a> Message<'a> {
    /// Decodes any message by its tag.
    pub fn decode(bytes: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        match bytes.first() {
            Some(&TAG_CHUNK) => Chunk::decode(bytes).map(Message::Chunk),
            Some(&TAG_SUM) => Sum::decode(bytes).map(Message::Sum),
            Some(&TAG_EXPIRED) => Expired::decode(bytes).map(Message::Expired),
            Some(&TAG_CHECKPOINT) => Ok(Message::Checkpoint(bytes)),
            Some(t) => Err(DecodeError::new("message", format!("unknown tag {t:#04x}"))),
            None => Err(DecodeError::new("message", "empty")),
        }
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let mut buf = Vec::new();
        let chunk = Chunk {
            stream: StreamId(7),
            seq: 3,
            is_final: true,
            data: b"abc",
        };
        chunk.encode(&mut buf);
        assert_eq!(Message::decode(&buf).unwrap(), Message::Chunk(chunk));
        let sum = Sum {
            stream: StreamId(7),
            last_seq: 3,
            sha1: [9; 20],
        };
        buf.clear();
        sum.encode(&mut buf);
        assert_eq!(Message::decode(&buf).unwrap(), Message::Sum(sum));
        let exp = Expired {
            stream: StreamId(8),
            last_seq: 1,
            last_active_offset: 99,
        };
        buf.clear();
        exp.encode(&mut buf);
        assert_eq!(Message::decode(&buf).unwrap(), Message::Expired(exp));
    }

    #[test]
    fn truncated_or_unknown_messages_are_errors() {
        let mut buf = Vec::new();
        Sum {
            stream: StreamId(1),
            last_seq: 0,
            sha1: [0; 20],
        }
        .encode(&mut buf);
        for n in 0..buf.len() {
            assert!(Message::decode(&buf[..n]).is_err(), "prefix {n}");
        }
        assert!(Message::decode(&[0x7f, 1]).is_err());
        assert!(Chunk::decode(&[TAG_CHUNK, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn stream_id_prints_and_parses_as_hex() {
        let id = StreamId(0x0001_0002_0000_0003);
        assert_eq!(id.to_string(), "0001000200000003");
        assert_eq!("0001000200000003".parse::<StreamId>().unwrap(), id);
    }
}
