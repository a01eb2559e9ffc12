//! Read errors on the real storage path (memory-mapped fragment files), not the simulator: a page
//! that cannot be read (EIO) or that another process truncated away must reach the caller as a
//! `ReadError::Io` naming the journal, the fragment file and the offset. Before, a reader touching
//! such a page was killed by SIGBUS.
//!
//! The EIO tests mount a small FUSE file system (the `fuser` crate, mounting through `/dev/fuse`
//! directly, so no libfuse or fusermount is needed) that passes a data directory through but fails
//! reads of a chosen range of one fragment with EIO, and read the journal through it in a child
//! process (see [`run_reader_child`]). They need root and `/dev/fuse`; without them they say so and
//! pass, except under CI (`CI` set), where they fail.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use fuser::{FileAttr, FileType, MountOption, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, Request};
use ss_log::{AppendAck, Batch, FragmentInfo, Log, Options, ReadError};

const JOURNAL: &str = "reads";
const FRAGMENT_MAX_BYTES: u64 = 1 << 20;
const PAYLOAD_BYTES: usize = 12_000;

fn options() -> Options {
    Options {
        fragment_max_bytes: FRAGMENT_MAX_BYTES,
        frame_max_bytes: 64 << 10,
        ..Options::default()
    }
}

/// Writes frames with non-zero payloads until the journal spans three fragments, and closes it.
/// Returns the acks and the fragments.
fn write_journal(dir: &Path) -> (Vec<AppendAck>, Vec<FragmentInfo>) {
    let log = Log::open(dir, options()).unwrap();
    let journal = log.journal(JOURNAL).unwrap();
    let mut acks = Vec::new();
    while journal.fragments().len() < 3 {
        let i = acks.len();
        let payload: Vec<u8> = (0..PAYLOAD_BYTES).map(|b| (b * 7 + i) as u8 | 1).collect();
        acks.push(journal.append(&Batch::single(&payload)).unwrap());
    }
    let fragments = journal.fragments();
    log.close();
    (acks, fragments)
}

/// The position of "byte N" in an error's text: the fragment byte that could not be read.
fn failed_byte(reason: &str) -> u64 {
    let at = reason
        .find("byte ")
        .unwrap_or_else(|| panic!("no byte named in {reason:?}"))
        + 5;
    let digits: String = reason[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

// ---- Truncation by another process ----

/// Regression: another process truncated a fragment while a reader in this one had it mapped,
/// and the reader's next touch of a page past the new end raised SIGBUS and killed the process.
/// Now frames wholly before the cut still read, the frame across it is a `ReadError::Io` naming
/// the fragment and its offset (not corruption), and so is every retry.
#[test]
fn fragment_truncated_under_reader_is_an_error_not_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    let (acks, fragments) = write_journal(dir.path());
    let log = Log::open_read_only(dir.path(), options()).unwrap();
    let journal = log.existing_journal(JOURNAL).unwrap();
    let first = &fragments[0];
    // Cut inside a frame well past the first page, and not on a page boundary.
    let victim = acks.iter().find(|a| a.offset > 300_000).unwrap();
    let cut = victim.offset + 5_000;
    assert!(victim.end <= first.end && cut % 4096 != 0);

    let mut reader = journal.reader(0);
    assert_eq!(
        reader.try_next().unwrap().unwrap().offset,
        0,
        "the fragment is mapped and read"
    );
    let status = std::process::Command::new("truncate")
        .arg("-s")
        .arg(cut.to_string())
        .arg(&first.path)
        .status()
        .expect("run truncate");
    assert!(status.success());

    for ack in acks.iter().take_while(|a| a.end <= cut).skip(1) {
        let frame = reader.try_next().expect("a frame before the cut reads").unwrap();
        assert_eq!(frame.offset, ack.offset);
    }
    assert_eq!(reader.offset(), victim.offset);
    for attempt in 0..3 {
        match reader.try_next() {
            Err(ReadError::Io {
                journal,
                fragment,
                offset,
                source,
            }) => {
                assert_eq!(journal, JOURNAL);
                assert_eq!(fragment, first.path);
                assert_eq!(offset, victim.offset, "attempt {attempt}: {source}");
            }
            other => panic!("attempt {attempt}: expected an I/O error, got {other:?}"),
        }
    }
}

/// The same with the cut on a page boundary between frames' pages, and a reader that had
/// already validated the whole fragment: the pages past the cut are gone from its map, so the
/// first frame past the cut faults (rather than reading zeros that happen to sit in the
/// last page), and that fault is the error.
#[test]
fn fragment_truncated_on_a_page_boundary_under_reader_is_an_error_not_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    let (acks, fragments) = write_journal(dir.path());
    let log = Log::open_read_only(dir.path(), options()).unwrap();
    let journal = log.existing_journal(JOURNAL).unwrap();
    let first = &fragments[0];
    let in_first: Vec<&AppendAck> = acks.iter().filter(|a| a.end <= first.end).collect();

    // Read the whole fragment once, so every page of it is mapped.
    let mut reader = journal.reader(0);
    for ack in &in_first {
        assert_eq!(reader.try_next().unwrap().unwrap().offset, ack.offset);
    }
    let victim = in_first.iter().find(|a| a.offset > 400_000).unwrap();
    let cut = (victim.offset + 4096) / 4096 * 4096;
    File::options()
        .write(true)
        .open(&first.path)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let mut reader = journal.reader(victim.offset);
    match reader.try_next() {
        Err(ReadError::Io {
            fragment,
            offset,
            source,
            ..
        }) => {
            assert_eq!(
                (fragment, offset),
                (first.path.clone(), victim.offset),
                "{source}"
            );
            assert!(failed_byte(&source.to_string()) >= cut, "{source}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

// ---- EIO through FUSE ----

/// The file (relative to the source directory) and byte range whose reads fail, if any.
type FailingReads = Arc<Mutex<Option<(PathBuf, Range<u64>)>>>;

/// A pass-through FUSE file system over `source` whose reads of `failing.0` in the byte range
/// `failing.1` fail with EIO.
struct EioFs {
    source: PathBuf,
    /// Index `ino - 1`: the path relative to `source` (inode 1 is the root).
    inodes: Vec<PathBuf>,
    failing: FailingReads,
    eio_replies: Arc<AtomicU64>,
}

const TTL: Duration = Duration::from_secs(60);

impl EioFs {
    fn ino_of(&mut self, relative: PathBuf) -> u64 {
        if let Some(i) = self.inodes.iter().position(|p| *p == relative) {
            return i as u64 + 1;
        }
        self.inodes.push(relative);
        self.inodes.len() as u64
    }

    fn attr(&self, ino: u64) -> std::io::Result<FileAttr> {
        let path = self.source.join(&self.inodes[ino as usize - 1]);
        let m = std::fs::metadata(path)?;
        Ok(FileAttr {
            ino,
            size: m.len(),
            blocks: m.blocks(),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: if m.is_dir() {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: if m.is_dir() { 0o555 } else { 0o444 },
            nlink: 1,
            uid: m.uid(),
            gid: m.gid(),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }
}

impl fuser::Filesystem for EioFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let relative = self.inodes[parent as usize - 1].join(name);
        if !self.source.join(&relative).exists() {
            return reply.error(libc::ENOENT);
        }
        let ino = self.ino_of(relative);
        match self.attr(ino) {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(_) => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.attr(ino) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(_) => reply.error(libc::ENOENT),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let relative = &self.inodes[ino as usize - 1];
        let offset = offset as u64;
        if let Some((path, range)) = &*self.failing.lock().unwrap() {
            if path == relative && offset < range.end && range.start < offset + u64::from(size) {
                self.eio_replies.fetch_add(1, Ordering::Relaxed);
                return reply.error(libc::EIO);
            }
        }
        let file = File::open(self.source.join(relative)).unwrap();
        let mut buf = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return reply.error(e.raw_os_error().unwrap_or(libc::EIO)),
            }
        }
        reply.data(&buf[..filled]);
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let relative = self.inodes[ino as usize - 1].clone();
        let Ok(entries) = std::fs::read_dir(self.source.join(&relative)) else {
            return reply.error(libc::ENOENT);
        };
        let mut names: Vec<(String, FileType)> = entries
            .map(|e| {
                let e = e.unwrap();
                let kind = if e.file_type().unwrap().is_dir() {
                    FileType::Directory
                } else {
                    FileType::RegularFile
                };
                (e.file_name().to_string_lossy().into_owned(), kind)
            })
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (i, (name, kind)) in names.into_iter().enumerate().skip(offset as usize) {
            let child = self.ino_of(relative.join(&name));
            if reply.add(child, i as i64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }
}

/// A mounted [`EioFs`]; unmounted on drop.
struct EioMount {
    dir: PathBuf,
    failing: FailingReads,
    eio_replies: Arc<AtomicU64>,
    session: fuser::BackgroundSession,
    _mountpoint: tempfile::TempDir,
}

impl EioMount {
    /// Mounts a view of `source`, or returns `None` (outside CI) if this machine cannot mount.
    fn mount(source: &Path) -> Option<EioMount> {
        let mountpoint = tempfile::tempdir().unwrap();
        let failing = Arc::new(Mutex::new(None));
        let eio_replies = Arc::new(AtomicU64::new(0));
        let fs = EioFs {
            source: source.to_path_buf(),
            inodes: vec![PathBuf::new()],
            failing: failing.clone(),
            eio_replies: eio_replies.clone(),
        };
        let options = [MountOption::RO, MountOption::FSName("ss-log-eio-test".into())];
        match fuser::spawn_mount2(fs, mountpoint.path(), &options) {
            Ok(session) => Some(EioMount {
                dir: mountpoint.path().to_path_buf(),
                failing,
                eio_replies,
                session,
                _mountpoint: mountpoint,
            }),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipping: cannot mount a FUSE file system here ({e}); needs root and /dev/fuse");
                None
            }
            Err(e) => panic!("mounting the EIO FUSE file system: {e} (CI needs root and /dev/fuse)"),
        }
    }

    /// Fails reads of `range` of the file at `relative` (relative to the source directory).
    fn fail_reads(&self, relative: &Path, range: Range<u64>) {
        *self.failing.lock().unwrap() = Some((relative.to_path_buf(), range));
    }

    /// Drops the kernel's cached pages of the file (and unmaps them from every map), so the
    /// next touch of them asks the file system again.
    fn invalidate(&self, ino: u64) {
        self.session.notifier().inval_inode(ino, 0, 0).unwrap();
    }
}

/// The fragment's path relative to the data directory.
fn relative_to(fragment: &FragmentInfo, dir: &Path) -> PathBuf {
    fragment.path.strip_prefix(dir).unwrap().to_path_buf()
}

// ---- The reader runs in a child process ----

/// Set in a child process that runs one of the tests below as the reader.
const CHILD_ENV: &str = "SS_LOG_READ_ERRORS_CHILD";
/// Printed by the child when it wants the parent to act; it then waits for a line on stdin.
const READY: &str = "ss-log-read-errors-child: ready";

/// The mount directory, in the child process that reads through it.
fn child_mount_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD_ENV).map(PathBuf::from)
}

fn env_u64(name: &str) -> u64 {
    std::env::var(name).unwrap().parse().unwrap()
}

/// In the child: tells the parent it is ready for its next step and waits until it is done.
fn handshake() {
    println!("{READY}");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

/// Runs this binary's test `name` in a child process whose environment says it reads through
/// `mount` (plus `env`), and fails unless it passes. The FUSE server stays in this process: a
/// process killed (by SIGBUS, say) while one of its own threads serves the mount it is reading
/// can hang in the kernel forever, waiting for an answer from the thread that was killed. So a
/// regression shows as "killed by SIGBUS" here, not as a hung test run. Each time the child
/// prints [`READY`], `on_ready` runs with the count of earlier ones and the child is resumed.
fn run_reader_child(name: &str, mount: &Path, env: &[(&str, u64)], mut on_ready: impl FnMut(usize)) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mount)
        .envs(env.iter().map(|(k, v)| (k, v.to_string())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            if line.ends_with(READY) {
                let _ = ready_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut readies = 0;
    let status = loop {
        if ready_rx.try_recv().is_ok() {
            on_ready(readies);
            readies += 1;
            writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the reader process hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    assert_ne!(
        status.signal(),
        Some(libc::SIGBUS),
        "the reader process was killed by SIGBUS:\n{output}"
    );
    assert!(
        status.success(),
        "the reader process failed ({status}):\n{output}"
    );
}

/// In the child: checks that `error` is the I/O error for a page in `bad` (bytes of the fragment
/// `fragment`), reported while reading a frame that begins no later than the bad page. The
/// kernel may fail a little more than the bad range (it reads a whole folio, or a read-around
/// window), so the failed page may come up to 256 KiB before it.
fn check_io_error(error: ReadError, fragment: &FragmentInfo, bad: &Range<u64>) -> u64 {
    let text = error.to_string();
    let ReadError::Io {
        journal,
        fragment: path,
        offset,
        source,
    } = error
    else {
        panic!("expected an I/O error, got {text}");
    };
    assert_eq!(journal, JOURNAL);
    assert_eq!(path, fragment.path);
    assert!(text.contains(&fragment.path.display().to_string()), "{text}");
    assert!(
        (fragment.begin..=fragment.begin + bad.start).contains(&offset),
        "the frame being read: {text}"
    );
    let byte = failed_byte(&source.to_string());
    assert!(
        byte < bad.end && bad.start - byte.min(bad.start) < 256 << 10,
        "{text}"
    );
    offset
}

/// Regression: a page of a fragment that the device cannot read (EIO) killed a reader with SIGBUS
/// when it touched the mapped page. Now the reader gets a `ReadError::Io` naming the journal, the
/// fragment file (under the mount), the offset of the frame it was reading and the failed page;
/// frames before it read as usual; and the reader's process lives on.
#[test]
fn read_eio_through_fuse_is_an_error_naming_fragment_and_offset() {
    const BAD_START: &str = "SS_LOG_TEST_BAD_START";
    const BAD_END: &str = "SS_LOG_TEST_BAD_END";
    if let Some(mount) = child_mount_dir() {
        let bad = env_u64(BAD_START)..env_u64(BAD_END);
        let log = Log::open_read_only(&mount, options()).unwrap();
        let journal = log.existing_journal(JOURNAL).unwrap();
        let second = journal.fragments()[1].clone();
        let mut reader = journal.reader(0);
        let error = loop {
            match reader.try_next() {
                Ok(Some(frame)) => assert!(frame.end <= second.begin + bad.start, "read over the bad page"),
                Ok(None) => panic!("read to the head over the bad page"),
                Err(error) => break error,
            }
        };
        check_io_error(error, &second, &bad);
        return;
    }
    let source = tempfile::tempdir().unwrap();
    let (_, fragments) = write_journal(source.path());
    let Some(mount) = EioMount::mount(source.path()) else {
        return;
    };
    // Three pages in the middle of the second fragment.
    let bad = 40 * 4096..43 * 4096;
    mount.fail_reads(&relative_to(&fragments[1], source.path()), bad.clone());
    run_reader_child(
        "read_eio_through_fuse_is_an_error_naming_fragment_and_offset",
        &mount.dir,
        &[(BAD_START, bad.start), (BAD_END, bad.end)],
        |_| {},
    );
    assert!(
        mount.eio_replies.load(Ordering::Relaxed) > 0,
        "the file system failed reads"
    );
}

/// The page goes bad after the reader mapped and checked it: the kernel drops the cached pages
/// (here: the FUSE server invalidates them, as eviction would) and reading them back fails. The
/// reader, touching a page again while checking a frame, must get a `ReadError::Io` for that
/// frame rather than a SIGBUS or a checksum "corruption" over the zeros it was given; once the
/// device reads again, a retry returns the frame.
#[test]
fn read_eio_after_the_page_was_read_is_an_error_not_corruption() {
    const BAD_START: &str = "SS_LOG_TEST_BAD_START";
    if let Some(mount) = child_mount_dir() {
        let bad_start = env_u64(BAD_START);
        let bad = bad_start..bad_start + 4096;
        let log = Log::open_read_only(&mount, options()).unwrap();
        let journal = log.existing_journal(JOURNAL).unwrap();
        let second = journal.fragments()[1].clone();
        let mut reader = journal.reader(second.begin);
        // Maps the fragment and faults in all of it.
        reader.try_next().unwrap().unwrap();
        handshake(); // The parent fails the page and drops the cached pages.
        let error = loop {
            match reader.try_next() {
                Ok(Some(frame)) => assert!(frame.end <= second.begin + bad.start, "read over the bad page"),
                Ok(None) => panic!("read to the head over the bad page"),
                Err(error) => break error,
            }
        };
        let failed_at = check_io_error(error, &second, &bad);
        handshake(); // The parent lets reads succeed again.
        assert_eq!(reader.try_next().unwrap().unwrap().offset, failed_at);
        return;
    }
    let source = tempfile::tempdir().unwrap();
    let (acks, fragments) = write_journal(source.path());
    let Some(mount) = EioMount::mount(source.path()) else {
        return;
    };
    let second = &fragments[1];
    let victim = acks.iter().find(|a| a.offset > second.begin + 500_000).unwrap();
    let bad_start = (victim.offset - second.begin).div_ceil(4096) * 4096;
    assert!(
        second.begin + bad_start + 4096 <= victim.end,
        "the bad page lies inside a frame"
    );
    let relative = relative_to(second, source.path());
    let ino = std::fs::metadata(mount.dir.join(&relative)).unwrap().ino();
    run_reader_child(
        "read_eio_after_the_page_was_read_is_an_error_not_corruption",
        &mount.dir,
        &[(BAD_START, bad_start)],
        |step| match step {
            0 => {
                mount.fail_reads(&relative, bad_start..bad_start + 4096);
                mount.invalidate(ino);
            }
            _ => *mount.failing.lock().unwrap() = None,
        },
    );
    assert!(
        mount.eio_replies.load(Ordering::Relaxed) > 0,
        "the file system failed reads"
    );
}

/// The negative control for the rule that zeros never reach code that cannot tell: a payload
/// handed out (validated) before its pages were truncated away, then touched outside the reader's
/// check, still raises SIGBUS; the handler absorbs faults only inside the reader's check. The
/// child process that touches it must die of SIGBUS, not sum zeros.
#[test]
fn payload_touched_after_truncation_outside_the_reader_still_raises_sigbus() {
    const TOUCH_ENV: &str = "SS_LOG_READ_ERRORS_TOUCH_CHILD";
    if let Some(dir) = std::env::var_os(TOUCH_ENV) {
        let log = Log::open_read_only(PathBuf::from(dir), options()).unwrap();
        let journal = log.existing_journal(JOURNAL).unwrap();
        let first = journal.fragments()[0].clone();
        let mut reader = journal.reader(0);
        let mut frames = Vec::new();
        while reader.offset() < first.end {
            frames.push(reader.try_next().unwrap().unwrap());
        }
        File::options()
            .write(true)
            .open(&first.path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let sum: u64 = frames
            .iter()
            .map(|f| f.payload().iter().map(|&b| u64::from(b)).sum::<u64>())
            .sum();
        panic!("summed {sum} over truncated pages without a signal");
    }
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path());
    // In a scratch directory, so that a core dump (where enabled) lands nowhere that matters.
    let scratch = tempfile::tempdir().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "payload_touched_after_truncation_outside_the_reader_still_raises_sigbus",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(TOUCH_ENV, dir.path())
        .current_dir(scratch.path())
        .output()
        .unwrap();
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGBUS),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
