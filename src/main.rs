//! `stream-sum`: chunkers and summers over the embedded journal, an offline verifier, journal
//! inspection, a crash suite and a soak mode. See README.md.
#![deny(unsafe_code)]

mod chunkers;
mod cli;
mod config;
mod crash_test;
mod exit;
mod faults;
mod journal_cmd;
mod logging;
mod maintenance;
mod metrics;
mod metrics_server;
mod nats_run;
mod plot;
mod record;
mod run;
mod runs;
mod shards;
mod state;
mod summary;
mod sweep;
mod tailing;
mod verify;

use std::process::ExitCode;

use clap::Parser;

use exit::{EXIT_ERROR, EXIT_OK};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.log_format);
    let result = match cli.command {
        cli::Command::Run(args) if args.cluster.nats.is_some() => nats_run::run(args),
        cli::Command::Run(args) => run::run(args),
        cli::Command::Soak(mut args) => {
            args.retention = true;
            args.duration.get_or_insert(cli::RunLimit(None));
            run::run(args)
        }
        cli::Command::Verify(args) => verify::verify(args),
        cli::Command::CrashTest(args) => crash_test::crash_test(args),
        cli::Command::Plot(args) => plot::plot(args),
        cli::Command::Sweep(args) => sweep::sweep(args),
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
