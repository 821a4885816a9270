//! linux.rootfsPropagation: every mode the spec names gives a running container whose "/" has
//! that propagation, including when the rootfs sits on a shared mount (pivot_root refuses a
//! new root under a shared parent; the parent is made private first, as runc does).

mod common;

use std::process::Command;

use common::{rootfs, unique_id, Bundle, Runtime};
use serde_json::json;

/// The optional fields of "/" in the container's mountinfo ("shared:N", "master:N",
/// "unbindable"), as one string.
fn root_tags(propagation: &str, root: &std::path::Path) -> String {
    let rt = Runtime::new();
    let mut b = Bundle::sh("awk '$5 == \"/\"' /proc/self/mountinfo");
    b.edit(|c| {
        c["root"]["path"] = json!(root);
        c["linux"]["rootfsPropagation"] = json!(propagation);
    });
    let (code, out, err) = rt.run(&b, &unique_id("prop"));
    assert_eq!(code, 0, "{propagation}: {err}");
    let line = out.lines().next().unwrap_or_default();
    let left = line.split(" - ").next().unwrap_or_default();
    left.split(' ').skip(6).collect::<Vec<_>>().join(" ")
}

#[test]
fn each_propagation_mode_is_the_new_roots() {
    let root = rootfs();
    let shared = root_tags("shared", root);
    assert!(shared.contains("shared:"), "shared: {shared:?}");
    let unbindable = root_tags("unbindable", root);
    assert!(
        unbindable.contains("unbindable"),
        "unbindable: {unbindable:?}"
    );
    for mode in ["private", "rprivate"] {
        let tags = root_tags(mode, root);
        assert!(
            !tags.contains("shared:") && !tags.contains("master:"),
            "{mode}: {tags:?}"
        );
    }
    // Slave of the host's mount (or private if the host's is not shared): never shared.
    for mode in ["slave", "rslave"] {
        let tags = root_tags(mode, root);
        assert!(!tags.contains("shared:"), "{mode}: {tags:?}");
    }
}

/// A bind mount of the test rootfs made shared on the host; unmounted on drop.
struct SharedBind(tempfile::TempDir);

impl SharedBind {
    fn new() -> SharedBind {
        let dir = tempfile::tempdir().unwrap();
        let sh = |args: &[&str]| {
            let st = Command::new("mount").args(args).status().unwrap();
            assert!(st.success(), "mount {args:?}");
        };
        sh(&[
            "--bind",
            rootfs().to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ]);
        let bind = SharedBind(dir);
        sh(&["--make-shared", bind.0.path().to_str().unwrap()]);
        bind
    }
}

impl Drop for SharedBind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[test]
fn a_rootfs_on_a_shared_mount_runs_and_nothing_propagates_back() {
    let bind = SharedBind::new();
    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    // Non-recursive modes leave the shared parent shared in the container's namespace.
    for mode in ["private", "slave", "shared", "unbindable"] {
        root_tags(mode, bind.0.path());
    }
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let count = |t: &str| t.matches(bind.0.path().to_str().unwrap()).count();
    assert_eq!(count(&before), count(&after), "{after}");
}
