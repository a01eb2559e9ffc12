//! SIGINT (Ctrl-C) and SIGTERM (`kill`, `timeout`, a service manager's stop) for the commands
//! that stop gracefully (`run`, `soak`, `sweep`): the first calls the command's own stop, a
//! second exits at once with status 128 + its number (130, 143), like a crash. SIGHUP keeps its
//! default (the process ends at once): after a hangup there is no terminal to print on. SIGXFSZ
//! is caught, so a write past the file-size limit fails (EFBIG) instead of killing silently.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use rustix::process::{getpid, getppid, kill_process, set_parent_process_death_signal, Pid, Signal};
use signal_hook::consts::{SIGINT, SIGTERM, SIGXFSZ};

/// Starts a thread that waits for SIGINT and SIGTERM: `on_first(signal, name)` for the first,
/// then `"{command}: NAME again; exiting without waiting"` and exit for the second.
pub(crate) fn on_stop_signals(
    command: &'static str,
    on_first: impl Fn(i32, &'static str) + Send + 'static,
) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the SIGINT/SIGTERM handler")?;
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            let mut first = true;
            for signal in signals.forever() {
                let name = if signal == SIGTERM { "SIGTERM" } else { "SIGINT" };
                if !first {
                    crate::exit::errln!("\n{command}: {name} again; exiting without waiting");
                    std::process::exit(128 + signal);
                }
                first = false;
                on_first(signal, name);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Set by `sweep` on the runs it starts, to its own process id: such a run stops gracefully
/// (SIGTERM) when that process dies, even by SIGKILL, instead of running out its `--duration`
/// alone with nobody to read its summary or remove its directory.
pub(crate) const STOP_WITH_PARENT_ENV: &str = "STREAM_SUM_STOP_WITH_PARENT";

/// After [`on_stop_signals`]: if [`STOP_WITH_PARENT_ENV`] names this process's parent, asks the
/// kernel for SIGTERM when the parent dies; if the parent is already gone (it died before this
/// call), sends that SIGTERM now.
pub(crate) fn stop_with_parent() -> anyhow::Result<()> {
    let Ok(parent) = std::env::var(STOP_WITH_PARENT_ENV) else {
        return Ok(());
    };
    let parent = parent
        .parse::<i32>()
        .ok()
        .and_then(Pid::from_raw)
        .with_context(|| format!("{STOP_WITH_PARENT_ENV}={parent:?} is not a process id"))?;
    set_parent_process_death_signal(Some(Signal::TERM))
        .context("asking for SIGTERM when the parent process dies")?;
    if getppid() != Some(parent) {
        kill_process(getpid(), Signal::TERM).context("stopping: the parent process is gone")?;
    }
    Ok(())
}

/// Catches SIGXFSZ (a write past `ulimit -f`), whose default action kills the process silently:
/// with it caught, the write fails with EFBIG instead, and the journal reports that as an I/O
/// error naming the fragment (exit 3), like any other failed write.
pub(crate) fn fail_writes_past_the_file_size_limit() -> anyhow::Result<()> {
    signal_hook::flag::register(SIGXFSZ, Arc::new(AtomicBool::new(false)))
        .context("installing the SIGXFSZ handler")?;
    Ok(())
}
