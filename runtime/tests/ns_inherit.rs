//! A namespace type the config does not list is the runtime's (config-linux.md). Without a
//! mount namespace the container's mounts are made in ours, under its rootfs bound onto itself,
//! and the init chroots: "/" is never moved or re-propagated, and `delete` takes every mount
//! away again.

mod common;

use std::path::Path;

use common::{unique_id, Bundle, Runtime};
use serde_json::json;

/// A rootfs of its own: its mounts live in the host's namespace while the container does,
/// and must not show under the rootfs other tests share.
fn private_rootfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.path().join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "readlink", "sleep", "grep", "ls"] {
        std::os::unix::fs::symlink("busybox", dir.path().join("bin").join(applet)).unwrap();
    }
    dir
}

fn mounts_under(root: &Path) -> usize {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = root.to_str().unwrap();
    table
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with(root)))
        .count()
}

fn without_mount_ns(b: &mut Bundle, root: &Path) {
    b.edit(|c| {
        c["root"]["path"] = json!(root);
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "mount");
        c["linux"].as_object_mut().unwrap().remove("maskedPaths");
        c["linux"].as_object_mut().unwrap().remove("readonlyPaths");
    });
}

/// The optional fields (propagation) of our mount namespace's / in mountinfo.
fn root_propagation() -> Option<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .map(|l| {
            l.split(" - ")
                .next()
                .unwrap()
                .split(' ')
                .skip(6)
                .collect::<Vec<_>>()
                .join(" ")
        })
}

#[test]
fn without_a_mount_namespace_the_container_shares_ours_and_delete_unmounts() {
    let rt = Runtime::new();
    let root = private_rootfs();
    let own_root_propagation = root_propagation();
    let id = unique_id("nsinherit");
    let mut b = Bundle::new(&["sleep", "100"]);
    without_mount_ns(&mut b, root.path());
    rt.create(&b, &id);
    rt.ok(&["start", &id]);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(),
        std::fs::read_link("/proc/self/ns/mnt").unwrap()
    );
    // Chrooted into its rootfs, with its own /proc (its pid namespace: it is pid 1).
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/root")).unwrap(),
        root.path()
    );
    let out = rt.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "ls /bin/busybox; cat /proc/1/cmdline",
    ]);
    assert!(out.starts_with("/bin/busybox\nsleep"), "{out}");
    assert!(
        mounts_under(root.path()) > 1,
        "the rootfs bind and its mounts"
    );
    rt.ok(&["delete", "--force", &id]);
    assert_eq!(mounts_under(root.path()), 0, "mounts left under the rootfs");
    let after = root_propagation();
    assert_eq!(
        own_root_propagation, after,
        "the host's / changed propagation"
    );
}

#[test]
fn a_failed_create_without_a_mount_namespace_unmounts_what_it_made() {
    let rt = Runtime::new();
    let root = private_rootfs();
    let id = unique_id("nsinheritfail");
    let mut b = Bundle::new(&["/no/such/program"]);
    without_mount_ns(&mut b, root.path());
    let (ok, err) = rt.detached(&[
        "create".as_ref(),
        "--bundle".as_ref(),
        b.path().as_os_str(),
        id.as_ref(),
    ]);
    assert!(!ok && err.contains("/no/such/program"), "{err}");
    assert_eq!(mounts_under(root.path()), 0, "mounts left under the rootfs");
}

#[test]
fn what_only_a_mount_namespace_confines_is_refused_without_one() {
    let rt = Runtime::new();
    let root = private_rootfs();
    for (key, value) in [
        ("maskedPaths", json!(["/proc/kcore"])),
        ("readonlyPaths", json!(["/proc/sys"])),
        ("rootfsPropagation", json!("shared")),
    ] {
        let id = unique_id("nsinheritbad");
        let mut b = Bundle::new(&["true"]);
        without_mount_ns(&mut b, root.path());
        b.edit(|c| c["linux"][key] = value);
        let (ok, err) = rt.detached(&[
            "create".as_ref(),
            "--bundle".as_ref(),
            b.path().as_os_str(),
            id.as_ref(),
        ]);
        assert!(!ok && err.contains(key), "{key}: {err}");
        assert_eq!(mounts_under(root.path()), 0);
    }
}
