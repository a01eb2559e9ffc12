//! `stream-sum`: chunkers and summers over the embedded journal, an offline verifier, journal
//! inspection, a crash suite and a soak mode. See README.md.
#![deny(unsafe_code)]

mod chunkers;
mod cli;
mod config;
mod crash_test;
mod exit;
mod faults;
mod fd_limit;
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
mod signals;
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
    fd_limit::raise_open_file_limit();
    if let Err(e) = signals::fail_writes_past_the_file_size_limit() {
        crate::exit::errln!("stream-sum: error: {e:#}");
        return ExitCode::from(EXIT_ERROR);
    }
    let result = match cli.command {
        cli::Command::Run(args) if args.cluster.nats.is_some() => nats_run::run(args),
        cli::Command::Run(args) => run::run(args),
        cli::Command::Soak(args) if args.cluster.nats.is_some() => {
            // Soak is a run with retention, which the JetStream backend does not do.
            crate::exit::errln!(
                "stream-sum: error: soak is not supported with --nats (it runs with retention, which the JetStream backend does not do); use `run --nats --duration forever`"
            );
            Ok(exit::EXIT_USAGE)
        }
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
            crate::exit::errln!("stream-sum: error: {}{}", error_chain(&e), fd_limit::advice(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The error and its causes, `: `-separated, each cause left out if the text before already
/// ends with it (an error that prints its source would otherwise repeat it).
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let cause = cause.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// A closed stdout (e.g. `| head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_names_each_cause_once() {
        let io = std::io::Error::from_raw_os_error(20);
        let io_text = io.to_string();
        // An error whose own text ends with its source's, as ss_log's I/O errors do.
        #[derive(Debug)]
        struct Wrapping(std::io::Error);
        impl std::fmt::Display for Wrapping {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "creating d/journals: {}", self.0)
            }
        }
        impl std::error::Error for Wrapping {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Wrapping(io)).context("opening data directory d");
        assert_eq!(
            error_chain(&e),
            format!("opening data directory d: creating d/journals: {io_text}")
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&plain), "outer: inner");
    }
}
