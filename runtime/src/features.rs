//! `features`: what this build supports, in the JSON shape runc prints (OCI features.md).

use serde_json::{json, Value};

use crate::mounts;

/// Mount options `parse_options` understands as flags (everything else is filesystem data).
const MOUNT_OPTIONS: [&str; 33] = [
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
];

pub fn features() -> Value {
    debug_assert!(mounts::propagation_flag("rslave").is_some());
    let caps: Vec<String> = crate::container::cap_names()
        .iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": [],
        "mountOptions": MOUNT_OPTIONS.to_vec(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "uts"],
            "capabilities": caps,
            "cgroup": {
                "v1": true,
                "v2": true,
                "systemd": false,
                "systemdUser": false,
                "rdma": false
            },
            "seccomp": { "enabled": false },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": {
            "org.berth.runtime.version": env!("CARGO_PKG_VERSION"),
            "org.berth.runtime.clone3": "true",
            "org.berth.runtime.pidfd": "true"
        }
    })
}
