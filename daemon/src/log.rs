//! berthd's own log lines on stderr: one line per event, a UTC timestamp, no allocation
//! beyond the formatted line. `--debug` turns on the request trace.

use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

fn line(level: &str, args: Arguments<'_>) {
    let now = crate::util::rfc3339(std::time::SystemTime::now());
    let _ = writeln!(std::io::stderr().lock(), "{now} {level} {args}");
}

pub fn info(args: Arguments<'_>) {
    line("info", args);
}

pub fn warn(args: Arguments<'_>) {
    line("warn", args);
}

pub fn debug(args: Arguments<'_>) {
    if debug_enabled() {
        line("debug", args);
    }
}
