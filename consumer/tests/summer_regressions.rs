//! Regression tests for summer bugs found while testing exactly-once (issue 4).

use ss_consumer::message::{Chunk, StreamId};
use ss_consumer::shard::Application;
use ss_consumer::summer::{Summer, SummerConfig};
use ss_log::Batch;

fn encoded(stream: u64, seq: u32, is_final: bool, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    Chunk {
        stream: StreamId(stream),
        seq,
        is_final,
        data,
    }
    .encode(&mut v);
    v
}

/// Bug: deltas did not carry the summer's next expiry check, so a summer recovered from a
/// snapshot plus deltas checked expiry at different input offsets than the live one and expired
/// a stream the live summer kept (its next chunk then stopped the shard as a violation). Checks
/// that live and recovered summers expire the same streams at the same frames.
#[test]
fn summer_recovered_from_snapshot_and_delta_expires_like_the_live_one() {
    let config = SummerConfig {
        expire_after_bytes: 1000,
        expire_check_interval_bytes: 100,
        ..SummerConfig::default()
    };
    let mut live = Summer::new(config.clone());
    let mut out = Batch::new();
    live.before_frame(50, &mut out).unwrap();
    live.apply(&encoded(1, 0, false, b"a"), 50, &mut out).unwrap();
    let mut snapshot = Vec::new();
    live.write_snapshot(&mut snapshot);
    // An expiry check at 1040 (horizon 40) keeps stream 1 (last active at 50), and moves the next
    // check to 1100; another stream's chunk makes the delta non-trivial.
    live.before_frame(1040, &mut out).unwrap();
    live.apply(&encoded(2, 0, false, b"b"), 1040, &mut out).unwrap();
    assert_eq!(live.open_streams(), 2);
    let mut delta = Vec::new();
    live.write_delta(&mut delta);

    let mut recovered = Summer::new(config);
    recovered.restore_snapshot(&snapshot).unwrap();
    recovered.apply_delta(&delta).unwrap();

    // The frame at 1080 is before the live summer's next check: neither may expire anything, and
    // stream 1 continues in both.
    for summer in [&mut live, &mut recovered] {
        let mut out = Batch::new();
        summer.before_frame(1080, &mut out).unwrap();
        assert!(out.is_empty(), "nothing expires before the next check at 1100");
        summer
            .apply(&encoded(1, 1, true, b"c"), 1080, &mut out)
            .expect("stream 1 is still open");
        assert_eq!(summer.open_streams(), 1);
    }
    assert_eq!(live.counters(), recovered.counters());
}
