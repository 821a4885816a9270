//! A container's directories on the data-root, made ahead of the create that takes them, under
//! the id the container will have.
//!
//! A create needs `containers/<id>/` (record, log) and `overlay/<id>/{upper,work}`. Making
//! an inode on this project's hosts' root ext4 (no journal) costs 46-300 us while the inodes
//! freed in the last seconds are skipped one by one, and a create made seven there before
//! its reply. A slot is that set made beforehand and named after a container id chosen then
//! (random, as a create would choose it): the record as a blank file, its temporary twin
//! (records are saved by exchange, see `util::write_record`) and the log, all made durable
//! with their directories. A create takes a slot's id as the container's: nothing to make or
//! rename, and its durable save is the record's own fsync, where a directory made or renamed
//! at create would need its parent's as well. Slots are made after the create that used one
//! has been answered, on the core the client leaves idle while it starts up; a create that
//! finds none makes its directories itself.
//!
//! A slot also holds the container's cgroups `berth/<id>` in the v1 hierarchies every
//! container joins (memory, cpuacct, pids, blkio, devices, freezer on this host) and in the
//! cgroup2 hierarchy: a cgroup's mkdir makes every control file of its controllers, ~0.18 ms
//! each here, 1.1 ms per container, in the shim's create that the start waits for. The
//! runtime finds them made and joins them (the cgroup2 one by CLONE_INTO_CGROUP); it writes
//! their limits, and enables cgroup2 controllers in the parents, as for cgroups it made.
//!
//! A slot made after a create is also mounted ahead: the overlay of the image that create
//! used (its layers under the slot's upper dir, at the slot's rootfs path), as the start's
//! preparation would mount it. Mounting an overlay costs 0.5-1 ms here (overlayfs makes and
//! probes four inodes in its work dir on the data-root's disk), and that preparation runs
//! between a `docker run`'s create and its start, while the client waits. A create of the
//! same image finds its root mounted; a create of another image unmounts it (~0.05 ms) and
//! mounts its own. Removing or pruning images unmounts every slot first, so no layer is
//! deleted under a mount.
//!
//! One ready slot at a time also holds a parked container (`lifecycle::warm`): a berth-shim
//! that has created, under the slot's id, the container the last create would make again —
//! namespaces, cgroups, mounts, devices, pivot_root all done — without its program. A create
//! whose config is that one but for the program (arguments, environment, working directory,
//! user, rlimits) claims it: the shim hands the program to the waiting init and the runtime's
//! create, 2-3 ms of mostly kernel work here, is off the path between create and start. Any
//! other create shuts the parked one down and creates its own.
//!
//! An unused slot and the slot of a create that never answered look the same on disk: a
//! container directory whose record is blank. `restore` removes those it does not own.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_runtime::cgroups::{Cgroup, Host};

use super::Paths;

/// Ready slots kept: one per create of a `docker run` loop, plus one for a burst.
const TARGET: usize = 2;

pub struct Slots {
    data_root: PathBuf,
    exec_root: PathBuf,
    /// The host's cgroup mounts; None when they could not be read (no cgroups made ahead).
    host: Option<Host>,
    ready: Mutex<Vec<Slot>>,
    /// The image new slots are mounted for (the last one created from). Held while a slot is
    /// mounted, so that removing an image waits for that mount and then undoes it.
    image: Mutex<Option<Lower>>,
    /// berthd is stopping: no slot is made, recycled or parked in any more.
    closing: std::sync::atomic::AtomicBool,
}

/// A slot: waiting to be taken, or taken for a new container.
pub struct Slot {
    pub id: String,
    /// The image whose overlay is mounted at the slot's rootfs, if any.
    pub mounted: Option<String>,
    /// A container parked under this id by berth-shim, to claim or shut down.
    pub warm: Option<Warm>,
    /// A container is being parked in it (not to be taken until it is).
    warming: bool,
}

/// A slot's parked container.
pub struct Warm {
    /// The config.json it was created from, without what a claim may change (see
    /// `lifecycle::claim`).
    pub config: serde_json::Value,
    /// The network namespace it is in, None with the host's: held open while it is parked,
    /// since a claim's config names it by the same descriptor path.
    pub netns: Option<crate::netns::Netns>,
    /// Kept open while parked (see `shim::ParkedPipe`).
    pub pipe: Option<super::shim::ParkedPipe>,
}

/// An image's overlay lower layers, as a container of it is mounted.
#[derive(Clone)]
pub struct Lower {
    pub image_id: String,
    /// Topmost first, the shared init layer included.
    pub dirs: Vec<PathBuf>,
}

/// The cgroup path berthd gives a container (its config's cgroupsPath).
pub fn cgroups_path(id: &str) -> String {
    format!("/berth/{id}")
}

impl Slots {
    pub fn open(data_root: &Path, exec_root: &Path) -> Slots {
        Slots {
            data_root: data_root.to_path_buf(),
            exec_root: exec_root.to_path_buf(),
            host: Host::detect().ok(),
            ready: Mutex::default(),
            image: Mutex::default(),
            closing: Default::default(),
        }
    }

    /// A ready slot, taken for a new container; None when none is ready.
    pub fn take(&self) -> Option<Slot> {
        let mut ready = self.ready.lock().unwrap();
        // The parked container's slot first, else the newest ready one.
        let i = match ready.iter().position(|s| s.warm.is_some()) {
            Some(i) => i,
            None => ready.iter().rposition(|s| !s.warming)?,
        };
        Some(ready.remove(i))
    }

    /// A ready slot mounted for `image_id` to park a container in, marked as warming (not
    /// taken by creates meanwhile); None when one is parked or warming already, Err when no
    /// slot is mounted for the image (yet).
    #[allow(clippy::result_unit_err)]
    pub fn take_to_warm(&self, image_id: &str) -> Result<Option<String>, ()> {
        if self.is_closing() {
            return Ok(None);
        }
        let mut ready = self.ready.lock().unwrap();
        if ready.iter().any(|s| s.warm.is_some() || s.warming) {
            return Ok(None);
        }
        let s = ready
            .iter_mut()
            .find(|s| s.mounted.as_deref() == Some(image_id))
            .ok_or(())?;
        s.warming = true;
        Ok(Some(s.id.clone()))
    }

    /// The parked container of a slot marked by `take_to_warm`; false when the slot is gone
    /// (images removed) or berthd is stopping, the parked container then being the caller's
    /// to shut down.
    pub fn put_warm(&self, id: &str, warm: Warm) -> bool {
        let mut ready = self.ready.lock().unwrap();
        let closing = self.is_closing();
        match ready.iter_mut().find(|s| s.id == id) {
            Some(s) => {
                s.warming = false;
                if !closing {
                    s.warm = Some(warm);
                }
                !closing
            }
            None => false,
        }
    }

    fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Drops slot `id` from the ready ones (its directories stay; see `remove`).
    pub fn forget(&self, id: &str) {
        self.ready.lock().unwrap().retain(|s| s.id != id);
    }

    /// Whether a container is being parked; waited out before mounts go.
    pub fn is_warming(&self) -> bool {
        self.ready.lock().unwrap().iter().any(|s| s.warming)
    }

    /// Up to 5 s for a container being parked (blocking).
    fn wait_warming(&self) {
        for _ in 0..500 {
            if !self.is_warming() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Takes out the slots holding a parked container (to shut them down, then `remove`).
    pub fn take_warm(&self) -> Vec<String> {
        let mut ready = self.ready.lock().unwrap();
        let (warm, cold): (Vec<Slot>, Vec<Slot>) = std::mem::take(&mut *ready)
            .into_iter()
            .partition(|s| s.warm.is_some());
        *ready = cold;
        warm.into_iter().map(|s| s.id).collect()
    }

    /// Whether `id` is a slot waiting to be taken (its record is blank by design).
    pub fn owns(&self, id: &str) -> bool {
        self.ready.lock().unwrap().iter().any(|s| s.id == id)
    }

    /// The image the next slots are mounted for: the one a container was just created from.
    /// Blocking (it waits for a slot being mounted): call it where `refill` is called.
    pub fn mount_for(&self, lower: Lower) {
        *self.image.lock().unwrap() = Some(lower);
    }

    /// Runs `remove` (which removes image layers) with no slot mounted: every ready slot's
    /// overlay unmounted and its parked container shut down first, and no slot mounted
    /// (refill, recycle) until `remove` has returned and the next create names an image.
    /// Blocking.
    pub fn without_mounts<T>(&self, remove: impl FnOnce() -> T) -> T {
        self.wait_warming();
        let mut image = self.image.lock().unwrap();
        self.release_mounts(&mut image);
        remove()
    }

    fn release_mounts(&self, image: &mut Option<Lower>) {
        *image = None;
        for id in self.take_warm() {
            super::shim::shut_down_blocking(&self.paths(&id).shim);
            self.remove(&id);
        }
        for s in self.ready.lock().unwrap().iter_mut() {
            if s.mounted.take().is_some() {
                let paths = self.paths(&s.id);
                if let Err(e) = super::rootfs::unmount(&paths) {
                    crate::log::warn(format_args!("slot {}: {e}", s.id));
                }
            }
        }
    }

    /// Makes slots until [`TARGET`] are ready. Blocking: run it off the async threads.
    pub fn refill(&self) {
        while self.ready.lock().unwrap().len() < TARGET && !self.is_closing() {
            let id = crate::util::random_id();
            if let Err(e) = self.make(&id) {
                crate::log::warn(format_args!("making directory slot {id}: {e}"));
                self.remove(&id);
                return;
            }
            if !self.mount_and_ready(id) {
                return;
            }
        }
        self.mount_bare();
    }

    /// Mounts the ready slots made while no image was known (at start-up, after images were
    /// removed, or recycled before the last create's image was set) for that image. Each is
    /// out of the ready list while it is mounted: no create takes it half-mounted.
    fn mount_bare(&self) {
        let image = self.image.lock().unwrap();
        let Some(lower) = image.as_ref() else {
            return;
        };
        let bare: Vec<Slot> = {
            let mut ready = self.ready.lock().unwrap();
            let (bare, rest) = std::mem::take(&mut *ready)
                .into_iter()
                .partition(|s| s.mounted.is_none() && s.warm.is_none() && !s.warming);
            *ready = rest;
            bare
        };
        for mut s in bare {
            match super::rootfs::mount(&self.paths(&s.id), &lower.dirs) {
                Ok(()) => s.mounted = Some(lower.image_id.clone()),
                Err(e) => crate::log::warn(format_args!("mounting slot {}: {e}", s.id)),
            }
            let mut ready = self.ready.lock().unwrap();
            if self.is_closing() {
                drop(ready);
                self.remove(&s.id);
                continue;
            }
            ready.push(s);
        }
    }

    /// Mounts slot `id` for the image of the last create (if any) and makes it ready, both
    /// under the image lock, so `release_mounts` sees every mount; false (the slot removed)
    /// when berthd is stopping: `clear` has run or is running, and this one is not among
    /// those it removes.
    fn mount_and_ready(&self, id: String) -> bool {
        let image = self.image.lock().unwrap();
        let mounted = image.as_ref().and_then(|lower| {
            match super::rootfs::mount(&self.paths(&id), &lower.dirs) {
                Ok(()) => Some(lower.image_id.clone()),
                Err(e) => {
                    crate::log::warn(format_args!("mounting slot {id}: {e}"));
                    None
                }
            }
        });
        let mut ready = self.ready.lock().unwrap();
        if self.is_closing() {
            drop(ready);
            self.remove(&id);
            return false;
        }
        ready.push(Slot {
            id,
            mounted,
            warm: None,
            warming: false,
        });
        true
    }

    /// Removes every ready slot (berthd is stopping): their directories, mounts and cgroups
    /// would otherwise outlive a data-root that is removed after.
    pub fn clear(&self) {
        // Set under the ready lock: a slot pushed after this sees it and removes itself.
        let warming = {
            let ready = self.ready.lock().unwrap();
            self.closing
                .store(true, std::sync::atomic::Ordering::SeqCst);
            ready.iter().any(|s| s.warming)
        };
        if warming {
            self.wait_warming();
        }
        let ready = std::mem::take(&mut *self.ready.lock().unwrap());
        for s in ready {
            if s.warm.is_some() {
                super::shim::shut_down_blocking(&self.paths(&s.id).shim);
            }
            self.remove(&s.id);
        }
    }

    /// Removes what a slot (or a container never created) has: its rootfs mount, its
    /// directories and cgroups.
    pub fn remove(&self, id: &str) {
        let paths = self.paths(id);
        let _ = super::rootfs::unmount(&paths);
        let _ = fs::remove_dir(&paths.rootfs);
        let _ = fs::remove_dir_all(&paths.dir);
        let _ = fs::remove_dir_all(&paths.overlay);
        // A parked container's bundle and shim dir, and its runtime state if its shim died
        // without deleting it.
        let _ = fs::remove_dir_all(&paths.bundle);
        let _ = fs::remove_dir_all(&paths.shim);
        let _ = fs::remove_dir_all(self.exec_root.join("runtime").join(id));
        self.remove_cgroups(id);
    }

    /// Removes container `id`'s v1 cgroups if they are still there and empty: made ahead for
    /// a container the runtime never created (the runtime removes the ones it used).
    pub fn remove_cgroups(&self, id: &str) {
        for dir in self.cgroups(id) {
            let _ = fs::remove_dir(dir);
        }
    }

    fn paths(&self, id: &str) -> Paths {
        Paths::new(&self.data_root, &self.exec_root, id)
    }

    /// The cgroup directories a container `id` without limits is put in (v1 and cgroup2).
    fn cgroups(&self, id: &str) -> Vec<PathBuf> {
        let Some(host) = &self.host else {
            return Vec::new();
        };
        let path = cgroups_path(id);
        let plan = Cgroup::plan(host, Some(Path::new(&path)), id, None);
        plan.v1
            .into_iter()
            .map(|(_, dir)| dir)
            .chain(plan.unified)
            .collect()
    }

    /// Turns a removed container's directories into a ready slot under a new id, instead of
    /// deleting them and making the next slot's: on this project's hosts' root ext4 (no
    /// journal) every inode made skips, one by one, the inodes freed in the last minute, and
    /// a `docker run --rm` loop frees eleven a run. Only when its upper dir is empty (the
    /// container wrote nothing, the common case for `--rm`) and its record directory holds
    /// the record, its twin and one log; the record, twin and log are emptied (nothing of
    /// the old container stays), the cgroups made again. Call after the container's shim is
    /// gone and its overlay unmounted. False (nothing changed) when it does not apply; the
    /// caller then removes the directories. Blocking.
    pub fn recycle(&self, old: &str) -> bool {
        if self.is_closing() {
            return false;
        }
        // One more than a refill makes: the refill after a `docker run --rm`'s start often
        // comes before its container is removed.
        if self.ready.lock().unwrap().len() > TARGET {
            return false;
        }
        let new = crate::util::random_id();
        match self.recycle_dirs(old, &new) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                crate::log::warn(format_args!("recycling the directories of {old}: {e}"));
                self.remove(&new);
                return false;
            }
        }
        self.mount_and_ready(new);
        true
    }

    fn recycle_dirs(&self, old: &str, new: &str) -> io::Result<bool> {
        let (from, to) = (self.paths(old), self.paths(new));
        let upper = from.overlay.join("upper");
        // overlayfs keeps its own id on the upper dir (trusted.overlay.uuid): dropped, the
        // next container's overlay gets a new one. Any other mark (opaque, impure...) and
        // the dir is not reused.
        let _ = remove_xattr(&upper, c"trusted.overlay.uuid");
        if fs::read_dir(&upper)?.next().is_some() || has_xattrs(&upper)? {
            return Ok(false);
        }
        // The upper dir carries the root's own mode and owner: a `chmod 777 /` or a chown of
        // / in the old container must not become the next one's root.
        {
            use std::os::unix::fs::MetadataExt;
            let m = fs::metadata(&upper)?;
            if m.mode() & 0o7777 != 0o755 || m.uid() != 0 || m.gid() != 0 {
                return Ok(false);
            }
        }
        let record = from.record();
        let twin = crate::util::tmp_path(&record);
        let log = from.log(old);
        let expected = [&record, &twin, &log];
        for e in fs::read_dir(&from.dir)? {
            let path = e?.path();
            if !expected.iter().any(|p| **p == path) {
                return Ok(false);
            }
        }
        let new_log = from
            .dir
            .join(to.log(new).file_name().expect("a log file name"));
        fs::rename(&log, &new_log)?;
        for f in [&new_log, &twin, &record] {
            let file = fs::OpenOptions::new().write(true).open(f)?;
            if *f == record {
                // A slot's record is blank on disk before a create writes it in place.
                crate::util::blank_record(&file)?;
            } else {
                file.set_len(0)?;
            }
        }
        // The overlay first: a crash between the two leaves the old record directory, whose
        // blank record makes `restore` remove it, and an overlay directory of the new id,
        // which `restore` removes as having no record directory.
        fs::rename(&from.overlay, &to.overlay)?;
        fs::rename(&from.dir, &to.dir)?;
        fs::File::open(self.data_root.join("containers"))?.sync_all()?;
        fs::File::open(self.data_root.join("overlay"))?.sync_all()?;
        self.make_cgroups(new)?;
        Ok(true)
    }

    fn make_cgroups(&self, id: &str) -> io::Result<()> {
        for cg in self.cgroups(id) {
            fs::create_dir_all(&cg)?;
        }
        Ok(())
    }

    fn make(&self, id: &str) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let paths = self.paths(id);
        let (dir, overlay) = (&paths.dir, &paths.overlay);
        fs::create_dir(dir)?;
        let record = paths.record();
        for (file, mode) in [
            (record.clone(), 0o666),
            (crate::util::tmp_path(&record), 0o666),
            // The shim's mode for logs.
            (paths.log(id), 0o640),
        ] {
            let f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&file)?;
            // The create writes the record in place and syncs only it: the file, its blocks
            // and every directory entry on the way to it must be on disk already.
            if file == record {
                crate::util::blank_record(&f)?;
            }
        }
        fs::File::open(dir)?.sync_all()?;
        fs::File::open(self.data_root.join("containers"))?.sync_all()?;
        fs::create_dir(overlay)?;
        fs::create_dir(overlay.join("upper"))?;
        fs::create_dir(overlay.join("work"))?;
        self.make_cgroups(id)
    }
}

fn remove_xattr(path: &Path, name: &std::ffi::CStr) -> io::Result<()> {
    let c = super::rootfs::cstr(path)?;
    // SAFETY: both are valid C strings.
    if unsafe { libc::removexattr(c.as_ptr(), name.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `path` carries any extended attribute (an overlay upper dir marked opaque or
/// impure is not handed to another container).
fn has_xattrs(path: &Path) -> io::Result<bool> {
    let c = super::rootfs::cstr(path)?;
    // SAFETY: c is a valid C string; a NULL list with size 0 only asks for the size.
    let n = unsafe { libc::listxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n > 0)
}
