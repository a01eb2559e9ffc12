//! Fencing: one live owner per shard. Two owners of one shard (a zombie bypassing the locks)
//! race, and exactly one set of Sums appears; `ShardLocks` refuses a second live owner.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ss_consumer::message::{Chunk, StreamId};
use ss_consumer::shard::{Shard, ShardConfig, ShardError, ShardLocks};
use ss_consumer::summer::{Summer, SummerConfig};
use ss_log::sim::SimStorage;
use ss_log::{Journal, Log, Options};

const ROUNDS: u64 = 40;

/// Writes interleaved streams (a few left unfinished) into `input`, one frame per few chunks.
/// Returns the oracle SHA-1 of every finished stream.
fn publish_streams(rng: &mut StdRng, input: &Journal, streams: u64) -> HashMap<StreamId, [u8; 20]> {
    let mut plans: Vec<(StreamId, Vec<Vec<u8>>, usize)> = (0..streams)
        .map(|i| {
            let chunks: Vec<Vec<u8>> = (0..rng.random_range(1..6))
                .map(|_| pattern(rng.random_range(0..300), rng.random()))
                .collect();
            let publish = if i % 7 == 3 && chunks.len() > 1 {
                chunks.len() - 1
            } else {
                chunks.len()
            };
            (StreamId(1000 + i), chunks, publish)
        })
        .collect();
    let oracle = plans
        .iter()
        .filter(|(_, chunks, publish)| *publish == chunks.len())
        .map(|(id, chunks, _)| (*id, sha1_of(chunks.iter().map(Vec::as_slice))))
        .collect();
    let mut next = vec![0usize; plans.len()];
    loop {
        let live: Vec<usize> = (0..plans.len()).filter(|&i| next[i] < plans[i].2).collect();
        if live.is_empty() {
            break;
        }
        let mut frame = Vec::new();
        for _ in 0..rng.random_range(1..4) {
            let i = live[rng.random_range(0..live.len())];
            if next[i] < plans[i].2 {
                frame.push((i, next[i]));
                next[i] += 1;
            }
        }
        let batch = chunk_batch(frame.iter().map(|&(i, seq)| Chunk {
            stream: plans[i].0,
            seq: seq as u32,
            is_final: seq + 1 == plans[i].1.len(),
            data: &plans[i].1[seq],
        }));
        input.append(&batch).expect("publish");
    }
    plans.clear();
    oracle
}

fn recover(input: &Journal, log: &Journal, pipelined: bool) -> Shard<Summer> {
    let config = ShardConfig {
        txn_max_messages: 4,
        snapshot_min_delta_bytes: 512,
        pipelined,
        ..ShardConfig::default()
    };
    Shard::recover(
        "shard-0",
        Summer::new(SummerConfig::default()),
        input,
        log.clone(),
        config,
    )
    .expect("recover")
}

/// Two owners recover the same shard (both at the same shard log head, some rounds after the
/// first owner already committed part of the input) and run to the input head in two threads
/// started together. Checks that one finishes, the other stops with `Fenced` having placed no
/// transaction, and that the shard log holds exactly one correct Sum per finished stream.
#[test]
fn two_owners_racing_leave_exactly_one_set_of_sums() {
    let mut fenced_first_owner = 0;
    for round in 0..ROUNDS {
        let mut rng = StdRng::seed_from_u64(round);
        let sim = SimStorage::new(round);
        let log = Log::open(DATA_DIR, Options::with_storage(Arc::new(sim))).unwrap();
        let input = log.journal("chunks-0").unwrap();
        let shard_log = log.journal("sums-0").unwrap();
        let oracle = publish_streams(&mut rng, &input, 40);
        let input_end = input.durable_head();
        if round % 2 == 1 {
            // An earlier owner got part of the way, then died.
            let mut earlier = recover(&input, &shard_log, rng.random_bool(0.5));
            for _ in 0..rng.random_range(1..10) {
                earlier.run_transaction(Duration::ZERO).unwrap();
            }
            earlier.settle().unwrap();
        }
        let owners = [
            recover(&input, &shard_log, rng.random_bool(0.5)),
            recover(&input, &shard_log, rng.random_bool(0.5)),
        ];
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = owners
            .into_iter()
            .map(|mut owner| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    let result = owner.run_until(input_end, Duration::from_millis(1));
                    (owner, result)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
        let losers: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one owner finishes");
        let (loser, error) = losers[0];
        assert!(
            matches!(error, Err(ShardError::Fenced { .. })),
            "round {round}: the loser is fenced, got {error:?}"
        );
        assert_eq!(loser.stats().txns, 0, "round {round}: the loser placed nothing");
        if results[0].1.is_err() {
            fenced_first_owner += 1;
        }

        let contents = read_shard_log(&shard_log);
        let counts = contents.sum_counts();
        for sum in &contents.sums {
            assert_eq!(
                Some(&sum.sha1),
                oracle.get(&sum.stream),
                "round {round}: Sum of {}",
                sum.stream
            );
        }
        for id in oracle.keys() {
            assert_eq!(
                counts.get(id),
                Some(&1),
                "round {round}: stream {id} has exactly one Sum"
            );
        }
        assert_eq!(contents.checkpoints.last().unwrap().1, input_end);
        let winner = winners[0].0.app().counters();
        assert_eq!(
            winner.sums,
            oracle.len() as u64,
            "round {round}: checkpointed sums"
        );
    }
    // Thread scheduling decides who wins; over the rounds both owners should have lost sometimes.
    eprintln!("fencing: the first owner was fenced in {fenced_first_owner} of {ROUNDS} rounds");
}

/// A zombie that recovered long ago, before the live owner committed more, is fenced at its
/// first transaction and the live owner's Sums stay the only ones.
#[test]
fn stale_owner_is_fenced_at_its_first_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    let input = log.journal("chunks-0").unwrap();
    let shard_log = log.journal("sums-0").unwrap();
    let mut rng = StdRng::seed_from_u64(99);
    let oracle = publish_streams(&mut rng, &input, 30);
    let mut zombie = recover(&input, &shard_log, true);
    let mut live = recover(&input, &shard_log, false);
    live.run_until(input.durable_head(), Duration::ZERO).unwrap();
    let head = shard_log.durable_head();
    match zombie.run_transaction(Duration::ZERO) {
        Err(ShardError::Fenced { expected, actual, .. }) => {
            assert_eq!((expected, actual), (0, head));
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert_eq!(shard_log.durable_head(), head, "the zombie wrote nothing");
    let contents = read_shard_log(&shard_log);
    assert_eq!(contents.sums.len(), oracle.len());
}

/// `ShardLocks` gives one lease per shard name across its clones, refuses a second owner with
/// `AlreadyOwned`, and frees the shard when the lease is dropped.
#[test]
fn shard_locks_refuse_a_second_live_owner() {
    let locks = ShardLocks::default();
    let other_handle = locks.clone();
    let lease = locks.try_acquire("shard-0").unwrap();
    match other_handle.try_acquire("shard-0") {
        Err(ShardError::AlreadyOwned { shard }) => assert_eq!(shard, "shard-0"),
        Err(e) => panic!("expected AlreadyOwned, got {e}"),
        Ok(_) => panic!("a second live owner got the lease"),
    }
    let other_shard = other_handle
        .try_acquire("shard-1")
        .expect("another shard is free");
    drop(lease);
    let again = other_handle
        .try_acquire("shard-0")
        .expect("free once the lease is dropped");
    assert!(locks.try_acquire("shard-1").is_err());
    drop((again, other_shard));
    assert!(locks.try_acquire("shard-1").is_ok());
}
