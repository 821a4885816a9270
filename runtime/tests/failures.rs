//! Bad input is refused before any side effect; a failure half-way leaves nothing behind; a
//! hostile rootfs cannot make a mount land outside it.

mod common;

use std::path::{Path, PathBuf};

use common::{cgroup_mount, own_cgroup, unique_id, Bundle, Runtime};
use serde_json::json;

/// Every place a container with this id could have left a cgroup.
fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for c in ["memory", "pids", "cpu", "devices", "freezer", ""] {
        if let Some(m) = cgroup_mount(c) {
            let own = own_cgroup(c);
            out.push(m.join(own.strip_prefix("/").unwrap_or(&own)).join(id));
        }
    }
    out
}

fn assert_nothing_left(rt: &Runtime, id: &str) {
    assert!(!rt.container_dir(id).exists(), "state dir left for {id}");
    for d in cgroup_dirs(id) {
        assert!(!d.exists(), "cgroup {} left behind", d.display());
    }
}

fn create_fails(rt: &Runtime, b: &Bundle, id: &str) -> String {
    let (ok, err) = rt.detached(&[
        "create".as_ref(),
        "--bundle".as_ref(),
        b.path().as_os_str(),
        id.as_ref(),
    ]);
    assert!(!ok, "create {id} succeeded");
    err
}

#[test]
fn malformed_config_is_refused_without_side_effects() {
    let rt = Runtime::new();
    let b = Bundle::new(&["/bin/true"]);
    std::fs::write(
        b.path().join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"process\": ",
    )
    .unwrap();
    let id = unique_id("badjson");
    let err = create_fails(&rt, &b, &id);
    assert!(
        err.contains("invalid config") && err.contains("config.json"),
        "{err}"
    );
    assert_nothing_left(&rt, &id);
}

#[test]
fn invalid_fields_are_refused_without_side_effects() {
    type Edit = fn(&mut serde_json::Value);
    let cases: Vec<(&str, Edit)> = vec![
        ("process.args", |c| c["process"]["args"] = json!([])),
        ("cwd", |c| c["process"]["cwd"] = json!("relative")),
        ("absolute", |c| {
            c["mounts"][0]["destination"] = json!("proc")
        }),
        ("uts", |c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "uts")
        }),
        ("not namespaced", |c| {
            c["linux"]["sysctl"] = json!({"vm.swappiness": "1"})
        }),
        ("mount namespace", |c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "mount")
        }),
        ("root.path", |c| {
            c["root"]["path"] = json!("/nonexistent/rootfs")
        }),
        ("namespace path", |c| {
            c["linux"]["namespaces"][1]["path"] = json!("/proc/nonexistent/ns/net")
        }),
        ("SCMP_ACT_NOTIFY", |c| {
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
            })
        }),
    ];
    let rt = Runtime::new();
    for (want, edit) in cases {
        let mut b = Bundle::new(&["/bin/true"]);
        b.edit(edit);
        let id = unique_id("invalid");
        let err = create_fails(&rt, &b, &id);
        assert!(err.contains(want), "wanted {want:?} in: {err}");
        assert_nothing_left(&rt, &id);
    }
}

#[test]
fn a_failing_mount_names_itself_and_leaves_nothing() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["/bin/true"]);
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/bad", "type": "nosuchfs", "source": "none"
        }))
    });
    let id = unique_id("badmount");
    let err = create_fails(&rt, &b, &id);
    assert!(err.contains("mount none on /bad (type nosuchfs"), "{err}");
    assert!(err.contains("No such device"), "{err}");
    assert_nothing_left(&rt, &id);
}

#[test]
fn a_missing_bind_source_is_refused_early() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["/bin/true"]);
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/x", "type": "bind", "source": "/nonexistent/src", "options": ["bind"]
        }))
    });
    let id = unique_id("nosrc");
    let err = create_fails(&rt, &b, &id);
    assert!(err.contains("/nonexistent/src"), "{err}");
    assert_nothing_left(&rt, &id);
}

#[test]
fn a_missing_program_fails_create_and_leaves_nothing() {
    let rt = Runtime::new();
    let b = Bundle::new(&["no-such-program"]);
    let id = unique_id("noexec");
    let err = create_fails(&rt, &b, &id);
    assert!(
        err.contains("no-such-program") && err.contains("not found"),
        "{err}"
    );
    assert_nothing_left(&rt, &id);
    let (code, _, err) = rt.run(&b, &id);
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
    assert_nothing_left(&rt, &id);
}

#[test]
fn a_failed_run_with_a_bad_cwd_leaves_nothing() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["/bin/true"]);
    b.edit(|c| c["process"]["cwd"] = json!("/does/not/exist"));
    let id = unique_id("cwd");
    let (code, _, err) = rt.run(&b, &id);
    assert_ne!(code, 0);
    assert!(err.contains("chdir to cwd /does/not/exist"), "{err}");
    assert_nothing_left(&rt, &id);
}

/// A private rootfs this test may plant symlinks in.
fn hostile_rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let src = common::rootfs();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(d.path())
        .status()
        .unwrap();
    assert!(status.success());
    d
}

#[test]
fn symlinks_in_the_rootfs_cannot_move_a_mount_outside_it() {
    let outside = tempfile::tempdir().unwrap();
    let rootfs = hostile_rootfs();
    // An absolute and a relative symlink, both pointing outside if followed on the host. Inside
    // the rootfs the same path exists, so resolved in-root they land there.
    std::os::unix::fs::symlink(outside.path(), rootfs.path().join("abs")).unwrap();
    let up = "../".repeat(20);
    std::os::unix::fs::symlink(
        format!("{up}{}", outside.path().display()),
        rootfs.path().join("rel"),
    )
    .unwrap();
    let inside = rootfs
        .path()
        .join(outside.path().strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    let rt = Runtime::new();
    let mut b = Bundle::sh("grep -c ' tmpfs ' /proc/mounts; ls -d /abs/m && echo inside");
    b.edit(|c| {
        c["root"]["path"] = json!(rootfs.path());
        c["root"]["readonly"] = json!(false);
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/abs/m", "type": "tmpfs", "source": "tmpfs"}));
        m.push(json!({"destination": "/rel/m2", "type": "tmpfs", "source": "tmpfs"}));
    });
    let (code, out, err) = rt.run(&b, &unique_id("escape"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("inside"), "{out}");
    // Nothing was created or mounted in the host directory the links point at...
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    // ...the mountpoints were made inside the rootfs, where the links resolve within it.
    assert!(inside.join("m").is_dir());
    assert!(inside.join("m2").is_dir());
}

#[test]
fn a_dangling_symlink_on_a_mount_path_is_refused_and_touches_nothing_outside() {
    let outside = tempfile::tempdir().unwrap();
    let rootfs = hostile_rootfs();
    std::os::unix::fs::symlink(outside.path(), rootfs.path().join("evil")).unwrap();
    let rt = Runtime::new();
    let mut b = Bundle::new(&["/bin/true"]);
    b.edit(|c| {
        c["root"]["path"] = json!(rootfs.path());
        c["root"]["readonly"] = json!(false);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/evil/sub/deeper", "type": "tmpfs", "source": "tmpfs"
        }));
    });
    let id = unique_id("dangling");
    let (code, _, err) = rt.run(&b, &id);
    assert_ne!(code, 0);
    assert!(
        err.contains("create mountpoint tmpfs on /evil/sub/deeper"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_nothing_left(&rt, &id);
}

#[test]
fn parent_dirs_of_the_state_are_kept_private() {
    let rt = Runtime::new();
    let id = unique_id("perm");
    rt.create(&Bundle::new(&["sleep", "100"]), &id);
    let meta = std::fs::metadata(rt.container_dir(&id)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o711);
    assert!(Path::new(&rt.container_dir(&id))
        .join("state.json")
        .exists());
    rt.ok(&["delete", "--force", &id]);
}

/// A limit the kernel refuses once the init exists (v1 hierarchies are set while it builds its
/// rootfs): create fails at once with the file and errno, and the init does not linger waiting
/// for a go-ahead that will never come (it held its own copy of the pipe's write end, so the
/// runtime and the init waited on each other forever).
#[test]
fn a_limit_the_kernel_refuses_fails_create_promptly_and_leaves_nothing() {
    let rt = Runtime::new();
    let id = unique_id("badlimit");
    let mut b = Bundle::new(&["/bin/true"]);
    b.edit(|c| c["linux"]["resources"] = json!({"cpu": {"cpus": "1000000"}}));
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = rt
        .cmd()
        .args(["create", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("create hung on a refused limit");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(err.path()).unwrap();
    assert!(!status.success());
    assert!(err.contains("cpuset.cpus"), "{err}");
    assert_nothing_left(&rt, &id);
}
