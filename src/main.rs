//! `stream-sum`: chunkers and summers over the embedded journal, an offline verifier, journal
//! inspection, a crash suite and a soak mode. See README.md.
#![deny(unsafe_code)]

mod cli;
mod crash_test;
mod faults;
mod journal_cmd;
mod maintenance;
mod metrics;
mod metrics_server;
mod plot;
mod record;
mod run;
mod runs;
mod summary;
mod verify;

use std::process::ExitCode;

use clap::Parser;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: an exactly-once or SLA violation was found.
pub const EXIT_VIOLATION: u8 = 1;
/// Exit status: bad command line (clap's own usage errors also exit 2).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: an operational error (data directory missing or in use, corruption, I/O).
pub const EXIT_ERROR: u8 = 3;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Run(args) => run::run(args),
        cli::Command::Soak(mut args) => {
            args.retention = true;
            args.duration.get_or_insert(cli::RunLimit(None));
            run::run(args)
        }
        cli::Command::Verify(args) => verify::verify(args),
        cli::Command::CrashTest(args) => crash_test::crash_test(args),
        cli::Command::Plot(args) => plot::plot(args),
        cli::Command::Journal { command } => journal_cmd::journal(command),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::from(EXIT_OK);
            }
            eprintln!("stream-sum: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// A closed stdout (e.g. `| head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
