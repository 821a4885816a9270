//! A container's directories on the data-root, made ahead of the create that takes them.
//!
//! A create needs `containers/<id>/` (record, log) and `overlay/<id>/{upper,work}`. Making
//! an inode on this project's hosts' root ext4 (no journal) costs 46-300 us while the inodes
//! freed in the last seconds are skipped one by one, and a create made seven there before
//! its reply. A slot is that set made beforehand under a hidden name, with the record, its
//! temporary twin (records are saved by exchange, see `util::write_record`) and the log as
//! empty files. The create renames it into place: three renames, no inode. Slots are made
//! after the create that used one has been answered, on the core the client leaves idle
//! while it starts up; a create that finds none makes its directories itself.
//!
//! A slot also holds the container's cgroups in the v1 hierarchies every container joins
//! (memory, cpuacct, pids, blkio, devices, freezer on this host): a cgroup's mkdir makes
//! every control file of its controllers, ~0.18 ms each here, 1.1 ms per container, in the
//! shim's create that the start waits for. cgroup v1 renames a cgroup within its parent, so
//! `berth/.slot-X` becomes `berth/<id>`, which the runtime then finds made and joins; its
//! limits are written by the runtime as for a cgroup it made. (cgroup v2 cannot rename: its
//! directory is still made by the runtime.)
//!
//! A slot renamed into place whose record is still empty belongs to a create that never
//! answered: `restore` removes it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_runtime::cgroups::{Cgroup, Host};

use super::Paths;

const PREFIX: &str = ".slot-";
/// Ready slots kept: one per create of a `docker run` loop, plus one for a burst.
const TARGET: usize = 2;
/// The log's name inside a slot, until the create names it after the container.
const LOG: &str = "json.log";

pub struct Slots {
    containers: PathBuf,
    overlay: PathBuf,
    /// The host's cgroup mounts; None when they could not be read (no cgroups made ahead).
    host: Option<Host>,
    ready: Mutex<Vec<String>>,
}

/// The cgroup path berthd gives a container (its config's cgroupsPath).
pub fn cgroups_path(id: &str) -> String {
    format!("/berth/{id}")
}

impl Slots {
    /// Slots of an earlier berthd are removed: they are cheap to make again and their
    /// contents are unknown.
    pub fn open(data_root: &Path) -> Slots {
        let s = Slots {
            containers: data_root.join("containers"),
            overlay: data_root.join("overlay"),
            host: Host::detect().ok(),
            ready: Mutex::default(),
        };
        let berth_cgroups: Vec<PathBuf> = s
            .cgroups("x")
            .iter()
            .filter_map(|d| d.parent().map(Path::to_path_buf))
            .collect();
        for parent in [&s.containers, &s.overlay]
            .into_iter()
            .chain(&berth_cgroups)
        {
            let Ok(rd) = fs::read_dir(parent) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(PREFIX) {
                    // A cgroup goes with rmdir alone (its control files are not files).
                    if fs::remove_dir(e.path()).is_err() {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        s
    }

    /// Whether `name` (an entry of `<data-root>/containers`) is a slot, not a container.
    pub fn is_slot(name: &str) -> bool {
        name.starts_with(PREFIX)
    }

    /// Moves a ready slot into place as `paths`' record directory and overlay; false when
    /// none is ready (or it could not be moved), and the caller makes the directories.
    pub fn place(&self, paths: &Paths, id: &str) -> bool {
        let Some(name) = self.ready.lock().unwrap().pop() else {
            return false;
        };
        let placed = fs::rename(self.containers.join(&name), &paths.dir)
            .and_then(|()| fs::rename(self.overlay.join(&name), &paths.overlay))
            .and_then(|()| fs::rename(paths.dir.join(LOG), paths.log(id)));
        if let Err(e) = placed {
            crate::log::warn(format_args!("placing directory slot {name}: {e}"));
            let _ = fs::remove_dir_all(self.containers.join(&name));
            let _ = fs::remove_dir_all(self.overlay.join(&name));
            self.remove_cgroups(&name);
            return false;
        }
        // A cgroup that cannot be renamed is removed: the runtime makes the container's.
        for (from, to) in self.cgroups(&name).iter().zip(self.cgroups(id)) {
            if fs::rename(from, &to).is_err() {
                let _ = fs::remove_dir(from);
            }
        }
        true
    }

    /// The v1 cgroup directories a container `id` without limits is put in.
    fn cgroups(&self, id: &str) -> Vec<PathBuf> {
        let Some(host) = &self.host else {
            return Vec::new();
        };
        let path = cgroups_path(id);
        Cgroup::plan(host, Some(Path::new(&path)), id, None)
            .v1
            .into_iter()
            .map(|(_, dir)| dir)
            .collect()
    }

    /// Removes container `id`'s v1 cgroups if they are still there and empty: made ahead
    /// and renamed for a container the runtime never created (the runtime removes the ones
    /// it used).
    pub fn remove_cgroups(&self, id: &str) {
        for dir in self.cgroups(id) {
            let _ = fs::remove_dir(dir);
        }
    }

    /// Makes slots until [`TARGET`] are ready. Blocking: run it off the async threads.
    pub fn refill(&self) {
        while self.ready.lock().unwrap().len() < TARGET {
            let name = format!("{PREFIX}{}", crate::util::random_id());
            match self.make(&name) {
                Ok(()) => self.ready.lock().unwrap().push(name),
                Err(e) => {
                    crate::log::warn(format_args!("making directory slot {name}: {e}"));
                    let _ = fs::remove_dir_all(self.containers.join(&name));
                    let _ = fs::remove_dir_all(self.overlay.join(&name));
                    self.remove_cgroups(&name);
                    return;
                }
            }
        }
    }

    fn make(&self, name: &str) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.containers.join(name);
        fs::create_dir(&dir)?;
        for (file, mode) in [
            ("config.v2.json", 0o666),
            (".config.v2.json.tmp", 0o666),
            // The shim's mode for logs.
            (LOG, 0o640),
        ] {
            let f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(dir.join(file))?;
            // The create writes the record in place and makes only the renamed directory's
            // entry durable: the record file and the entries must be on disk already.
            if file == "config.v2.json" {
                f.sync_all()?;
            }
        }
        fs::File::open(&dir)?.sync_all()?;
        let ov = self.overlay.join(name);
        fs::create_dir(&ov)?;
        fs::create_dir(ov.join("upper"))?;
        fs::create_dir(ov.join("work"))?;
        for dir in self.cgroups(name) {
            fs::create_dir_all(&dir)?;
        }
        Ok(())
    }
}
