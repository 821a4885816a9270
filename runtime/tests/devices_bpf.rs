//! The device allow-list as an eBPF program on a cgroup v2 directory (what a host without the
//! v1 devices controller gets). The hybrid development host has a cgroup2 mount, so the real
//! program is attached to a real directory and a real process in it opens device nodes.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use berth_runtime::cgroups::Cgroup;
use oci_spec::runtime::LinuxResources;

fn unified_mount() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
}

#[test]
fn the_device_program_decides_what_a_process_in_the_cgroup_may_open() {
    let Some(mount) = unified_mount() else {
        panic!("no cgroup v2 hierarchy on this host");
    };
    // Deny everything, then /dev/null; the runtime adds runc's defaults (zero, full, random,
    // urandom, tty, ptys, mknod of anything) after the config's rules. /dev/kmsg (c 1:11) is
    // in no allow rule.
    let res: LinuxResources = serde_json::from_value(serde_json::json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}
        ]
    }))
    .unwrap();
    let script = "echo x > /dev/null && echo null-ok; \
                  head -c1 /dev/zero > /dev/null && echo zero-ok; \
                  true 2>&1 < /dev/kmsg && echo kmsg-ok; \
                  grep '^0::' /proc/self/cgroup";
    // The control: outside the cgroup every device opens.
    let outside = Command::new("/bin/sh")
        .args(["-c", script])
        .output()
        .unwrap();
    let outside = String::from_utf8_lossy(&outside.stdout).into_owned();
    assert!(
        outside.starts_with("null-ok\nzero-ok\nkmsg-ok\n"),
        "{outside}"
    );

    let dir = mount.join(format!("berth-devices-bpf-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    // As a pure v2 host sees it: no v1 hierarchies, only the unified directory.
    let cg = Cgroup {
        unified: Some(dir.clone()),
        ..Cgroup::default()
    };

    let made = cg.create_rest(Some(&res));
    let procs = dir.join("cgroup.procs");
    let inside = made.as_ref().ok().map(|()| {
        // SAFETY: the closure only writes a file before exec.
        let out = unsafe {
            Command::new("/bin/sh")
                .args(["-c", script])
                .pre_exec(move || std::fs::write(&procs, "0"))
                .output()
                .unwrap()
        };
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    let removed = cg.destroy();
    made.unwrap();
    removed.unwrap();
    let inside = inside.unwrap();
    let lines: Vec<&str> = inside.lines().collect();
    assert_eq!(lines.len(), 4, "{inside}");
    assert_eq!(lines[..2], ["null-ok", "zero-ok"], "{inside}");
    assert!(
        lines[2].contains("/dev/kmsg") && lines[2].ends_with("Operation not permitted"),
        "{inside}"
    );
    assert_eq!(
        lines[3],
        format!("0::/{}", dir.file_name().unwrap().to_string_lossy())
    );
    assert!(!dir.exists());
}

#[test]
fn a_rule_for_a_type_the_device_cgroup_lacks_is_refused() {
    let Some(mount) = unified_mount() else {
        panic!("no cgroup v2 hierarchy on this host");
    };
    let dir = mount.join(format!("berth-devices-bpf-p-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let cg = Cgroup {
        unified: Some(dir),
        ..Cgroup::default()
    };
    let res: LinuxResources = serde_json::from_value(serde_json::json!({
        "devices": [{"allow": true, "type": "p", "access": "rw"}]
    }))
    .unwrap();
    let made = cg.create_rest(Some(&res));
    cg.destroy().unwrap();
    let err = made.unwrap_err().to_string();
    assert!(
        err.contains("a device cgroup rule is for type a, b or c"),
        "{err}"
    );
}
