//! Loading and validating a bundle's config.json. Everything here happens before any side
//! effect: a config that fails validation leaves no trace on the host.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// A validated config with the paths resolved against its bundle.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
}

fn invalid(path: &Path, msg: impl Into<String>) -> Error {
    Error::InvalidConfig {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Read `<bundle>/config.json` and validate it.
pub fn load(bundle: &Path) -> Result<Bundle> {
    load_checked(bundle, true)
}

/// The config of a container that exists (for exec): validated, except that namespaces to
/// join by path need not exist any more — they were joined at create, and a process the
/// container runs later joins its init's namespaces.
pub fn load_created(bundle: &Path) -> Result<Bundle> {
    load_checked(bundle, false)
}

fn load_checked(bundle: &Path, ns_paths: bool) -> Result<Bundle> {
    let dir = std::path::absolute(bundle).map_err(|e| Error::io("resolve bundle", bundle, e))?;
    let path = dir.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let spec: Spec = serde_json::from_slice(&bytes).map_err(|e| invalid(&path, e.to_string()))?;
    let rootfs = validate_checked(&path, &dir, &spec, ns_paths)?;
    Ok(Bundle { dir, spec, rootfs })
}

/// Check a parsed spec; returns the absolute rootfs path. `ns_paths`: namespaces to join by
/// path must exist (at create; not for a container that already joined them).
fn validate_checked(path: &Path, bundle: &Path, spec: &Spec, ns_paths: bool) -> Result<PathBuf> {
    if !spec.version().starts_with("1.") {
        return Err(invalid(
            path,
            format!("ociVersion {:?} is not a 1.x version", spec.version()),
        ));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid(path, "root is required"))?;
    if root.path().as_os_str().is_empty() {
        return Err(invalid(path, "root.path is empty"));
    }
    let rootfs = bundle.join(root.path());
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(invalid(
                path,
                format!("root.path {} is not a directory", rootfs.display()),
            ))
        }
        Err(e) => {
            return Err(invalid(
                path,
                format!("root.path {}: {e}", rootfs.display()),
            ))
        }
    }
    if let Some(h) = spec.hooks() {
        #[allow(deprecated)]
        let all = [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
            h.poststart(),
            h.poststop(),
        ];
        for hook in all.into_iter().flatten().flatten() {
            if !hook.path().is_absolute() {
                return Err(invalid(
                    path,
                    format!("hook path {} is not absolute", hook.path().display()),
                ));
            }
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(invalid(path, "hook timeout must be positive"));
            }
        }
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid(path, "process is required"))?;
    match process.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => return Err(invalid(path, "process.args must name a program")),
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(
            path,
            format!("process.cwd {:?} must be absolute", process.cwd()),
        ));
    }
    if let Some(env) = process.env() {
        if let Some(bad) = env.iter().find(|e| !e.contains('=') || e.contains('\0')) {
            return Err(invalid(
                path,
                format!("process.env entry {bad:?} is not KEY=VALUE"),
            ));
        }
    }
    if let Some(rl) = process.rlimits() {
        let mut seen = HashSet::new();
        for r in rl {
            if !seen.insert(format!("{:?}", r.typ())) {
                return Err(invalid(path, format!("rlimit {:?} given twice", r.typ())));
            }
            if r.soft() > r.hard() {
                return Err(invalid(
                    path,
                    format!(
                        "rlimit {:?}: soft {} exceeds hard {}",
                        r.typ(),
                        r.soft(),
                        r.hard()
                    ),
                ));
            }
        }
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(invalid(
                path,
                format!("mount destination {:?} must be absolute", m.destination()),
            ));
        }
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(Error::Unsupported(
                "idmapped mounts (mounts[].uidMappings) are not supported yet".into(),
            ));
        }
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid(path, "linux section is required"))?;
    crate::lsm::check(
        process.apparmor_profile(),
        process.selinux_label(),
        linux.mount_label(),
        "",
    )?;
    let mut kinds = HashSet::new();
    for ns in linux.namespaces().iter().flatten() {
        if !kinds.insert(ns.typ()) {
            return Err(invalid(
                path,
                format!("namespace {:?} listed twice", ns.typ()),
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(invalid(
                    path,
                    format!("namespace path {p:?} must be absolute"),
                ));
            }
            if ns_paths {
                if let Err(e) = std::fs::metadata(p) {
                    return Err(invalid(
                        path,
                        format!("namespace path {}: {e}", p.display()),
                    ));
                }
            }
        }
    }
    let has = |t| kinds.contains(&t);
    let new_ns = |t: LinuxNamespaceType| {
        linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == t && n.path().is_none())
    };
    let has_maps = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.as_ref().is_some_and(|v| !v.is_empty())
    };
    if new_ns(LinuxNamespaceType::User) {
        if !has_maps(linux.uid_mappings()) || !has_maps(linux.gid_mappings()) {
            return Err(invalid(
                path,
                "a new user namespace needs linux.uidMappings and linux.gidMappings",
            ));
        }
    } else if has_maps(linux.uid_mappings()) || has_maps(linux.gid_mappings()) {
        let joined = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::User);
        return Err(invalid(
            path,
            if joined {
                "uid/gid mappings cannot be given when joining a user namespace by path (its maps are already written)"
            } else {
                "uid/gid mappings need a new user namespace"
            },
        ));
    }
    if let Some(offsets) = linux.time_offsets() {
        if !offsets.is_empty() && !new_ns(LinuxNamespaceType::Time) {
            return Err(invalid(
                path,
                "linux.timeOffsets needs a new time namespace",
            ));
        }
        for clock in offsets.keys() {
            if clock != "monotonic" && clock != "boottime" {
                return Err(invalid(
                    path,
                    format!("linux.timeOffsets: unknown clock {clock:?} (monotonic, boottime)"),
                ));
            }
        }
    }
    let new_uts = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Uts);
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !new_uts {
        return Err(invalid(path, "hostname needs a uts namespace"));
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty()) && !new_uts {
        return Err(invalid(path, "domainname needs a uts namespace"));
    }
    for key in linux.sysctl().iter().flat_map(|m| m.keys()) {
        check_sysctl(
            key,
            has(LinuxNamespaceType::Network),
            has(LinuxNamespaceType::Ipc),
            new_uts,
        )
        .map_err(|m| invalid(path, m))?;
    }
    if linux.intel_rdt().is_some() {
        return Err(Error::Unsupported("linux.intelRdt is not supported".into()));
    }
    if let Some(p) = linux.cgroups_path() {
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(invalid(
                path,
                format!("cgroupsPath {p:?} must not contain '..'"),
            ));
        }
    }
    for d in linux.devices().iter().flatten() {
        if !d.path().starts_with("/dev/") {
            return Err(invalid(
                path,
                format!("device path {:?} must be under /dev", d.path()),
            ));
        }
    }
    if let Some(prop) = linux.rootfs_propagation() {
        if crate::mounts::propagation_flag(prop).is_none() {
            return Err(invalid(
                path,
                format!("rootfsPropagation {prop:?} is not a propagation mode"),
            ));
        }
    }
    Ok(rootfs)
}

/// Which namespace a sysctl belongs to decides whether a container may set it (as runc does).
fn check_sysctl(
    key: &str,
    netns: bool,
    ipcns: bool,
    utsns: bool,
) -> std::result::Result<(), String> {
    const IPC: [&str; 6] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
    ];
    let ipc = IPC.contains(&key)
        || key == "kernel.shmmni"
        || key == "kernel.shm_rmid_forced"
        || key.starts_with("fs.mqueue.");
    if key.is_empty() || key.contains('/') || key.split('.').any(str::is_empty) {
        return Err(format!("sysctl {key:?} is not a valid name"));
    }
    if ipc {
        return if ipcns {
            Ok(())
        } else {
            Err(format!("sysctl {key:?} needs an ipc namespace"))
        };
    }
    if key.starts_with("net.") {
        return if netns {
            Ok(())
        } else {
            Err(format!("sysctl {key:?} needs a network namespace"))
        };
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return if utsns {
            Ok(())
        } else {
            Err(format!("sysctl {key:?} needs a uts namespace"))
        };
    }
    Err(format!(
        "sysctl {key:?} is not namespaced and cannot be set in a container"
    ))
}

/// What `berth-runtime spec` writes: runc's default, a read-only busybox-ready container.
pub const DEFAULT_SPEC: &str = r#"{
	"ociVersion": "1.0.2",
	"process": {
		"terminal": true,
		"user": {
			"uid": 0,
			"gid": 0
		},
		"args": [
			"sh"
		],
		"env": [
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm"
		],
		"cwd": "/",
		"capabilities": {
			"bounding": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"effective": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"permitted": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			]
		},
		"rlimits": [
			{
				"type": "RLIMIT_NOFILE",
				"hard": 1024,
				"soft": 1024
			}
		],
		"noNewPrivileges": true
	},
	"root": {
		"path": "rootfs",
		"readonly": true
	},
	"hostname": "berth",
	"mounts": [
		{
			"destination": "/proc",
			"type": "proc",
			"source": "proc"
		},
		{
			"destination": "/dev",
			"type": "tmpfs",
			"source": "tmpfs",
			"options": [
				"nosuid",
				"strictatime",
				"mode=755",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/pts",
			"type": "devpts",
			"source": "devpts",
			"options": [
				"nosuid",
				"noexec",
				"newinstance",
				"ptmxmode=0666",
				"mode=0620",
				"gid=5"
			]
		},
		{
			"destination": "/dev/shm",
			"type": "tmpfs",
			"source": "shm",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"mode=1777",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/mqueue",
			"type": "mqueue",
			"source": "mqueue",
			"options": [
				"nosuid",
				"noexec",
				"nodev"
			]
		},
		{
			"destination": "/sys",
			"type": "sysfs",
			"source": "sysfs",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"ro"
			]
		},
		{
			"destination": "/sys/fs/cgroup",
			"type": "cgroup",
			"source": "cgroup",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"relatime",
				"ro"
			]
		}
	],
	"linux": {
		"resources": {
			"devices": [
				{
					"allow": false,
					"access": "rwm"
				}
			]
		},
		"namespaces": [
			{
				"type": "pid"
			},
			{
				"type": "network"
			},
			{
				"type": "ipc"
			},
			{
				"type": "uts"
			},
			{
				"type": "mount"
			},
			{
				"type": "cgroup"
			}
		],
		"maskedPaths": [
			"/proc/acpi",
			"/proc/asound",
			"/proc/kcore",
			"/proc/keys",
			"/proc/latency_stats",
			"/proc/timer_list",
			"/proc/timer_stats",
			"/proc/sched_debug",
			"/sys/firmware",
			"/proc/scsi"
		],
		"readonlyPaths": [
			"/proc/bus",
			"/proc/fs",
			"/proc/irq",
			"/proc/sys",
			"/proc/sysrq-trigger"
		]
	}
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(config: &str) -> (tempdir::Dir, PathBuf) {
        let d = tempdir::Dir::new();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        std::fs::write(d.path().join("config.json"), config).unwrap();
        let p = d.path().to_path_buf();
        (d, p)
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "berth-spec-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn edit(f: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(DEFAULT_SPEC).unwrap();
        f(&mut v);
        v.to_string()
    }

    fn err_of(config: &str) -> String {
        let (_d, p) = bundle_with(config);
        match load(&p) {
            Ok(_) => panic!("config was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn default_spec_is_valid() {
        let (_d, p) = bundle_with(DEFAULT_SPEC);
        let b = load(&p).unwrap();
        assert_eq!(b.rootfs, p.join("rootfs"));
    }

    #[test]
    fn malformed_json_is_refused_with_the_path() {
        let e = err_of("{\"ociVersion\": ");
        assert!(e.contains("config.json"), "{e}");
    }

    #[test]
    fn missing_rootfs_is_refused() {
        let e = err_of(&edit(|v| v["root"]["path"] = "nope".into()));
        assert!(e.contains("root.path"), "{e}");
    }

    #[test]
    fn empty_args_are_refused() {
        let e = err_of(&edit(|v| v["process"]["args"] = serde_json::json!([])));
        assert!(e.contains("process.args"), "{e}");
    }

    #[test]
    fn relative_cwd_is_refused() {
        let e = err_of(&edit(|v| v["process"]["cwd"] = "tmp".into()));
        assert!(e.contains("cwd"), "{e}");
    }

    #[test]
    fn relative_mount_destination_is_refused() {
        let e = err_of(&edit(|v| v["mounts"][0]["destination"] = "proc".into()));
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn duplicate_namespace_is_refused() {
        let e = err_of(&edit(|v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"type": "pid"}))
        }));
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn hostname_without_uts_namespace_is_refused() {
        let e = err_of(&edit(|v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "uts")
        }));
        assert!(e.contains("uts"), "{e}");
    }

    #[test]
    fn sysctls_are_checked_against_namespaces() {
        assert!(check_sysctl("net.ipv4.ip_forward", true, false, false).is_ok());
        assert!(check_sysctl("net.ipv4.ip_forward", false, true, true).is_err());
        assert!(check_sysctl("kernel.shmmax", false, true, false).is_ok());
        assert!(check_sysctl("fs.mqueue.msg_max", false, false, false).is_err());
        assert!(check_sysctl("vm.swappiness", true, true, true).is_err());
    }

    #[test]
    fn soft_rlimit_above_hard_is_refused() {
        let e = err_of(&edit(|v| v["process"]["rlimits"][0]["soft"] = 4096.into()));
        assert!(e.contains("exceeds hard"), "{e}");
    }

    #[test]
    fn unknown_rlimit_is_refused() {
        let e = err_of(&edit(|v| {
            v["process"]["rlimits"][0]["type"] = "RLIMIT_BOGUS".into()
        }));
        assert!(e.contains("config.json"), "{e}");
    }

    #[test]
    fn cgroups_path_with_dotdot_is_refused() {
        let e = err_of(&edit(|v| v["linux"]["cgroupsPath"] = "/a/../../b".into()));
        assert!(e.contains("cgroupsPath"), "{e}");
    }
}
