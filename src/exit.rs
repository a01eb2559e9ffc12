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
            eprintln!("stream-sum: could not write the output to stdout: {e}");
        }
    }
}

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
