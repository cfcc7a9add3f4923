//! Standard output that a closed pipe does not break: `asr-data inspect SHARDS | head -1`
//! stops printing when `head` exits, quietly, and keeps the command's exit status (as
//! Unix tools do), instead of panicking as `println!` does.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write found the reader gone: the rest of the output is dropped.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes to stdout. A broken pipe is not an error (see the module docs); any other
/// write error (a full disk under `> file`) is returned.
pub fn write(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    match std::io::stdout().lock().write_fmt(args) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        other => other,
    }
}

/// Flushes stdout at the end of a command, with the broken-pipe rule of [`write`].
pub fn flush() -> std::io::Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    match std::io::stdout().lock().flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `print!` through [`write`]: evaluates to `std::io::Result<()>`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

/// `println!` through [`write`]: evaluates to `std::io::Result<()>`.
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};
