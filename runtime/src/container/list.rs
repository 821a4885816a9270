//! `list` and `ps`.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::{Container, Status};
use crate::error::{Error, Result};

/// Every container under `root` with its current status, sorted by id.
pub fn list(root: &Path) -> Result<Vec<(Container, Status)>> {
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read state root", root, e)),
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str() else { continue };
        match Container::load(root, id) {
            Ok(c) => {
                let s = c.status();
                out.push((c, s));
            }
            // Being created right now, or not ours.
            Err(Error::NotFound(_)) | Err(Error::InvalidId(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.0.record.id.cmp(&b.0.record.id));
    Ok(out)
}

/// The pids of every process in the container.
pub fn ps_pids(root: &Path, id: &str) -> Result<Vec<libc::pid_t>> {
    let c = Container::load(root, id)?;
    let mut pids = c.record.cgroup.pids()?;
    pids.sort_unstable();
    Ok(pids)
}
