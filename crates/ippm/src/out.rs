//! Everything the binary writes to stdout goes through here, so that a reader who stops
//! early (`ippm owping ... | head -1`) ends the run quietly, once for every command.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with EPIPE, and `println!` panics on
//! it (exit 101). Restoring SIGPIPE's default would end the daemon too the first time a peer
//! hangs up a socket; instead every stdout write is checked, the closed pipe is noted, and
//! `main` turns the error that follows into a quiet exit 0, as `head`'s writers expect.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout met a closed pipe.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether stdout's reader has gone: the error the run ended with is that, not a failure.
pub(crate) fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

fn note<T>(r: io::Result<T>) -> io::Result<T> {
    if let Err(e) = &r
        && e.kind() == io::ErrorKind::BrokenPipe
    {
        CLOSED.store(true, Ordering::Relaxed);
    }
    r
}

/// Stdout as a writer that notes a closed pipe; for serializers and exports that take one.
pub(crate) struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        note(io::stdout().lock().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        note(io::stdout().lock().write_all(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        note(io::stdout().lock().flush())
    }
}

/// Writes `args` to stdout and flushes: an error (a closed pipe) instead of `print!`'s panic.
pub(crate) fn print(args: std::fmt::Arguments<'_>) -> io::Result<()> {
    let mut o = Stdout;
    o.write_fmt(args)?;
    o.flush()
}

/// Writes an error line to stderr; a closed stderr is ignored (there is nobody left to tell).
pub(crate) fn error(args: std::fmt::Arguments<'_>) {
    let mut e = io::stderr().lock();
    let _ = e.write_fmt(args).and_then(|()| e.write_all(b"\n"));
}

/// `println!` that returns the write's error: `outln!(...)?`.
macro_rules! outln {
    () => {
        $crate::out::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that returns the write's error: `out!(...)?`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::print(format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};
