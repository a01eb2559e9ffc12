//! Read errors on the real storage path (memory-mapped fragment files), not the simulator: a page
//! that cannot be read (EIO) or that another process truncated away must reach the caller as a
//! `ReadError::Io` naming the journal, the fragment file and the offset. Before, a reader touching
//! such a page was killed by SIGBUS.
//!
//! The EIO tests mount a small FUSE file system (the `fuser` crate, mounting through `/dev/fuse`
//! directly, so no libfuse or fusermount is needed) that passes a data directory through but fails
//! reads of a chosen range of one fragment with EIO. They need root and `/dev/fuse`; without them
//! they say so and pass, except under CI (`CI` set), where they fail.

use std::ffi::OsStr;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

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
    let at = reason.find("byte ").unwrap_or_else(|| panic!("no byte named in {reason:?}")) + 5;
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
    assert_eq!(reader.try_next().unwrap().unwrap().offset, 0, "the fragment is mapped and read");
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
                reason,
            }) => {
                assert_eq!(journal, JOURNAL);
                assert_eq!(fragment, first.path);
                assert_eq!(offset, victim.offset, "attempt {attempt}: {reason}");
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
            reason,
            ..
        }) => {
            assert_eq!((fragment, offset), (first.path.clone(), victim.offset), "{reason}");
            assert!(failed_byte(&reason) >= cut, "{reason}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

// ---- EIO through FUSE ----

/// A pass-through FUSE file system over `source` whose reads of `failing.0` in the byte range
/// `failing.1` fail with EIO.
struct EioFs {
    source: PathBuf,
    /// Index `ino - 1`: the path relative to `source` (inode 1 is the root).
    inodes: Vec<PathBuf>,
    failing: Arc<Mutex<Option<(PathBuf, Range<u64>)>>>,
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
    failing: Arc<Mutex<Option<(PathBuf, Range<u64>)>>>,
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

/// Regression: a page of a fragment that the device cannot read (EIO) killed a reader with SIGBUS
/// when it touched the mapped page. Now the reader gets a `ReadError::Io` naming the journal, the
/// fragment file (under the mount), the offset of the frame it was reading and the failing byte;
/// frames before that fragment read as usual; and the process lives on.
#[test]
fn read_eio_through_fuse_is_an_error_naming_fragment_and_offset() {
    let source = tempfile::tempdir().unwrap();
    let (acks, fragments) = write_journal(source.path());
    let Some(mount) = EioMount::mount(source.path()) else {
        return;
    };
    let second = &fragments[1];
    // Three pages in the middle of the second fragment.
    let bad = 40 * 4096..43 * 4096;
    mount.fail_reads(&relative_to(second, source.path()), bad.clone());

    let log = Log::open_read_only(&mount.dir, options()).unwrap();
    let journal = log.existing_journal(JOURNAL).unwrap();
    let mut reader = journal.reader(0);
    for ack in acks.iter().take_while(|a| a.end <= second.begin) {
        assert_eq!(reader.try_next().unwrap().unwrap().offset, ack.offset);
    }
    let fragment_on_mount = mount.dir.join(relative_to(second, source.path()));
    match reader.try_next() {
        Err(error @ ReadError::Io { .. }) => {
            let text = error.to_string();
            let ReadError::Io {
                journal,
                fragment,
                offset,
                reason,
            } = error
            else {
                unreachable!()
            };
            assert_eq!(journal, JOURNAL);
            assert_eq!(fragment, fragment_on_mount);
            assert_eq!(offset, second.begin, "the frame being read: {text}");
            let byte = failed_byte(&reason);
            assert!(byte <= bad.start && bad.start - byte < 256 << 10, "{text}");
            assert!(text.contains(&fragment_on_mount.display().to_string()));
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(mount.eio_replies.load(Ordering::Relaxed) > 0, "the file system failed reads");
    drop(reader);
    drop(journal);
    drop(log);
}

/// The page goes bad after the reader mapped and checked it: the kernel drops the cached pages
/// (here: the FUSE server invalidates them, as eviction would) and reading them back fails. The
/// reader, touching a page again while checking a frame, must get a `ReadError::Io` for that
/// frame rather than a SIGBUS or a checksum "corruption" over the zeros it was given.
#[test]
fn read_eio_after_the_page_was_read_is_an_error_not_corruption() {
    let source = tempfile::tempdir().unwrap();
    let (acks, fragments) = write_journal(source.path());
    let Some(mount) = EioMount::mount(source.path()) else {
        return;
    };
    let second = &fragments[1];
    let log = Log::open_read_only(&mount.dir, options()).unwrap();
    let journal = log.existing_journal(JOURNAL).unwrap();
    let mut reader = journal.reader(second.begin);
    let in_second: Vec<&AppendAck> = acks
        .iter()
        .filter(|a| a.offset >= second.begin && a.end <= second.end)
        .collect();
    assert_eq!(reader.try_next().unwrap().unwrap().offset, in_second[0].offset);

    let victim = in_second.iter().find(|a| a.offset - second.begin > 500_000).unwrap();
    let bad_start = (victim.offset - second.begin + 4095) / 4096 * 4096;
    let bad = bad_start..bad_start + 4096;
    assert!(bad.end <= victim.end - second.begin, "the bad page lies inside the victim frame");
    mount.fail_reads(&relative_to(second, source.path()), bad.clone());
    let ino = std::fs::metadata(mount.dir.join(relative_to(second, source.path())))
        .unwrap()
        .ino();
    mount.invalidate(ino);

    // Frames before the bad page read (the kernel may fail a little more than the page, a whole
    // folio, so the error may come a frame early); the first error names the frame holding the
    // failed page.
    let mut failed = None;
    for ack in in_second.iter().skip(1).take_while(|a| a.offset <= victim.offset) {
        match reader.try_next() {
            Ok(frame) => assert_eq!(frame.unwrap().offset, ack.offset),
            Err(error) => {
                failed = Some((ack, error));
                break;
            }
        }
    }
    let Some((failed_frame, error)) = failed else {
        panic!("no error reading past the bad page");
    };
    match error {
        ReadError::Io {
            fragment,
            offset,
            reason,
            ..
        } => {
            assert_eq!(fragment, mount.dir.join(relative_to(second, source.path())));
            assert_eq!(offset, failed_frame.offset, "{reason}");
            let byte = failed_byte(&reason);
            assert!(bad.start - byte < 64 << 10 && byte < bad.end, "{reason}");
            let page = second.begin + byte..second.begin + byte + 4096;
            assert!(
                page.start < failed_frame.end && failed_frame.offset < page.end,
                "the failed page overlaps the failed frame: {reason}"
            );
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(mount.eio_replies.load(Ordering::Relaxed) > 0, "the file system failed reads");

    // Once the device reads again, a retry succeeds: the faulted map is not kept.
    *mount.failing.lock().unwrap() = None;
    assert_eq!(reader.try_next().unwrap().unwrap().offset, failed_frame.offset);
}
