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
//! A slot renamed into place whose record is still empty belongs to a create that never
//! answered: `restore` removes it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Paths;

const PREFIX: &str = ".slot-";
/// Ready slots kept: one per create of a `docker run` loop, plus one for a burst.
const TARGET: usize = 2;
/// The log's name inside a slot, until the create names it after the container.
const LOG: &str = "json.log";

pub struct Slots {
    containers: PathBuf,
    overlay: PathBuf,
    ready: Mutex<Vec<String>>,
}

impl Slots {
    /// Slots of an earlier berthd are removed: they are cheap to make again and their
    /// contents are unknown.
    pub fn open(data_root: &Path) -> Slots {
        let s = Slots {
            containers: data_root.join("containers"),
            overlay: data_root.join("overlay"),
            ready: Mutex::default(),
        };
        for parent in [&s.containers, &s.overlay] {
            let Ok(rd) = fs::read_dir(parent) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(PREFIX) {
                    let _ = fs::remove_dir_all(e.path());
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
        match placed {
            Ok(()) => true,
            Err(e) => {
                crate::log::warn(format_args!("placing directory slot {name}: {e}"));
                let _ = fs::remove_dir_all(self.containers.join(&name));
                let _ = fs::remove_dir_all(self.overlay.join(&name));
                false
            }
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
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(dir.join(file))?;
        }
        let ov = self.overlay.join(name);
        fs::create_dir(&ov)?;
        fs::create_dir(ov.join("upper"))?;
        fs::create_dir(ov.join("work"))
    }
}
