//! Containers: the registry (ids, names, prefixes), their persisted records, and the
//! operations that drive berth-shim. One file per idea: `model` (types), `spec` (OCI config
//! from a create request and an image), `rootfs` (overlay and /etc files), `shim` (starting
//! and talking to berth-shim), `lifecycle` (start, stop, wait, exit handling, remove).

pub mod create;
pub mod lifecycle;
pub mod model;
pub mod names;
pub mod rootfs;
pub mod seccomp;
pub mod shim;
pub mod slots;
pub mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::http::{ApiError, ApiResult};
use model::{Record, Status};

/// What waiters watch: bumps of `exits` mark each exit; `removed` ends the container.
#[derive(Debug, Clone, Default)]
pub struct Life {
    pub running: bool,
    pub exits: u64,
    pub exit_code: i64,
    pub removed: bool,
}

/// Attach clients waiting for a start: the start holds the new container (created, not yet
/// running its program) until `waiting` reaches zero, so they miss none of its output.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    pub waiting: usize,
    /// Bumped each time a shim has created the container and answers attach requests.
    pub generation: u64,
    pub closed: bool,
}

/// One container in memory.
pub struct Ctr {
    pub id: String,
    rec: Mutex<Record>,
    pub life: watch::Sender<Life>,
    pub gate: watch::Sender<Gate>,
    /// Serialises lifecycle operations (start/stop/remove) on this container.
    pub op: tokio::sync::Mutex<()>,
    /// A shim has created the container and holds it before its program (a created
    /// container prepared ahead of its start).
    held: AtomicBool,
    /// A shutdown of its shim did not finish in time: that shim may still hold the
    /// container's mount namespace (and the overlay's upper dir with it).
    shim_lingering: AtomicBool,
    /// The parked container of the slot this container was created in, until its start's
    /// preparation claims it or shuts it down.
    warm: Mutex<Option<slots::Warm>>,
}

impl Ctr {
    pub fn new(rec: Record) -> Arc<Ctr> {
        let running = rec.state.status.is_running();
        Arc::new(Ctr {
            id: rec.id.clone(),
            rec: Mutex::new(rec),
            life: watch::channel(Life {
                running,
                ..Life::default()
            })
            .0,
            gate: watch::channel(Gate::default()).0,
            op: tokio::sync::Mutex::new(()),
            held: AtomicBool::new(false),
            shim_lingering: AtomicBool::new(false),
            warm: Mutex::new(None),
        })
    }

    pub fn set_warm(&self, w: Option<slots::Warm>) {
        *self.warm.lock().unwrap() = w;
    }

    pub fn take_warm(&self) -> Option<slots::Warm> {
        self.warm.lock().unwrap().take()
    }

    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    pub fn set_held(&self, held: bool) {
        self.held.store(held, Ordering::Relaxed);
    }

    pub fn shim_lingering(&self) -> bool {
        self.shim_lingering.load(Ordering::Relaxed)
    }

    pub fn set_shim_lingering(&self) {
        self.shim_lingering.store(true, Ordering::Relaxed);
    }

    pub fn rec(&self) -> MutexGuard<'_, Record> {
        self.rec.lock().unwrap()
    }

    pub fn status(&self) -> Status {
        self.rec().state.status
    }

    pub fn name(&self) -> String {
        self.rec().name.clone()
    }
}

/// Where a container's files live.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `<data-root>/containers/<id>`: record, log, /etc files.
    pub dir: PathBuf,
    /// `<data-root>/overlay/<id>`: upper and work.
    pub overlay: PathBuf,
    /// `<exec-root>/containers/<id>`: the OCI bundle (config.json) and the /etc files.
    pub bundle: PathBuf,
    /// `<exec-root>/shims/<id>`: the shim's socket and exit record.
    pub shim: PathBuf,
    /// `<exec-root>/rootfs/<id>`: where the overlay is mounted, on the exec-root's tmpfs (a
    /// mount point on the data-root's disk is one more inode to make per container). Outside
    /// the bundle, which is removed recursively: never with a mounted root inside.
    pub rootfs: PathBuf,
}

impl Paths {
    pub fn new(data_root: &Path, exec_root: &Path, id: &str) -> Paths {
        Paths {
            dir: data_root.join("containers").join(id),
            overlay: data_root.join("overlay").join(id),
            bundle: exec_root.join("containers").join(id),
            // A short name: the socket path inside must stay under 108 bytes (SUN_LEN) even
            // under a long --exec-root; 64 random bits do not collide.
            shim: exec_root.join("shims").join(&id[..id.len().min(16)]),
            rootfs: exec_root.join("rootfs").join(id),
        }
    }
    pub fn record(&self) -> PathBuf {
        self.dir.join("config.v2.json")
    }
    pub fn log(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}-json.log"))
    }
    pub fn merged(&self) -> PathBuf {
        self.rootfs.clone()
    }
}

/// All containers, by id and by name.
#[derive(Default)]
pub struct Registry {
    by_id: HashMap<String, Arc<Ctr>>,
    names: HashMap<String, String>,
}

impl Registry {
    pub fn insert(&mut self, c: Arc<Ctr>) -> ApiResult<()> {
        let name = c.name();
        if let Some(other) = self.names.get(&name) {
            return Err(name_conflict(&name, other));
        }
        self.names.insert(name, c.id.clone());
        self.by_id.insert(c.id.clone(), c);
        Ok(())
    }

    pub fn remove(&mut self, id: &str) {
        if let Some(c) = self.by_id.remove(id) {
            self.names.remove(&c.name());
        }
    }

    pub fn rename(&mut self, id: &str, old: &str, new: &str) -> ApiResult<()> {
        if let Some(other) = self.names.get(new) {
            return Err(name_conflict(new, other));
        }
        self.names.remove(old);
        self.names.insert(new.to_string(), id.to_string());
        Ok(())
    }

    pub fn name_taken(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Ctr>> {
        self.by_id.values()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Docker's lookup order: full id, exact name (with or without the leading `/`), then a
    /// unique id prefix.
    pub fn find(&self, key: &str) -> ApiResult<Arc<Ctr>> {
        if let Some(c) = self.by_id.get(key) {
            return Ok(c.clone());
        }
        let name = key.strip_prefix('/').unwrap_or(key);
        if let Some(id) = self.names.get(name) {
            return Ok(self.by_id[id].clone());
        }
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut hits = self.by_id.values().filter(|c| c.id.starts_with(key));
            if let Some(c) = hits.next() {
                if hits.next().is_some() {
                    return Err(ApiError::bad_request(format!(
                        "multiple containers found with provided prefix: {key}"
                    )));
                }
                return Ok(c.clone());
            }
        }
        Err(ApiError::not_found(format!("No such container: {key}")))
    }
}

fn name_conflict(name: &str, other: &str) -> ApiError {
    ApiError::conflict(format!(
        "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". \
         You have to remove (or rename) that container to be able to reuse that name."
    ))
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        assert!(valid_name("web-1"));
        assert!(valid_name("a.b_c"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
    }
}
