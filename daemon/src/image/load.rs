//! `docker load`: Docker's save format (manifest.json with legacy `<id>/layer.tar` files or,
//! since Docker 25, `blobs/sha256/…` paths) and OCI image layouts (oci-layout, index.json),
//! plain or compressed.
//!
//! The archive streams once into private files under `tmp/` (hashed while written), because
//! its index may come after the blobs it names. Then every image is checked (manifest shape,
//! config and blob digests, layer counts, tags) before any layer is unpacked, each layer is
//! unpacked once and verified against its diff id, and finally all images and tags are
//! committed together. A failure removes the layers this load made: nothing is left behind.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::config::{Loaded, LoadedImage};
use super::digest::{decompress, sha256_of, HashWriter};
use super::error::{input_err, io_err, Error, Result};
use super::reference::Reference;
use super::store::ImageStore;

/// JSON documents of an archive (manifests, configs, indexes) are small; refuse huge ones.
const JSON_LIMIT: u64 = 32 << 20;

/// One regular file of the archive, spooled to disk.
struct Staged {
    path: PathBuf,
    digest: String,
    size: u64,
}

/// The archive's files by their normalised path, and its links.
#[derive(Default)]
struct Archive {
    files: BTreeMap<String, Staged>,
    links: BTreeMap<String, String>,
}

/// `a/./b/` → `a/b`; refuses `..` above the root and absolute paths.
fn normalise(p: &str) -> Result<String> {
    let mut out: Vec<&str> = Vec::new();
    if p.starts_with('/') {
        return Err(Error::invalid(format!(
            "image archive entry {p:?} has an absolute path"
        )));
    }
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(Error::invalid(format!(
                        "image archive entry {p:?} escapes the archive"
                    )));
                }
            }
            c => out.push(c),
        }
    }
    Ok(out.join("/"))
}

impl Archive {
    fn read(r: &mut dyn Read, dir: &Path) -> Result<Archive> {
        let (dec, _) = decompress(r, "image archive")?;
        let mut ar = tar::Archive::new(dec);
        let mut out = Archive::default();
        let entries = ar.entries().map_err(|e| input_err("image archive", e))?;
        for (n, e) in entries.enumerate() {
            let mut e = e.map_err(|e| input_err("image archive", e))?;
            let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let path = normalise(&raw)?;
            match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let staged = dir.join(n.to_string());
                    let f = std::fs::File::create(&staged)
                        .map_err(|x| io_err("create", staged.display(), x))?;
                    let mut w = HashWriter::new(io::BufWriter::with_capacity(256 * 1024, f));
                    io::copy(&mut e, &mut w).map_err(|x| match x.kind() {
                        io::ErrorKind::UnexpectedEof => {
                            input_err(&format!("image archive entry {raw:?}"), x)
                        }
                        _ if x.get_ref().is_some() || x.raw_os_error().is_some() => {
                            io_err("write", staged.display(), x)
                        }
                        _ => input_err(&format!("image archive entry {raw:?}"), x),
                    })?;
                    let (digest, size, mut bw) = w.finish();
                    io::Write::flush(&mut bw).map_err(|x| io_err("write", staged.display(), x))?;
                    out.links.remove(&path);
                    out.files.insert(
                        path,
                        Staged {
                            path: staged,
                            digest,
                            size,
                        },
                    );
                }
                tar::EntryType::Symlink => {
                    let t = String::from_utf8_lossy(&e.link_name_bytes().unwrap_or_default())
                        .into_owned();
                    let base = path.rsplit_once('/').map_or("", |(d, _)| d);
                    let target = normalise(&format!("{base}/{t}"))?;
                    out.files.remove(&path);
                    out.links.insert(path, target);
                }
                tar::EntryType::Link => {
                    let t = String::from_utf8_lossy(&e.link_name_bytes().unwrap_or_default())
                        .into_owned();
                    out.files.remove(&path);
                    out.links.insert(path, normalise(&t)?);
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn get(&self, path: &str) -> Result<&Staged> {
        let mut p = normalise(path)?;
        for _ in 0..16 {
            if let Some(s) = self.files.get(&p) {
                return Ok(s);
            }
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        Err(Error::invalid(format!(
            "image archive has no file {path:?}"
        )))
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T> {
        let b = self.bytes(path)?;
        serde_json::from_slice(&b)
            .map_err(|e| Error::invalid(format!("image archive: {path} is malformed: {e}")))
    }

    fn bytes(&self, path: &str) -> Result<Vec<u8>> {
        let s = self.get(path)?;
        if s.size > JSON_LIMIT {
            return Err(Error::invalid(format!(
                "image archive: {path} is too large ({} bytes)",
                s.size
            )));
        }
        std::fs::read(&s.path).map_err(|e| io_err("read", s.path.display(), e))
    }

    /// A `blobs/sha256/<hex>` file, checked against its name (and `size` when given).
    fn blob(&self, digest: &str, size: Option<u64>) -> Result<&Staged> {
        let hex = sha256_of(digest)?;
        let s = self.get(&format!("blobs/sha256/{hex}"))?;
        self.check(s, digest, size)?;
        Ok(s)
    }

    fn check(&self, s: &Staged, digest: &str, size: Option<u64>) -> Result<()> {
        if s.digest != digest {
            return Err(Error::invalid(format!(
                "image archive: blob {digest} has the wrong content (its sha256 is {})",
                s.digest
            )));
        }
        if let Some(want) = size.filter(|w| *w != s.size) {
            return Err(Error::invalid(format!(
                "image archive: blob {digest} is {} bytes, its descriptor says {want}",
                s.size
            )));
        }
        Ok(())
    }

    /// The bytes of a (JSON) blob, checked.
    fn blob_bytes(&self, digest: &str, size: Option<u64>) -> Result<Vec<u8>> {
        self.blob(digest, size)?;
        self.bytes(&format!("blobs/sha256/{}", sha256_of(digest)?))
    }

    /// A file named by a docker-save manifest; a name that carries a digest
    /// (`blobs/sha256/<hex>`, `<hex>.json`) is checked against it.
    fn named(&self, path: &str) -> Result<&Staged> {
        let s = self.get(path)?;
        let p = normalise(path)?;
        let hex = p
            .strip_prefix("blobs/sha256/")
            .or_else(|| p.strip_suffix(".json").filter(|h| !h.contains('/')));
        if let Some(h) = hex.filter(|h| super::digest::is_sha256_hex(h)) {
            self.check(s, &format!("sha256:{h}"), None)?;
        }
        Ok(s)
    }
}

/// An image to add: its config and, bottom first, each layer's staged file and diff id.
struct Plan<'a> {
    config: Vec<u8>,
    layers: Vec<(&'a Staged, String)>,
    tags: Vec<Reference>,
}

fn plan_image<'a>(
    config: Vec<u8>,
    layers: Vec<&'a Staged>,
    tags: Vec<Reference>,
) -> Result<Plan<'a>> {
    let c: super::config::ImageConfig = serde_json::from_slice(&config)
        .map_err(|e| Error::invalid(format!("image archive: malformed image config: {e}")))?;
    if c.rootfs.diff_ids.len() != layers.len() {
        return Err(Error::invalid(format!(
            "image archive: the config names {} layers, the manifest {}",
            c.rootfs.diff_ids.len(),
            layers.len()
        )));
    }
    for d in &c.rootfs.diff_ids {
        sha256_of(d)?;
    }
    Ok(Plan {
        config,
        layers: layers.into_iter().zip(c.rootfs.diff_ids).collect(),
        tags,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn plan_docker(ar: &Archive) -> Result<Vec<Plan<'_>>> {
    let entries: Vec<ManifestEntry> = ar.json("manifest.json")?;
    let mut plans = Vec::new();
    for e in entries {
        let config = ar.bytes(&e.config)?;
        ar.named(&e.config)?;
        let layers = e
            .layers
            .iter()
            .map(|l| ar.named(l))
            .collect::<Result<Vec<_>>>()?;
        let tags = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| Reference::parse(t))
            .collect::<Result<Vec<_>>>()?;
        plans.push(plan_image(config, layers, tags)?);
    }
    Ok(plans)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Value>,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

fn is_index(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.index.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The name an OCI layout gives a manifest: containerd's full-name annotation, or a
/// `ref.name` that is a whole reference (a bare tag names nothing).
fn oci_name(d: &Descriptor) -> Result<Option<Reference>> {
    if let Some(n) = d.annotations.get("io.containerd.image.name") {
        return Reference::parse(n).map(Some);
    }
    match d.annotations.get("org.opencontainers.image.ref.name") {
        Some(n) if n.contains(['/', ':']) => Reference::parse(n).map(Some),
        _ => Ok(None),
    }
}

fn plan_oci(ar: &Archive) -> Result<Vec<Plan<'_>>> {
    let layout: Value = ar.json("oci-layout")?;
    if layout["imageLayoutVersion"].as_str().is_none() {
        return Err(Error::invalid(
            "image archive: oci-layout has no imageLayoutVersion",
        ));
    }
    let index: Index = ar.json("index.json")?;
    let mut plans: Vec<Plan<'_>> = Vec::new();
    for top in &index.manifests {
        let name = oci_name(top)?;
        let mut d = top;
        let nested;
        if is_index(&d.media_type) {
            let b = ar.blob_bytes(&d.digest, d.size)?;
            nested = serde_json::from_slice::<Index>(&b).map_err(|e| {
                Error::invalid(format!(
                    "image archive: index {} is malformed: {e}",
                    d.digest
                ))
            })?;
            d = nested
                .manifests
                .iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_some_and(|p| p["os"] == "linux" && p["architecture"] == host_arch())
                })
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "image archive: index {} has no image for linux/{}",
                        top.digest,
                        host_arch()
                    ))
                })?;
        }
        let mb = ar.blob_bytes(&d.digest, d.size)?;
        let m: Manifest = serde_json::from_slice(&mb).map_err(|e| {
            Error::invalid(format!(
                "image archive: manifest {} is malformed: {e}",
                d.digest
            ))
        })?;
        let config = ar.blob_bytes(&m.config.digest, m.config.size)?;
        let layers = m
            .layers
            .iter()
            .map(|l| ar.blob(&l.digest, l.size))
            .collect::<Result<Vec<_>>>()?;
        plans.push(plan_image(config, layers, name.into_iter().collect())?);
    }
    Ok(plans)
}

impl ImageStore {
    /// `docker load`: adds the images of a `docker save` tarball or an OCI image layout
    /// tarball (either possibly gzip/zstd-compressed) and their tags. All or nothing.
    pub fn load(&self, r: &mut dyn Read) -> Result<Loaded> {
        let tmp = self.tmp_dir("load")?;
        let out = self.load_in(r, &tmp);
        let _ = std::fs::remove_dir_all(&tmp);
        out
    }

    fn load_in(&self, r: &mut dyn Read, tmp: &Path) -> Result<Loaded> {
        let ar = Archive::read(r, tmp)?;
        let plans = if ar.get("manifest.json").is_ok() {
            plan_docker(&ar)?
        } else if ar.get("index.json").is_ok() {
            plan_oci(&ar)?
        } else {
            return Err(Error::invalid(
                "not an image archive: it has no manifest.json (docker save) nor index.json (OCI layout)",
            ));
        };
        let mut created = Vec::new();
        let result = self.unpack_and_commit(&plans, &mut created);
        if result.is_err() {
            self.discard_layers(&created);
        }
        result
    }

    fn unpack_and_commit(&self, plans: &[Plan<'_>], created: &mut Vec<String>) -> Result<Loaded> {
        for p in plans {
            let mut parent: Option<String> = None;
            for (staged, diff_id) in &p.layers {
                let mut f = std::fs::File::open(&staged.path)
                    .map_err(|e| io_err("open", staged.path.display(), e))?;
                let l =
                    self.add_layer(parent.as_deref(), Some(diff_id), &mut f, Some(&staged.path))?;
                if l.created {
                    created.push(l.chain_id.clone());
                }
                parent = Some(l.chain_id);
            }
        }
        let mut st = self.lock();
        let mut loaded = Loaded::default();
        for p in plans {
            let (id, moved) = self.commit(&mut st, &p.config, &p.tags)?;
            loaded.moved.extend(moved);
            loaded.images.push(LoadedImage {
                id,
                tags: p.tags.iter().map(|t| t.to_string()).collect(),
            });
        }
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn archive_paths_stay_inside() {
        assert_eq!(normalise("./a/./b/").unwrap(), "a/b");
        assert_eq!(normalise("a/../b").unwrap(), "b");
        assert!(normalise("../x").is_err());
        assert!(normalise("/x").is_err());
        assert!(normalise("a/../../x").is_err());
    }
}
