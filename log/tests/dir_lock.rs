//! The data directory lock on the real filesystem: a second writer is refused with
//! `OpenError::Locked`, read-only opens still work, and the lock goes with the last handle.

mod common;

use common::*;
use ss_log::{AppendError, Batch, Log, OpenError, Options};

/// Opens a directory twice in one process: the second `Log::open` gets `Locked` naming the
/// directory, a read-only open reads the first writer's frames and refuses appends, and once the
/// first `Log` is dropped the directory opens again.
#[test]
fn second_writer_is_refused_and_read_only_open_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    let j = log.journal("events").unwrap();
    let ack = j.append(&Batch::single(b"from the first writer")).unwrap();
    drop(j);

    let Err(err) = Log::open(dir.path(), Options::default()) else {
        panic!("a second writer must be refused");
    };
    match &err {
        OpenError::Locked { dir: locked } => assert_eq!(locked, dir.path()),
        other => panic!("expected Locked, got {other}"),
    }
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );

    let ro = Log::open_read_only(dir.path(), Options::default()).unwrap();
    assert!(!ro.is_writable());
    assert_eq!(ro.journal_names().unwrap(), ["events"]);
    let rj = ro.existing_journal("events").unwrap();
    let frames = read_all(&rj);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].offset, ack.offset);
    assert_eq!(frames[0].messages, [b"from the first writer".to_vec()]);
    assert!(matches!(
        rj.append(&Batch::single(b"no")),
        Err(AppendError::ReadOnly { .. })
    ));
    assert!(matches!(ro.journal("new"), Err(OpenError::NoSuchJournal { .. })));

    drop(log);
    let log = Log::open(dir.path(), Options::default()).expect("the lock is released with the Log");
    let j = log.journal("events").unwrap();
    j.append(&Batch::single(b"from the second writer")).unwrap();
    assert_eq!(read_all(&j).len(), 2);
    drop((rj, ro));
}

/// A `Journal` handle keeps its directory (and lock) open after the `Log` is dropped; dropping
/// the last handle releases it.
#[test]
fn lock_is_held_until_last_journal_handle_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    let j = log.journal("events").unwrap();
    let reader = j.reader(0);
    drop(log);
    j.append(&Batch::single(b"still open")).unwrap();
    assert!(matches!(
        Log::open(dir.path(), Options::default()),
        Err(OpenError::Locked { .. })
    ));
    drop(j);
    assert!(
        matches!(
            Log::open(dir.path(), Options::default()),
            Err(OpenError::Locked { .. })
        ),
        "a reader holds the journal too"
    );
    drop(reader);
    let log = Log::open(dir.path(), Options::default()).unwrap();
    assert_eq!(read_all(&log.journal("events").unwrap()).len(), 1);
}

/// A read-only open of a directory that was never created fails with `NoDataDir`.
#[test]
fn read_only_open_of_missing_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    assert!(matches!(
        Log::open_read_only(&missing, Options::default()),
        Err(OpenError::NoDataDir { .. })
    ));
}

/// A writer opening a new directory locks it before it creates `journals/`: a reader that finds
/// `journals/` (what `open_read_only` needs) while the writer lives finds a lock held, so
/// `verify` never takes a starting `run` for a directory nobody writes. Before, `journals/` came
/// first and a `verify` in between exited 3, "no run has written there" (a CI failure).
#[test]
fn writer_holds_the_lock_before_journals_dir_exists() {
    use ss_log::storage::{Intercept, Intercepted};
    use ss_log::Storage;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct LockedWhenJournalsAppear {
        checked: AtomicBool,
    }

    impl Intercept for LockedWhenJournalsAppear {
        fn create_dir_all(&self, inner: &dyn Storage, path: &Path) -> std::io::Result<()> {
            if path.ends_with("journals") {
                let data = path.parent().unwrap();
                assert!(
                    is_locked(data),
                    "{} not locked as journals/ is created",
                    data.display()
                );
                self.checked.store(true, Ordering::SeqCst);
            }
            inner.create_dir_all(path)
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let storage = std::sync::Arc::new(Intercepted::<LockedWhenJournalsAppear>::new(std::sync::Arc::new(
        ss_log::RealStorage,
    )));
    let log = Log::open(&data, Options::with_storage(storage.clone())).unwrap();
    assert!(
        storage.checked.load(Ordering::SeqCst),
        "journals/ was never created"
    );
    assert!(is_locked(&data.join("journals")));
    drop(log);
    assert!(!is_locked(&data) && !is_locked(&data.join("journals")));
}

/// Whether another holder has `dir` locked (probed with a lock of our own, released at once).
fn is_locked(dir: &std::path::Path) -> bool {
    let file = std::fs::File::open(dir).unwrap();
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// The lock cannot be lost or gone around: a lock file removed while held let a second `run`
/// in (it locked a new file), which wrote the same journals as the first; the first then wrote
/// over the second's chunks and Sums, and `verify` passed over the loss. Now the directories
/// themselves are locked: a second writer is refused whether it opens the directory by another
/// path, through a data directory whose `journals` is a symlink to this one, or through one whose
/// single journal directory is; and a removed `LOCK` file (as older versions left) changes nothing.
#[test]
fn a_second_writer_is_refused_through_a_removed_lock_file_or_symlinked_journals() {
    let root = tempfile::tempdir().unwrap();
    let d = root.path().join("d");
    let log = Log::open(&d, Options::default()).unwrap();
    let j = log.journal("chunks-000").unwrap();
    j.append(&Batch::single(b"from the first writer")).unwrap();

    // A stray LOCK file (older versions locked one), removed: no way in.
    std::fs::write(d.join("LOCK"), b"").unwrap();
    std::fs::remove_file(d.join("LOCK")).unwrap();
    assert!(matches!(
        Log::open(&d, Options::default()),
        Err(OpenError::Locked { .. })
    ));

    // Another data directory whose journals/ is a symlink to d's.
    let e = root.path().join("e");
    std::fs::create_dir(&e).unwrap();
    std::os::unix::fs::symlink(d.join("journals"), e.join("journals")).unwrap();
    match Log::open(&e, Options::default()) {
        Err(OpenError::Locked { dir }) => assert_eq!(dir, e),
        other => panic!(
            "expected Locked through the symlinked journals/, got {:?}",
            other.map(|_| ())
        ),
    }

    // Another data directory with one journal directory symlinked to d's.
    let f = root.path().join("f");
    std::fs::create_dir_all(f.join("journals")).unwrap();
    std::os::unix::fs::symlink(
        d.join("journals").join("chunks-000"),
        f.join("journals").join("chunks-000"),
    )
    .unwrap();
    let other = Log::open(&f, Options::default()).expect("f itself is free");
    let err = other.journal("chunks-000").expect_err("its journal is d's");
    assert!(matches!(err, OpenError::JournalLocked { .. }), "{err}");
    assert!(err.to_string().contains("chunks-000"), "{err}");
    other.journal("sums-000").expect("f's own journals open");
    drop(other);

    // The first writer's journal is untouched; once it is gone, the directory opens again.
    assert_eq!(read_all(&j).len(), 1);
    drop((j, log));
    let log = Log::open(&d, Options::default()).expect("the locks go with the Log");
    assert_eq!(read_all(&log.journal("chunks-000").unwrap()).len(), 1);
}
