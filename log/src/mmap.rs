//! The one module with `unsafe`: read-only memory maps of fragment files, and the SIGBUS handler
//! that keeps a failed page fault in one of them from killing the process.
//!
//! Touching a mapped file page that cannot be read (the device returned EIO) or that lies wholly
//! past the file's end (another process truncated the file) raises SIGBUS, which by default kills
//! the process. Two things stop that here:
//!
//! - [`FragmentMap::populate`] faults pages in with `madvise(MADV_POPULATE_READ)`, which reports
//!   such a page as an error code instead of a signal. The storage populates every range before
//!   handing it out, so a bad page that is bad when it is first read surfaces as an `io::Error`
//!   from `read_at`, for every caller (readers and recovery alike).
//! - A page can still go bad after it was populated: evicted and then failing to read back, or
//!   cut off by a truncation. Readers therefore validate each frame inside [`catch_faults`]. While
//!   a thread is inside it, the process-wide handler installed here maps an anonymous zero page
//!   over the faulting page of one of our maps, records the fault, and returns, so the read
//!   completes (over zeros, which fail the frame's checksum) and the reader turns the recorded
//!   fault into a `ReadError::Io` naming the fragment and offset.
//!
//! A SIGBUS anywhere else goes to the handler that was installed before ours (by default: the
//! process dies, as it always did). That includes a fault in one of our maps outside
//! [`catch_faults`], e.g. a consumer touching a payload it was handed earlier whose page was
//! truncated away since: zeros must never reach code that cannot learn they are not the file's
//! bytes, and dying is the honest outcome there.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::ptr;
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};

use bytes::Bytes;

/// A read-only map of a fragment file, registered with the SIGBUS handler for as long as any
/// [`Bytes`] view of it lives.
struct FragmentMap {
    bytes: Bytes,
    slot: Option<&'static Slot>,
}

impl FragmentMap {
    /// The whole map, as shared bytes that keep it alive.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// True if a page of this map faulted (and now reads as zeros).
    pub fn has_faulted(&self) -> bool {
        self.slot.is_some_and(|s| s.faults.load(Ordering::Acquire) > 0)
    }

    /// Faults in the pages holding `range` (byte positions in the map), so that reading them
    /// cannot raise SIGBUS as long as they stay resident. On failure returns the position of the
    /// first page that could not be read (it is unreadable or past the end of the file).
    pub fn populate(&self, range: Range<usize>) -> Result<(), usize> {
        assert!(range.start <= range.end && range.end <= self.bytes.len());
        if range.is_empty() || POPULATE_UNSUPPORTED.load(Ordering::Relaxed) {
            return Ok(());
        }
        let page = page_bytes();
        let first = range.start / page * page;
        if range.end - first >= READ_AHEAD_MIN_BYTES {
            read_ahead(&self.bytes, first..range.end);
        }
        match madvise_populate(&self.bytes, first..range.end) {
            Ok(()) => Ok(()),
            Err(libc::EINVAL | libc::ENOSYS) => {
                // A kernel before 5.14: no MADV_POPULATE_READ. The SIGBUS handler still covers
                // readers.
                POPULATE_UNSUPPORTED.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(_) => {
                // Find the first failing page, one page at a time (error path only).
                let mut at = first;
                while at < range.end {
                    let end = (at + page).min(range.end);
                    if madvise_populate(&self.bytes, at..end).is_err() {
                        return Err(at.max(range.start));
                    }
                    at = end;
                }
                // Every page reads now (a transient error): report the start of the range.
                Err(range.start)
            }
        }
    }
}

/// Maps `len` bytes of `file` read-only. `len` may exceed the file's current length, so a tailing
/// reader can map a fragment once and read what is appended later.
///
/// # Safety
///
/// The returned bytes are shared memory backed by the file, which Rust treats as immutable
/// memory. The caller must make sure that nothing it hands out from the map can change or vanish
/// while it is looked at:
///
/// - **Writes.** Only bytes at or past the journal's durable head may still be written (by later
///   appends to the same file); the caller must hand out only bytes below the durable head, which
///   are never written again while the file is open.
/// - **Truncation.** Touching a page wholly beyond the file's end raises SIGBUS. The journal
///   never shrinks a fragment below its durable head while it is open, and the caller must only
///   read below the file's length ([`MappedFile::read_at`] checks it); the caller must populate a
///   range ([`FragmentMap::populate`]) before handing it out, so a page that is already gone is an
///   error instead of a signal.
/// - **Other processes.** Another process may still truncate or rewrite the file, and a page may
///   be evicted and then fail to read back (EIO). Both raise SIGBUS when touched; code that
///   touches mapped bytes must run inside [`catch_faults`] to turn that into zeros plus a
///   recorded fault. Anywhere else the signal goes to the previous handler (by default the
///   process dies), which is the honest outcome for code that cannot learn its bytes were zeros.
/// - **Removal.** Unlinking the file (retention) does not invalidate the map.
unsafe fn map_read_only(file: &File, len: u64) -> io::Result<FragmentMap> {
    let len = usize::try_from(len).map_err(|_| io::Error::other("map length overflows usize"))?;
    install_sigbus_handler();
    // SAFETY: the caller upholds the contract above (`# Safety`); the map is read-only.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
    let slot = register(map.as_ptr() as usize, map.len());
    Ok(FragmentMap {
        bytes: Bytes::from_owner(Mapping { map, slot }),
        slot,
    })
}

/// The read side of a real fragment file: a read-only map of it, at least `map_len_hint` long,
/// made on first read and remade when too short or after a page of it faulted, handing out only
/// populated bytes below the file's length (the safe interface over [`map_read_only`]).
pub(crate) struct MappedFile {
    path: PathBuf,
    map_len_hint: u64,
    /// The file's length when last looked at: files only grow while the journal has them open,
    /// so a read below it needs no `fstat`.
    known_len: AtomicU64,
    map: parking_lot::Mutex<Option<PopulatedMap>>,
}

/// A map and how much of it, from its start, has been faulted in without error.
struct PopulatedMap {
    map: FragmentMap,
    populated_bytes: usize,
}

impl MappedFile {
    pub fn new(path: PathBuf, map_len_hint: u64) -> MappedFile {
        MappedFile {
            path,
            map_len_hint,
            known_len: AtomicU64::new(0),
            map: parking_lot::Mutex::new(None),
        }
    }

    /// `len` bytes of `file` at `pos`, a zero-copy view of the map whose pages are faulted in
    /// first. Bytes past the end of the file are an `UnexpectedEof` error (as in the simulated
    /// storage); a page that cannot be read (EIO, truncated meanwhile) is an error naming the
    /// file and the byte, instead of a SIGBUS when the caller touches it.
    pub fn read_at(&self, file: &File, pos: u64, len: usize) -> io::Result<Bytes> {
        let end = pos
            .checked_add(len as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "read range overflows"))?;
        self.check_within_file(file, pos, end)?;
        let mut state = self.map.lock();
        let current = self.map_covering(file, &mut state, end)?;
        let (pos, end) = (pos as usize, end as usize);
        // Populate only what no earlier read did (tailing readers ask for a growing prefix).
        let from = if pos <= current.populated_bytes {
            current.populated_bytes.min(end)
        } else {
            pos
        };
        current.map.populate(from..end).map_err(|at| {
            io::Error::other(format!(
                "reading {}: byte {at} could not be read (an I/O error, or it is past the end of \
                 the file if the file was truncated)",
                self.path.display()
            ))
        })?;
        if pos <= current.populated_bytes {
            current.populated_bytes = current.populated_bytes.max(end);
        }
        Ok(current.map.bytes().slice(pos..end))
    }

    /// An `UnexpectedEof` error if `pos..end` is not within the file. Looks at the file's
    /// length only when the read goes past the length seen last.
    fn check_within_file(&self, file: &File, pos: u64, end: u64) -> io::Result<()> {
        if end <= self.known_len.load(Ordering::Relaxed) {
            return Ok(());
        }
        let len = file.metadata()?.len();
        self.known_len.fetch_max(len, Ordering::Relaxed);
        if end > len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "reading {}: bytes {pos}..{end} are past the end of the file ({len} bytes)",
                    self.path.display()
                ),
            ));
        }
        Ok(())
    }

    /// The map to read `..end` from: the current one, unless it is too short or a page of it
    /// faulted (it reads as zeros now; a fresh map gives the I/O another chance).
    fn map_covering<'a>(
        &self,
        file: &File,
        state: &'a mut Option<PopulatedMap>,
        end: u64,
    ) -> io::Result<&'a mut PopulatedMap> {
        let usable = state
            .as_ref()
            .is_some_and(|s| s.map.bytes().len() as u64 >= end && !s.map.has_faulted());
        if !usable {
            let map_len = end.max(self.map_len_hint).max(1);
            // SAFETY: this type hands out only bytes below the file's length (checked in
            // `read_at`), populated first; the journal asks only for bytes below its durable
            // head, never written again while the file is open; readers touch them inside
            // `catch_faults`. See `map_read_only`'s `# Safety`.
            let map = unsafe { map_read_only(file, map_len) }
                .map_err(|e| io::Error::new(e.kind(), format!("mmap {}: {e}", self.path.display())))?;
            *state = Some(PopulatedMap {
                map,
                populated_bytes: 0,
            });
        }
        Ok(state.as_mut().expect("mapped above"))
    }
}

/// Runs `f`, which reads bytes of memory maps made by [`map_read_only`]. If a page it touches
/// faults, the page reads as zeros instead of killing the process, and this returns the address
/// of the first faulting byte beside `f`'s result.
pub(crate) fn catch_faults<T>(f: impl FnOnce() -> T) -> (T, Option<usize>) {
    /// Leaves the guarded section even if `f` panics, so that later faults outside it are not
    /// absorbed.
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            GUARD_DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    let outer_fault = THREAD_FIRST_FAULT.with(|c| c.replace(0));
    GUARD_DEPTH.with(|d| d.set(d.get() + 1));
    let depth = Depth;
    let result = f();
    drop(depth);
    let fault = THREAD_FIRST_FAULT.with(|c| c.replace(outer_fault));
    if fault != 0 && outer_fault == 0 {
        THREAD_FIRST_FAULT.with(|c| c.set(fault));
    }
    (result, (fault != 0).then_some(fault))
}

/// The address of the first recorded fault in the map holding `bytes`, if that map has faulted
/// (e.g. in another reader: its zero page is now what this one reads too). Scans the registry:
/// for error paths only.
pub(crate) fn first_fault_in_map_of(bytes: &[u8]) -> Option<usize> {
    let slot = find_slot(bytes.as_ptr() as usize)?;
    let (start, _) = slot.range()?;
    let first = slot.first_fault.load(Ordering::Acquire);
    (first != usize::MAX).then(|| start + first)
}

/// The owner behind a map's [`Bytes`]: unregisters the map before it is unmapped.
struct Mapping {
    map: memmap2::Mmap,
    slot: Option<&'static Slot>,
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Runs before `map` is unmapped (fields drop after this), so the handler never sees a
        // registered range that is no longer ours. Unmapping the whole range also removes any
        // zero page the handler put inside it.
        if let Some(slot) = self.slot {
            unregister(slot);
        }
    }
}

/// Ranges at least this long are handed to the kernel's readahead whole before they are
/// populated (see [`read_ahead`]).
const READ_AHEAD_MIN_BYTES: usize = 256 << 10;

/// Asks the kernel to start reading `range` of a file mapping from the disk now, all of it
/// (`MADV_WILLNEED`), so that populating it page by page waits for reads already in flight instead
/// of issuing them one readahead window at a time: a cold 1 MiB populate took 7-8 ms alone on
/// this machine's disk, against 1 ms when read whole. Advice only: an error changes nothing.
fn read_ahead(bytes: &[u8], range: Range<usize>) {
    // SAFETY: `range` lies inside `bytes`, a live mapping (the caller holds it), and starts at a
    // page boundary of it. MADV_WILLNEED on a file mapping only schedules reads into the page
    // cache; it changes no bytes and no mapping.
    unsafe {
        libc::madvise(
            bytes.as_ptr().add(range.start) as *mut libc::c_void,
            range.end - range.start,
            libc::MADV_WILLNEED,
        );
    }
}

fn madvise_populate(bytes: &[u8], range: Range<usize>) -> Result<(), i32> {
    loop {
        // SAFETY: `range` lies inside `bytes`, a live mapping (the caller holds it), and
        // `range.start` is page-aligned relative to it, which is page-aligned itself (mmap returns
        // page-aligned addresses). MADV_POPULATE_READ only faults pages in, as reading them
        // would, but reports a failed fault as an error code instead of raising SIGBUS; it
        // changes no bytes and no mapping.
        let rc = unsafe {
            libc::madvise(
                bytes.as_ptr().add(range.start) as *mut libc::c_void,
                range.end - range.start,
                libc::MADV_POPULATE_READ,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if errno != libc::EINTR && errno != libc::EAGAIN {
            return Err(errno);
        }
    }
}

static POPULATE_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// The size of a memory page.
pub(crate) fn page_bytes() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE.get_or_init(|| unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize)
}

// ---- The registry of our maps, read by the signal handler without locks or allocation. ----

const SLOTS_PER_CHUNK: usize = 256;
/// At most this many chunks, i.e. 65,536 live maps: more than Linux's default `vm.max_map_count`
/// allows a process. A map that finds no slot still works; faults in it are passed on.
const CHUNKS_MAX: usize = 256;

/// One registered map. `start` and `len` are written under a sequence lock (`seq` odd while
/// changing) so that the handler never pairs the start of one map with the length of another.
struct Slot {
    seq: AtomicUsize,
    /// Address of the map, 0 when the slot is free.
    start: AtomicUsize,
    len: AtomicUsize,
    faults: AtomicUsize,
    /// Offset in the map of the first fault, `usize::MAX` if none.
    first_fault: AtomicUsize,
}

impl Slot {
    const fn free() -> Slot {
        Slot {
            seq: AtomicUsize::new(0),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            faults: AtomicUsize::new(0),
            first_fault: AtomicUsize::new(usize::MAX),
        }
    }

    /// `(start, len)` if the slot holds a map; async-signal-safe.
    fn range(&self) -> Option<(usize, usize)> {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            let start = self.start.load(Ordering::Relaxed);
            let len = self.len.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if before.is_multiple_of(2) && self.seq.load(Ordering::Relaxed) == before {
                return (start != 0).then_some((start, len));
            }
            std::hint::spin_loop();
        }
    }

    /// Called with `REGISTRY_LOCK` held.
    fn set(&self, start: usize, len: usize) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.start.store(start, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
        self.faults.store(0, Ordering::Relaxed);
        self.first_fault.store(usize::MAX, Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
    }
}

type Chunk = [Slot; SLOTS_PER_CHUNK];

static CHUNKS: [AtomicPtr<Chunk>; CHUNKS_MAX] = [const { AtomicPtr::new(ptr::null_mut()) }; CHUNKS_MAX];
static REGISTRY_LOCK: Mutex<()> = Mutex::new(());

fn chunks() -> impl Iterator<Item = &'static Chunk> {
    CHUNKS.iter().map_while(|c| {
        let chunk = c.load(Ordering::Acquire);
        // SAFETY: a non-null chunk pointer comes from `Box::leak` in `register` and is never
        // freed or changed afterwards, so it is valid for 'static.
        (!chunk.is_null()).then(|| unsafe { &*chunk })
    })
}

fn register(start: usize, len: usize) -> Option<&'static Slot> {
    let _lock = REGISTRY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let free = chunks()
        .flat_map(|c| c.iter())
        .find(|s| s.start.load(Ordering::Relaxed) == 0);
    let slot = match free {
        Some(slot) => slot,
        None => {
            let next = CHUNKS.iter().find(|c| c.load(Ordering::Relaxed).is_null())?;
            let chunk: &'static Chunk = Box::leak(Box::new([const { Slot::free() }; SLOTS_PER_CHUNK]));
            next.store(ptr::from_ref(chunk).cast_mut(), Ordering::Release);
            &chunk[0]
        }
    };
    slot.set(start, len);
    Some(slot)
}

fn unregister(slot: &Slot) {
    let _lock = REGISTRY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    slot.set(0, 0);
}

/// The slot whose map holds `addr`; async-signal-safe.
fn find_slot(addr: usize) -> Option<&'static Slot> {
    chunks().flat_map(|c| c.iter()).find(|s| {
        s.range()
            .is_some_and(|(start, len)| addr >= start && addr - start < len)
    })
}

// ---- The SIGBUS handler. ----

thread_local! {
    /// How deep this thread is in `catch_faults`; the handler only acts when it is above 0.
    static GUARD_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Address of the first fault the handler absorbed for this thread, 0 if none.
    static THREAD_FIRST_FAULT: Cell<usize> = const { Cell::new(0) };
}

/// The SIGBUS action in place before ours, to pass on faults that are not ours to absorb.
struct PreviousAction(libc::sigaction);
// SAFETY: a plain C struct of integers and a function address, written once before our handler is
// installed and only read afterwards.
unsafe impl Sync for PreviousAction {}
unsafe impl Send for PreviousAction {}

static PREVIOUS: OnceLock<PreviousAction> = OnceLock::new();

fn install_sigbus_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        page_bytes();
        // SAFETY: sigaction with a zeroed (empty mask, no flags) struct that we fill in; the
        // handler only calls async-signal-safe functions (mmap, sigaction, atomics, and
        // thread-locals with constant initializers and no destructors, which are plain TLS
        // accesses). Reading the old action first and storing it before installing ours means
        // the handler always finds it.
        unsafe {
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, ptr::null(), &mut previous) != 0 {
                return;
            }
            let _ = PREVIOUS.set(PreviousAction(previous));
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, ptr::null_mut());
        }
    });
}

extern "C" fn on_sigbus(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a handler installed with SA_SIGINFO.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // si_code > 0: raised by the kernel for a fault at si_addr, not sent by kill(2).
    if code > 0 && GUARD_DEPTH.with(Cell::get) > 0 && absorb_fault(addr) {
        return;
    }
    pass_on(signal, info, context);
}

/// Maps a zero page over the page holding `addr` if it lies in one of our maps, and records the
/// fault. Returns false if the fault is not ours or could not be absorbed.
fn absorb_fault(addr: usize) -> bool {
    let Some(slot) = find_slot(addr) else {
        return false;
    };
    let Some((start, _)) = slot.range() else {
        return false;
    };
    let page = page_bytes();
    // SAFETY: errno is thread-local; reading it is async-signal-safe.
    let saved_errno = unsafe { *libc::__errno_location() };
    // SAFETY: the page lies inside one of our live read-only file maps (the faulting thread is
    // reading it, so its `Bytes` keep it mapped), so MAP_FIXED replaces only a page of that map,
    // never memory anything else owns. The new page is private, anonymous (zero-filled) and
    // read-only like the page it replaces; it is unmapped with the rest of the map.
    let mapped = unsafe {
        libc::mmap(
            (addr / page * page) as *mut libc::c_void,
            page,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
    if mapped == libc::MAP_FAILED {
        return false;
    }
    slot.first_fault.fetch_min(addr - start, Ordering::AcqRel);
    slot.faults.fetch_add(1, Ordering::AcqRel);
    THREAD_FIRST_FAULT.with(|c| {
        if c.get() == 0 {
            c.set(addr);
        }
    });
    true
}

/// Hands a SIGBUS we do not absorb to the previous action; for the default action, restores it and
/// raises the signal again, so that it kills the process on return as it would have without us
/// (SIGBUS is blocked while this handler runs, so the raised one is delivered when it returns).
fn pass_on(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let previous = PREVIOUS.get().map(|p| p.0);
    let handler = previous.map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // SAFETY: resetting SIGBUS to its default action and raising it; sigaction and raise are
        // async-signal-safe. A fault's SIGBUS cannot be ignored usefully (the access would fault
        // forever), so SIG_IGN is treated as the default too.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGBUS, &default, ptr::null_mut());
            libc::raise(libc::SIGBUS);
        }
        return;
    }
    let flags = previous.map_or(0, |p| p.sa_flags);
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous action was installed with SA_SIGINFO, so its handler has this
        // signature; we call it with the arguments the kernel gave us.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(signal, info, context);
    } else {
        // SAFETY: without SA_SIGINFO the previous handler takes only the signal number.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_past_the_end_of_a_truncated_file_reads_as_zeros_and_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 3 * page_bytes()]).unwrap();
        let file = File::open(&path).unwrap();
        // SAFETY: the test truncates the file only to check that touching the page faults inside
        // `catch_faults`.
        let map = unsafe { map_read_only(&file, 3 * page_bytes() as u64) }.unwrap();
        map.populate(0..3 * page_bytes()).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(page_bytes() as u64)
            .unwrap();
        let bytes = map.bytes().clone();
        let (sum, fault) = catch_faults(|| bytes.iter().map(|&b| u64::from(b)).sum::<u64>());
        assert_eq!(sum, 7 * page_bytes() as u64, "pages past the end read as zeros");
        assert_eq!(fault, Some(bytes.as_ptr() as usize + page_bytes()));
        assert!(map.has_faulted());
        assert_eq!(first_fault_in_map_of(&bytes[10..]), fault);
        // SAFETY: as above; `populate` reports the missing page instead of touching it.
        let fresh = unsafe { map_read_only(&file, 3 * page_bytes() as u64) }.unwrap();
        assert_eq!(fresh.populate(10..3 * page_bytes()), Err(page_bytes()));
        assert!(!fresh.has_faulted(), "populating reports, it does not fault");
    }

    /// `read_at` on a real file is bounds-checked as the simulated storage's is: a read past the
    /// end of the file is `UnexpectedEof` (not a view of the map's zero-filled tail, nor a SIGBUS),
    /// and the same range reads once the file has grown to cover it.
    #[test]
    fn a_read_past_the_end_of_the_file_is_unexpected_eof_until_the_file_grows() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 100]).unwrap();
        let file = File::open(&path).unwrap();
        let reads = MappedFile::new(path.clone(), 4096);
        assert_eq!(&reads.read_at(&file, 0, 100).unwrap()[..], &[7u8; 100][..]);
        let err = reads.read_at(&file, 50, 51).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        assert!(err.to_string().contains("50..101"), "{err}");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[8])
            .unwrap();
        assert_eq!(reads.read_at(&file, 50, 51).unwrap()[50], 8);
    }
}
