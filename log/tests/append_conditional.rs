//! Conditional appends (fencing): a writer whose expected head is stale gets
//! `AppendError::Conflict` and writes nothing.

mod common;

use std::sync::Arc;

use common::*;
use ss_log::sim::SimStorage;
use ss_log::{AppendError, Batch, Log};

const JOURNAL: &str = "fenced";

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, AppendError>, expected: u64, actual: u64) {
    match result {
        Err(e @ AppendError::Conflict { .. }) => {
            let AppendError::Conflict {
                journal,
                expected: e_expected,
                actual: e_actual,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(
                (journal.as_str(), *e_expected, *e_actual),
                (JOURNAL, expected, actual)
            );
            let message = e.to_string();
            assert!(
                message.contains(JOURNAL) && message.contains(&expected.to_string()),
                "{message}"
            );
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
}

/// Two writers read the same head; the first conditional append wins, the second (now stale)
/// gets `Conflict` with the expected and actual heads, and nothing of it is written: the head,
/// the reader's view, the storage's write count and the file are unchanged. The sync, submit and
/// async variants behave the same, and appending at the current head succeeds.
#[test]
fn stale_expected_head_conflicts_and_writes_nothing() {
    let storage = SimStorage::new(41);
    let log = open_sim(&storage, 1 << 20);
    let j = log.journal(JOURNAL).unwrap();
    j.append(&Batch::single(b"first")).unwrap();
    let seen_by_both = j.durable_head();

    let winner = j.append_if(seen_by_both, &Batch::single(b"winner")).unwrap();
    assert_eq!(winner.offset, seen_by_both);
    let head = j.durable_head();
    let mut reader = j.reader(head);
    let writes_before = storage.counters().writes;
    let file_before = storage.read_file(&fragment_path(JOURNAL, 0)).unwrap();

    assert_conflict(
        j.append_if(seen_by_both, &Batch::single(b"zombie")),
        seen_by_both,
        head,
    );
    assert_conflict(
        j.submit_if(seen_by_both, &Batch::single(b"zombie-submit"))
            .map(|p| p.ack()),
        seen_by_both,
        head,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_conflict(
        rt.block_on(j.append_if_async(seen_by_both, &Batch::single(b"zombie-async"))),
        seen_by_both,
        head,
    );
    assert_conflict(j.append_if(head + 8, &Batch::single(b"future")), head + 8, head);

    assert_eq!(j.durable_head(), head, "the head is unchanged");
    assert!(
        reader.try_next().unwrap().is_none(),
        "the reader sees nothing new"
    );
    assert_eq!(storage.counters().writes, writes_before, "nothing was written");
    assert_eq!(
        storage.read_file(&fragment_path(JOURNAL, 0)).unwrap(),
        file_before
    );
    assert_eq!(
        single_messages(&read_all(&j)),
        [b"first".to_vec(), b"winner".to_vec()]
    );

    let ack = j.append_if(head, &Batch::single(b"current")).unwrap();
    assert_eq!(ack.offset, head);
    assert_eq!(reader.try_next().unwrap().unwrap().offset, head);
    drop((reader, j, log));
    let log = open_sim(&storage, 1 << 20);
    let j = log.journal(JOURNAL).unwrap();
    assert_eq!(
        read_all(&j).len(),
        3,
        "the conflicting appends never reach the medium"
    );
}

/// The expected head is compared with the head including appends accepted but not yet durable:
/// while another append is mid-commit, expecting the durable head is already stale.
#[test]
fn conditional_append_conflicts_with_pending_append() {
    let sim = SimStorage::new(42);
    let gated = Arc::new(GatedStorage::new(Arc::new(sim.clone())));
    let log = Log::open(DATA_DIR, opts(gated.clone(), 1 << 20)).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    let durable = j.append(&Batch::single(b"first")).unwrap().end;
    gated.gate.arm();
    let pending = j.submit(&Batch::single(b"pending")).unwrap();
    gated.gate.wait_held();
    assert_eq!(j.durable_head(), durable);
    assert_conflict(
        j.append_if(durable, &Batch::single(b"stale")),
        durable,
        pending.ack().end,
    );
    gated.gate.release();
    let ack = pending.wait().unwrap();
    let next = j.append_if(ack.end, &Batch::single(b"next")).unwrap();
    assert_eq!(next.offset, ack.end);
    assert_eq!(
        single_messages(&read_all(&j)),
        [b"first".to_vec(), b"pending".to_vec(), b"next".to_vec()]
    );
}

/// Eight threads race conditional appends, each retrying from the head its conflict reports:
/// every frame in the journal was won by exactly one append, and there are no gaps.
#[test]
fn racing_conditional_appenders_each_win_exactly_one_head() {
    let storage = SimStorage::new(43);
    let log = open_sim(&storage, 4096);
    let j = log.journal(JOURNAL).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                let mut expect = 0;
                let (mut wins, mut conflicts) = (Vec::new(), 0);
                while wins.len() < 20 {
                    let p = format!("t{t}-{}", wins.len());
                    match j.append_if(expect, &Batch::single(p.as_bytes())) {
                        Ok(ack) => {
                            wins.push(ack.offset);
                            expect = ack.end;
                        }
                        Err(AppendError::Conflict { actual, .. }) => {
                            conflicts += 1;
                            expect = actual;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                (wins, conflicts)
            })
        })
        .collect();
    let mut all_wins = Vec::new();
    let mut conflicts = 0;
    for t in threads {
        let (wins, c) = t.join().unwrap();
        all_wins.extend(wins);
        conflicts += c;
    }
    all_wins.sort_unstable();
    let frames = read_all(&j);
    assert_eq!(frames.len(), 160);
    assert_eq!(frames.iter().map(|f| f.offset).collect::<Vec<_>>(), all_wins);
    println!("racing conditional appends: 160 wins, {conflicts} conflicts");
}
