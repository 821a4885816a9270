//! Image archives through `docker load`: layers with whiteouts applied as overlayfs sees
//! them, and hostile archives refused with nothing written outside the store.

mod common;

use common::Berthd;
use sha2::{Digest, Sha256};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A tar entry written by hand, so that names the tar crate would refuse can be made.
fn entry(out: &mut Vec<u8>, name: &str, kind: u8, data: &[u8], link: &str) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let oct = |v: u64, w: usize| format!("{v:0w$o}\0", w = w - 1);
    h[100..108].copy_from_slice(oct(if kind == b'5' { 0o755 } else { 0o644 }, 8).as_bytes());
    h[108..116].copy_from_slice(oct(0, 8).as_bytes());
    h[116..124].copy_from_slice(oct(0, 8).as_bytes());
    h[124..136].copy_from_slice(oct(data.len() as u64, 12).as_bytes());
    h[136..148].copy_from_slice(oct(1_700_000_000, 12).as_bytes());
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn finish(mut t: Vec<u8>) -> Vec<u8> {
    t.extend_from_slice(&[0u8; 1024]);
    t
}

/// A docker-save archive of one image whose layers are `layers` (uncompressed tars); the
/// config's diff ids are `diff_ids` when given (to test mismatches), else the real ones.
fn archive(tag: &str, layers: &[Vec<u8>], diff_ids: Option<Vec<String>>) -> Vec<u8> {
    let ids = diff_ids.unwrap_or_else(|| {
        layers
            .iter()
            .map(|l| format!("sha256:{}", hex(&Sha256::digest(l))))
            .collect()
    });
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2026-11-22T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ids},
    })
    .to_string();
    let mut out = Vec::new();
    entry(&mut out, "config.json", b'0', config.as_bytes(), "");
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let n = format!("layer{i}.tar");
        entry(&mut out, &n, b'0', l, "");
        names.push(n);
    }
    let manifest =
        serde_json::json!([{"Config": "config.json", "RepoTags": [tag], "Layers": names}])
            .to_string();
    entry(&mut out, "manifest.json", b'0', manifest.as_bytes(), "");
    finish(out)
}

fn busybox_layer() -> Vec<u8> {
    std::fs::read(common::busybox_tar()).unwrap()
}

fn load(d: &Berthd, bytes: &[u8]) -> std::process::Output {
    let f = d.dir.path().join(format!("a{}.tar", bytes.len()));
    std::fs::write(&f, bytes).unwrap();
    d.docker(&["load", "-i", f.to_str().unwrap()])
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_files() {
    let d = Berthd::start();
    let mut upper = Vec::new();
    entry(&mut upper, "data/", b'5', b"", "");
    entry(&mut upper, "data/.wh.a", b'0', b"", "");
    entry(&mut upper, "data/c", b'0', b"new c\n", "");
    entry(&mut upper, "opaque/", b'5', b"", "");
    entry(&mut upper, "opaque/.wh..wh..opq", b'0', b"", "");
    entry(&mut upper, "opaque/fresh", b'0', b"fresh\n", "");
    entry(&mut upper, ".wh.gone", b'0', b"", "");
    let mut mid = Vec::new();
    entry(&mut mid, "data/", b'5', b"", "");
    entry(&mut mid, "data/a", b'0', b"a\n", "");
    entry(&mut mid, "data/b", b'0', b"b\n", "");
    entry(&mut mid, "opaque/", b'5', b"", "");
    entry(&mut mid, "opaque/old", b'0', b"old\n", "");
    entry(&mut mid, "gone", b'0', b"gone\n", "");
    let img = archive(
        "layered:v1",
        &[busybox_layer(), finish(mid), finish(upper)],
        None,
    );
    let o = load(&d, &img);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = d.ok(&[
        "run",
        "--rm",
        "layered:v1",
        "sh",
        "-c",
        "ls /data; ls /opaque; test -e /gone && echo GONE-VISIBLE; cat /data/c",
    ]);
    assert_eq!(out, "b\nc\nfresh\nnew c\n");
}

#[test]
fn hostile_archives_are_refused_and_write_nothing_outside() {
    let d = Berthd::start();
    let outside = std::env::temp_dir().join(format!("berth-escape-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&outside);
    std::fs::create_dir_all(&outside).unwrap();
    let target = outside.display().to_string();
    let rel_up = "../".repeat(10) + target.trim_start_matches('/');
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut t = Vec::new();
    entry(&mut t, &format!("{rel_up}/dotdot"), b'0', b"x", "");
    cases.push(("dotdot", finish(t), "dotdot"));
    let mut t = Vec::new();
    entry(&mut t, &format!("{target}/absolute"), b'0', b"x", "");
    cases.push(("absolute", finish(t), "absolute"));
    let mut t = Vec::new();
    entry(&mut t, "link", b'2', b"", &target);
    entry(&mut t, "link/through-symlink", b'0', b"x", "");
    cases.push(("symlink", finish(t), "through-symlink"));
    let mut t = Vec::new();
    entry(&mut t, "passwd", b'1', b"", "../../../../../../etc/passwd");
    cases.push(("hardlink-up", finish(t), "passwd"));
    let mut t = Vec::new();
    entry(&mut t, "passwd", b'1', b"", "/etc/passwd");
    cases.push(("hardlink-abs", finish(t), "passwd"));
    // Each refusal names the offending entry.
    for (name, layer, want) in cases {
        let img = archive(&format!("evil-{name}:v1"), &[layer], None);
        let o = load(&d, &img);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name} was loaded");
        assert!(err.contains(want), "{name}: {err}");
    }
    // A digest that does not match, a truncated archive, a malformed manifest, no tarball.
    let zero = vec![format!("sha256:{}", "0".repeat(64))];
    let img = archive("evil-digest:v1", &[busybox_layer()], Some(zero));
    let err = String::from_utf8_lossy(&load(&d, &img).stderr).to_string();
    assert!(err.contains("digest mismatch"), "{err}");
    let good = archive("fine:v1", &[busybox_layer()], None);
    let err = String::from_utf8_lossy(&load(&d, &good[..good.len() / 2]).stderr).to_string();
    assert!(!err.is_empty(), "a truncated archive was accepted");
    let mut bad = Vec::new();
    entry(&mut bad, "manifest.json", b'0', b"{not json", "");
    let err = String::from_utf8_lossy(&load(&d, &finish(bad)).stderr).to_string();
    assert!(err.contains("manifest.json"), "{err}");
    let err = String::from_utf8_lossy(&load(&d, b"plain text, not a tarball").stderr).to_string();
    assert!(!err.is_empty());

    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "something was written outside"
    );
    let images = d.ok(&["images", "--format", "{{.Repository}}"]);
    assert!(!images.contains("evil"), "{images}");
    // Nothing half-done is left in the store, and it still works.
    let tmp = d.data_root().join("image/tmp");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    assert!(load(&d, &good).status.success());
    assert_eq!(d.ok(&["run", "--rm", "fine:v1", "echo", "ok"]), "ok\n");
    std::fs::remove_dir_all(&outside).unwrap();
}
