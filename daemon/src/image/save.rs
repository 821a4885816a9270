//! `docker save`: a tarball in Docker 25's format, which is at once a docker-save archive
//! (manifest.json, repositories) and an OCI image layout (oci-layout, index.json, blobs):
//! every loader of either kind accepts it. Layers go out as their original uncompressed tars,
//! so their digests are the images' diff ids; nothing is buffered in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::sync::Arc;

use serde_json::{json, Value};

use super::error::{io_err, Error, Result};
use super::reference::Reference;
use super::store::{hex_of, Image, ImageStore};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// One image to save, with the tags it is saved under (canonical form).
struct Item {
    img: Arc<Image>,
    config: Vec<u8>,
    layers: Vec<(std::fs::File, u64, String)>,
    tags: Vec<String>,
}

fn header(size: u64, mtime: u64, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    if dir {
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
    } else {
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
    }
    h
}

fn put<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    data: impl Read,
    size: u64,
    mtime: u64,
) -> Result<()> {
    let mut h = header(size, mtime, false);
    b.append_data(&mut h, path, data)
        .map_err(|e| io_err("write save stream at", path, e))
}

impl ImageStore {
    /// Writes the images `names` names (tags, ids, id prefixes) as one tarball. Every name is
    /// resolved and every layer opened before the first byte is written, so a bad name fails
    /// cleanly. A tag saves the image under that tag; an id saves it untagged.
    pub fn save(&self, names: &[&str], w: impl Write) -> Result<()> {
        if names.is_empty() {
            return Err(Error::invalid("no images to save"));
        }
        let mut items: Vec<Item> = Vec::new();
        {
            let st = self.lock();
            for n in names {
                let img = ImageStore::resolve_in(&st, n)?;
                let tag = Reference::parse(n).ok().map(|r| r.canonical()).filter(|t| {
                    ImageStore::canonical_tags(&st, &img.id).contains(t) && !r_is_digest(t)
                });
                match items.iter_mut().find(|i| i.img.id == img.id) {
                    Some(i) => i.tags.extend(tag.filter(|t| !i.tags.contains(t))),
                    None => items.push(Item {
                        img,
                        config: Vec::new(),
                        layers: Vec::new(),
                        tags: tag.into_iter().collect(),
                    }),
                }
            }
        }
        for it in &mut items {
            it.config = self.config_bytes(&it.img.id)?;
            for (path, diff) in self.layer_tars(&it.img) {
                let f =
                    std::fs::File::open(&path).map_err(|e| io_err("open", path.display(), e))?;
                let size = f
                    .metadata()
                    .map_err(|e| io_err("stat", path.display(), e))?
                    .len();
                it.layers.push((f, size, diff));
            }
        }
        write_archive(items, w)
    }
}

fn r_is_digest(canonical: &str) -> bool {
    canonical.contains('@')
}

fn write_archive(items: Vec<Item>, w: impl Write) -> Result<()> {
    let mut b = tar::Builder::new(w);
    let mut written: BTreeSet<String> = BTreeSet::new();
    let mut manifests = Vec::new();
    let mut index = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for d in ["blobs/", "blobs/sha256/"] {
        b.append_data(&mut header(0, 0, true), d, std::io::empty())
            .map_err(|e| io_err("write save stream at", d, e))?;
    }
    for it in items {
        let mtime = crate::util::parse_rfc3339(it.img.config.created.as_deref().unwrap_or(""))
            .map_or(0, |t| crate::util::unix_secs(t).max(0) as u64);
        let cfg_hex = it.img.id.hex().to_string();
        if written.insert(cfg_hex.clone()) {
            put(
                &mut b,
                &format!("blobs/sha256/{cfg_hex}"),
                &it.config[..],
                it.config.len() as u64,
                mtime,
            )?;
        }
        let mut layer_descs = Vec::new();
        let mut layer_paths = Vec::new();
        for (f, size, diff) in it.layers {
            let hex = hex_of(&diff).to_string();
            let path = format!("blobs/sha256/{hex}");
            if written.insert(hex) {
                put(&mut b, &path, f.take(size), size, mtime)?;
            }
            layer_descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": diff, "size": size}));
            layer_paths.push(path);
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": it.img.id.as_str(), "size": it.config.len()},
            "layers": layer_descs,
        }))
        .expect("serialises");
        let m_hex = super::digest::sha256_hex(&manifest);
        if written.insert(m_hex.clone()) {
            put(
                &mut b,
                &format!("blobs/sha256/{m_hex}"),
                &manifest[..],
                manifest.len() as u64,
                mtime,
            )?;
        }
        let desc = |ann: Value| {
            let mut d = json!({"mediaType": MANIFEST, "digest": format!("sha256:{m_hex}"), "size": manifest.len()});
            if !ann.is_null() {
                d["annotations"] = ann;
            }
            d
        };
        let familiar: Vec<String> = it.tags.iter().map(|t| ImageStore::familiar(t)).collect();
        if it.tags.is_empty() {
            index.push(desc(Value::Null));
        }
        for (canon, fam) in it.tags.iter().zip(&familiar) {
            let tag = fam.rsplit_once(':').map_or("latest", |(_, t)| t);
            index.push(desc(json!({"io.containerd.image.name": canon, "org.opencontainers.image.ref.name": tag})));
            if let (Some((repo, tag)), Some(top)) =
                (fam.rsplit_once(':'), it.img.config.rootfs.diff_ids.last())
            {
                repositories
                    .entry(repo.to_string())
                    .or_default()
                    .insert(tag.to_string(), hex_of(top).to_string());
            }
        }
        manifests.push(json!({
            "Config": format!("blobs/sha256/{cfg_hex}"),
            "RepoTags": if familiar.is_empty() { Value::Null } else { json!(familiar) },
            "Layers": layer_paths,
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": index,
    }))
    .expect("serialises");
    let manifests = serde_json::to_vec(&manifests).expect("serialises");
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    put(&mut b, "index.json", &index[..], index.len() as u64, 0)?;
    put(
        &mut b,
        "manifest.json",
        &manifests[..],
        manifests.len() as u64,
        0,
    )?;
    put(&mut b, "oci-layout", &layout[..], layout.len() as u64, 0)?;
    if !repositories.is_empty() {
        let repos = serde_json::to_vec(&repositories).expect("serialises");
        put(&mut b, "repositories", &repos[..], repos.len() as u64, 0)?;
    }
    let mut w = b
        .into_inner()
        .map_err(|e| io_err("finish", "save stream", e))?;
    w.flush().map_err(|e| io_err("flush", "save stream", e))
}
