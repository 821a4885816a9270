//! The store itself: where things live on disk, the in-memory index of images and tags,
//! resolving references, adding layers and images. (What the API shows is in `views`;
//! tagging and removal in `remove`.)
//!
//! Layout under `<data-root>/image/`:
//! - `blobs/sha256/<hex>`: image configs, content-addressed (the config's digest is the id);
//! - `images/<hex>.json`: one record per image (when it was added and last tagged); the image
//!   exists once this file does, written last after its config and layers;
//! - `layers/<chain-hex>/diff/`: the unpacked layer, an overlay lower dir shared by every image
//!   whose layer stack reaches it; `layer.tar`: the uncompressed layer as received (its sha256
//!   is the diff id; `docker save` sends it back byte for byte); `layer.json`: diff id, parent,
//!   size. A layer directory appears by one rename, complete;
//! - `l/<16 hex>`: a short symlink to each used layer's `diff/` (as Docker's overlay2 keeps),
//!   so that a mount's `lowerdir=` list fits in a page for images of ~70+ layers;
//! - `repositories.json`: `{"docker.io/library/busybox:latest": "sha256:…"}`;
//! - `tmp/`: work in progress, emptied at open.
//!
//! Metadata files are replaced atomically (see `atomic`). At open, images whose files are
//! incomplete are skipped with a warning and layers and configs no image needs are removed,
//! so a crash at any moment leaves a consistent store.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::config::{ImageConfig, RunConfig};
use super::digest::{
    chain_id, decompress, is_sha256_hex, Compression, HashReader, ImageId, TeeReader,
};
use super::error::{io_err, Error, Result};
use super::reference::Reference;
use super::{atomic, fsat, layer};

pub(crate) const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Hex digits of a chain id that name its short link in `l/`.
const SHORT_LINK: usize = 16;

/// The image store. Cheap to share (`Arc<ImageStore>`); every method is synchronous and may
/// block on disk, so async callers use `spawn_blocking`.
pub struct ImageStore {
    root: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
pub(crate) struct State {
    pub images: BTreeMap<ImageId, Arc<Image>>,
    /// Canonical reference (`docker.io/library/busybox:latest`, or `name@sha256:…`) → image.
    pub tags: BTreeMap<String, ImageId>,
}

/// An image as the index holds it.
pub(crate) struct Image {
    pub id: ImageId,
    pub config: ImageConfig,
    /// Chain ids, bottom layer first.
    pub chain: Vec<String>,
    /// Unpacked size of each layer, bottom first.
    pub layer_sizes: Vec<u64>,
    pub record: ImageRecord,
}

impl Image {
    pub fn size(&self) -> u64 {
        self.layer_sizes.iter().sum()
    }

    pub(crate) fn created(&self) -> &str {
        self.config.created.as_deref().unwrap_or(ZERO_TIME)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub added: String,
    #[serde(default)]
    pub last_tag_time: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    pub diff_id: String,
    pub parent: Option<String>,
    pub size: u64,
}

/// A layer as `add_layer` left it.
pub(crate) struct NewLayer {
    pub chain_id: String,
    pub diff_id: String,
    /// Made by this call (false: it was already there).
    pub created: bool,
}

pub(crate) fn hex_of(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

fn now() -> String {
    crate::util::rfc3339(SystemTime::now())
}

pub(crate) fn unix(t: &str) -> i64 {
    crate::util::parse_rfc3339(t).map_or(0, crate::util::unix_secs)
}

fn familiar(canonical: &str) -> String {
    Reference::parse(canonical).map_or_else(|_| canonical.to_string(), |r| r.to_string())
}

impl ImageStore {
    /// Opens (creating if needed) the store under `<data_root>/image`, dropping leftovers of
    /// interrupted work.
    pub fn open(data_root: &Path) -> Result<ImageStore> {
        let root = data_root.join("image");
        for d in ["blobs/sha256", "images", "layers", "l", "tmp"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(|e| io_err("create", p.display(), e))?;
        }
        let store = ImageStore {
            root,
            state: Mutex::new(State::default()),
        };
        store.clean_tmp()?;
        let mut st = State::default();
        let images_dir = store.root.join("images");
        let rd =
            std::fs::read_dir(&images_dir).map_err(|e| io_err("read", images_dir.display(), e))?;
        for e in rd {
            let e = e.map_err(|e| io_err("read", images_dir.display(), e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json").filter(|h| is_sha256_hex(h)) else {
                continue;
            };
            match store.read_image(hex) {
                Ok(img) => {
                    st.images.insert(img.id.clone(), Arc::new(img));
                }
                Err(e) => crate::log::warn(format_args!(
                    "image store: skipping image sha256:{hex}: {e}"
                )),
            }
        }
        let repos = store.root.join("repositories.json");
        match std::fs::read(&repos) {
            Ok(b) => {
                let tags: BTreeMap<String, String> = serde_json::from_slice(&b)
                    .map_err(|e| io_err("parse", repos.display(), io::Error::other(e)))?;
                for (t, id) in tags {
                    match ImageId::parse(&id) {
                        Ok(id) if st.images.contains_key(&id) => {
                            st.tags.insert(t, id);
                        }
                        _ => crate::log::warn(format_args!(
                            "image store: dropping tag {t} of missing image {id}"
                        )),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", repos.display(), e)),
        }
        store.collect_garbage(&st)?;
        for c in st.images.values().flat_map(|i| i.chain.iter()) {
            store.ensure_link(c)?;
        }
        *store.state.lock().unwrap() = st;
        Ok(store)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn clean_tmp(&self) -> Result<()> {
        let tmp = self.root.join("tmp");
        let rd = std::fs::read_dir(&tmp).map_err(|e| io_err("read", tmp.display(), e))?;
        for e in rd.flatten() {
            let p = e.path();
            let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.map_err(|e| io_err("remove", p.display(), e))?;
        }
        Ok(())
    }

    /// Removes layers and configs that no image needs (left by a crash between writing a
    /// layer and the image that uses it, or between removing an image and its layers).
    fn collect_garbage(&self, st: &State) -> Result<()> {
        let mut chains = BTreeSet::new();
        for img in st.images.values() {
            chains.extend(img.chain.iter().map(|c| hex_of(c).to_string()));
        }
        let layers = self.root.join("layers");
        for e in std::fs::read_dir(&layers)
            .map_err(|e| io_err("read", layers.display(), e))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !chains.contains(&name) {
                crate::log::debug(format_args!("image store: removing unused layer {name}"));
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let links = self.root.join("l");
        for e in std::fs::read_dir(&links)
            .map_err(|e| io_err("read", links.display(), e))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !chains.iter().any(|c| c[..SHORT_LINK] == name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let blobs = self.root.join("blobs/sha256");
        for e in std::fs::read_dir(&blobs)
            .map_err(|e| io_err("read", blobs.display(), e))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let used = ImageId::parse(&name).is_ok_and(|id| st.images.contains_key(&id));
            if !used {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    pub(crate) fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex)
    }

    pub(crate) fn record_path(&self, id: &ImageId) -> PathBuf {
        self.root.join("images").join(format!("{}.json", id.hex()))
    }

    pub(crate) fn layer_dir(&self, chain: &str) -> PathBuf {
        self.root.join("layers").join(hex_of(chain))
    }

    fn link_path(&self, chain: &str) -> PathBuf {
        self.root.join("l").join(&hex_of(chain)[..SHORT_LINK])
    }

    /// Makes (or checks) the short link `l/<16 hex>` → `../layers/<hex>/diff`.
    fn ensure_link(&self, chain: &str) -> Result<()> {
        let p = self.link_path(chain);
        let target = PathBuf::from(format!("../layers/{}/diff", hex_of(chain)));
        match std::os::unix::fs::symlink(&target, &p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match std::fs::read_link(&p) {
                Ok(t) if t == target => Ok(()),
                // Another layer with the same 64-bit prefix: refuse rather than mix them.
                Ok(t) if p.join(".").exists() => Err(io_err(
                    "link",
                    p.display(),
                    io::Error::other(format!("already links {}", t.display())),
                )),
                // A stale link: replace it.
                _ => {
                    let _ = std::fs::remove_file(&p);
                    std::os::unix::fs::symlink(&target, &p)
                        .map_err(|e| io_err("link", p.display(), e))
                }
            },
            Err(e) => Err(io_err("link", p.display(), e)),
        }
    }

    /// A fresh private directory under `tmp/`.
    pub(crate) fn tmp_dir(&self, what: &str) -> Result<PathBuf> {
        let d = self.root.join("tmp").join(atomic::unique(what));
        std::fs::create_dir(&d).map_err(|e| io_err("create", d.display(), e))?;
        Ok(d)
    }

    fn read_layer(&self, chain: &str) -> Result<LayerRecord> {
        let p = self.layer_dir(chain).join("layer.json");
        let b = std::fs::read(&p).map_err(|e| io_err("read", p.display(), e))?;
        serde_json::from_slice(&b).map_err(|e| io_err("parse", p.display(), io::Error::other(e)))
    }

    fn layer_exists(&self, chain: &str) -> bool {
        self.layer_dir(chain).join("layer.json").is_file()
    }

    fn read_image(&self, hex: &str) -> Result<Image> {
        let id = ImageId::parse(hex)?;
        let rp = self.record_path(&id);
        let rb = std::fs::read(&rp).map_err(|e| io_err("read", rp.display(), e))?;
        let record: ImageRecord = serde_json::from_slice(&rb)
            .map_err(|e| io_err("parse", rp.display(), io::Error::other(e)))?;
        let cp = self.blob_path(hex);
        let cb = std::fs::read(&cp).map_err(|e| io_err("read", cp.display(), e))?;
        if ImageId::of_config(&cb) != id {
            return Err(io_err(
                "verify",
                cp.display(),
                io::Error::other("content does not match its digest"),
            ));
        }
        self.index_image(id, &cb, record)
    }

    /// Parses a config and checks that every layer it names is in the store.
    fn index_image(&self, id: ImageId, config: &[u8], record: ImageRecord) -> Result<Image> {
        let config: ImageConfig = serde_json::from_slice(config)
            .map_err(|e| Error::invalid(format!("image config {id}: {e}")))?;
        if config.rootfs.kind != "layers" {
            return Err(Error::invalid(format!(
                "image config {id}: rootfs type {:?} (want \"layers\")",
                config.rootfs.kind
            )));
        }
        let mut chain: Vec<String> = Vec::new();
        let mut layer_sizes = Vec::new();
        for d in &config.rootfs.diff_ids {
            super::digest::sha256_of(d)?;
            let c = chain_id(chain.last().map(String::as_str), d);
            let rec = self.read_layer(&c).map_err(|_| {
                Error::invalid(format!(
                    "image config {id} names layer {d}, which is not in the store"
                ))
            })?;
            layer_sizes.push(rec.size);
            chain.push(c);
        }
        Ok(Image {
            id,
            config,
            chain,
            layer_sizes,
            record,
        })
    }

    pub(crate) fn save_tags(&self, st: &State) -> Result<()> {
        let m: BTreeMap<&str, &str> = st
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        atomic::write(
            &self.root.join("repositories.json"),
            &serde_json::to_vec_pretty(&m).expect("a map of strings serialises"),
        )
    }

    /// Unpacks a layer from `r` (tar, or gzip/zstd-compressed tar) on top of `parent`. With
    /// `expected`, a layer already in the store is reused without reading `r`, and content
    /// whose digest differs is refused. With `staged`, `r` is that file (on the store's
    /// filesystem): an uncompressed one is hard-linked as the layer's tar instead of copied.
    pub(crate) fn add_layer(
        &self,
        parent: Option<&str>,
        expected: Option<&str>,
        r: &mut dyn Read,
        staged: Option<&Path>,
    ) -> Result<NewLayer> {
        if let Some(d) = expected {
            let c = chain_id(parent, d);
            if self.layer_exists(&c) {
                return Ok(NewLayer {
                    chain_id: c,
                    diff_id: d.to_string(),
                    created: false,
                });
            }
        }
        let tmp = self.tmp_dir("layer")?;
        let made = self.unpack_into(&tmp, parent, expected, r, staged);
        let result = made.and_then(|(chain, diff_id)| {
            let dest = self.layer_dir(&chain);
            match std::fs::rename(&tmp, &dest) {
                Ok(()) => {
                    let layers = self.root.join("layers");
                    fsat::fsync_dir(&layers).map_err(|e| io_err("fsync", layers.display(), e))?;
                    Ok(NewLayer {
                        chain_id: chain,
                        diff_id,
                        created: true,
                    })
                }
                // Another load made the same layer meanwhile: identical by content.
                Err(e) if dest.join("layer.json").is_file() => {
                    crate::log::debug(format_args!(
                        "image store: layer {chain} appeared meanwhile ({e})"
                    ));
                    let _ = std::fs::remove_dir_all(&tmp);
                    Ok(NewLayer {
                        chain_id: chain,
                        diff_id,
                        created: false,
                    })
                }
                Err(e) => Err(io_err("rename into", dest.display(), e)),
            }
        });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    fn unpack_into(
        &self,
        tmp: &Path,
        parent: Option<&str>,
        expected: Option<&str>,
        r: &mut dyn Read,
        staged: Option<&Path>,
    ) -> Result<(String, String)> {
        let diff = tmp.join("diff");
        std::fs::create_dir(&diff).map_err(|e| io_err("create", diff.display(), e))?;
        let tar_path = tmp.join("layer.tar");
        let (dec, comp) = decompress(r, "layer")?;
        let link = staged.filter(|_| comp == Compression::None);
        let sink: Box<dyn Write> = match link {
            Some(_) => Box::new(io::sink()),
            None => Box::new(BufWriter::with_capacity(
                256 * 1024,
                std::fs::File::create(&tar_path)
                    .map_err(|e| io_err("create", tar_path.display(), e))?,
            )),
        };
        let mut hr = HashReader::new(TeeReader {
            inner: dec,
            w: sink,
        });
        let unpacked = layer::unpack(&mut hr, &diff)?;
        let (diff_id, _, tee) = hr
            .finish()
            .map_err(|e| super::error::input_err("layer tarball", e))?;
        let mut sink = tee.w;
        sink.flush()
            .map_err(|e| io_err("write", tar_path.display(), e))?;
        drop(sink);
        if let Some(want) = expected {
            if want != diff_id {
                return Err(Error::invalid(format!(
                    "layer digest mismatch: the image config says {want}, the layer's content is {diff_id}"
                )));
            }
        }
        if let Some(src) = link {
            std::fs::hard_link(src, &tar_path)
                .or_else(|_| std::fs::copy(src, &tar_path).map(drop))
                .map_err(|e| io_err("link", tar_path.display(), e))?;
        }
        let chain = chain_id(parent, &diff_id);
        let rec = LayerRecord {
            diff_id: diff_id.clone(),
            parent: parent.map(str::to_string),
            size: unpacked.size,
        };
        let rp = tmp.join("layer.json");
        std::fs::write(&rp, serde_json::to_vec(&rec).expect("serialises"))
            .map_err(|e| io_err("write", rp.display(), e))?;
        // One syncfs makes every unpacked file durable before the rename publishes the layer.
        let fd = fsat::open_dir(tmp).map_err(|e| io_err("open", tmp.display(), e))?;
        fsat::syncfs(std::os::fd::AsFd::as_fd(&fd))
            .map_err(|e| io_err("syncfs", tmp.display(), e))?;
        Ok((chain, diff_id))
    }

    /// Adds an image (its config bytes; all its layers must be in the store) and points
    /// `tags` at it. Returns its id and the tags taken from other images (with their old ids).
    pub(crate) fn commit(
        &self,
        st: &mut State,
        config: &[u8],
        tags: &[Reference],
    ) -> Result<(ImageId, Vec<(String, String)>)> {
        let id = ImageId::of_config(config);
        if !st.images.contains_key(&id) {
            let record = ImageRecord {
                added: now(),
                last_tag_time: None,
            };
            let img = self
                .index_image(id.clone(), config, record.clone())
                .map_err(|e| match e {
                    Error::InvalidInput(m) if m.contains("not in the store") => {
                        Error::Io(io::Error::other(format!(
                            "{m}: it was removed while loading; load the image again"
                        )))
                    }
                    e => e,
                })?;
            for c in &img.chain {
                self.ensure_link(c)?;
            }
            let bp = self.blob_path(id.hex());
            if !bp.is_file() {
                atomic::write(&bp, config)?;
            }
            atomic::write(
                &self.record_path(&id),
                &serde_json::to_vec(&record).expect("serialises"),
            )?;
            st.images.insert(id.clone(), Arc::new(img));
        }
        let mut moved = Vec::new();
        if !tags.is_empty() {
            for t in tags {
                if let Some(old) = st.tags.insert(t.canonical(), id.clone()) {
                    if old != id {
                        moved.push((t.to_string(), old.to_string()));
                    }
                }
            }
            self.save_tags(st)?;
            self.touch_tag_time(st, &id)?;
        }
        Ok((id, moved))
    }

    pub(crate) fn touch_tag_time(&self, st: &mut State, id: &ImageId) -> Result<()> {
        let Some(img) = st.images.get(id) else {
            return Ok(());
        };
        let record = ImageRecord {
            last_tag_time: Some(now()),
            ..img.record.clone()
        };
        atomic::write(
            &self.record_path(id),
            &serde_json::to_vec(&record).expect("serialises"),
        )?;
        let img = Image {
            id: img.id.clone(),
            config: img.config.clone(),
            chain: img.chain.clone(),
            layer_sizes: img.layer_sizes.clone(),
            record,
        };
        st.images.insert(id.clone(), Arc::new(img));
        Ok(())
    }

    /// Removes layers made by an operation that failed before any image used them.
    pub(crate) fn discard_layers(&self, chains: &[String]) {
        let st = self.lock();
        let used: BTreeSet<&String> = st.images.values().flat_map(|i| i.chain.iter()).collect();
        let trash: Vec<PathBuf> = chains
            .iter()
            .filter(|c| !used.contains(c))
            .filter_map(|c| self.move_to_trash(c).ok())
            .collect();
        drop(st);
        for t in trash {
            let _ = std::fs::remove_dir_all(t);
        }
    }

    /// Moves a layer out of `layers/` in one rename (fast, under the lock); the caller
    /// deletes the returned directory after unlocking.
    pub(crate) fn move_to_trash(&self, chain: &str) -> Result<PathBuf> {
        let to = self.root.join("tmp").join(atomic::unique("trash"));
        let from = self.layer_dir(chain);
        std::fs::rename(&from, &to).map_err(|e| io_err("remove", from.display(), e))?;
        let _ = std::fs::remove_file(self.link_path(chain));
        Ok(to)
    }

    // ---- lookups --------------------------------------------------------------------------

    /// The image `s` names: a tag or digest reference, a full id, or a unique id prefix
    /// (with or without `sha256:`), as Docker resolves them.
    pub fn resolve(&self, s: &str) -> Result<ImageId> {
        Self::resolve_in(&self.lock(), s).map(|i| i.id.clone())
    }

    pub(crate) fn resolve_in(st: &State, s: &str) -> Result<Arc<Image>> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if is_sha256_hex(hex) {
            if let Some(i) = st.images.get(&ImageId::parse(hex)?) {
                return Ok(i.clone());
            }
        }
        let parsed = Reference::parse(s);
        if let Ok(r) = &parsed {
            if let Some(id) = st.tags.get(&r.canonical()) {
                if let Some(i) = st.images.get(id) {
                    return Ok(i.clone());
                }
            }
        }
        if !hex.is_empty()
            && hex.len() <= 64
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            let mut hits = st.images.values().filter(|i| i.id.hex().starts_with(hex));
            if let Some(first) = hits.next() {
                if hits.next().is_some() {
                    return Err(Error::invalid(format!(
                        "multiple IDs found with provided prefix: {s}"
                    )));
                }
                return Ok(first.clone());
            }
        }
        match parsed {
            Ok(r) => Err(Error::no_such_image(&r.to_string())),
            // An id (or `sha256:` prefix) that matches nothing is a missing image, not a
            // malformed name.
            Err(_) if s.starts_with("sha256:") || is_sha256_hex(s) => Err(Error::no_such_image(s)),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn refs_of(st: &State, id: &ImageId) -> Vec<Reference> {
        st.tags
            .iter()
            .filter(|(_, v)| *v == id)
            .filter_map(|(k, _)| Reference::parse(k).ok())
            .collect()
    }

    /// Familiar tags of an image (`busybox:latest`), sorted.
    pub fn tags_of(&self, id: &ImageId) -> Vec<String> {
        Self::repo_tags(&self.lock(), id)
    }

    pub(crate) fn repo_tags(st: &State, id: &ImageId) -> Vec<String> {
        Self::refs_of(st, id)
            .iter()
            .filter(|r| !r.is_digest())
            .map(|r| r.to_string())
            .collect()
    }

    pub(crate) fn repo_digests(st: &State, id: &ImageId) -> Vec<String> {
        Self::refs_of(st, id)
            .iter()
            .filter(|r| r.is_digest())
            .map(|r| r.to_string())
            .collect()
    }

    /// The image config.
    pub fn config(&self, id: &ImageId) -> Result<ImageConfig> {
        self.image(id).map(|i| i.config.clone())
    }

    /// The `config` section (what containers inherit); empty when the image has none.
    pub fn run_config(&self, id: &ImageId) -> Result<RunConfig> {
        self.image(id)
            .map(|i| i.config.config.clone().unwrap_or_default())
    }

    /// The exact config bytes (their sha256 is the id).
    pub fn config_bytes(&self, id: &ImageId) -> Result<Vec<u8>> {
        self.image(id)?;
        let p = self.blob_path(id.hex());
        std::fs::read(&p).map_err(|e| io_err("read", p.display(), e))
    }

    pub(crate) fn image(&self, id: &ImageId) -> Result<Arc<Image>> {
        self.lock()
            .images
            .get(id)
            .cloned()
            .ok_or_else(|| Error::no_such_image(id.as_str()))
    }

    /// The overlay lower dirs of an image, top layer first (`lowerdir=a:b:c` order): the
    /// short links `<data-root>/image/l/<16 hex>` to each layer's `diff/` (overlayfs follows
    /// them at mount time). Empty for an image without layers.
    pub fn lowerdirs(&self, id: &ImageId) -> Result<Vec<PathBuf>> {
        let img = self.image(id)?;
        Ok(img.chain.iter().rev().map(|c| self.link_path(c)).collect())
    }

    /// Unpacked size of the image's layers (`Size` in list and inspect).
    pub fn size(&self, id: &ImageId) -> Result<u64> {
        self.image(id).map(|i| i.size())
    }

    pub fn count(&self) -> usize {
        self.lock().images.len()
    }

    /// Paths of the uncompressed layer tars of an image, bottom first, with their diff ids.
    pub(crate) fn layer_tars(&self, img: &Image) -> Vec<(PathBuf, String)> {
        img.chain
            .iter()
            .zip(&img.config.rootfs.diff_ids)
            .map(|(c, d)| (self.layer_dir(c).join("layer.tar"), d.clone()))
            .collect()
    }

    /// The canonical references naming an image (for `docker save`).
    pub(crate) fn canonical_tags(st: &State, id: &ImageId) -> Vec<String> {
        st.tags
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub(crate) fn familiar(canonical: &str) -> String {
        familiar(canonical)
    }
}
