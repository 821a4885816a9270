//! The daemon's shared state: configuration, stores, the container registry and the event
//! feed; and start-up, which finds the containers a previous berthd left running.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::Config;
use crate::container::model::{Record, Status};
use crate::container::{lifecycle, Ctr, Paths, Registry};
use crate::events::Events;
use crate::image::ImageStore;
use crate::volume::Volumes;

pub struct Daemon {
    pub cfg: Config,
    pub containers: Mutex<Registry>,
    pub images: Arc<ImageStore>,
    pub volumes: Volumes,
    pub events: Events,
    pub exec: Mutex<crate::exec::Sessions>,
    /// Network namespaces made ahead of container starts.
    pub netns: crate::netns::Pool,
    /// A berth-shim started ahead of the next container's start.
    pub shims: Arc<crate::container::shim::Pool>,
    /// Record and overlay directories made ahead of the next creates.
    pub slots: Arc<crate::container::slots::Slots>,
    pub started: SystemTime,
    pub id: String,
}

impl Daemon {
    pub fn open(cfg: Config) -> anyhow::Result<Arc<Daemon>> {
        use anyhow::Context;
        exec_root_on_tmpfs(&cfg.exec_root)?;
        for d in [
            cfg.data_root.join("containers"),
            cfg.data_root.join("overlay"),
            cfg.exec_root.join("containers"),
            cfg.exec_root.join("shims"),
            cfg.exec_root.join("rootfs"),
        ] {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let images = Arc::new(ImageStore::open(&cfg.data_root).context("opening the image store")?);
        let volumes =
            Volumes::open(&cfg.data_root.join("volumes")).context("opening the volume store")?;
        let id_file = cfg.data_root.join("engine-id");
        let id = match std::fs::read_to_string(&id_file) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let id = crate::util::random_id();
                crate::util::atomic_write(&id_file, id.as_bytes())?;
                id
            }
        };
        let slots = Arc::new(crate::container::slots::Slots::open(
            &cfg.data_root,
            &cfg.exec_root,
        ));
        slots.refill();
        Ok(Arc::new(Daemon {
            cfg,
            containers: Mutex::new(Registry::default()),
            images,
            volumes,
            events: Events::default(),
            exec: Mutex::new(crate::exec::Sessions::default()),
            netns: crate::netns::Pool::start().context("starting the network namespace pool")?,
            shims: Arc::default(),
            slots,
            started: SystemTime::now(),
            id,
        }))
    }

    pub fn paths(&self, id: &str) -> Paths {
        Paths::new(&self.cfg.data_root, &self.cfg.exec_root, id)
    }

    pub fn find(&self, key: &str) -> crate::http::ApiResult<Arc<Ctr>> {
        self.containers.lock().unwrap().find(key)
    }

    /// Persists a container's record durably (fsync): for what the user asked for (create,
    /// rename, restart policy state). A crash at any moment leaves the old or the new record.
    pub fn save(&self, c: &Ctr) -> std::io::Result<()> {
        let rec = c.rec().clone();
        let data = serde_json::to_vec_pretty(&rec).expect("records serialise");
        crate::util::write_record(&self.paths(&rec.id).record(), &data, true)
    }

    /// A new container's first record, durably. `into_slot`: the directory is a slot, whose
    /// blank record file (`util::blank_record`) and directory entries were made durable
    /// with it, and the record is written in place: one fdatasync. Otherwise the directory
    /// was made by the create, and its entry in `<data-root>/containers` is fsynced after the
    /// record, or a power loss could take it. A blank record is one no create acknowledged:
    /// `restore` removes it (and skips a torn one, with a warning).
    pub fn save_new(&self, c: &Ctr, into_slot: bool) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let rec = c.rec().clone();
        let data = serde_json::to_vec_pretty(&rec).expect("records serialise");
        let path = self.paths(&rec.id).record();
        if into_slot {
            // Over the slot's blank record: the spaces after it stay, as JSON allows.
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.write_all_at(&data, 0)?;
            return f.sync_data();
        }
        crate::util::write_record(&path, &data, true)?;
        std::fs::File::open(self.cfg.data_root.join("containers"))?.sync_all()
    }

    /// Persists a run-time transition (started, exited, paused) atomically but without
    /// waiting for the disk: after a power loss the shims are the truth (`restore` asks every
    /// container's shim, whatever its record says).
    pub fn save_state(&self, c: &Ctr) -> std::io::Result<()> {
        let rec = c.rec().clone();
        let data = serde_json::to_vec_pretty(&rec).expect("records serialise");
        crate::util::write_record(&self.paths(&rec.id).record(), &data, false)
    }

    /// Publishes a container event with Docker's attributes (name, image, labels).
    pub fn container_event(&self, c: &Ctr, action: &str, extra: &[(&str, String)]) {
        let (name, image, labels) = {
            let r = c.rec();
            (
                r.name.clone(),
                r.config.image.clone(),
                r.config.labels.clone(),
            )
        };
        let mut attrs: Vec<(String, String)> = labels.into_iter().collect();
        attrs.push(("name".into(), name));
        attrs.push(("image".into(), image));
        for (k, v) in extra {
            attrs.push((k.to_string(), v.clone()));
        }
        self.events.publish("container", action, &c.id, attrs);
    }

    /// Loads every container record and reconciles it with its shim: running ones are
    /// watched again, dead ones get their exit recorded, restart policies are applied.
    pub async fn restore(self: &Arc<Daemon>) -> anyhow::Result<()> {
        let dir = self.cfg.data_root.join("containers");
        // An overlay directory without a record directory: left by a crash while a removed
        // container's directories became a slot (see `Slots::recycle`).
        if let Ok(overlays) = std::fs::read_dir(self.cfg.data_root.join("overlay")) {
            for e in overlays.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !dir.join(&name).exists() && !self.slots.owns(&name) {
                    self.slots.remove(&name);
                }
            }
        }
        let mut loaded = Vec::new();
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if self.slots.owns(&name) {
                continue;
            }
            let path: PathBuf = e.path().join("config.v2.json");
            if crate::util::record_is_blank(&path) {
                // A directory slot of an earlier berthd, or one taken by a create that never
                // answered: nothing of it was acknowledged. Its parked container (if any)
                // goes first.
                let shim = self.paths(&name).shim;
                if shim.exists() {
                    // A shim being launched binds its socket within a millisecond of its
                    // arguments; one that never got them exits on its own.
                    let sock = shim.join(berth_shim::protocol::SOCKET);
                    for _ in 0..20 {
                        if sock.exists() {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    crate::container::lifecycle::shut_down_shim_of(self, &name).await;
                }
                self.slots.remove(&name);
                continue;
            }
            let rec: Record = match std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice(&b)?))
            {
                Ok(r) => r,
                Err(err) => {
                    crate::log::warn(format_args!("skipping {}: {err}", path.display()));
                    continue;
                }
            };
            let c = Ctr::new(rec);
            if let Err(e) = self.containers.lock().unwrap().insert(c.clone()) {
                crate::log::warn(format_args!("skipping {}: {}", c.id, e.message));
                continue;
            }
            loaded.push(c);
        }
        for c in loaded {
            let status = c.status();
            if status == Status::Removing {
                let _ = lifecycle::remove(self, &c, true, false).await;
                continue;
            }
            let has_shim = self
                .paths(&c.id)
                .shim
                .join(berth_shim::protocol::SOCKET)
                .exists();
            if status == Status::Created && has_shim {
                // Prepared ahead of a start that never came: a new start prepares again.
                lifecycle::shut_down_shim(self, &c).await;
            } else if status.is_running() || has_shim {
                lifecycle::reattach(self.clone(), c).await;
            } else if status != Status::Created {
                // Mount the overlay again so `docker cp`/`export` and restarts work.
                let _ = lifecycle::ensure_rootfs(self, &c);
            }
        }
        Ok(())
    }
}

/// Run-time state (bundles, shim sockets and exit records, the runtime's state and fifos) is
/// kept on a tmpfs, as under /run on most hosts: it ends with the machine, as the containers
/// do, and a file is made there in microseconds. Where --exec-root is on a disk filesystem
/// instead, berthd mounts a tmpfs on it: on this project's hosts /run is on the root ext4,
/// where making an inode costs ~0.3 ms while recently deleted inodes are skipped, and a
/// container makes nine there. A directory that already holds something (shims of a berthd
/// from before) is used as it is; a tmpfs mounted by an earlier berthd is reused.
fn exec_root_on_tmpfs(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .context("--exec-root contains a NUL byte")?;
    // SAFETY: statfs fills the zeroed struct it is given; path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(e).with_context(|| format!("statfs {}", dir.display()));
    }
    if st.f_type == libc::TMPFS_MAGIC {
        return Ok(());
    }
    let empty = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .next()
        .is_none();
    if !empty {
        crate::log::warn(format_args!(
            "--exec-root {} is not on a tmpfs and is not empty: used as it is (run-time files on disk are slow to make)",
            dir.display()
        ));
        return Ok(());
    }
    berth_runtime::sys::mount(
        Some(c"tmpfs"),
        &path,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(c"mode=0711"),
    )
    .with_context(|| format!("mounting a tmpfs on --exec-root {}", dir.display()))?;
    crate::log::info(format_args!(
        "--exec-root {} was on a disk filesystem: mounted a tmpfs there",
        dir.display()
    ));
    Ok(())
}
