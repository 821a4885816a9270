//! The image store against real archives, as root: docker-save and OCI archives built here
//! byte by byte (hostile ones too), overlay mounts of the unpacked layers, and the store's
//! state checked after every refusal.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berthd::image::{Error, ImageId, ImageStore, ImageUser, Removed};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

// ---- archives --------------------------------------------------------------------------

fn sha(b: &[u8]) -> String {
    let d = Sha256::digest(b);
    format!(
        "sha256:{}",
        d.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

fn hex(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap()
}

/// One tar entry, written with a raw header so that hostile names get through unchanged.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Owned(&'a str, &'a [u8], u32, u32, u32, u64),
    Xattr(&'a str, &'a [u8], &'a str, &'a [u8]),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str, u32, u32),
    Fifo(&'a str),
}

fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    data: &[u8],
    link: &str,
    mode: u32,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    let _ = b;
    h
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    use tar::EntryType as T;
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (h, data): (tar::Header, &[u8]) = match *e {
            E::Dir(p, m) => (raw_entry(&mut b, p, T::Directory, b"", "", m), b""),
            E::File(p, d, m) => (raw_entry(&mut b, p, T::Regular, d, "", m), d),
            E::Owned(p, d, m, uid, gid, mtime) => {
                let mut h = raw_entry(&mut b, p, T::Regular, d, "", m);
                h.set_uid(uid.into());
                h.set_gid(gid.into());
                h.set_mtime(mtime);
                h.set_cksum();
                (h, d)
            }
            E::Xattr(p, d, k, v) => {
                let key = format!("SCHILY.xattr.{k}");
                b.append_pax_extensions([(key.as_str(), v)]).unwrap();
                (raw_entry(&mut b, p, T::Regular, d, "", 0o644), d)
            }
            E::Sym(p, t) => (raw_entry(&mut b, p, T::Symlink, b"", t, 0o777), b""),
            E::Hard(p, t) => (raw_entry(&mut b, p, T::Link, b"", t, 0o644), b""),
            E::Char(p, maj, min) => {
                let mut h = raw_entry(&mut b, p, T::Char, b"", "", 0o666);
                h.set_device_major(maj).unwrap();
                h.set_device_minor(min).unwrap();
                h.set_cksum();
                (h, b"")
            }
            E::Fifo(p) => (raw_entry(&mut b, p, T::Fifo, b"", "", 0o600), b""),
        };
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn config_for(layers: &[&[u8]], cmd: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2024-05-01T10:00:00Z",
        "config": {"Cmd": [cmd], "Env": ["PATH=/bin"], "Labels": {"made": "here"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-05-01T10:00:00Z", "created_by": "test"}],
    }))
    .unwrap()
}

fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data).unwrap();
}

/// A legacy docker-save archive (`<hex>.json`, `<n>/layer.tar`, manifest.json).
/// An image of a docker-save archive: config, layers, tags.
type SavedImage<'a> = (&'a [u8], &'a [&'a [u8]], &'a [&'a str]);

fn docker_save(images: &[SavedImage]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut manifest = Vec::new();
    for (i, (config, layers, tags)) in images.iter().enumerate() {
        let cfg = format!("{}.json", hex(&sha(config)));
        add(&mut b, &cfg, config);
        let mut paths = Vec::new();
        for (j, l) in layers.iter().enumerate() {
            let p = format!("l{i}-{j}/layer.tar");
            add(&mut b, &p, l);
            paths.push(p);
        }
        manifest.push(json!({"Config": cfg, "RepoTags": tags, "Layers": paths}));
    }
    add(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap()
}

/// An OCI image layout archive; `layers` are the blobs as stored (maybe compressed).
fn oci_layout(config: &[u8], layers: &[Vec<u8>], name: Option<&str>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let descs: Vec<Value> = layers
        .iter()
        .map(|l| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(l), "size": l.len()}))
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let mut desc = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&manifest), "size": manifest.len()});
    if let Some(n) = name {
        desc["annotations"] = json!({"io.containerd.image.name": n});
    }
    add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add(
        &mut b,
        "index.json",
        &serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [desc]})).unwrap(),
    );
    for blob in layers
        .iter()
        .map(Vec::as_slice)
        .chain([config, &manifest[..]])
    {
        add(&mut b, &format!("blobs/sha256/{}", hex(&sha(blob))), blob);
    }
    b.into_inner().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

// ---- store helpers ---------------------------------------------------------------------

struct T {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: ImageStore,
}

fn store() -> T {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = ImageStore::open(&root).unwrap();
    T {
        _dir: dir,
        root,
        store,
    }
}

impl T {
    fn load(&self, archive: &[u8]) -> Result<berthd::image::Loaded, Error> {
        self.store.load(&mut &archive[..])
    }

    fn names(&self, sub: &str) -> BTreeSet<String> {
        std::fs::read_dir(self.root.join("image").join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Everything on disk that is not work in progress, and the index.
    fn snapshot(
        &self,
    ) -> (
        BTreeSet<String>,
        BTreeSet<String>,
        BTreeSet<String>,
        Vec<String>,
    ) {
        let tags: Vec<String> = self
            .store
            .list()
            .into_iter()
            .flat_map(|s| s.repo_tags)
            .collect();
        (
            self.names("layers"),
            self.names("images"),
            self.names("blobs/sha256"),
            tags,
        )
    }

    /// The top layer's directory (the lower dir link resolved).
    fn lower(&self, name: &str) -> PathBuf {
        let id = self.store.resolve(name).unwrap();
        std::fs::canonicalize(&self.store.lowerdirs(&id).unwrap()[0]).unwrap()
    }
}

fn nobody(_: &ImageId) -> Option<ImageUser> {
    None
}

fn invalid(r: Result<impl std::fmt::Debug, Error>, want: &str) {
    match r {
        Err(Error::InvalidInput(m)) => assert!(m.contains(want), "message {m:?} lacks {want:?}"),
        other => panic!("want InvalidInput containing {want:?}, got {other:?}"),
    }
}

fn xattr(p: &Path, k: &str) -> Option<Vec<u8>> {
    let (p, k) = (
        CString::new(p.as_os_str().as_bytes()).unwrap(),
        CString::new(k).unwrap(),
    );
    let mut buf = [0u8; 256];
    // SAFETY: valid strings and a buffer of buf.len() bytes.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// A read-only overlay of lower dirs (top first), unmounted on drop.
struct Overlay(tempfile::TempDir);

impl Overlay {
    fn mount(lowers: &[PathBuf]) -> Overlay {
        let dir = tempfile::tempdir().unwrap();
        let opts: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let (fs, target, data) = (
            CString::new("overlay").unwrap(),
            CString::new(dir.path().as_os_str().as_bytes()).unwrap(),
            CString::new(format!("lowerdir={}", opts.join(":"))).unwrap(),
        );
        // SAFETY: valid NUL-terminated strings; a read-only mount on our own directory.
        let r = unsafe {
            libc::mount(
                fs.as_ptr(),
                target.as_ptr(),
                fs.as_ptr(),
                libc::MS_RDONLY,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(r, 0, "mount overlay: {}", std::io::Error::last_os_error());
        Overlay(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let target = CString::new(self.0.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path; detaching our own mount.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

fn base_layer() -> Vec<u8> {
    tar_of(&[
        E::Dir("bin/", 0o755),
        E::File("bin/tool", b"#!/bin/sh\necho tool\n", 0o4755),
        E::Hard("bin/tool2", "bin/tool"),
        E::Sym("bin/sh", "tool"),
        E::Dir("etc/", 0o755),
        E::Owned("etc/owned", b"mine", 0o640, 1000, 1001, 1_600_000_000),
        E::Xattr("etc/attr", b"x", "user.berth", b"yes"),
        E::Char("dev-null", 1, 3),
        E::Fifo("pipe"),
        E::Dir("./", 0o755),
    ])
}

// ---- tests -----------------------------------------------------------------------------

#[test]
fn load_docker_save_keeps_every_kind_of_file() {
    let t = store();
    let layer = base_layer();
    let config = config_for(&[&layer], "sh");
    let loaded = t
        .load(&docker_save(&[(&config, &[&layer], &["busybox"])]))
        .unwrap();
    assert_eq!(loaded.messages(), vec!["Loaded image: busybox:latest"]);
    let id = loaded.images[0].id.clone();
    assert_eq!(id.as_str(), sha(&config));

    let i = t.store.inspect("busybox").unwrap();
    assert_eq!(i.id, sha(&config));
    assert_eq!(i.repo_tags, vec!["busybox:latest"]);
    assert_eq!(i.config.cmd.as_deref(), Some(&["sh".to_string()][..]));
    assert_eq!(i.root_fs.layers, vec![sha(&layer)]);
    assert_eq!(i.created, "2024-05-01T10:00:00Z");
    assert_eq!(i.size as usize, b"#!/bin/sh\necho tool\n".len() + 4 + 1);
    let v = serde_json::to_value(&i).unwrap();
    assert_eq!(v["RootFS"]["Type"], "layers");
    assert_eq!(v["Config"]["Labels"]["made"], "here");

    let d = t.lower("busybox");
    assert!(d.ends_with(format!("layers/{}/diff", hex(&sha(&layer)))));
    let tool = std::fs::symlink_metadata(d.join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(tool.mtime(), 1_700_000_000);
    assert_eq!(
        std::fs::symlink_metadata(d.join("bin/tool2"))
            .unwrap()
            .ino(),
        tool.ino(),
        "hard link"
    );
    assert_eq!(
        std::fs::read_link(d.join("bin/sh")).unwrap(),
        Path::new("tool")
    );
    let owned = std::fs::metadata(d.join("etc/owned")).unwrap();
    assert_eq!(
        (
            owned.uid(),
            owned.gid(),
            owned.mode() & 0o7777,
            owned.mtime()
        ),
        (1000, 1001, 0o640, 1_600_000_000)
    );
    assert_eq!(
        xattr(&d.join("etc/attr"), "user.berth").as_deref(),
        Some(&b"yes"[..])
    );
    let dev = std::fs::symlink_metadata(d.join("dev-null")).unwrap();
    assert!(dev.file_type().is_char_device());
    assert_eq!(dev.rdev(), libc::makedev(1, 3));
    assert!(std::fs::symlink_metadata(d.join("pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        std::fs::metadata(d.join("bin")).unwrap().mtime(),
        1_700_000_000,
        "dir mtimes set last"
    );

    // The layer's tar is kept byte for byte (for save), and the history and list agree.
    assert_eq!(std::fs::read(d.with_file_name("layer.tar")).unwrap(), layer);
    let h = t.store.history("busybox").unwrap();
    assert_eq!(
        (h.len(), h[0].id.as_str(), h[0].created_by.as_str()),
        (1, id.as_str(), "test")
    );
    let l = t.store.list();
    assert_eq!(
        (l.len(), l[0].repo_tags.clone(), l[0].created),
        (1, vec!["busybox:latest".to_string()], 1_714_557_600)
    );
}

#[test]
fn load_oci_layout_with_gzip_and_zstd_layers() {
    let t = store();
    let l1 = tar_of(&[E::File("one", b"1", 0o644)]);
    let l2 = tar_of(&[E::File("two", b"22", 0o644)]);
    let config = config_for(&[&l1, &l2], "run");
    let blobs = vec![gzip(&l1), zstd::encode_all(&l2[..], 3).unwrap()];
    let loaded = t
        .load(&gzip(&oci_layout(
            &config,
            &blobs,
            Some("docker.io/me/app:v1"),
        )))
        .unwrap();
    assert_eq!(loaded.messages(), vec!["Loaded image: me/app:v1"]);
    let id = t.store.resolve("me/app:v1").unwrap();
    let lowers = t.store.lowerdirs(&id).unwrap();
    assert_eq!(lowers.len(), 2);
    assert_eq!(
        std::fs::read(lowers[0].join("two")).unwrap(),
        b"22",
        "top layer first"
    );
    assert_eq!(std::fs::read(lowers[1].join("one")).unwrap(), b"1");
    // The kept tar is the uncompressed one: its digest is the diff id.
    let top = std::fs::canonicalize(&lowers[0]).unwrap();
    assert_eq!(
        sha(&std::fs::read(top.with_file_name("layer.tar")).unwrap()),
        sha(&l2)
    );

    // Without a name the image loads untagged.
    let t2 = store();
    let loaded = t2.load(&oci_layout(&config, &blobs, None)).unwrap();
    assert_eq!(
        loaded.messages(),
        vec![format!("Loaded image ID: {}", sha(&config))]
    );
}

#[test]
fn load_the_repos_busybox_oci_archive() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image");
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipped: no /bin/busybox");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bb.tar");
    let st = std::process::Command::new("python3")
        .arg(&script)
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let t = store();
    let loaded = t
        .store
        .load(&mut std::fs::File::open(&out).unwrap())
        .unwrap();
    assert_eq!(loaded.messages(), vec!["Loaded image: busybox:local"]);
    let d = t.lower("busybox:local");
    assert!(d.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(d.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
}

#[test]
fn import_makes_a_one_layer_image_with_changes() {
    let t = store();
    let rootfs = gzip(&tar_of(&[
        E::Dir("srv/", 0o755),
        E::File("srv/index.html", b"hi", 0o644),
    ]));
    let changes: Vec<String> = [
        r#"CMD ["sh"]"#,
        "ENV A=1 B=2",
        "WORKDIR /srv",
        "ENTRYPOINT [\"/init\"]",
        "USER nobody",
        "LABEL k=v",
        "EXPOSE 80",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let id = t
        .store
        .import(&mut &rootfs[..], Some("imported:v1"), &changes, "")
        .unwrap();
    let i = t.store.inspect("imported:v1").unwrap();
    assert_eq!(i.id, id.to_string());
    assert_eq!(i.comment, "Imported from -");
    let c = &i.config;
    assert_eq!(c.cmd.as_deref(), Some(&["sh".to_string()][..]));
    assert_eq!(c.entrypoint.as_deref(), Some(&["/init".to_string()][..]));
    assert_eq!(
        c.env.as_deref(),
        Some(&["A=1".to_string(), "B=2".to_string()][..])
    );
    assert_eq!(
        (c.working_dir.as_deref(), c.user.as_deref()),
        (Some("/srv"), Some("nobody"))
    );
    assert_eq!(c.labels.as_ref().unwrap()["k"], "v");
    assert!(c.exposed_ports.as_ref().unwrap().contains_key("80/tcp"));
    assert_eq!(i.root_fs.layers.len(), 1);
    assert_eq!(
        std::fs::read(t.lower("imported:v1").join("srv/index.html")).unwrap(),
        b"hi"
    );

    // Bad input is refused before anything is stored.
    let before = t.snapshot();
    invalid(
        t.store.import(&mut &rootfs[..], Some("Bad:Name"), &[], ""),
        "invalid reference",
    );
    invalid(
        t.store
            .import(&mut &rootfs[..], None, &["RUN true".into()], ""),
        "not a valid change",
    );
    invalid(
        t.store.import(&mut &b"BZh91AY&SY"[..], None, &[], ""),
        "bzip2",
    );
    invalid(
        t.store.import(
            &mut &b"this is not a tarball, just some bytes"[..],
            None,
            &[],
            "",
        ),
        "layer",
    );
    assert_eq!(t.snapshot(), before);
    assert!(t.names("tmp").is_empty());
}

#[test]
fn tag_resolve_and_list() {
    let t = store();
    let layer = tar_of(&[E::File("f", b"x", 0o644)]);
    let config = config_for(&[&layer], "a");
    t.load(&docker_save(&[(&config, &[&layer], &[])])).unwrap();
    let id = ImageId::parse(&sha(&config)).unwrap();
    for name in [id.as_str(), id.hex(), &id.hex()[..12], &id.as_str()[..14]] {
        assert_eq!(t.store.resolve(name).unwrap(), id, "{name}");
    }
    t.store
        .tag(&id.hex()[..8], "localhost:5000/team/app", "1.0")
        .unwrap();
    t.store
        .tag("localhost:5000/team/app:1.0", "docker.io/library/alias", "")
        .unwrap();
    assert_eq!(
        t.store.tags_of(&id),
        vec!["alias:latest", "localhost:5000/team/app:1.0"]
    );
    assert_eq!(t.store.resolve("alias").unwrap(), id);
    assert_eq!(
        t.store.resolve("docker.io/library/alias:latest").unwrap(),
        id
    );
    match t.store.resolve("nothere") {
        Err(Error::NotFound(m)) => assert_eq!(m, "No such image: nothere:latest"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        t.store.resolve("sha256:abcdef"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        t.store.resolve(&"f".repeat(64)),
        Err(Error::NotFound(_))
    ));
    invalid(t.store.resolve("UPPER"), "lowercase");
    invalid(t.store.tag("alias", "x", "bad tag!"), "tag");
    assert!(matches!(
        t.store.tag("nothere", "x", ""),
        Err(Error::NotFound(_))
    ));

    // A tag moves to the newer image, as `docker load` reports.
    let layer2 = tar_of(&[E::File("g", b"y", 0o644)]);
    let config2 = config_for(&[&layer2], "b");
    let loaded = t
        .load(&docker_save(&[(&config2, &[&layer2], &["alias:latest"])]))
        .unwrap();
    assert_eq!(
        loaded.messages(),
        vec![
            format!("The image alias:latest already exists, renaming the old one with ID {id} to empty string"),
            "Loaded image: alias:latest".to_string()
        ]
    );
    assert_eq!(t.store.tags_of(&id), vec!["localhost:5000/team/app:1.0"]);
    let inspect = t.store.inspect(id.as_str()).unwrap();
    assert_ne!(inspect.metadata.last_tag_time, "0001-01-01T00:00:00Z");

    // Everything survives a restart.
    let reopened = ImageStore::open(&t.root).unwrap();
    assert_eq!(reopened.list().len(), 2);
    assert_eq!(
        reopened.resolve("alias").unwrap().to_string(),
        sha(&config2)
    );
    assert_eq!(
        reopened.lowerdirs(&id).unwrap(),
        t.store.lowerdirs(&id).unwrap()
    );
}

#[test]
fn save_then_load_round_trip() {
    let t = store();
    let l1 = base_layer();
    let l2 = tar_of(&[E::File("top", b"top", 0o600)]);
    let config = config_for(&[&l1, &l2], "sh");
    let single = config_for(&[&l1], "other");
    t.load(&docker_save(&[
        (&config, &[&l1, &l2], &["busybox:latest"]),
        (&single, &[&l1], &[]),
    ]))
    .unwrap();
    t.store.tag("busybox", "mirror/busybox", "1").unwrap();

    let mut out = Vec::new();
    t.store
        .save(&["busybox", "mirror/busybox:1", &sha(&single)], &mut out)
        .unwrap();

    // The archive is both a docker-save archive and an OCI layout.
    let mut names = BTreeSet::new();
    let mut manifest = Value::Null;
    for e in tar::Archive::new(&out[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        if let Some(h) = p.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            assert_eq!(hex(&sha(&b)), h, "blob named by its digest");
        }
        if p == "manifest.json" {
            manifest = serde_json::from_slice(&b).unwrap();
        }
        names.insert(p);
    }
    for want in ["index.json", "manifest.json", "oci-layout", "repositories"] {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    assert_eq!(
        manifest[0]["RepoTags"],
        json!(["busybox:latest", "mirror/busybox:1"])
    );
    assert_eq!(
        manifest[0]["Layers"][1],
        format!("blobs/sha256/{}", hex(&sha(&l2)))
    );
    assert_eq!(manifest[1]["RepoTags"], Value::Null);
    let blobs = names
        .iter()
        .filter(|n| n.starts_with("blobs/sha256/") && n.len() > 13)
        .count();
    assert_eq!(
        blobs,
        2 + 2 + 2,
        "two configs, two layers (shared one once), two manifests"
    );

    let t2 = store();
    let loaded = t2.load(&out).unwrap();
    assert_eq!(
        loaded.messages(),
        vec![
            "Loaded image: busybox:latest".to_string(),
            "Loaded image: mirror/busybox:1".to_string(),
            format!("Loaded image ID: {}", sha(&single)),
        ]
    );
    assert_eq!(
        t2.store.resolve("mirror/busybox:1").unwrap().to_string(),
        sha(&config)
    );
    assert_eq!(
        std::fs::read(t2.lower("busybox").join("top")).unwrap(),
        b"top"
    );
    assert_eq!(t2.names("layers"), t.names("layers"));

    // The OCI side alone (without manifest.json) loads too.
    let mut b = tar::Builder::new(Vec::new());
    for e in tar::Archive::new(&out[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p == "manifest.json" || e.header().entry_type().is_dir() {
            continue;
        }
        let mut d = Vec::new();
        e.read_to_end(&mut d).unwrap();
        add(&mut b, &p, &d);
    }
    let t3 = store();
    let loaded = t3.load(&b.into_inner().unwrap()).unwrap();
    assert_eq!(loaded.images.len(), 3);
    assert_eq!(
        t3.store.resolve("busybox").unwrap().to_string(),
        sha(&config)
    );

    assert!(matches!(
        t.store.save(&["nothere"], &mut Vec::new()),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn remove_untags_then_deletes_like_docker() {
    let t = store();
    let base = tar_of(&[E::File("base", b"b", 0o644)]);
    let top = tar_of(&[E::File("top", b"t", 0o644)]);
    let c1 = config_for(&[&base], "one");
    let c2 = config_for(&[&base, &top], "two");
    t.load(&docker_save(&[
        (&c1, &[&base], &["one:a", "one:b"]),
        (&c2, &[&base, &top], &["two"]),
    ]))
    .unwrap();
    assert_eq!(
        t.names("layers").len(),
        2,
        "the shared base layer is unpacked once"
    );
    let (id1, id2) = (
        t.store.resolve("one:a").unwrap(),
        t.store.resolve("two").unwrap(),
    );

    // Two tags: removing one only untags.
    assert_eq!(
        t.store.remove("one:a", false, false, &nobody).unwrap(),
        vec![Removed::Untagged("one:a".into())]
    );
    // By id with several repositories: refused without force.
    t.store.tag("one:b", "other", "x").unwrap();
    match t.store.remove(id1.short(), false, false, &nobody) {
        Err(Error::Conflict(m)) => {
            assert!(m.contains("referenced in multiple repositories"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    t.store.remove("other:x", false, false, &nobody).unwrap();

    // Used by a container: refused, and a running one cannot be forced by id.
    let stopped = |id: &ImageId| {
        (*id == id1).then(|| ImageUser {
            container: "c".repeat(64),
            running: false,
        })
    };
    let running = |id: &ImageId| {
        (*id == id1).then(|| ImageUser {
            container: "d".repeat(64),
            running: true,
        })
    };
    match t.store.remove("one:b", false, false, &stopped) {
        Err(Error::Conflict(m)) => assert_eq!(
            m,
            format!(
                "conflict: unable to remove repository reference \"one:b\" (must force) - container cccccccccccc is using its referenced image {}",
                id1.short()
            )
        ),
        other => panic!("{other:?}"),
    }
    match t.store.remove(id1.as_str(), true, false, &running) {
        Err(Error::Conflict(m)) => assert!(
            m.contains(
                "(cannot be forced) - image is being used by running container dddddddddddd"
            ),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    // Forced by name: untagged, kept for its container.
    assert_eq!(
        t.store.remove("one:b", true, false, &running).unwrap(),
        vec![Removed::Untagged("one:b".into())]
    );
    assert!(t.store.inspect(id1.as_str()).unwrap().repo_tags.is_empty());

    // Last tag by name: untag and delete; the shared layer stays for image two.
    t.store.tag(id1.as_str(), "one", "c").unwrap();
    let out = t.store.remove("one:c", false, false, &nobody).unwrap();
    assert_eq!(
        out,
        vec![
            Removed::Untagged("one:c".into()),
            Removed::Deleted(id1.to_string())
        ]
    );
    assert_eq!(t.names("layers").len(), 2);
    assert!(matches!(
        t.store.inspect(id1.as_str()),
        Err(Error::NotFound(_))
    ));

    // By id: untags everything, deletes the image and its now unused layers, top first.
    let out = t
        .store
        .remove(&id2.hex()[..6], false, false, &nobody)
        .unwrap();
    let chain_top = format!(
        "sha256:{}",
        hex(&sha(format!("{} {}", sha(&base), sha(&top)).as_bytes()))
    );
    assert_eq!(
        out,
        vec![
            Removed::Untagged("two:latest".into()),
            Removed::Deleted(id2.to_string()),
            Removed::Deleted(chain_top),
            Removed::Deleted(sha(&base)),
        ]
    );
    assert!(
        t.names("layers").is_empty()
            && t.names("images").is_empty()
            && t.names("blobs/sha256").is_empty()
    );
    assert!(t.names("tmp").is_empty());
    assert!(matches!(
        t.store.remove("two", false, false, &nobody),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn prune_dangling_or_all_unused() {
    let t = store();
    let (a, b, c) = (
        tar_of(&[E::File("a", b"aaaa", 0o644)]),
        tar_of(&[E::File("b", b"b", 0o644)]),
        tar_of(&[E::File("c", b"c", 0o644)]),
    );
    let (ca, cb, cc) = (
        config_for(&[&a], "a"),
        config_for(&[&b], "b"),
        config_for(&[&c], "c"),
    );
    t.load(&docker_save(&[
        (&ca, &[&a], &[]),
        (&cb, &[&b], &["keep:1"]),
        (&cc, &[&c], &[]),
    ]))
    .unwrap();
    let used = ImageId::parse(&sha(&cc)).unwrap();
    let in_use = |id: &ImageId| {
        (*id == used).then(|| ImageUser {
            container: "x".into(),
            running: false,
        })
    };
    let r = t.store.prune(true, &in_use).unwrap();
    assert_eq!(
        r.images_deleted,
        vec![Removed::Deleted(sha(&ca)), Removed::Deleted(sha(&a))]
    );
    assert_eq!(r.space_reclaimed, 4);
    let r = t.store.prune(false, &in_use).unwrap();
    assert_eq!(r.images_deleted[0], Removed::Untagged("keep:1".into()));
    assert_eq!(t.store.list().len(), 1, "the image a container uses stays");
    let du = t.store.disk_usage();
    assert_eq!((du.layers_size, du.images.len()), (1, 1));
}

#[test]
fn whiteouts_and_opaque_dirs_through_overlay() {
    let t = store();
    let lower = tar_of(&[
        E::Dir("a/", 0o755),
        E::File("a/gone", b"1", 0o644),
        E::File("a/kept", b"2", 0o644),
        E::Dir("o/", 0o755),
        E::File("o/old", b"3", 0o644),
        E::File("rootfile", b"4", 0o644),
        E::Dir("d/", 0o755),
        E::File("d/inner", b"5", 0o644),
    ]);
    let upper = tar_of(&[
        E::File("a/.wh.gone", b"", 0o644),
        E::Dir("o/", 0o755),
        E::File("o/.wh..wh..opq", b"", 0o644),
        E::File("o/new", b"6", 0o644),
        E::File(".wh.rootfile", b"", 0o644),
        E::File(".wh.d", b"", 0o644),
    ]);
    let config = config_for(&[&lower, &upper], "sh");
    t.load(&docker_save(&[(&config, &[&lower, &upper], &["wh"])]))
        .unwrap();
    let id = t.store.resolve("wh").unwrap();
    let lowers = t.store.lowerdirs(&id).unwrap();
    let top = &lowers[0];
    let wh = std::fs::symlink_metadata(top.join("a/gone")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "overlay whiteout"
    );
    assert_eq!(
        xattr(&top.join("o"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!top.join("o/.wh..wh..opq").exists());

    let mnt = Overlay::mount(&lowers);
    let m = mnt.path();
    let seen = (
        m.join("a/kept").exists(),
        m.join("a/gone").exists(),
        m.join("o/new").exists(),
        m.join("o/old").exists(),
        m.join("rootfile").exists(),
        m.join("d").exists(),
    );
    drop(mnt);
    assert_eq!(seen, (true, false, true, false, false, false));
}

/// Loads `archive`, expects a refusal naming `want`, and checks that nothing changed.
fn refused(t: &T, archive: &[u8], want: &str) {
    let before = t.snapshot();
    invalid(t.load(archive), want);
    assert_eq!(
        t.snapshot(),
        before,
        "store changed by a refused load ({want})"
    );
    assert!(t.names("tmp").is_empty(), "work left in tmp/ ({want})");
}

fn one_layer(layer: &[u8]) -> Vec<u8> {
    docker_save(&[(&config_for(&[layer], "x"), &[layer], &["hostile"])])
}

/// A valid base under a hostile layer, so that a refusal must also undo the base.
fn two_layers(hostile: &[u8]) -> Vec<u8> {
    let ok = tar_of(&[E::File("fine", b"fine", 0o644), E::Dir("etc/", 0o755)]);
    docker_save(&[(
        &config_for(&[&ok, hostile], "x"),
        &[&ok, hostile],
        &["hostile"],
    )])
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    let t = store();
    let layer = base_layer();
    t.load(&docker_save(&[(
        &config_for(&[&layer], "sh"),
        &[&layer],
        &["good"],
    )]))
    .unwrap();
    let outside = tempfile::tempdir().unwrap();
    let out = outside.path().display().to_string();

    refused(
        &t,
        &two_layers(&tar_of(&[E::File("../escape", b"x", 0o644)])),
        "`..`",
    );
    refused(
        &t,
        &two_layers(&tar_of(&[E::File("a/../../escape", b"x", 0o644)])),
        "`..`",
    );
    refused(
        &t,
        &two_layers(&tar_of(&[E::File(&format!("{out}/abs"), b"x", 0o644)])),
        "absolute path",
    );
    // A symlink to the outside, then a write through it.
    refused(
        &t,
        &two_layers(&tar_of(&[
            E::Sym("link", &out),
            E::File("link/pwned", b"x", 0o644),
        ])),
        "goes through the symlink",
    );
    refused(
        &t,
        &two_layers(&tar_of(&[
            E::Sym("up", "../../../../../../"),
            E::File("up/tmp/pwned", b"x", 0o644),
        ])),
        "symlink",
    );
    refused(
        &t,
        &two_layers(&tar_of(&[
            E::Sym("etc", "/etc"),
            E::File("etc/pwned", b"x", 0o644),
        ])),
        "symlink",
    );
    // A symlink then a directory entry through it, and a whiteout through it.
    refused(
        &t,
        &two_layers(&tar_of(&[E::Sym("d", &out), E::Dir("d/sub/", 0o755)])),
        "symlink",
    );
    refused(
        &t,
        &two_layers(&tar_of(&[
            E::Sym("d", &out),
            E::File("d/.wh.x", b"", 0o644),
        ])),
        "symlink",
    );
    // Hard links to files outside the layer.
    refused(
        &t,
        &two_layers(&tar_of(&[E::Hard("passwd", "/etc/passwd")])),
        "outside the layer",
    );
    refused(
        &t,
        &two_layers(&tar_of(&[E::Hard(
            "passwd",
            "../../../../../../etc/passwd",
        )])),
        "outside the layer",
    );
    refused(
        &t,
        &two_layers(&tar_of(&[
            E::Sym("e", "/etc"),
            E::Hard("passwd", "e/passwd"),
        ])),
        "symlink",
    );
    refused(
        &t,
        &two_layers(&tar_of(&[E::Hard("passwd", "etc/nothere")])),
        "does not exist in the layer",
    );
    refused(
        &t,
        &two_layers(&tar_of(&[E::Hard("passwd", "nothere")])),
        "which is not in the layer",
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside"
    );

    // Digests.
    let l1 = tar_of(&[E::File("f", b"content", 0o644)]);
    let other = tar_of(&[E::File("f", b"other", 0o644)]);
    refused(
        &t,
        &docker_save(&[(&config_for(&[&other], "x"), &[&l1], &["h"])]),
        "layer digest mismatch",
    );
    let cfg = config_for(&[&l1], "x");
    let mut oci = oci_layout(&cfg, std::slice::from_ref(&l1), Some("h:1"));
    // Corrupt the config blob's content without renaming it.
    let pos = oci.windows(9).position(|w| w == b"\"created\"").unwrap();
    oci[pos + 1] = b'K';
    refused(&t, &oci, "wrong content");
    let mut legacy = one_layer(&l1);
    let pos = legacy.windows(9).position(|w| w == b"\"created\"").unwrap();
    legacy[pos + 1] = b'K';
    refused(&t, &legacy, "wrong content");

    // Truncated and malformed archives.
    let whole = one_layer(&tar_of(&[E::File("big", &[7u8; 5000], 0o644)]));
    refused(&t, &whole[..whole.len() / 2], "");
    let truncated_layer = &l1[..600];
    refused(&t, &one_layer(truncated_layer), "");
    let mut b = tar::Builder::new(Vec::new());
    add(&mut b, "manifest.json", b"[{\"Config\": 12");
    refused(&t, &b.into_inner().unwrap(), "manifest.json is malformed");
    let mut b = tar::Builder::new(Vec::new());
    add(
        &mut b,
        "manifest.json",
        br#"[{"Config":"c.json","Layers":["nothere/layer.tar"]}]"#,
    );
    add(&mut b, "c.json", &cfg);
    refused(&t, &b.into_inner().unwrap(), "no file");
    refused(
        &t,
        &docker_save(&[(&config_for(&[&l1, &l1], "x"), &[&l1], &["h"])]),
        "names 2 layers",
    );
    refused(
        &t,
        &docker_save(&[(&cfg, &[&l1], &["Not A Tag"])]),
        "invalid reference",
    );
    refused(
        &t,
        &docker_save(&[(b"{\"rootfs\": 3}", &[], &["h"])]),
        "malformed image config",
    );
    refused(
        &t,
        b"just text, not a tarball at all, long enough to be a header? no",
        "",
    );
    let mut b = tar::Builder::new(Vec::new());
    add(&mut b, "random", b"x");
    refused(&t, &b.into_inner().unwrap(), "not an image archive");

    // The store still works and reopens cleanly.
    assert_eq!(t.store.list().len(), 1);
    assert!(t.lower("good").join("bin/tool").is_file());
    let reopened = ImageStore::open(&t.root).unwrap();
    assert_eq!(reopened.list().len(), 1);
}

#[test]
fn open_cleans_what_a_crash_left() {
    let t = store();
    let layer = tar_of(&[E::File("f", b"x", 0o644)]);
    t.load(&docker_save(&[(
        &config_for(&[&layer], "x"),
        &[&layer],
        &["kept"],
    )]))
    .unwrap();
    let img = t.root.join("image");
    // A half-made layer in tmp/, a layer and a config nobody uses (crash before the image
    // record was written), a stray temporary metadata file.
    std::fs::create_dir_all(img.join("tmp/layer-123/diff/x")).unwrap();
    std::fs::create_dir_all(img.join(format!("layers/{}/diff", "e".repeat(64)))).unwrap();
    std::fs::write(img.join(format!("blobs/sha256/{}", "f".repeat(64))), b"{}").unwrap();
    let s = ImageStore::open(&t.root).unwrap();
    assert!(std::fs::read_dir(img.join("tmp")).unwrap().next().is_none());
    assert_eq!(std::fs::read_dir(img.join("layers")).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_dir(img.join("blobs/sha256")).unwrap().count(),
        1
    );
    assert_eq!(s.list()[0].repo_tags, vec!["kept:latest"]);
}

#[test]
fn concurrent_loads_share_layers_and_race_with_removal() {
    let t = std::sync::Arc::new(store());
    let base = tar_of(&[E::File("base", &[1u8; 100_000], 0o644)]);
    let archives: Vec<Vec<u8>> = (0..6)
        .map(|i| {
            let top = tar_of(&[E::File("top", format!("{i}").as_bytes(), 0o644)]);
            let tag = format!("img:{i}");
            docker_save(&[(&config_for(&[&base, &top], "x"), &[&base, &top], &[&tag])])
        })
        .collect();
    let threads: Vec<_> = archives
        .into_iter()
        .map(|a| {
            let t = t.clone();
            std::thread::spawn(move || t.load(&a).map(|l| l.images[0].id.clone()))
        })
        .collect();
    let ids: Vec<ImageId> = threads
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 6);
    assert_eq!(t.names("layers").len(), 7, "one shared base and six tops");
    assert!(t.names("tmp").is_empty());

    // Removals and loads at once: every call succeeds or fails cleanly, and the store ends
    // consistent (each image's layers present, nothing in tmp/).
    let again = docker_save(&[(&config_for(&[&base], "y"), &[&base], &["again"])]);
    let remover = {
        let t = t.clone();
        std::thread::spawn(move || {
            for i in 0..6 {
                t.store
                    .remove(&format!("img:{i}"), false, false, &nobody)
                    .unwrap();
            }
        })
    };
    let loader = {
        let t = t.clone();
        std::thread::spawn(move || {
            for _ in 0..5 {
                match t.load(&again) {
                    Ok(_) | Err(Error::Io(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        })
    };
    remover.join().unwrap();
    loader.join().unwrap();
    let left = t.store.list();
    assert!(left.len() <= 1);
    for i in &left {
        let id = ImageId::parse(&i.id).unwrap();
        for d in t.store.lowerdirs(&id).unwrap() {
            assert!(d.join("base").is_file());
        }
    }
    assert!(t.names("tmp").is_empty());
    let reopened = ImageStore::open(&t.root).unwrap();
    assert_eq!(reopened.list().len(), left.len());
}

#[test]
fn many_layers_fit_one_overlay_mount() {
    let t = store();
    let layers: Vec<Vec<u8>> = (0..60)
        .map(|i| tar_of(&[E::File(&format!("f{i}"), format!("{i}").as_bytes(), 0o644)]))
        .collect();
    let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let config = config_for(&refs, "x");
    t.load(&docker_save(&[(&config, &refs, &["deep"])]))
        .unwrap();
    let id = t.store.resolve("deep").unwrap();
    let lowers = t.store.lowerdirs(&id).unwrap();
    assert_eq!(lowers.len(), 60);
    let listed: usize = lowers.iter().map(|p| p.as_os_str().len() + 1).sum();
    assert!(listed < 4000, "lowerdir= must fit a page: {listed} bytes");
    assert!(lowers[0].starts_with(t.root.join("image/l")));
    let mnt = Overlay::mount(&lowers);
    for i in 0..60 {
        assert_eq!(
            std::fs::read(mnt.path().join(format!("f{i}"))).unwrap(),
            format!("{i}").as_bytes()
        );
    }
    drop(mnt);
    // Links go with their layers, and come back at open when missing.
    std::fs::remove_file(&lowers[5]).unwrap();
    let reopened = ImageStore::open(&t.root).unwrap();
    assert!(std::fs::canonicalize(&reopened.lowerdirs(&id).unwrap()[5]).is_ok());
    reopened.remove("deep", false, false, &nobody).unwrap();
    assert_eq!(
        std::fs::read_dir(t.root.join("image/l")).unwrap().count(),
        0
    );
}

// ---- against a real dockerd ------------------------------------------------------------

/// A private dockerd (Debian's 20.10) on its own socket and directories, stopped on drop.
struct Dockerd {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Dockerd {
    fn start() -> Dockerd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let child = std::process::Command::new("/usr/sbin/dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}/docker.sock", d.display()))
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            .stdout(std::fs::File::create(d.join("log")).unwrap())
            .stderr(std::process::Stdio::from(
                std::fs::File::create(d.join("err")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let me = Dockerd { dir, child };
        for _ in 0..100 {
            if me.docker(&["version"]).status.success() {
                return me;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!(
            "dockerd did not start: {}",
            std::fs::read_to_string(me.dir.path().join("err")).unwrap()
        );
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("/usr/local/bin/docker")
            .env(
                "DOCKER_HOST",
                format!("unix://{}/docker.sock", self.dir.path().display()),
            )
            .env("DOCKER_BUILDKIT", "0")
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of the dockerd this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Docker's own archives load here, and ours load in Docker: a two-layer image built by
/// dockerd (a deleted file, a replaced directory) round-trips both ways with the same id.
#[test]
#[ignore = "starts a private dockerd; run with --ignored where /usr/sbin/dockerd exists"]
fn interoperates_with_dockerd() {
    let dd = Dockerd::start();
    let rootfs = tar_of(&[
        E::Dir("bin/", 0o755),
        E::Owned(
            "bin/busybox",
            &std::fs::read("/bin/busybox").unwrap(),
            0o755,
            0,
            0,
            1_700_000_000,
        ),
        E::Sym("bin/sh", "busybox"),
        E::Sym("bin/cat", "busybox"),
        E::Sym("bin/rm", "busybox"),
        E::Sym("bin/mkdir", "busybox"),
        E::Dir("etc/", 0o755),
        E::File("etc/a", b"a\n", 0o644),
        E::Dir("opq/", 0o755),
        E::File("opq/old", b"old\n", 0o644),
    ]);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("rootfs.tar"), &rootfs).unwrap();
    dd.ok(&[
        "import",
        &ctx.path().join("rootfs.tar").display().to_string(),
        "bb:base",
    ]);
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM bb:base\nRUN rm /etc/a && rm -rf /opq && mkdir -p /data /opq && echo c > /data/c && echo new > /opq/new\n",
    )
    .unwrap();
    dd.ok(&[
        "build",
        "--network",
        "none",
        "-t",
        "layered:v1",
        &ctx.path().display().to_string(),
    ]);
    let docker_id = dd
        .ok(&["image", "inspect", "-f", "{{.Id}}", "layered:v1"])
        .trim()
        .to_string();
    let saved = ctx.path().join("docker-saved.tar");
    dd.ok(&["save", "-o", &saved.display().to_string(), "layered:v1"]);

    // Docker's archive into berth.
    let t = store();
    let loaded = t
        .store
        .load(&mut std::fs::File::open(&saved).unwrap())
        .unwrap();
    assert_eq!(loaded.messages(), vec!["Loaded image: layered:v1"]);
    let id = t.store.resolve("layered:v1").unwrap();
    assert_eq!(id.as_str(), docker_id);
    let lowers = t.store.lowerdirs(&id).unwrap();
    assert_eq!(lowers.len(), 2);
    let mnt = Overlay::mount(&lowers);
    let m = mnt.path();
    let seen = (
        m.join("bin/busybox").is_file(),
        m.join("etc/a").exists(),
        m.join("opq/old").exists(),
        std::fs::read(m.join("opq/new")).ok(),
        std::fs::read(m.join("data/c")).ok(),
    );
    drop(mnt);
    assert_eq!(
        seen,
        (
            true,
            false,
            false,
            Some(b"new\n".to_vec()),
            Some(b"c\n".to_vec())
        )
    );

    // berth's archive into Docker, after Docker forgot the image.
    let ours = ctx.path().join("berth-saved.tar");
    t.store
        .save(&["layered:v1"], std::fs::File::create(&ours).unwrap())
        .unwrap();
    dd.ok(&["rmi", "layered:v1", "bb:base"]);
    let out = dd.ok(&["load", "-i", &ours.display().to_string()]);
    assert!(out.contains("Loaded image: layered:v1"), "{out}");
    assert_eq!(
        dd.ok(&["image", "inspect", "-f", "{{.Id}}", "layered:v1"])
            .trim(),
        docker_id
    );
    assert_eq!(
        dd.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "layered:v1",
            "cat",
            "/data/c",
            "/opq/new"
        ]),
        "c\nnew\n"
    );
}
