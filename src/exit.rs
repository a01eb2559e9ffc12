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
