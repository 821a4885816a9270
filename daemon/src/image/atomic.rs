//! Crash-safe metadata files (the daemon's `util::atomic_write`: temporary file, fsync,
//! rename, fsync of the directory) with the store's error context, durable removal, and
//! unique names for work in progress.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{io_err, Result};
use super::fsat;

/// A name no other writer in this process or another one picks at the same moment.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Replaces `path` with `bytes` atomically and durably. Callers hold the store's lock, so
/// one writer at a time uses the temporary name beside `path`.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::util::atomic_write(path, bytes).map_err(|e| io_err("write", path.display(), e))
}

/// Removes `path` durably (the unlink reaches the disk before this returns).
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("remove", path.display(), e)),
    }
    let dir = path.parent().expect("metadata files live in a directory");
    fsat::fsync_dir(dir).map_err(|e| io_err("fsync", dir.display(), e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_whole_files_and_leaves_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("repositories.json");
        super::write(&p, b"one").unwrap();
        super::write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        super::remove(&p).unwrap();
        super::remove(&p).unwrap();
        assert!(!p.exists());
    }
}
