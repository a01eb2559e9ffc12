//! Structured logs of operational events, through `tracing`, on stderr.
//!
//! The progress line and the summary are for people; these logs are for machines: one event per
//! line, `TIMESTAMP LEVEL TARGET: message key=value ...` (`--log-format text`, the default) or one
//! JSON object per line (`--log-format json`). `RUST_LOG` picks the levels (default `info`):
//!
//! - `error`: the first append that failed (journal, poisoned / no space / I/O), the first
//!   violation or error of a run (later ones, while it is already stopping, at `debug`);
//! - `warn`: a record file that stopped being written, a run that ended with violations or errors;
//! - `info`: a run starting and stopping (with its figures), the record file opened, a shard
//!   recovered (offsets, deltas replayed, how long), an owner fenced, a fault injected (a shard
//!   restarted, a second owner started, a chunker killed and its replacement started), a plot
//!   written;
//! - `debug`: fragments removed by retention (journal, how many, below which offset): in a soak
//!   this happens every second.
//!
//! Events the journal library and the consumer framework cause are logged where the CLI observes
//! them (a result returned, a counter read), so the libraries need no logging of their own.

use std::io::{IsTerminal, Write};

use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-11-30T03:04:05.123456Z  INFO stream_sum::run: shard recovered shard="shard-000" ...`
    Text,
    /// One JSON object per line: `{"timestamp":..,"level":..,"fields":{"message":..,..},"target":..}`.
    Json,
}

/// Installs the subscriber for the process. `RUST_LOG` overrides the default level (`info`);
/// directives it cannot parse are ignored.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let writer = Stderr {
        terminal: std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        // A write that fails is dropped; reporting it would write to the same stderr.
        .log_internal_errors(false)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Only fails if a subscriber is already installed (never in the binary).
    let _ = installed;
}

/// Writes each event to stderr; on a terminal it first clears the live progress line, so an
/// event never lands in the middle of it (the progress line is redrawn at its next tick).
#[derive(Clone, Copy)]
struct Stderr {
    terminal: bool,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Stderr {
        *self
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        if self.terminal {
            err.write_all(b"\r\x1b[2K")?;
        }
        // One event is formatted whole and written in one call.
        err.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
