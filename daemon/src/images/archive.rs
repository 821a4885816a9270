//! `docker save` and `docker load` archives: Docker's format (manifest.json, a config file
//! and one tarball per layer) both ways, and OCI image layouts (oci-layout, index.json,
//! blobs/sha256/…) on load. The archive is unpacked into a private temporary directory with
//! the same no-escape rules as layers; every blob is checked against its digest.

use std::io::{Read, Write};
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{digest, hex_of, reference, unpack, Error, ImageStore, Loaded};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Opens a file of the unpacked archive; symlinks inside it cannot lead outside.
fn open_in(root: &Path, rel: &str) -> Result<std::fs::File, Error> {
    let fd = crate::container::rootfs::open_in_root(root, rel, libc::O_RDONLY)
        .map_err(|e| Error::InvalidInput(format!("image archive: {rel}: {e}")))?;
    let f = std::fs::File::from(fd);
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(Error::InvalidInput(format!(
            "image archive: {rel} is not a file"
        )));
    }
    Ok(f)
}

fn read_in(root: &Path, rel: &str, limit: u64) -> Result<Vec<u8>, Error> {
    let mut b = Vec::new();
    open_in(root, rel)?.take(limit).read_to_end(&mut b)?;
    Ok(b)
}

pub fn load(store: &ImageStore, r: &mut dyn Read) -> Result<Loaded, Error> {
    let tmp = store.tmp_dir("load")?;
    let result = (|| {
        let d = digest::decompress(r)
            .map_err(|e| Error::InvalidInput(format!("image archive: {e}")))?;
        unpack::unpack(d, &tmp)?;
        let _w = store.write.lock().unwrap();
        if tmp.join("manifest.json").exists() {
            load_docker(store, &tmp)
        } else if tmp.join("index.json").exists() {
            load_oci(store, &tmp)
        } else {
            Err(Error::InvalidInput(
                "not an image archive: no manifest.json (docker save) or index.json (OCI layout)"
                    .into(),
            ))
        }
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn load_docker(store: &ImageStore, root: &Path) -> Result<Loaded, Error> {
    let m: Vec<ManifestEntry> = serde_json::from_slice(&read_in(root, "manifest.json", 16 << 20)?)
        .map_err(|e| Error::InvalidInput(format!("manifest.json: {e}")))?;
    let mut loaded = Loaded {
        tags: Vec::new(),
        ids: Vec::new(),
    };
    let mut pending_tags = Vec::new();
    for e in m {
        let config = read_in(root, &e.config, 64 << 20)?;
        // Docker names the config by its digest: check it when it does.
        let name = Path::new(&e.config)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let hex = name.trim_end_matches(".json");
        if super::valid_hex(hex) && digest::sha256_hex(&config) != hex {
            return Err(Error::InvalidInput(format!(
                "config {} does not match its digest",
                e.config
            )));
        }
        let v: Value = serde_json::from_slice(&config)
            .map_err(|err| Error::InvalidInput(format!("{}: {err}", e.config)))?;
        let diff_ids = ImageStore::diff_ids(&v);
        if diff_ids.len() != e.layers.len() {
            return Err(Error::InvalidInput(format!(
                "{}: {} layers listed, the config has {} diff ids",
                e.config,
                e.layers.len(),
                diff_ids.len()
            )));
        }
        let mut parent: Option<String> = None;
        for (path, diff) in e.layers.iter().zip(&diff_ids) {
            let f = open_in(root, path)?;
            let mut d = digest::decompress(f)
                .map_err(|err| Error::InvalidInput(format!("{path}: {err}")))?;
            parent = Some(store.add_layer(parent.as_deref(), &mut d, Some(diff))?);
        }
        let id = store.add_image(&config)?;
        for t in e.repo_tags.unwrap_or_default() {
            pending_tags.push((id.clone(), reference::parse(&t)?));
        }
        if !loaded.ids.contains(&id) {
            loaded.ids.push(id);
        }
    }
    for (id, t) in pending_tags {
        store.tag(&id, &t)?;
        loaded.tags.push(t.to_string());
    }
    Ok(loaded)
}

/// Reads `blobs/<alg>/<hex>` and checks its digest.
fn blob(root: &Path, digest_s: &str, limit: u64) -> Result<Vec<u8>, Error> {
    let hex = digest_s
        .strip_prefix("sha256:")
        .filter(|h| super::valid_hex(h))
        .ok_or_else(|| Error::InvalidInput(format!("unsupported digest {digest_s:?}")))?;
    let b = read_in(root, &format!("blobs/sha256/{hex}"), limit)?;
    if digest::sha256_hex(&b) != hex {
        return Err(Error::InvalidInput(format!(
            "blob {digest_s} does not match its digest"
        )));
    }
    Ok(b)
}

fn load_oci(store: &ImageStore, root: &Path) -> Result<Loaded, Error> {
    let index: Value = serde_json::from_slice(&read_in(root, "index.json", 16 << 20)?)
        .map_err(|e| Error::InvalidInput(format!("index.json: {e}")))?;
    let mut loaded = Loaded {
        tags: Vec::new(),
        ids: Vec::new(),
    };
    let mut todo: Vec<(Value, Option<String>)> = index["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let name = m["annotations"]["io.containerd.image.name"]
                .as_str()
                .or_else(|| {
                    m["annotations"]["org.opencontainers.image.ref.name"]
                        .as_str()
                        .filter(|n| n.contains(':') || n.contains('/'))
                })
                .map(str::to_string);
            (m, name)
        })
        .collect();
    let mut guard = 0;
    while let Some((desc, name)) = todo.pop() {
        guard += 1;
        if guard > 1000 {
            return Err(Error::InvalidInput("index.json nests too deeply".into()));
        }
        let d = desc["digest"].as_str().unwrap_or("");
        let body: Value = serde_json::from_slice(&blob(root, d, 16 << 20)?)
            .map_err(|e| Error::InvalidInput(format!("manifest {d}: {e}")))?;
        let mt = desc["mediaType"]
            .as_str()
            .or(body["mediaType"].as_str())
            .unwrap_or("");
        if mt.contains("index") || mt.contains("manifest.list") {
            // A multi-platform index: this machine's platform only.
            let arch = if std::env::consts::ARCH == "aarch64" {
                "arm64"
            } else {
                "amd64"
            };
            for m in body["manifests"].as_array().cloned().unwrap_or_default() {
                if m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch {
                    todo.push((m, name.clone()));
                }
            }
            continue;
        }
        let cd = body["config"]["digest"].as_str().unwrap_or("");
        let config = blob(root, cd, 64 << 20)?;
        let v: Value = serde_json::from_slice(&config)
            .map_err(|e| Error::InvalidInput(format!("config {cd}: {e}")))?;
        let diff_ids = ImageStore::diff_ids(&v);
        let layers = body["layers"].as_array().cloned().unwrap_or_default();
        if layers.len() != diff_ids.len() {
            return Err(Error::InvalidInput(format!(
                "manifest {d}: layer count differs from the config's diff ids"
            )));
        }
        let mut parent: Option<String> = None;
        for (l, diff) in layers.iter().zip(&diff_ids) {
            let ld = l["digest"].as_str().unwrap_or("");
            let hex = ld
                .strip_prefix("sha256:")
                .filter(|h| super::valid_hex(h))
                .ok_or_else(|| Error::InvalidInput(format!("unsupported layer digest {ld:?}")))?;
            let f = open_in(root, &format!("blobs/sha256/{hex}"))?;
            let mut hashing = digest::Hashing::new(f);
            {
                let mut dec = digest::decompress(&mut hashing)
                    .map_err(|e| Error::InvalidInput(format!("layer {ld}: {e}")))?;
                parent = Some(store.add_layer(parent.as_deref(), &mut dec, Some(diff))?);
            }
            let (got, _) = hashing.finish()?;
            if got != ld {
                return Err(Error::InvalidInput(format!(
                    "layer blob {ld} does not match its digest ({got})"
                )));
            }
        }
        let id = store.add_image(&config)?;
        if let Some(n) = name {
            let r = reference::parse(&n)?;
            store.tag(&id, &r)?;
            loaded.tags.push(r.to_string());
        }
        if !loaded.ids.contains(&id) {
            loaded.ids.push(id);
        }
    }
    Ok(loaded)
}

pub fn save(
    store: &ImageStore,
    images: &[(String, Vec<String>)],
    w: impl Write,
) -> Result<(), Error> {
    let mut b = tar::Builder::new(w);
    let mut manifest = Vec::new();
    let mut written = std::collections::HashSet::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let add =
        |b: &mut tar::Builder<_>, name: &str, size: u64, r: &mut dyn Read| -> Result<(), Error> {
            let mut h = tar::Header::new_gnu();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_mtime(now);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, r)?;
            Ok(())
        };
    for (id, tags) in images {
        let config = store.config_bytes(id)?;
        let cname = format!("blobs/sha256/{}", hex_of(id));
        if written.insert(cname.clone()) {
            add(&mut b, &cname, config.len() as u64, &mut config.as_slice())?;
        }
        let mut layers = Vec::new();
        for (tar_path, diff) in store.layer_files(id)? {
            let lname = format!("blobs/sha256/{}", hex_of(&diff));
            if written.insert(lname.clone()) {
                let f = std::fs::File::open(&tar_path)?;
                let size = f.metadata()?.len();
                add(
                    &mut b,
                    &lname,
                    size,
                    &mut std::io::BufReader::with_capacity(1 << 20, f),
                )?;
            }
            layers.push(lname);
        }
        manifest.push(serde_json::json!({"Config": cname, "RepoTags": tags, "Layers": layers}));
    }
    let m = serde_json::to_vec(&manifest).unwrap();
    add(&mut b, "manifest.json", m.len() as u64, &mut m.as_slice())?;
    b.into_inner()?.flush()?;
    Ok(())
}
