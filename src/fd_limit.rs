//! The open-file limit. Every fragment of a journal a process opens stays open while the journal
//! is (its descriptor carries the shared `flock` claim that keeps recycling away from a file in
//! use, and backs its map), so a data directory of N fragments needs N descriptors in `run`,
//! `verify` and `journal`. The usual default soft limit, 1024, is reached by about 32 GB of
//! 32 MiB fragments: two default 30 s runs. So every command first raises its soft limit to the
//! hard one, as Go's runtime does for every program.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The most descriptors asked for: the kernel's default `fs.nr_open`, which caps any limit.
const OPEN_FILES_WANTED: u64 = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (at most [`OPEN_FILES_WANTED`]); a failure
/// leaves the limit as it was (a later open then fails with EMFILE, naming its file).
pub(crate) fn raise_open_file_limit() {
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else {
        return; // unlimited
    };
    let target = limit.maximum.unwrap_or(u64::MAX).min(OPEN_FILES_WANTED);
    if target <= current {
        return;
    }
    let raised = Rlimit {
        current: Some(target),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(from = current, to = target, "open-file limit raised"),
        Err(e) => tracing::debug!(current, target, error = %e, "open-file limit not raised"),
    }
}

/// What to do when `error` is the open-file limit (EMFILE), else "".
pub(crate) fn advice(error: &anyhow::Error) -> String {
    let emfile = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()))
            || cause.to_string().contains("Too many open files")
    });
    if !emfile {
        return String::new();
    }
    let limit = getrlimit(Resource::Nofile);
    let shown = |l: Option<u64>| l.map_or("unlimited".to_string(), |n| n.to_string());
    format!(
        " (this process may open {} files, hard limit {}; every fragment of an open journal holds one: raise the hard limit: `ulimit -Hn N` as root, or LimitNOFILE= in a systemd unit)",
        shown(limit.current),
        shown(limit.maximum)
    )
}
