//! `exit.json` in the state dir: written once, atomically (temp file, fsync, rename, fsync of
//! the directory), so a reader sees either nothing or the whole record — also after the shim
//! and the machine's page cache are gone.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::protocol::{ExitInfo, EXIT_FILE};

#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {err}", path.display())]
pub struct RecordError {
    op: &'static str,
    path: PathBuf,
    err: io::Error,
}

pub fn write_exit(state_dir: &Path, info: &ExitInfo) -> Result<(), RecordError> {
    let tmp = state_dir.join(".exit.json.tmp");
    let path = state_dir.join(EXIT_FILE);
    let e = |op, p: &Path| {
        let p = p.to_path_buf();
        move |err| RecordError { op, path: p, err }
    };
    let data = serde_json::to_vec(info).expect("exit info serialises");
    let mut f = File::create(&tmp).map_err(e("create", &tmp))?;
    f.write_all(&data).map_err(e("write", &tmp))?;
    f.sync_all().map_err(e("fsync", &tmp))?;
    fs::rename(&tmp, &path).map_err(e("rename", &path))?;
    File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(e("fsync", state_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_read_exit() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(crate::protocol::read_exit(d.path()).unwrap(), None);
        let info = ExitInfo {
            exit_code: 137,
            signal: Some(9),
            exited_at: "2026-01-01T00:00:00.000000000Z".into(),
            oom_killed: true,
        };
        write_exit(d.path(), &info).unwrap();
        assert_eq!(crate::protocol::read_exit(d.path()).unwrap(), Some(info));
        assert!(!d.path().join(".exit.json.tmp").exists());
    }
}
