//! runc-compatible logging: `--log FILE` with `--log-format text|json`, as containerd's shim
//! reads it back to show a runtime's error. Without `--log`, messages go to stderr.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Text,
    Json,
}

struct Logger {
    file: Option<Mutex<File>>,
    format: Format,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();
static WARNED: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);

/// Set up logging once, from the global flags.
pub fn init(path: Option<&Path>, format: Format, debug: bool) -> std::io::Result<()> {
    let file = match path {
        Some(p) => Some(Mutex::new(
            OpenOptions::new().create(true).append(true).open(p)?,
        )),
        None => None,
    };
    let _ = LOGGER.set(Logger {
        file,
        format,
        debug,
    });
    Ok(())
}

fn emit(level: &str, msg: &str) {
    let Some(l) = LOGGER.get() else {
        eprintln!("{level}: {msg}");
        return;
    };
    if level == "debug" && !l.debug {
        return;
    }
    let time = crate::time::now();
    let line = match l.format {
        Format::Json => serde_json::json!({"level": level, "msg": msg, "time": time}).to_string(),
        Format::Text => format!("time={time:?} level={level} msg={msg:?}"),
    };
    match &l.file {
        Some(f) => {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(f, "{line}");
        }
        None => eprintln!("{line}"),
    }
}

pub fn error(msg: &str) {
    emit("error", msg);
}

pub fn warn(msg: &str) {
    emit("warning", msg);
}

pub fn debug(msg: &str) {
    emit("debug", msg);
}

/// Warn about a skipped feature once per process.
pub fn warn_once(key: &'static str, msg: &str) {
    let mut set = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if set.get_or_insert_with(HashSet::new).insert(key) {
        warn(msg);
    }
}

/// Whether errors also go to a log file (the CLI then still prints them to stderr).
pub fn has_file() -> bool {
    LOGGER.get().is_some_and(|l| l.file.is_some())
}
