//! A panic on the thread committing a batch (an appender leading it, or the helper thread)
//! poisons the journal and wakes every waiter with an error: blocked appenders, pipelined and
//! async ones, and the appender waiting to lead the next batch. Before, a panic on the writer
//! thread left every `wait()` hanging.

mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use ss_log::sim::SimStorage;
use ss_log::storage::{DirLock, OpenMode};
use ss_log::{AppendError, Batch, Log, Storage, StorageFile};

/// Storage whose `fdatasync` panics while `armed` is set.
struct PanickingStorage {
    inner: SimStorage,
    armed: Arc<AtomicBool>,
}

struct PanickingFile {
    inner: Arc<dyn StorageFile>,
    armed: Arc<AtomicBool>,
}

impl Storage for PanickingStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }
    fn open(&self, path: &Path, mode: OpenMode, map_len_hint: u64) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(PanickingFile {
            inner: self.inner.open(path, mode, map_len_hint)?,
            armed: self.armed.clone(),
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        self.inner.lock_dir(path)
    }
}

impl StorageFile for PanickingFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn write_all_at(&self, pos: u64, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all_at(pos, buf)
    }
    fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.inner.read_at(pos, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        // Slow enough that other appenders queue behind the commit in flight.
        std::thread::sleep(Duration::from_millis(2));
        assert!(!self.armed.load(Ordering::SeqCst), "injected panic in fdatasync");
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn try_claim_exclusive(&self) -> io::Result<bool> {
        self.inner.try_claim_exclusive()
    }
    fn share(&self) -> io::Result<()> {
        self.inner.share()
    }
}

fn open(armed: &Arc<AtomicBool>) -> Log {
    let storage = PanickingStorage {
        inner: SimStorage::new(3),
        armed: armed.clone(),
    };
    Log::open(DATA_DIR, opts(Arc::new(storage), 1 << 20)).unwrap()
}

fn is_poisoned(result: &Result<ss_log::AppendAck, AppendError>) -> bool {
    matches!(result, Err(AppendError::Poisoned { reason, .. }) if reason.contains("panicked"))
}

#[test]
fn a_panic_while_committing_poisons_and_wakes_every_waiter() {
    let armed = Arc::new(AtomicBool::new(false));
    let log = open(&armed);
    let j = log.journal("p").unwrap();
    j.append(&Batch::single(b"before")).unwrap();
    armed.store(true, Ordering::SeqCst);
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for t in 0..6 {
        let j = j.clone();
        let tx = tx.clone();
        threads.push(std::thread::spawn(move || {
            // The leader's own call panics (the panic is its thread's); every other appender
            // must return Poisoned.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                j.append(&Batch::single(format!("t{t}").as_bytes()))
            }));
            tx.send(result.map_err(|_| ())).unwrap();
        }));
    }
    // A pipelined append and an async one, committed by the helper thread.
    let pipelined = j.submit(&Batch::single(b"pipelined"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let async_result = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), j.append_async(&Batch::single(b"async"))).await
    });
    drop(tx);
    let mut panicked = 0;
    let mut poisoned = 0;
    for _ in 0..6 {
        match rx
            .recv_timeout(Duration::from_secs(20))
            .expect("every appender returns")
        {
            Err(()) => panicked += 1,
            Ok(r) => {
                assert!(is_poisoned(&r), "{r:?}");
                poisoned += 1;
            }
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        panicked + poisoned == 6 && poisoned >= 1,
        "{panicked} panicked, {poisoned} poisoned"
    );
    let async_result = async_result.expect("the async append resolves");
    assert!(
        matches!(async_result, Err(AppendError::Poisoned { .. })),
        "{async_result:?}"
    );
    if let Ok(p) = pipelined {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(p.wait()).unwrap());
        let r = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the pipelined append resolves");
        assert!(matches!(r, Err(AppendError::Poisoned { .. })), "{r:?}");
    }
    assert!(j.poisoned().unwrap().contains("panicked"));
    armed.store(false, Ordering::SeqCst);
    assert!(matches!(
        j.append(&Batch::single(b"after")),
        Err(AppendError::Poisoned { .. })
    ));
    // What was durable before stays readable.
    assert_eq!(single_messages(&read_all(&j)), vec![b"before".to_vec()]);
    log.close();
}
