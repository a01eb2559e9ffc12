//! Regression tests for shard bugs found while testing exactly-once (issue 4).

mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ss_consumer::message::{Chunk, StreamId};
use ss_consumer::shard::{Shard, ShardConfig, ShardError};
use ss_consumer::summer::{Summer, SummerConfig};
use ss_log::sim::SimStorage;
use ss_log::storage::{Intercept, Intercepted};
use ss_log::{AppendError, Log, Options, StorageFile};

fn chunk(stream: u64, seq: u32, is_final: bool, data: &[u8]) -> Chunk<'_> {
    Chunk {
        stream: StreamId(stream),
        seq,
        is_final,
        data,
    }
}

/// Bug: when a pipelined transaction's append failed (here: the disk is full) before the next
/// transaction was placed, the next placement saw the shard log head rolled back and the shard
/// stopped with `Fenced`, hiding the real cause. Checks that the shard reports the failed append.
#[test]
fn pipelined_shard_reports_a_failed_append_not_fencing() {
    let sim = SimStorage::new(3);
    let log = Log::open(DATA_DIR, Options::with_storage(Arc::new(sim.clone()))).unwrap();
    let input = log.journal("chunks").unwrap();
    let config = ShardConfig {
        txn_max_messages: 1,
        pipelined: true,
        ..ShardConfig::default()
    };
    let mut shard = Shard::recover(
        "shard",
        Summer::new(SummerConfig::default()),
        &input,
        log.journal("sums").unwrap(),
        config,
    )
    .unwrap();
    for seq in 0..3 {
        input
            .append(&chunk_batch([chunk(1, seq, seq == 2, b"data")]))
            .unwrap();
    }
    // The first transaction (a snapshot) lands; then the disk fills up.
    shard.run_transaction(Duration::ZERO).unwrap();
    shard.settle().unwrap();
    sim.set_capacity(Some(sim.used_bytes()));
    let head = shard.shard_log().durable_head();
    let report = shard.run_transaction(Duration::ZERO).unwrap();
    assert!(
        report.placed_at.is_some(),
        "the second transaction is placed, in flight"
    );
    // Let the writer fail and roll back that append before the next transaction is placed.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(shard.shard_log().durable_head(), head);
    match shard.run_transaction(Duration::ZERO) {
        Err(ShardError::Append {
            error: AppendError::NoSpace { .. },
            ..
        }) => {}
        other => panic!("expected the failed append (no space), got {other:?}"),
    }
}

/// Storage whose file syncs take `sync_delay_ms` (0 by default), so an append stays in flight.
#[derive(Default)]
struct SlowSync {
    sync_delay_ms: Arc<AtomicU64>,
}

impl Intercept for SlowSync {
    fn sync_data(&self, file: &dyn StorageFile) -> io::Result<()> {
        std::thread::sleep(Duration::from_millis(self.sync_delay_ms.load(Ordering::SeqCst)));
        file.sync_data()
    }
}

/// Bug: dropping a pipelined shard left its last transaction's append in flight; a new owner
/// recovered in the meantime from the shard log's durable head, then that append landed and the
/// new owner was fenced by its dead predecessor (a restarted shard stopped with `Fenced`). Checks
/// that an owner recovered right after the previous one was dropped mid-append carries on and
/// sees the previous owner's last transaction.
#[test]
fn shard_recovered_right_after_a_pipelined_owner_is_dropped_is_not_fenced() {
    let sync_delay_ms = Arc::new(AtomicU64::new(0));
    let slow = SlowSync {
        sync_delay_ms: sync_delay_ms.clone(),
    };
    let storage = Intercepted::with(Arc::new(SimStorage::new(4)), slow);
    let log = Log::open(DATA_DIR, Options::with_storage(Arc::new(storage))).unwrap();
    let input = log.journal("chunks").unwrap();
    let recover = || {
        let config = ShardConfig {
            txn_max_messages: 1,
            pipelined: true,
            ..ShardConfig::default()
        };
        Shard::recover(
            "shard",
            Summer::new(SummerConfig::default()),
            &input,
            log.journal("sums").unwrap(),
            config,
        )
        .unwrap()
    };
    for seq in 0..3 {
        input
            .append(&chunk_batch([chunk(1, seq, seq == 2, b"data")]))
            .unwrap();
    }
    let mut first = recover();
    first.run_transaction(Duration::ZERO).unwrap();
    first.settle().unwrap();
    sync_delay_ms.store(300, Ordering::SeqCst);
    let in_flight = first.run_transaction(Duration::ZERO).unwrap().placed_at.unwrap();
    drop(first);
    sync_delay_ms.store(0, Ordering::SeqCst);
    let mut second = recover();
    assert_eq!(
        second.shard_log().durable_head(),
        in_flight.end,
        "the dropped owner's last transaction is durable before anyone recovers"
    );
    second
        .run_until(input.durable_head(), Duration::ZERO)
        .expect("the new owner carries on");
    assert_eq!(read_shard_log(second.shard_log()).sums.len(), 1);
}

/// Found by the kernel fault model (issue 11): a shard's checkpoint pointing past its input's
/// durable head means the input lost bytes the shard had consumed; new input would land at
/// offsets the shard believes it has read, and their Sums would be lost. Recovery refuses,
/// naming the input journal and offset, instead of skipping ahead.
#[test]
fn shard_refuses_a_checkpoint_past_its_inputs_head() {
    let sim = SimStorage::new(5);
    let opts = || Options::with_storage(Arc::new(sim.clone()));
    {
        let log = Log::open(DATA_DIR, opts()).unwrap();
        let input = log.journal("chunks").unwrap();
        let mut shard = Shard::recover(
            "shard",
            Summer::new(SummerConfig::default()),
            &input,
            log.journal("sums").unwrap(),
            ShardConfig::default(),
        )
        .unwrap();
        for seq in 0..4 {
            input
                .append(&chunk_batch([chunk(1, seq, seq == 3, b"data")]))
                .unwrap();
        }
        shard.run_until(input.durable_head(), Duration::ZERO).unwrap();
    }
    // The input's medium loses its last frames (as if acknowledged writes were lost), and its
    // scan-start hint with them: the hint would prove those writes durable, and the journal
    // itself would refuse to open before the shard could look.
    let dir = Path::new(DATA_DIR).join("journals/chunks");
    let path = dir.join(ss_log::fragment::fragment_file_name(0));
    let bytes = sim.read_file(&path).unwrap();
    sim.write_file(&path, &bytes[..bytes.len() / 2]);
    sim.write_file(&dir.join(ss_log::scan_hint::SCAN_HINT_FILE), &[]);
    let log = Log::open(DATA_DIR, opts()).unwrap();
    let input = log.journal("chunks").unwrap();
    let Err(err) = Shard::recover(
        "shard",
        Summer::new(SummerConfig::default()),
        &input,
        log.journal("sums").unwrap(),
        ShardConfig::default(),
    ) else {
        panic!("recovery refuses");
    };
    let text = err.to_string();
    assert!(
        text.contains("chunks") && text.contains("past the input's durable head"),
        "{text}"
    );
}

/// The log on `sim`, opened with frames of at most `frame_max_bytes`.
fn log_with_frames_of(sim: &SimStorage, frame_max_bytes: u64) -> Log {
    let options = Options {
        frame_max_bytes,
        ..Options::with_storage(Arc::new(sim.clone()))
    };
    Log::open(DATA_DIR, options).unwrap()
}

/// A summer with a `finished_window`-entry window and as many open streams as fit those frames.
fn summer_fitting(finished_window: usize, frame_max_bytes: u64) -> Summer {
    let config = SummerConfig {
        finished_window,
        ..SummerConfig::default()
    };
    Summer::new(config.fitting_frames_of(frame_max_bytes))
}

/// Transactions bounded by size only (never by time), each waited for: replayable boundaries.
fn bounded_by_size_only() -> ShardConfig {
    ShardConfig {
        txn_max_duration: Duration::from_secs(60),
        txn_max_output_delay: Duration::from_secs(60),
        pipelined: false,
        ..ShardConfig::default()
    }
}

/// Found by the storage-fault suite with seven fault kinds: after a long ENOSPC outage a shard's
/// transaction touched so many streams that its frame (outputs plus delta) exceeded the shard
/// log's `frame_max_bytes`, and the shard stopped for good. The output bound is now capped at
/// half the largest frame. (64 KiB frames: 400 open streams fit a snapshot; their delta does not
/// fit half a frame.)
#[test]
fn shard_transaction_touching_many_streams_stays_within_the_largest_frame() {
    let frame_max_bytes = 64 << 10;
    let log = log_with_frames_of(&SimStorage::new(6), frame_max_bytes);
    let input = log.journal("chunks").unwrap();
    for stream in 0..400u64 {
        input
            .append(&chunk_batch([chunk(stream, 0, false, b"opening chunk")]))
            .unwrap();
    }
    let mut shard = Shard::recover(
        "shard",
        summer_fitting(256, frame_max_bytes),
        &input,
        log.journal("sums").unwrap(),
        bounded_by_size_only(),
    )
    .unwrap();
    shard
        .run_until(input.durable_head(), Duration::ZERO)
        .expect("every transaction fits in a frame");
}

/// Found by the storage-fault suite (seeds 1582 and 2208): the shard ended a transaction once
/// its outputs passed half a frame, but checked only between input frames, so one large input
/// frame after a transaction just under half could push the frame past `frame_max_bytes`; the
/// shard could then never commit. Here a frame finishing 160 streams (6,080 bytes of Sums, and
/// a delta the shard counts as 1,984: under half of 16 KiB) is followed by one finishing 280
/// (10,640 bytes of Sums more: 16,720 together). The second must open the next transaction, and
/// every Sum must land.
#[test]
fn a_large_input_frame_after_a_nearly_half_full_transaction_opens_the_next_one() {
    let frame_max_bytes = 16 << 10;
    let log = log_with_frames_of(&SimStorage::new(7), frame_max_bytes);
    let input = log.journal("chunks").unwrap();
    let mut next_stream = 0u64;
    for streams in [160u64, 280, 170] {
        let finished: Vec<_> = (next_stream..next_stream + streams)
            .map(|stream| chunk(stream, 0, true, b"x"))
            .collect();
        next_stream += streams;
        input.append(&chunk_batch(finished)).unwrap();
    }
    let sums = log.journal("sums").unwrap();
    let mut shard = Shard::recover(
        "shard",
        summer_fitting(16, frame_max_bytes),
        &input,
        sums.clone(),
        bounded_by_size_only(),
    )
    .unwrap();
    shard
        .run_until(input.durable_head(), Duration::ZERO)
        .expect("every transaction fits in a frame");
    assert_eq!(shard.app().counters().sums, next_stream);
    assert_eq!(shard.input_offset(), input.durable_head());
    drop(shard);
    let recovered = Shard::recover(
        "shard",
        summer_fitting(16, frame_max_bytes),
        &input,
        sums,
        ShardConfig::default(),
    )
    .unwrap();
    assert_eq!(recovered.durable_input_offset(), input.durable_head());
    assert_eq!(recovered.app().counters().sums, next_stream);
}

/// A summer whose snapshot could outgrow the shard log's frame (the default finished window of
/// 50,000 takes 600 KB; these frames hold 12 KiB) would stall the shard the moment a snapshot
/// came due. The shard refuses to start instead, naming the shard log and the sizes.
#[test]
fn a_shard_whose_snapshot_cannot_fit_a_frame_refuses_to_start() {
    let log = log_with_frames_of(&SimStorage::new(8), 12 << 10);
    let input = log.journal("chunks").unwrap();
    let refused = Shard::recover(
        "shard",
        Summer::new(SummerConfig::default()),
        &input,
        log.journal("sums").unwrap(),
        ShardConfig::default(),
    );
    let Err(error @ ShardError::Limit { .. }) = refused else {
        panic!("expected a limit error, got {:?}", refused.map(|_| ()))
    };
    let message = error.to_string();
    assert!(
        message.contains("\"sums\"") && message.contains("12288") && message.contains("finished_window"),
        "{message}"
    );
}

/// A restart with smaller frames (or smaller limits) than the state was built under: the summer
/// restored from the log holds 300 open streams, more than its new config allows beside a
/// 2,000-entry finished window in 48 KiB frames (223). Its next snapshot could not fit, so the
/// shard refuses to start rather than stall at that snapshot.
#[test]
fn a_shard_restored_with_more_state_than_its_frames_hold_refuses_to_start() {
    let sim = SimStorage::new(9);
    {
        let log = log_with_frames_of(&sim, 64 << 10);
        let input = log.journal("chunks").unwrap();
        for stream in 0..300u64 {
            input
                .append(&chunk_batch([chunk(stream, 0, false, b"opening chunk")]))
                .unwrap();
        }
        let mut shard = Shard::recover(
            "shard",
            summer_fitting(256, 64 << 10),
            &input,
            log.journal("sums").unwrap(),
            bounded_by_size_only(),
        )
        .unwrap();
        shard.run_until(input.durable_head(), Duration::ZERO).unwrap();
        assert_eq!(shard.app().open_streams(), 300);
    }
    let log = log_with_frames_of(&sim, 48 << 10);
    let input = log.journal("chunks").unwrap();
    let smaller = SummerConfig {
        finished_window: 2000,
        ..SummerConfig::default()
    }
    .fitting_frames_of(48 << 10);
    assert!(smaller.max_open_streams < 300, "{}", smaller.max_open_streams);
    let refused = Shard::recover(
        "shard",
        Summer::new(smaller),
        &input,
        log.journal("sums").unwrap(),
        ShardConfig::default(),
    );
    assert!(
        matches!(refused, Err(ShardError::Limit { .. })),
        "{:?}",
        refused.map(|_| ())
    );
}

/// Bug: a message that is not a chunk in a chunk journal (a Sum, here) stopped the shard as an
/// exactly-once violation (`run` exit 1), while `verify` refused the same journal as damage
/// (exit 3). It is damage to the input journal, named with the frame's offset.
#[test]
fn a_message_that_is_not_a_chunk_is_damage_to_the_input_not_a_violation() {
    let sim = SimStorage::new(4);
    let log = Log::open(DATA_DIR, Options::with_storage(Arc::new(sim))).unwrap();
    let input = log.journal("chunks").unwrap();
    let mut shard = Shard::recover(
        "shard",
        Summer::new(SummerConfig::default()),
        &input,
        log.journal("sums").unwrap(),
        ShardConfig::default(),
    )
    .unwrap();
    input.append(&chunk_batch([chunk(1, 0, false, b"data")])).unwrap();
    let mut batch = ss_log::Batch::new();
    batch.push_with(|b| {
        ss_consumer::message::Sum {
            stream: StreamId(1),
            last_seq: 0,
            sha1: [0; 20],
        }
        .encode(b)
    });
    let bad = input.append(&batch).unwrap().offset;
    let error = loop {
        match shard.run_transaction(Duration::from_millis(10)) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    match &error {
        ShardError::Corrupt {
            journal,
            offset,
            detail,
            ..
        } => {
            assert_eq!((journal.as_str(), *offset), ("chunks", bad), "{error}");
            assert!(detail.contains("not a chunk"), "{error}");
        }
        other => panic!("not damage: {other}"),
    }
}

/// A checkpoint naming the middle of an input frame (here: the shard log recovered over another
/// input whose frames lie elsewhere, as a damaged checkpoint would name) stops the shard at its
/// first read as damage naming the shard log's checkpoint and the input offset. Before, the error
/// said only "journal chunks is corrupt: bad magic", sending an operator to the wrong journal.
#[test]
fn a_checkpoint_inside_an_input_frame_is_damage_naming_the_shard_log() {
    let sim = SimStorage::new(5);
    let log = Log::open(DATA_DIR, Options::with_storage(Arc::new(sim))).unwrap();
    let small = log.journal("chunks-small").unwrap();
    let large = log.journal("chunks-large").unwrap();
    small.append(&chunk_batch([chunk(1, 0, false, b"a")])).unwrap();
    let resume_at = small.durable_head();
    large
        .append(&chunk_batch([chunk(2, 0, false, &[7; 4096])]))
        .unwrap();
    assert!(
        resume_at < large.durable_head(),
        "the checkpoint lies inside the large frame"
    );
    let recover = |input: &ss_log::Journal| {
        Shard::recover(
            "shard",
            Summer::new(SummerConfig::default()),
            input,
            log.journal("sums").unwrap(),
            ShardConfig::default(),
        )
        .unwrap()
    };
    {
        let mut shard = recover(&small);
        while shard.durable_input_offset() < resume_at {
            shard.run_transaction(Duration::from_millis(10)).unwrap();
            shard.settle().unwrap();
        }
    }
    let mut shard = recover(&large);
    match shard.run_transaction(Duration::from_millis(10)) {
        Err(ShardError::Corrupt { journal, detail, .. }) => {
            assert_eq!(journal, "sums", "{detail}");
            assert!(
                detail.contains(&format!(
                    "resumes input \"chunks-large\" at offset {resume_at}, where no frame begins"
                )),
                "{detail}"
            );
        }
        other => panic!("not refused as damage to the shard log: {other:?}"),
    }
}
