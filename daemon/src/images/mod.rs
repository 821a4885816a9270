//! The image store: content-addressed image configs, layers unpacked once per chain id and
//! shared by every image and container that uses them, and the repository tags.
//!
//! Layout under `<data-root>/image/`:
//! - `images/<hex>/config.json`: the image config, byte for byte (its sha256 is the id);
//! - `layers/<chain-hex>/diff/`: the unpacked layer (an overlay lower dir),
//!   `layers/<chain-hex>/layer.tar`: the uncompressed layer as received (for `docker save`),
//!   `layers/<chain-hex>/meta.json`: diff id, parent chain, unpacked size;
//! - `repositories.json`: `{"busybox:latest": "sha256:…"}`;
//! - `tmp/`: work in progress, renamed into place only when complete and verified.
//!
//! Every metadata file is written atomically (temp, fsync, rename, fsync dir). A crash leaves
//! at most an unreferenced directory in `tmp/`, removed at the next start.

mod archive;
mod digest;
pub mod reference;
mod unpack;

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use reference::Reference;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("image store: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LayerMeta {
    diff_id: String,
    parent: Option<String>,
    size: u64,
}

pub struct ImageStore {
    root: PathBuf,
    tags: Mutex<BTreeMap<String, String>>,
    /// Serialises changes to images and layers (loads, removals).
    write: Mutex<()>,
}

fn hex_of(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

fn valid_hex(h: &str) -> bool {
    h.len() == 64
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(p) => format!(
            "sha256:{}",
            digest::sha256_hex(format!("{p} {diff_id}").as_bytes())
        ),
    }
}

/// The `config` section of an image config, what containers inherit.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RunConfig {
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: String,
    pub user: String,
    pub volumes: Option<BTreeMap<String, Value>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub stop_signal: Option<String>,
}

impl ImageStore {
    pub fn open(data_root: &Path) -> Result<ImageStore, Error> {
        let root = data_root.join("image");
        for d in ["images", "layers", "tmp"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        // Leftovers of interrupted work.
        for e in std::fs::read_dir(root.join("tmp"))?.flatten() {
            let _ = std::fs::remove_dir_all(e.path());
        }
        let tags = match std::fs::read(root.join("repositories.json")) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Io(io::Error::other(format!("repositories.json: {e}"))))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(ImageStore {
            root,
            tags: Mutex::new(tags),
            write: Mutex::new(()),
        })
    }

    fn image_dir(&self, id: &str) -> PathBuf {
        self.root.join("images").join(hex_of(id))
    }

    fn layer_dir(&self, chain: &str) -> PathBuf {
        self.root.join("layers").join(hex_of(chain))
    }

    fn tmp_dir(&self, what: &str) -> Result<PathBuf, Error> {
        let d = self
            .root
            .join("tmp")
            .join(format!("{what}-{}", &crate::util::random_id()[..16]));
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    fn save_tags(&self, tags: &BTreeMap<String, String>) -> Result<(), Error> {
        crate::util::atomic_write(
            &self.root.join("repositories.json"),
            &serde_json::to_vec_pretty(tags).unwrap(),
        )?;
        Ok(())
    }

    /// Every image id in the store.
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root.join("images"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str().map(|s| format!("sha256:{s}")))
                    .filter(|id| valid_hex(hex_of(id)))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn count(&self) -> usize {
        self.ids().len()
    }

    pub fn config_bytes(&self, id: &str) -> Result<Vec<u8>, Error> {
        std::fs::read(self.image_dir(id).join("config.json"))
            .map_err(|_| Error::NotFound(format!("No such image: {id}")))
    }

    pub fn config(&self, id: &str) -> Result<Value, Error> {
        serde_json::from_slice(&self.config_bytes(id)?).map_err(|e| Error::Io(io::Error::other(e)))
    }

    pub fn run_config(&self, id: &str) -> Result<RunConfig, Error> {
        let c = self.config(id)?;
        Ok(
            serde_json::from_value(c.get("config").cloned().unwrap_or(Value::Null))
                .unwrap_or_default(),
        )
    }

    fn diff_ids(config: &Value) -> Vec<String> {
        config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn chain_ids(config: &Value) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in Self::diff_ids(config) {
            let c = chain_id(out.last().map(String::as_str), &d);
            out.push(c);
        }
        out
    }

    /// Overlay lower dirs for the image, top layer first.
    pub fn lowerdirs(&self, id: &str) -> Result<Vec<PathBuf>, Error> {
        let c = self.config(id)?;
        let mut v: Vec<PathBuf> = Self::chain_ids(&c)
            .iter()
            .map(|ch| self.layer_dir(ch).join("diff"))
            .collect();
        v.reverse();
        Ok(v)
    }

    fn layer_size(&self, chain: &str) -> u64 {
        std::fs::read(self.layer_dir(chain).join("meta.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<LayerMeta>(&b).ok())
            .map_or(0, |m| m.size)
    }

    /// Unpacked size of all the image's layers.
    pub fn size(&self, id: &str) -> Result<u64, Error> {
        let c = self.config(id)?;
        Ok(Self::chain_ids(&c)
            .iter()
            .map(|ch| self.layer_size(ch))
            .sum())
    }

    pub fn layers_size(&self) -> u64 {
        std::fs::read_dir(self.root.join("layers"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .map(|s| self.layer_size(&format!("sha256:{s}")))
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    pub fn tags_of(&self, id: &str) -> Vec<String> {
        self.tags
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// A tag, a full or short id (with or without `sha256:`).
    pub fn resolve(&self, s: &str) -> Result<String, Error> {
        let not_found = || Error::NotFound(format!("No such image: {s}"));
        if let Ok(r) = reference::parse(s) {
            if let Some(id) = self.tags.lock().unwrap().get(&r.to_string()) {
                return Ok(id.clone());
            }
        }
        let h = s.strip_prefix("sha256:").unwrap_or(s);
        if !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<String> = self
                .ids()
                .into_iter()
                .filter(|id| hex_of(id).starts_with(h))
                .collect();
            return match hits.len() {
                1 => Ok(hits[0].clone()),
                0 => Err(not_found()),
                _ => Err(Error::InvalidInput(format!(
                    "multiple images found with prefix {s}"
                ))),
            };
        }
        reference::parse(s)?;
        Err(not_found())
    }

    /// Adds one layer on top of `parent` from an uncompressed tar stream; with `expected`,
    /// an existing layer is reused without reading and a digest mismatch is refused.
    fn add_layer(
        &self,
        parent: Option<&str>,
        r: &mut dyn Read,
        expected: Option<&str>,
    ) -> Result<String, Error> {
        if let Some(d) = expected {
            let chain = chain_id(parent, d);
            if self.layer_dir(&chain).join("meta.json").exists() {
                return Ok(chain);
            }
        }
        let tmp = self.tmp_dir("layer")?;
        let result = (|| -> Result<String, Error> {
            let diff = tmp.join("diff");
            std::fs::create_dir(&diff)?;
            let tar_file = std::fs::File::create(tmp.join("layer.tar"))?;
            let mut hashing = digest::Hashing::new(Tee {
                r,
                w: io::BufWriter::new(tar_file),
            });
            let unpacked = unpack::unpack(&mut hashing, &diff)?;
            let (diff_id, _) = hashing.finish()?;
            if let Some(want) = expected {
                if want != diff_id {
                    return Err(Error::InvalidInput(format!(
                        "layer digest mismatch: the image says {want}, the content is {diff_id}"
                    )));
                }
            }
            let chain = chain_id(parent, &diff_id);
            let meta = LayerMeta {
                diff_id,
                parent: parent.map(str::to_string),
                size: unpacked.bytes,
            };
            crate::util::atomic_write(&tmp.join("meta.json"), &serde_json::to_vec(&meta).unwrap())?;
            let dest = self.layer_dir(&chain);
            if dest.join("meta.json").exists() {
                // Another load made it meanwhile: identical by content.
                let _ = std::fs::remove_dir_all(&tmp);
            } else {
                let _ = std::fs::remove_dir_all(&dest);
                std::fs::rename(&tmp, &dest)?;
                std::fs::File::open(self.root.join("layers"))?.sync_all()?;
            }
            Ok(chain)
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Stores a config whose layers are all present; returns its id.
    fn add_image(&self, config: &[u8]) -> Result<String, Error> {
        let v: Value = serde_json::from_slice(config)
            .map_err(|e| Error::InvalidInput(format!("image config is not JSON: {e}")))?;
        for ch in Self::chain_ids(&v) {
            if !self.layer_dir(&ch).join("meta.json").exists() {
                return Err(Error::InvalidInput(format!(
                    "image config names a missing layer {ch}"
                )));
            }
        }
        let id = format!("sha256:{}", digest::sha256_hex(config));
        let dir = self.image_dir(&id);
        std::fs::create_dir_all(&dir)?;
        crate::util::atomic_write(&dir.join("config.json"), config)?;
        Ok(id)
    }

    pub fn tag(&self, id: &str, r: &Reference) -> Result<Option<String>, Error> {
        let mut tags = self.tags.lock().unwrap();
        let old = tags.insert(r.to_string(), id.to_string());
        self.save_tags(&tags)?;
        Ok(old.filter(|o| o != id))
    }

    pub fn inspect_json(&self, id: &str) -> Result<Value, Error> {
        let c = self.config(id)?;
        let size = self.size(id)?;
        let lowers: Vec<String> = self
            .lowerdirs(id)?
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        Ok(json!({
            "Id": id,
            "RepoTags": self.tags_of(id),
            "RepoDigests": [],
            "Parent": "",
            "Comment": c.get("comment").cloned().unwrap_or(json!("")),
            "Created": c.get("created").cloned().unwrap_or(json!(crate::util::ZERO_TIME)),
            "DockerVersion": c.get("docker_version").cloned().unwrap_or(json!("")),
            "Author": c.get("author").cloned().unwrap_or(json!("")),
            "Config": c.get("config").cloned().unwrap_or(json!({})),
            "Architecture": c.get("architecture").cloned().unwrap_or(json!("amd64")),
            "Variant": c.get("variant").cloned().unwrap_or(Value::Null),
            "Os": c.get("os").cloned().unwrap_or(json!("linux")),
            "Size": size,
            "GraphDriver": {"Name": "overlay2", "Data": {"LowerDir": lowers.join(":")}},
            "RootFS": {"Type": "layers", "Layers": Self::diff_ids(&c)},
            "Metadata": {"LastTagTime": crate::util::ZERO_TIME},
        }))
    }

    pub fn created_unix(&self, id: &str) -> i64 {
        self.config(id)
            .ok()
            .and_then(|c| c["created"].as_str().and_then(crate::util::parse_rfc3339))
            .map_or(0, crate::util::unix_secs)
    }

    pub fn history_json(&self, id: &str) -> Result<Value, Error> {
        let c = self.config(id)?;
        let chains = Self::chain_ids(&c);
        let mut layer = 0;
        let mut out = Vec::new();
        for h in c["history"].as_array().cloned().unwrap_or_default() {
            let empty = h["empty_layer"].as_bool().unwrap_or(false);
            let size = if empty {
                0
            } else {
                chains.get(layer).map_or(0, |ch| self.layer_size(ch))
            };
            if !empty {
                layer += 1;
            }
            out.push(json!({
                "Id": "<missing>",
                "Created": h["created"].as_str().and_then(crate::util::parse_rfc3339).map_or(0, crate::util::unix_secs),
                "CreatedBy": h["created_by"].as_str().unwrap_or(""),
                "Tags": null,
                "Size": size,
                "Comment": h["comment"].as_str().unwrap_or(""),
            }));
        }
        out.reverse();
        if let Some(first) = out.first_mut() {
            first["Id"] = json!(id);
            first["Tags"] = json!(self.tags_of(id));
        }
        Ok(Value::Array(out))
    }

    /// `docker rmi`: untags a tag reference (deleting the image when no tag is left), or
    /// deletes by id. `in_use(id)` names a container using the image.
    pub fn remove(
        &self,
        s: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<Value>, Error> {
        let _w = self.write.lock().unwrap();
        let id = self.resolve(s)?;
        let by_tag = reference::parse(s)
            .ok()
            .filter(|r| self.tags.lock().unwrap().contains_key(&r.to_string()));
        let mut out = Vec::new();
        let tags = self.tags_of(&id);
        if let Some(r) = by_tag {
            if tags.len() > 1 || (in_use(&id).is_some() && !force) {
                if tags.len() == 1 {
                    let c = in_use(&id).unwrap_or_default();
                    return Err(Error::Conflict(format!(
                        "conflict: unable to remove repository reference \"{s}\" (must force) - container {c} is using its referenced image {}",
                        &hex_of(&id)[..12]
                    )));
                }
                let mut t = self.tags.lock().unwrap();
                t.remove(&r.to_string());
                self.save_tags(&t)?;
                out.push(json!({"Untagged": r.to_string()}));
                return Ok(out);
            }
        } else if tags.len() > 1 && !force {
            return Err(Error::Conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                &hex_of(&id)[..12]
            )));
        }
        if let Some(c) = in_use(&id) {
            if !force {
                return Err(Error::Conflict(format!(
                    "conflict: unable to delete {} (cannot be forced) - image is being used by running container {c}",
                    &hex_of(&id)[..12]
                )));
            }
            // Forced: untag, keep the image for its containers (as Docker does).
            let mut t = self.tags.lock().unwrap();
            for tag in &tags {
                t.remove(tag);
                out.push(json!({"Untagged": tag}));
            }
            self.save_tags(&t)?;
            return Ok(out);
        }
        {
            let mut t = self.tags.lock().unwrap();
            for tag in &tags {
                t.remove(tag);
                out.push(json!({"Untagged": tag}));
            }
            self.save_tags(&t)?;
        }
        out.extend(self.delete_image(&id)?);
        Ok(out)
    }

    /// Deletes the image and the layers no other image needs.
    fn delete_image(&self, id: &str) -> Result<Vec<Value>, Error> {
        let c = self.config(id)?;
        std::fs::remove_dir_all(self.image_dir(id))?;
        let mut out = vec![json!({"Deleted": id})];
        let keep: HashSet<String> = self
            .ids()
            .iter()
            .filter_map(|i| self.config(i).ok())
            .flat_map(|c| Self::chain_ids(&c))
            .collect();
        for ch in Self::chain_ids(&c).iter().rev() {
            if !keep.contains(ch) {
                let _ = std::fs::remove_dir_all(self.layer_dir(ch));
                out.push(json!({"Deleted": ch}));
            }
        }
        Ok(out)
    }

    /// Untagged images not used by containers (all unused ones with `all`).
    pub fn prune(
        &self,
        all: bool,
        in_use: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Vec<Value>, u64), Error> {
        let _w = self.write.lock().unwrap();
        let mut out = Vec::new();
        let mut space = 0;
        for id in self.ids() {
            let tags = self.tags_of(&id);
            if (!tags.is_empty() && !all) || in_use(&id).is_some() {
                continue;
            }
            space += self.size(&id).unwrap_or(0);
            let mut t = self.tags.lock().unwrap();
            for tag in &tags {
                t.remove(tag);
                out.push(json!({"Untagged": tag}));
            }
            self.save_tags(&t)?;
            drop(t);
            out.extend(self.delete_image(&id)?);
        }
        Ok((out, space))
    }

    /// The rows of /images/json.
    pub fn list_json(&self, all_tags_filter: &dyn Fn(&str, &[String]) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        for id in self.ids() {
            let tags = self.tags_of(&id);
            if !all_tags_filter(&id, &tags) {
                continue;
            }
            let labels = self
                .run_config(&id)
                .ok()
                .and_then(|r| r.labels)
                .unwrap_or_default();
            out.push(json!({
                "Id": id,
                "ParentId": "",
                "RepoTags": tags,
                "RepoDigests": [],
                "Created": self.created_unix(&id),
                "Size": self.size(&id).unwrap_or(0),
                "SharedSize": -1,
                "VirtualSize": self.size(&id).unwrap_or(0),
                "Labels": labels,
                "Containers": -1,
            }));
        }
        out.sort_by_key(|v| std::cmp::Reverse(v["Created"].as_i64().unwrap_or(0)));
        out
    }

    pub fn df_json(&self) -> Vec<Value> {
        self.list_json(&|_, _| true)
    }
}

/// Copies everything read through it to `w` (the layer's tar, kept for `docker save`).
struct Tee<'a, W: Write> {
    r: &'a mut dyn Read,
    w: W,
}

impl<W: Write> Read for Tee<'_, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.w.write_all(&buf[..n])?;
        if n == 0 {
            self.w.flush()?;
        }
        Ok(n)
    }
}

/// Dockerfile-style `changes` of `docker import -c` applied to a run config.
pub fn apply_changes(config: &mut Value, changes: &[String]) -> Result<(), Error> {
    let c = &mut config["config"];
    for ch in changes {
        let (instr, rest) = ch
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((ch.trim(), ""));
        let rest = rest.trim();
        let list = |s: &str| -> Value {
            match serde_json::from_str::<Vec<String>>(s) {
                Ok(v) => json!(v),
                Err(_) => json!(["/bin/sh", "-c", s]),
            }
        };
        let kv = |s: &str| -> Vec<(String, String)> {
            if let Some((k, v)) = s.split_once('=') {
                if !k.contains(' ') {
                    return s
                        .split_whitespace()
                        .filter_map(|p| p.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                        .collect();
                }
                return vec![(k.to_string(), v.to_string())];
            }
            match s.split_once(' ') {
                Some((k, v)) => vec![(k.to_string(), v.trim().to_string())],
                None => vec![],
            }
        };
        match instr.to_ascii_uppercase().as_str() {
            "CMD" => c["Cmd"] = list(rest),
            "ENTRYPOINT" => c["Entrypoint"] = list(rest),
            "WORKDIR" => c["WorkingDir"] = json!(rest),
            "USER" => c["User"] = json!(rest),
            "STOPSIGNAL" => c["StopSignal"] = json!(rest),
            "ENV" => {
                let mut env: Vec<String> = serde_json::from_value(c["Env"].clone()).unwrap_or_default();
                for (k, v) in kv(rest) {
                    env.retain(|e| !e.starts_with(&format!("{k}=")));
                    env.push(format!("{k}={v}"));
                }
                c["Env"] = json!(env);
            }
            "LABEL" => {
                for (k, v) in kv(rest) {
                    c["Labels"][k] = json!(v);
                }
            }
            "EXPOSE" => {
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                    c["ExposedPorts"][p] = json!({});
                }
            }
            "VOLUME" => {
                let vols: Vec<String> = serde_json::from_str(rest).unwrap_or_else(|_| rest.split_whitespace().map(str::to_string).collect());
                for v in vols {
                    c["Volumes"][v] = json!({});
                }
            }
            other => {
                return Err(Error::InvalidInput(format!(
                    "{other} is not a valid change command (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)"
                )))
            }
        }
    }
    Ok(())
}

/// Images named by `docker load` output.
pub struct Loaded {
    pub tags: Vec<String>,
    pub ids: Vec<String>,
}

impl ImageStore {
    /// `docker import`: a rootfs tarball (plain, gzip or zstd) as a one-layer image.
    pub fn import(
        &self,
        r: &mut dyn Read,
        tag: Option<&Reference>,
        changes: &[String],
        message: &str,
    ) -> Result<String, Error> {
        let _w = self.write.lock().unwrap();
        let mut d =
            digest::decompress(r).map_err(|e| Error::InvalidInput(format!("import: {e}")))?;
        let chain = self.add_layer(None, &mut d, None)?;
        let diff_id = chain.clone();
        let now = crate::util::rfc3339(std::time::SystemTime::now());
        let mut config = json!({
            "architecture": "amd64",
            "os": "linux",
            "created": now,
            "comment": message,
            "config": {"Env": [crate::container::spec::DEFAULT_PATH]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": now, "created_by": "berthd import", "comment": message}],
        });
        if std::env::consts::ARCH == "aarch64" {
            config["architecture"] = json!("arm64");
        }
        apply_changes(&mut config, changes)?;
        let bytes = serde_json::to_vec(&config).unwrap();
        let id = self.add_image(&bytes)?;
        if let Some(t) = tag {
            drop(_w);
            self.tag(&id, t)?;
        }
        Ok(id)
    }

    /// Layers by chain id of an image, bottom first, with their tar paths and diff ids.
    fn layer_files(&self, id: &str) -> Result<Vec<(PathBuf, String)>, Error> {
        let c = self.config(id)?;
        Ok(Self::chain_ids(&c)
            .iter()
            .zip(Self::diff_ids(&c))
            .map(|(ch, d)| (self.layer_dir(ch).join("layer.tar"), d))
            .collect())
    }

    pub fn save(&self, ids: &[(String, Vec<String>)], w: impl Write) -> Result<(), Error> {
        archive::save(self, ids, w)
    }

    pub fn load(&self, r: &mut dyn Read) -> Result<Loaded, Error> {
        archive::load(self, r)
    }
}
