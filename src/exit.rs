//! The exit statuses of every command (the README lists them).

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: an exactly-once or SLA violation was found.
pub const EXIT_VIOLATION: u8 = 1;
/// Exit status: bad command line (clap's own usage errors also exit 2).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: an operational error (data directory missing or in use, corruption, I/O, a
/// resource limit reached).
pub const EXIT_ERROR: u8 = 3;

/// Writes `text` to stdout. A stdout that cannot take it (a closed pipe, a full disk under a
/// redirect) is said on stderr, except a closed pipe (`| head`), and does not change the exit
/// status: the verdict stands. (`println!` panicked there, and exit 101 replaced the verdict.)
pub fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            errln!("stream-sum: could not write the output to stdout: {e}");
        }
    }
}

/// Writes `text` to stderr, ignoring a failure: a stderr that cannot take it (its reader gone,
/// `2>/dev/full`) must not panic the thread that speaks. `eprintln!` panicked there: a run whose
/// stderr reader went away lost its shard threads and hung, deaf to signals, and `2>/dev/full`
/// turned every exit status into 101.
pub fn print_stderr(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `eprintln!` through [`print_stderr`].
macro_rules! errln {
    () => {
        $crate::exit::print_stderr("\n")
    };
    ($($arg:tt)*) => {
        $crate::exit::print_stderr(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use errln;

/// `eprint!` through [`print_stderr`].
macro_rules! errprint {
    ($($arg:tt)*) => {
        $crate::exit::print_stderr(&format!($($arg)*))
    };
}
pub(crate) use errprint;

/// `println!` through [`print_stdout`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::exit::print_stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// `print!` through [`print_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::exit::print_stdout(&format!($($arg)*))
    };
}
pub(crate) use out;
