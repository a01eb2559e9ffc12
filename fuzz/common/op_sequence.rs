//! Target `op_sequence`: a sequence of journal operations with injected faults, checked against
//! an in-memory model of what was acknowledged.
//!
//! Operations (decoded from the input, one byte of kind then its arguments): append, conditional
//! append with the right or a wrong head, a group of appends submitted together, a crash
//! (`SimStorage::crash` in any mode of the fault model: process crash, kernel power loss, lost,
//! torn or zeroed unsynced bytes), storage death after n more operations, process restart
//! (reopen, a process crash), read everything, retention (`remove_below`), a failing fsync with
//! Linux semantics or a failing call (open, create, rename, unlink, ftruncate, a short write,
//! directory fsync; EIO, ENOSPC or EMFILE; the `nth` byte's top bit), a failing read, and a disk
//! capacity (ENOSPC). Options from the first byte: fragment size, zero-filled spares, and whether
//! retention recycles removed fragments (their stale frames then lie past the head of later
//! fragments, which recovery and readers must never take for data).
//!
//! The model records every acknowledged frame (offset, end, payload) and every frame whose
//! append failed with an indeterminate outcome (the journal was poisoned by that very append).
//! Checked after every reopen, every read and at the end (after a final power loss):
//! - an acknowledged frame is always read back unchanged, unless retention removed it;
//! - every frame read is an acknowledged one or an indeterminate one with exactly its payload:
//!   a conditional append with a wrong head, an append refused by a poisoned journal and an
//!   append that failed with "not written" never appear;
//! - a frame a reader has returned is treated as acknowledged from then on (readers see only
//!   durable frames, so nothing read may vanish in a later power loss);
//! - opening after a power loss always succeeds, and reads never fail while the storage lives
//!   unless a read or call failure was injected.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ss_log::frame::{self, Batch};
use ss_log::sim::{CrashMode, SimStorage};
use ss_log::{AppendAck, AppendError, Journal, Log, Options, PendingAppend};

use super::input::Input;

pub const DATA_DIR: &str = "/data";
pub const JOURNAL: &str = "ops";
/// Most operations decoded from one input.
pub const OPS_MAX: usize = 64;
/// Largest message in an append (keeps every frame within `frame_max_bytes`).
const MESSAGE_MAX_BYTES: usize = 80;
/// Most appends submitted together.
const GROUP_MAX: usize = 4;

/// One operation, as decoded from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Append {
        len: u8,
    },
    AppendIfRightHead {
        len: u8,
    },
    AppendIfWrongHead {
        len: u8,
        delta: u16,
    },
    AppendGroup {
        count: u8,
        len: u8,
    },
    Crash {
        mode: CrashMode,
    },
    CrashAfterOps {
        ops: u8,
    },
    Reopen {
        mode: CrashMode,
    },
    ReadAll,
    RemoveBelow {
        pick: u8,
    },
    /// Bit 7 clear: the n-th fsync fails. Set: the n-th fallible call fails (bits 4-5 pick the
    /// errno), or with bit 6 also set, the n-th read.
    FailSync {
        nth: u8,
    },
    Capacity {
        extra_bytes: u16,
    },
    UnlimitedCapacity,
}

impl Op {
    pub fn decode(input: &mut Input<'_>) -> Op {
        match input.u8() % 12 {
            0 => Op::Append { len: input.u8() },
            1 => Op::AppendIfRightHead { len: input.u8() },
            2 => Op::AppendIfWrongHead {
                len: input.u8(),
                delta: input.u16(),
            },
            3 => Op::AppendGroup {
                count: input.u8(),
                len: input.u8(),
            },
            4 => Op::Crash {
                mode: crash_mode(input.u8()),
            },
            5 => Op::CrashAfterOps { ops: input.u8() },
            6 => Op::Reopen {
                mode: crash_mode(input.u8()),
            },
            7 => Op::ReadAll,
            8 => Op::RemoveBelow { pick: input.u8() },
            9 => Op::FailSync { nth: input.u8() },
            10 => Op::Capacity {
                extra_bytes: input.u16(),
            },
            _ => Op::UnlimitedCapacity,
        }
    }

    /// The bytes [`Op::decode`] reads back as this operation (for seeds).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mode_byte = |m: CrashMode| CrashMode::ALL.iter().position(|&x| x == m).expect("mode") as u8;
        match *self {
            Op::Append { len } => out.extend_from_slice(&[0, len]),
            Op::AppendIfRightHead { len } => out.extend_from_slice(&[1, len]),
            Op::AppendIfWrongHead { len, delta } => {
                out.extend_from_slice(&[2, len]);
                out.extend_from_slice(&delta.to_le_bytes());
            }
            Op::AppendGroup { count, len } => out.extend_from_slice(&[3, count, len]),
            Op::Crash { mode } => out.extend_from_slice(&[4, mode_byte(mode)]),
            Op::CrashAfterOps { ops } => out.extend_from_slice(&[5, ops]),
            Op::Reopen { mode } => out.extend_from_slice(&[6, mode_byte(mode)]),
            Op::ReadAll => out.push(7),
            Op::RemoveBelow { pick } => out.extend_from_slice(&[8, pick]),
            Op::FailSync { nth } => out.extend_from_slice(&[9, nth]),
            Op::Capacity { extra_bytes } => {
                out.push(10);
                out.extend_from_slice(&extra_bytes.to_le_bytes());
            }
            Op::UnlimitedCapacity => out.push(11),
        }
    }
}

const ERRNOS: [i32; 3] = [ss_log::sim::EIO, ss_log::sim::ENOSPC, ss_log::sim::EMFILE];

fn crash_mode(byte: u8) -> CrashMode {
    CrashMode::ALL[byte as usize % CrashMode::ALL.len()]
}

/// Options for a fragment size picked by the first input byte: small, so fragments roll often.
pub fn options(storage: &SimStorage, fragment_byte: u8) -> Options {
    Options {
        fragment_max_bytes: 128 + u64::from(fragment_byte % 4) * 64,
        frame_max_bytes: 128,
        batch_max_messages: 16,
        pending_max_bytes: 1024,
        // Bit 2 of the same byte: zero-filled spare fragments.
        preallocate: fragment_byte & 4 != 0,
        // Bit 3: fragments removed by retention are recycled (the default) or unlinked.
        recycle: fragment_byte & 8 == 0,
        // A scan-start hint every frame or two: recovery after each crash starts from one.
        scan_hint_interval_bytes: 64,
        write_bound_step_bytes: 32,
        storage: Arc::new(storage.clone()),
    }
}

/// A frame as the model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    end: u64,
    payload: Vec<u8>,
}

#[derive(Default)]
struct Model {
    /// Acknowledged (or read) frames by offset: never lost unless removed by retention.
    acked: BTreeMap<u64, Entry>,
    /// Frames whose append failed with an indeterminate outcome: may appear, exactly so.
    maybe: BTreeSet<(u64, u64, Vec<u8>)>,
    /// Highest offset passed to `remove_below`: frames ending at or below it may be gone.
    retention_max: u64,
}

struct World {
    storage: SimStorage,
    fragment_byte: u8,
    open: Option<(Log, Journal)>,
    model: Model,
    next_message: u64,
    /// Operation index, for messages.
    step: usize,
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let fragment_byte = input.u8();
    let mut world = World::new(fragment_byte);
    while !input.is_empty() && world.step < OPS_MAX {
        let op = Op::decode(&mut input);
        if trace() {
            let head = world.journal().durable_head();
            eprintln!(
                "step {}: {op:?} (head {head}, acked {:?})",
                world.step,
                world.model.acked.keys()
            );
        }
        world.apply(op);
        world.step += 1;
    }
    // Whatever happened, everything acknowledged (or read) survives a final power loss of each
    // kind.
    world.storage.disarm_failures();
    world.power_loss(CrashMode::PowerLoss);
    world.power_loss(CrashMode::LoseUnsynced);
}

/// Whether to print each operation (set `SS_FUZZ_TRACE=1` when triaging an input).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("SS_FUZZ_TRACE").is_some())
}

impl World {
    fn new(fragment_byte: u8) -> World {
        let mut world = World {
            storage: SimStorage::new(u64::from(fragment_byte)),
            fragment_byte,
            open: None,
            model: Model::default(),
            next_message: 0,
            step: 0,
        };
        world.open_journal("initial open");
        world
    }

    fn journal(&self) -> &Journal {
        &self.open.as_ref().expect("journal open").1
    }

    /// Opens the log and the journal, then reads everything. An open that fails because of an
    /// injected fault is retried: after a reboot if the storage died, as is if an fsync failed.
    fn open_journal(&mut self, why: &str) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let opts = options(&self.storage, self.fragment_byte);
            let opened = Log::open(DATA_DIR, opts).and_then(|log| Ok((log.clone(), log.journal(JOURNAL)?)));
            match opened {
                Ok(open) => {
                    self.open = Some(open);
                    break;
                }
                Err(_) if self.storage.is_dead() => {
                    self.storage = self.storage.crash(CrashMode::LoseUnsynced)
                }
                Err(e) if attempts < 3 && self.injected_failures() > 0 => {
                    let _ = e;
                }
                Err(e) => panic!("step {}: {why}: opening the journal failed: {e}", self.step),
            }
        }
        self.read_all(why);
    }

    /// Failed fsyncs, calls and reads injected so far on this storage instance.
    fn injected_failures(&self) -> u64 {
        let c = self.storage.counters();
        c.failed_syncs + c.failed_ops
    }

    fn close(&mut self) {
        // Dropping the journal and the log stops the writer after it drained.
        self.open = None;
    }

    fn power_loss(&mut self, mode: CrashMode) {
        let survivor = self.storage.crash(mode);
        self.close();
        self.storage = survivor;
        self.open_journal(&format!("open after power loss ({mode:?})"));
    }

    fn message(&mut self, len: u8) -> Vec<u8> {
        let mut m = format!("m{} ", self.next_message).into_bytes();
        self.next_message += 1;
        m.resize(m.len().max(len as usize % (MESSAGE_MAX_BYTES + 1)), b'.');
        m.truncate(MESSAGE_MAX_BYTES);
        m
    }

    fn batch(&mut self, len: u8) -> Batch {
        let mut batch = Batch::new();
        let first = self.message(len);
        batch.push(&first);
        if len.is_multiple_of(5) {
            // A second, empty message: batches of several messages.
            batch.push(&[]);
        }
        batch
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Append { len } => {
                let batch = self.batch(len);
                let submitted = self.journal().submit(&batch);
                self.settle(&batch, submitted, None);
            }
            Op::AppendIfRightHead { len } => {
                let batch = self.batch(len);
                let head = self.journal().durable_head();
                let submitted = self.journal().submit_if(head, &batch);
                self.settle(&batch, submitted, Some(head));
            }
            Op::AppendIfWrongHead { len, delta } => {
                let batch = self.batch(len);
                let head = self.journal().durable_head();
                let wrong = if delta == 0 || head >= u64::from(delta) && delta.is_multiple_of(2) {
                    head.wrapping_sub(u64::from(delta.max(1)))
                } else {
                    head + u64::from(delta)
                };
                let poisoned = self.journal().poisoned().is_some();
                match self.journal().submit_if(wrong, &batch) {
                    Err(AppendError::Conflict { expected, actual, .. }) => {
                        assert!(
                            !poisoned,
                            "step {}: a poisoned journal reports Conflict",
                            self.step
                        );
                        assert_eq!((expected, actual), (wrong, head), "step {}", self.step);
                    }
                    Err(AppendError::Poisoned { .. }) if poisoned => {}
                    other => panic!(
                        "step {}: conditional append expecting head {wrong} (head is {head}) gave {:?}",
                        self.step,
                        other.map(|p| p.ack())
                    ),
                }
                assert_eq!(
                    self.journal().durable_head(),
                    head,
                    "a refused append moved the head"
                );
            }
            Op::AppendGroup { count, len } => {
                let count = 2 + count as usize % (GROUP_MAX - 1);
                let mut pending = Vec::new();
                for k in 0..count {
                    let batch = self.batch(len.wrapping_add(k as u8 * 31));
                    let submitted = self.journal().submit(&batch);
                    pending.push((batch, submitted));
                }
                for (batch, submitted) in pending {
                    self.settle(&batch, submitted, None);
                }
            }
            Op::Crash { mode } => self.power_loss(mode),
            Op::CrashAfterOps { ops } => self.storage.crash_after_ops(u64::from(ops % 24)),
            Op::Reopen { mode } => {
                if self.storage.is_dead() {
                    // The storage died with the process: reboot it.
                    self.power_loss(mode);
                } else {
                    // A process restart: the page cache (and what a failed fsync left in it)
                    // survives.
                    self.power_loss(CrashMode::Process);
                }
            }
            Op::ReadAll => self.read_all("read"),
            Op::RemoveBelow { pick } => self.remove_below(pick),
            Op::FailSync { nth } if nth & 0xc0 == 0xc0 => {
                self.storage.fail_read_after(1 + u64::from(nth % 4))
            }
            Op::FailSync { nth } if nth & 0x80 != 0 => {
                let errno = ERRNOS[usize::from(nth >> 4) % ERRNOS.len()];
                self.storage.fail_op_after(1 + u64::from(nth % 16), errno);
            }
            Op::FailSync { nth } => self.storage.fail_sync_after(1 + u64::from(nth % 3)),
            Op::Capacity { extra_bytes } => {
                let used = self.storage.used_bytes();
                self.storage
                    .set_capacity(Some(used + u64::from(extra_bytes % 512)));
            }
            Op::UnlimitedCapacity => self.storage.set_capacity(None),
        }
    }

    /// Records the outcome of one append in the model.
    fn settle(&mut self, batch: &Batch, submitted: Result<PendingAppend, AppendError>, expect: Option<u64>) {
        let step = self.step;
        let pending = match submitted {
            Ok(p) => p,
            // Refused before anything was queued: must never appear.
            Err(AppendError::Poisoned { .. }) => {
                assert!(
                    self.journal().poisoned().is_some(),
                    "step {step}: Poisoned but not poisoned"
                );
                return;
            }
            Err(e) => panic!("step {step}: submit failed: {e}"),
        };
        let intended: AppendAck = pending.ack();
        if let Some(head) = expect {
            assert_eq!(
                intended.offset, head,
                "step {step}: conditional append placed elsewhere"
            );
        }
        let frame_len = frame::frame_len_bytes(batch.payload().len());
        assert_eq!(intended.end, intended.offset + frame_len, "step {step}");
        let outcome = pending.wait();
        if trace() {
            eprintln!("  append [{}, {}): {outcome:?}", intended.offset, intended.end);
        }
        match outcome {
            Ok(ack) => {
                assert_eq!(ack, intended, "step {step}");
                if let Some((&last, e)) = self.model.acked.iter().next_back() {
                    assert!(
                        ack.offset >= e.end,
                        "step {step}: append at {} overlaps acknowledged frame [{last}, {})",
                        ack.offset,
                        e.end
                    );
                }
                assert!(
                    self.journal().durable_head() >= ack.end,
                    "step {step}: acked beyond head"
                );
                self.model.acked.insert(
                    ack.offset,
                    Entry {
                        end: ack.end,
                        payload: batch.payload().to_vec(),
                    },
                );
            }
            // The fsync (or the storage) failed under this very append: it may or may not be on
            // the medium.
            Err(AppendError::Poisoned { .. }) => {
                self.model
                    .maybe
                    .insert((intended.offset, intended.end, batch.payload().to_vec()));
            }
            // "Not written": must never appear.
            Err(AppendError::NoSpace { .. } | AppendError::Io { .. }) => {}
            Err(e) => panic!("step {step}: append failed unexpectedly: {e}"),
        }
    }

    fn remove_below(&mut self, pick: u8) {
        let journal = self.journal().clone();
        let head = journal.durable_head();
        let offsets: Vec<u64> = self.model.acked.keys().copied().filter(|&o| o < head).collect();
        let target = if offsets.is_empty() || pick == u8::MAX {
            head
        } else {
            offsets[pick as usize % offsets.len()]
        };
        let first_before = journal.first_offset();
        let result = journal.remove_below(target);
        self.model.retention_max = self.model.retention_max.max(target);
        let first_after = journal.first_offset();
        assert!(
            first_after <= first_before.max(target),
            "step {}: remove_below({target}) moved the first offset from {first_before} to {first_after}",
            self.step
        );
        assert!(
            first_after <= head,
            "step {}: retention removed the head fragment",
            self.step
        );
        if result.is_err() {
            assert!(
                self.storage.is_dead() || self.injected_failures() > 0,
                "step {}: retention failed: {result:?}",
                self.step
            );
        }
    }

    /// Reads everything and reconciles it with the model.
    fn read_all(&mut self, why: &str) {
        if self.storage.is_dead() {
            // Reads of a dead storage fail with I/O errors; nothing to check until it reboots.
            return;
        }
        let step = self.step;
        let journal = self.journal().clone();
        let head = journal.durable_head();
        let first = journal.first_offset();
        let mut frames = journal.frames(first);
        let failures_before = self.injected_failures();
        let mut read = BTreeSet::new();
        let mut expected_offset = first;
        loop {
            let f = match frames.next().transpose() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                // The storage can also die during the read: the journal's spare preparer thread
                // (`preallocate`) makes its mutating calls whenever it runs, and one of them can
                // be the last of a `CrashAfterOps` countdown. Reads fail then, as after a crash.
                Err(_) if self.storage.is_dead() => return,
                Err(e) if self.injected_failures() > failures_before => {
                    // An injected read or open failure: an error, and nothing to reconcile.
                    let text = e.to_string();
                    assert!(
                        text.contains(JOURNAL),
                        "step {step} ({why}): read error names no journal: {text}"
                    );
                    return;
                }
                Err(e) => panic!("step {step} ({why}): read failed at {}: {e}", frames.offset()),
            };
            assert_eq!(
                f.offset, expected_offset,
                "step {step} ({why}): frames not contiguous"
            );
            expected_offset = f.end;
            let payload = f.payload().to_vec();
            match self.model.acked.get(&f.offset) {
                Some(e) => assert!(
                    e.end == f.end && e.payload == payload,
                    "step {step} ({why}): acknowledged frame at {} changed",
                    f.offset
                ),
                None => {
                    let key = (f.offset, f.end, payload);
                    assert!(
                        self.model.maybe.remove(&key),
                        "step {step} ({why}): read a frame at {} that was never acknowledged \
                         nor left indeterminate ({} bytes)",
                        f.offset,
                        key.2.len()
                    );
                    // Seen by a reader, so it must be durable from now on.
                    self.model.acked.insert(
                        key.0,
                        Entry {
                            end: key.1,
                            payload: key.2,
                        },
                    );
                }
            }
            read.insert(f.offset);
        }
        assert_eq!(
            expected_offset, head,
            "step {step} ({why}): reads stop short of the head"
        );
        for (&offset, e) in &self.model.acked {
            if read.contains(&offset) {
                continue;
            }
            assert!(
                offset < first && e.end <= self.model.retention_max,
                "step {step} ({why}): acknowledged frame [{offset}, {}) is lost (first offset \
                 {first}, head {head}, retention up to {})",
                e.end,
                self.model.retention_max
            );
        }
    }
}
