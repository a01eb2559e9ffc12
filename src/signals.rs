//! SIGINT (Ctrl-C) and SIGTERM (`kill`, `timeout`, a service manager's stop) for the commands
//! that stop gracefully (`run`, `soak`, `sweep`): the first calls the command's own stop, a
//! second exits at once with status 128 + its number (130, 143), like a crash. SIGHUP keeps its
//! default (the process ends at once): after a hangup there is no terminal to print on.

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};

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
