//! Volumes with the `local` driver: a directory `<data-root>/volumes/<name>/_data` and a small
//! JSON record beside it (labels, options, created time, anonymous or not).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::{ApiError, ApiResult};
use crate::util;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub anonymous: bool,
}

pub struct Volumes {
    root: PathBuf,
    lock: Mutex<()>,
}

impl Volumes {
    pub fn open(root: &Path) -> std::io::Result<Volumes> {
        std::fs::create_dir_all(root)?;
        Ok(Volumes {
            root: root.to_path_buf(),
            lock: Mutex::new(()),
        })
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.root.join(name).join("_data")
    }

    fn meta(&self, name: &str) -> PathBuf {
        self.root.join(name).join("volume.json")
    }

    /// Docker's volume name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
    pub fn valid_name(name: &str) -> bool {
        crate::container::valid_name(name)
    }

    pub fn get(&self, name: &str) -> ApiResult<Volume> {
        if !Self::valid_name(name) {
            return Err(ApiError::not_found(format!("get {name}: no such volume")));
        }
        let b = std::fs::read(self.meta(name))
            .map_err(|_| ApiError::not_found(format!("get {name}: no such volume")))?;
        serde_json::from_slice(&b).map_err(ApiError::internal)
    }

    /// Creates the volume, or returns the existing one of that name (as Docker does).
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> ApiResult<Volume> {
        let _g = self.lock.lock().unwrap();
        let (name, anonymous) = match name.filter(|n| !n.is_empty()) {
            Some(n) => (n.to_string(), false),
            None => (util::random_id(), true),
        };
        if !Self::valid_name(&name) {
            return Err(ApiError::bad_request(format!(
                "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        if let Ok(v) = self.get(&name) {
            return Ok(v);
        }
        if !options.is_empty() {
            return Err(ApiError::bad_request(
                "local volume options (type, device, o) are not supported by berthd yet",
            ));
        }
        std::fs::create_dir_all(self.data_dir(&name))?;
        let v = Volume {
            name: name.clone(),
            created: util::rfc3339(SystemTime::now()),
            labels,
            options,
            anonymous,
        };
        util::atomic_write(&self.meta(&name), &serde_json::to_vec(&v).unwrap())?;
        Ok(v)
    }

    pub fn list(&self) -> Vec<Volume> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                if let Some(n) = e.file_name().to_str() {
                    if let Ok(v) = self.get(n) {
                        out.push(v);
                    }
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn is_anonymous(&self, name: &str) -> bool {
        self.get(name).is_ok_and(|v| v.anonymous)
    }

    /// Removes a volume unless `in_use` says a container mounts it (409, as Docker).
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> Option<String>,
    ) -> ApiResult<()> {
        let _g = self.lock.lock().unwrap();
        if self.get(name).is_err() {
            if force {
                return Ok(());
            }
            return Err(ApiError::not_found(format!("get {name}: no such volume")));
        }
        if let Some(c) = in_use(name) {
            return Err(ApiError::conflict(format!(
                "remove {name}: volume is in use - [{c}]"
            )));
        }
        std::fs::remove_dir_all(self.root.join(name))?;
        Ok(())
    }

    pub fn to_json(&self, v: &Volume) -> serde_json::Value {
        json!({
            "Name": v.name,
            "Driver": "local",
            "Mountpoint": self.data_dir(&v.name),
            "CreatedAt": v.created,
            "Labels": v.labels,
            "Options": v.options,
            "Scope": "local",
        })
    }

    pub fn size(&self, name: &str) -> u64 {
        dir_size(&self.data_dir(name))
    }
}

/// Bytes used by the files under `p` (not following symlinks).
pub fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}
