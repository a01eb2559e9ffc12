//! Zero-filled spare fragments (`Options::preallocate`): rolls take the spare, recovery reads its
//! zeros as the end of the data, and a torn tail in a preallocated fragment is zeroed, not cut.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ss_log::sim::SimStorage;
use ss_log::spare::SPARE_FILE_NAME;
use ss_log::{Batch, Log, Options};

const FRAGMENT_MAX_BYTES: u64 = 8 << 10;

fn options(storage: Arc<dyn ss_log::Storage>) -> Options {
    Options {
        fragment_max_bytes: FRAGMENT_MAX_BYTES,
        frame_max_bytes: 1024,
        pending_max_bytes: 4096,
        preallocate: true,
        ..Options::with_storage(storage)
    }
}

fn payload(i: u32) -> Vec<u8> {
    i.to_le_bytes().repeat(1 + (i % 50) as usize)
}

/// Appends until `n` fragments exist, waiting after each append for the spare thread so the
/// rolls find a spare ready.
fn fill(log: &Log, n: usize) -> Vec<ss_log::AppendAck> {
    let j = log.journal("pre").unwrap();
    let mut acks = Vec::new();
    let mut i = 0;
    while j.fragments().len() < n {
        acks.push(j.append(&Batch::single(&payload(i))).unwrap());
        i += 1;
        std::thread::sleep(Duration::from_micros(200));
    }
    acks
}

fn read_all(log: &Log) -> Vec<(u64, Vec<u8>)> {
    let j = log.journal("pre").unwrap();
    let mut r = j.reader(j.first_offset());
    let mut out = Vec::new();
    while let Some(f) = r.try_next().unwrap() {
        out.push((f.offset, f.messages().next().unwrap().unwrap().to_vec()));
    }
    out
}

/// On the real filesystem, fragments after the first are full-size zero-filled files taken from
/// the spare, a new spare is prepared, and a reopen reads exactly the appended frames.
#[test]
fn rolls_take_zero_filled_spares_and_reopen_reads_exactly_the_frames() {
    let dir = tempfile::tempdir().unwrap();
    let acks = {
        let log = Log::open(dir.path(), options(Arc::new(ss_log::RealStorage))).unwrap();
        let acks = fill(&log, 4);
        let j = log.journal("pre").unwrap();
        let frags = j.fragments();
        for f in &frags[1..] {
            let len = std::fs::metadata(&f.path).unwrap().len();
            assert_eq!(len, FRAGMENT_MAX_BYTES, "{} is preallocated", f.path.display());
        }
        // The writer asks for the next spare past half of the current fragment.
        let spare = dir.path().join("journals/pre").join(SPARE_FILE_NAME);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !spare.exists() && Instant::now() < deadline {
            j.append(&Batch::single(b"more")).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            spare.exists(),
            "a spare is prepared once the fragment is half full"
        );
        acks
    };
    let log = Log::open(dir.path(), options(Arc::new(ss_log::RealStorage))).unwrap();
    let frames = read_all(&log);
    for (i, ack) in acks.iter().enumerate() {
        assert_eq!(frames[i], (ack.offset, payload(i as u32)));
    }
    // A leftover spare from the previous process is not taken for a fragment.
    assert!(log
        .journal("pre")
        .unwrap()
        .fragments()
        .iter()
        .all(|f| !f.path.ends_with(SPARE_FILE_NAME)));
}

/// A torn write at the end of a preallocated fragment (garbage, including a whole frame of the
/// same write) is zeroed on reopen, keeping the file's length; a shorter append after it cannot
/// revive the stale frame; everything survives another reopen.
#[test]
fn torn_tail_in_a_preallocated_fragment_is_zeroed_not_truncated() {
    let sim = SimStorage::new(7);
    let acks = {
        let log = Log::open(common::DATA_DIR, options(Arc::new(sim.clone()))).unwrap();
        fill(&log, 3)
    };
    let j_dir = Path::new(common::DATA_DIR).join("journals/pre");
    let last = sim
        .files()
        .into_iter()
        .filter(|p| p.parent() == Some(&j_dir) && p.extension().is_some_and(|e| e == "frag"))
        .max()
        .unwrap();
    let mut bytes = sim.read_file(&last).unwrap();
    let file_len = bytes.len();
    assert_eq!(
        file_len as u64, FRAGMENT_MAX_BYTES,
        "the last fragment is preallocated"
    );
    let begin: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let end = (acks.last().unwrap().end - begin) as usize;
    // Simulate a torn two-frame write: the first frame's header damaged, the second intact.
    let mut torn = Vec::new();
    for (k, at) in [(0u32, end), (1, end + 64)] {
        let p = vec![0xAB; 16 + k as usize];
        let h = ss_log::frame::FrameHeader {
            offset: begin + at as u64,
            write_begin: begin + end as u64,
            payload_len: p.len() as u32,
            kind: ss_log::frame::FRAME_KIND_BATCH,
            payload_crc: ss_log::frame::payload_crc(ss_log::frame::journal_salt("pre"), &p),
            message_count: 0,
        };
        let mut f = Vec::new();
        ss_log::frame::encode_frame(&mut f, ss_log::frame::journal_salt("pre"), &h, &p);
        torn.push((at, f));
    }
    for (at, f) in &torn {
        bytes[*at..*at + f.len()].copy_from_slice(f);
    }
    bytes[end + 5] ^= 0xFF; // tear the first frame
    sim.write_file(&last, &bytes);

    let log = Log::open(common::DATA_DIR, options(Arc::new(sim.clone()))).unwrap();
    let j = log.journal("pre").unwrap();
    assert_eq!(j.durable_head(), begin + end as u64, "the torn write is cut");
    assert!(j.recovery_cut_bytes() > 0);
    let after = sim.read_file(&last).unwrap();
    assert_eq!(after.len(), file_len, "the preallocated length is kept");
    assert!(after[end..].iter().all(|&b| b == 0), "the torn bytes are zeroed");
    // A short append lands where the torn write was; the stale second frame must not come back.
    let ack = j.append(&Batch::single(b"x")).unwrap();
    assert_eq!(ack.offset, begin + end as u64);
    drop(j);
    drop(log);
    let log = Log::open(common::DATA_DIR, options(Arc::new(sim.clone()))).unwrap();
    let frames = read_all(&log);
    assert_eq!(frames.len(), acks.len() + 1);
    assert_eq!(frames.last().unwrap(), &(ack.offset, b"x".to_vec()));
}
