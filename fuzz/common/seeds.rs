//! The seed corpus: small valid inputs for every target, built from real encodings (valid
//! frames, a real journal image, real messages and summer state) so that fuzzing starts from
//! inputs that pass the checksums and decoders. `fuzz/corpus/<target>/<name>` holds these bytes;
//! the corpus-replay test checks that they are up to date and rewrites them on request.

use ss_consumer::checkpoint::{Checkpoint, CheckpointKind};
use ss_consumer::message::{Chunk, Expired, StreamId, Sum};
use ss_consumer::shard::Application;
use ss_consumer::summer::Summer;
use ss_log::fragment::parse_fragment_name;
use ss_log::frame::{self, Batch, FrameHeader, FRAME_KIND_BATCH};
use ss_log::sim::CrashMode;

use super::input::InputWriter;
use super::journal_recovery::base_image;
use super::message_decode::summer_config;
use super::op_sequence::Op;

/// One seed: target, file name, bytes.
pub struct Seed {
    pub target: &'static str,
    pub name: &'static str,
    pub bytes: Vec<u8>,
}

pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    frame_decode(&mut seeds);
    journal_recovery(&mut seeds);
    message_decode(&mut seeds);
    op_sequence(&mut seeds);
    seeds
}

fn seed(seeds: &mut Vec<Seed>, target: &'static str, name: &'static str, bytes: Vec<u8>) {
    seeds.push(Seed { target, name, bytes });
}

/// Encodes a frame of `messages` at `offset` in the journal `name`.
fn encoded_frame(name: &str, offset: u64, write_begin: u64, messages: &[&[u8]]) -> Vec<u8> {
    let salt = frame::journal_salt(name);
    let mut batch = Batch::new();
    for m in messages {
        batch.push(m);
    }
    let header = FrameHeader {
        offset,
        write_begin,
        payload_len: batch.payload().len() as u32,
        kind: FRAME_KIND_BATCH,
        payload_crc: frame::payload_crc(salt, batch.payload()),
        message_count: batch.message_count(),
    };
    let mut out = Vec::new();
    frame::encode_frame(&mut out, salt, &header, batch.payload());
    out
}

fn frame_decode(seeds: &mut Vec<Seed>) {
    let t = "frame_decode";
    let input = |journal: u8, offset: u64, bytes: &[u8]| {
        let mut w = InputWriter::default();
        w.u8(journal).u64(offset).raw(bytes);
        w.bytes
    };
    let one = encoded_frame("fuzz", 0, 0, &[b"hello"]);
    seed(seeds, t, "seed-one-frame", input(0, 0, &one));
    let grouped = encoded_frame("chunks-000", 4096, 4000, &[b"a", b"", b"three messages"]);
    seed(seeds, t, "seed-grouped-frame", input(1, 4096, &grouped));
    let mut fragment = Vec::new();
    for i in 0..3u64 {
        let at = fragment.len() as u64;
        fragment.extend(encoded_frame(
            "fuzz",
            512 + at,
            512,
            &[format!("frame {i}").as_bytes()],
        ));
    }
    let whole = fragment.clone();
    fragment.extend_from_slice(&encoded_frame("fuzz", 512 + whole.len() as u64, 512, &[b"torn"])[..30]);
    seed(seeds, t, "seed-fragment-torn-tail", input(0, 512, &fragment));
    let mut zero_tail = whole.clone();
    zero_tail.resize(whole.len() + 64, 0);
    seed(seeds, t, "seed-fragment-zeroed-tail", input(0, 512, &zero_tail));
    let mut damaged = whole;
    damaged[50] ^= 0x20;
    seed(seeds, t, "seed-fragment-damaged-middle", input(0, 512, &damaged));
}

fn journal_recovery(seeds: &mut Vec<Seed>) {
    let t = "journal_recovery";
    let image = &base_image(0).files;
    // Files sort by name: the fragments (digits), then `scan-start.hint`.
    let index_of = |name: &str| image.keys().position(|n| n == name).expect("file in the image") as u8;
    let last_name = image
        .keys()
        .rfind(|n| parse_fragment_name(n).is_some())
        .expect("a fragment");
    let last = index_of(last_name);
    let last_len = image[last_name].len() as u16;
    let hint = index_of(ss_log::scan_hint::SCAN_HINT_FILE);
    seed(seeds, t, "seed-intact", vec![0]);
    seed(seeds, t, "seed-intact-grouped-tail", vec![1]);
    let mut w = InputWriter::default();
    w.u8(0).u8(2).u8(last).u16(last_len - 20);
    seed(seeds, t, "seed-torn-tail", w.bytes);
    let mut w = InputWriter::default();
    w.u8(1).u8(4).u8(last).u16(48).u8(64);
    seed(seeds, t, "seed-zeroed-in-grouped-tail", w.bytes);
    let mut w = InputWriter::default();
    w.u8(0).u8(0).u8(last).u16(10).u8(0x04);
    seed(seeds, t, "seed-flip-in-last-fragment", w.bytes);
    let mut w = InputWriter::default();
    w.u8(0).u8(0).u8(0).u16(60).u8(0x80);
    seed(seeds, t, "seed-flip-in-sealed-fragment", w.bytes);
    let mut w = InputWriter::default();
    w.u8(0).u8(9).u8(0);
    seed(seeds, t, "seed-first-fragment-deleted", w.bytes);
    let mut w = InputWriter::default();
    w.u8(0).u8(3).u8(last).u8(200).u8(0);
    seed(seeds, t, "seed-zero-filled-ahead", w.bytes);
    let mut w = InputWriter::default();
    w.u8(0).u8(6).u8(last).u8(0).u16(0).u8(96).u16(last_len);
    seed(seeds, t, "seed-old-frame-copied-after-tail", w.bytes);
    // The scan-start hint: damaged (recovery scans the whole fragment), and trusted over damage
    // before it (open keeps the head; readers refuse the damaged frame).
    let mut w = InputWriter::default();
    w.u8(0).u8(0).u8(hint).u16(17).u8(0x01);
    seed(seeds, t, "seed-flip-in-scan-hint", w.bytes);
    let mut w = InputWriter::default();
    w.u8(0).u8(0).u8(last).u16(45).u8(0x10);
    seed(seeds, t, "seed-flip-before-scan-hint", w.bytes);
}

fn message_decode(seeds: &mut Vec<Seed>) {
    let t = "message_decode";
    let config_byte = 0x23;
    let with_config = |bytes: Vec<u8>| {
        let mut v = vec![config_byte];
        v.extend(bytes);
        v
    };
    let mut chunk = Vec::new();
    Chunk {
        stream: StreamId(0x0102),
        seq: 3,
        is_final: false,
        data: b"chunk data",
    }
    .encode(&mut chunk);
    seed(seeds, t, "seed-chunk", with_config(chunk.clone()));
    let mut sum = Vec::new();
    Sum {
        stream: StreamId(7),
        last_seq: 9,
        sha1: [0xab; 20],
    }
    .encode(&mut sum);
    seed(seeds, t, "seed-sum", with_config(sum));
    let mut expired = Vec::new();
    Expired {
        stream: StreamId(8),
        last_seq: 2,
        last_active_offset: 4096,
    }
    .encode(&mut expired);
    seed(seeds, t, "seed-expired", with_config(expired));

    // Real summer state: two open streams, one finished, then a delta.
    let mut summer = Summer::new(summer_config(config_byte));
    let mut out = Batch::new();
    for (stream, seq, is_final, offset) in [
        (1, 0, false, 0),
        (2, 0, false, 8),
        (3, 0, true, 16),
        (1, 1, false, 24),
    ] {
        let mut c = Vec::new();
        Chunk {
            stream: StreamId(stream),
            seq,
            is_final,
            data: b"some bytes",
        }
        .encode(&mut c);
        summer.apply(&c, offset, &mut out).expect("valid chunk");
    }
    let mut snapshot = Vec::new();
    summer.write_snapshot(&mut snapshot);
    seed(seeds, t, "seed-summer-snapshot", with_config(snapshot.clone()));
    let mut c = Vec::new();
    Chunk {
        stream: StreamId(2),
        seq: 1,
        is_final: true,
        data: b"end",
    }
    .encode(&mut c);
    summer.apply(&c, 32, &mut out).expect("valid chunk");
    let mut delta = Vec::new();
    summer.write_delta(&mut delta);
    seed(seeds, t, "seed-summer-delta", with_config(delta));
    let mut checkpoint = Vec::new();
    Checkpoint::encode_header(&mut checkpoint, 40, 3, 0, CheckpointKind::Snapshot);
    checkpoint.extend_from_slice(&snapshot);
    seed(seeds, t, "seed-checkpoint-snapshot", with_config(checkpoint));
}

fn ops(fragment_byte: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![fragment_byte];
    for op in ops {
        op.encode(&mut out);
    }
    out
}

fn op_sequence(seeds: &mut Vec<Seed>) {
    use CrashMode::*;
    use Op::*;
    let t = "op_sequence";
    let appends = |n: u8| (0..n).map(|i| Append { len: 10 + i * 13 }).collect::<Vec<_>>();
    let mut v = appends(6);
    v.push(ReadAll);
    seed(seeds, t, "seed-appends-read", ops(0, &v));
    let mut v = appends(4);
    v.extend([
        CrashAfterOps { ops: 1 },
        Append { len: 70 },
        Crash { mode: TearUnsynced },
        ReadAll,
    ]);
    v.extend(appends(2));
    seed(seeds, t, "seed-torn-write-crash", ops(1, &v));
    let mut v = appends(3);
    v.extend([
        FailSync { nth: 0 },
        Append { len: 40 },
        Append { len: 41 },
        Reopen { mode: LoseUnsynced },
        ReadAll,
        Append { len: 5 },
        Crash { mode: TearUnsynced },
    ]);
    seed(seeds, t, "seed-failed-fsync-restart", ops(3, &v));
    let mut v = appends(3);
    v.extend([
        Capacity { extra_bytes: 30 },
        Append { len: 80 },
        UnlimitedCapacity,
        Append { len: 80 },
    ]);
    seed(seeds, t, "seed-disk-full", ops(3, &v));
    let mut v = vec![
        AppendIfRightHead { len: 20 },
        AppendIfWrongHead { len: 20, delta: 8 },
        AppendGroup { count: 2, len: 30 },
    ];
    v.extend(appends(5));
    v.extend([RemoveBelow { pick: 3 }, Crash { mode: ZeroUnsynced }, ReadAll]);
    seed(seeds, t, "seed-fencing-group-retention", ops(0, &v));
    // The kernel fault model: a failed fsync then a process restart then a kernel power loss; a
    // crash right after a roll (process crash) with preallocated spares; failing calls (a short
    // write with EIO, an EMFILE) and a failing read.
    let mut v = appends(3);
    v.extend([
        FailSync { nth: 0 },
        Append { len: 60 },
        Reopen { mode: Process },
        ReadAll,
        Crash { mode: PowerLoss },
        ReadAll,
    ]);
    seed(seeds, t, "seed-fsyncgate-restart-power-loss", ops(1, &v));
    let mut v = appends(5);
    v.extend([
        CrashAfterOps { ops: 2 },
        Append { len: 79 },
        Crash { mode: Process },
        ReadAll,
    ]);
    v.extend(appends(3));
    v.push(Crash { mode: PowerLoss });
    seed(seeds, t, "seed-process-crash-in-a-roll", ops(4, &v));
    let mut v = appends(4);
    v.extend([
        FailSync { nth: 0x80 | 0x10 | 2 },
        AppendGroup { count: 2, len: 70 },
        Append { len: 70 },
        Reopen { mode: LoseUnsynced },
        FailSync { nth: 0xc0 },
        ReadAll,
        RemoveBelow { pick: 1 },
        Crash { mode: PowerLoss },
    ]);
    seed(seeds, t, "seed-failing-calls-and-read", ops(5, &v));
}
