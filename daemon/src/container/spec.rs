//! The OCI runtime config (config.json) for a container: Docker's defaults (capabilities,
//! mounts, masked paths, device rules) with the create request and the image applied.

use std::path::Path;

use serde_json::{json, Value};

use super::model::{MountPoint, Record};
use crate::http::{ApiError, ApiResult};

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel headers of this era know (for `--privileged` and `ALL`).
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Whether capability number `n` is in berthd's bounding set (read once).
fn grantable(n: usize) -> bool {
    static BOUNDING: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let b = *BOUNDING.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapBnd:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(u64::MAX)
    });
    n < 64 && b & (1 << n) != 0
}

fn normalise_cap(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up == "ALL" || up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// Docker's `--cap-add`/`--cap-drop` arithmetic (drop first, then add; `ALL` on either side).
pub fn capabilities(add: &[String], drop: &[String], privileged: bool) -> ApiResult<Vec<String>> {
    // "Every capability" means every one berthd can hand on: a host may withhold some from
    // its root (this kind of machine has no CAP_SYS_RESOURCE), and granting one we lack
    // fails in the container's init.
    let all = || -> Vec<String> {
        ALL_CAPS
            .iter()
            .enumerate()
            .filter(|(i, _)| grantable(*i))
            .map(|(_, c)| c.to_string())
            .collect()
    };
    if privileged {
        return Ok(all());
    }
    let add: Vec<String> = add.iter().map(|c| normalise_cap(c)).collect();
    let drop: Vec<String> = drop.iter().map(|c| normalise_cap(c)).collect();
    for c in add.iter().chain(&drop) {
        if c != "ALL" && !ALL_CAPS.contains(&c.as_str()) {
            return Err(ApiError::bad_request(format!("unknown capability: {c:?}")));
        }
    }
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .filter(|c| !drop.iter().any(|d| d == *c))
            .map(|s| s.to_string())
            .collect()
    };
    if add.iter().any(|c| c == "ALL") {
        caps = all()
            .into_iter()
            .filter(|c| !drop.iter().any(|d| d == c))
            .collect();
    }
    for c in add {
        if c != "ALL" && !caps.contains(&c) {
            let n = ALL_CAPS
                .iter()
                .position(|x| *x == c)
                .expect("checked above");
            if !grantable(n) {
                return Err(ApiError::bad_request(format!(
                    "cannot add {c}: the host does not give it to berthd (not in its bounding set)"
                )));
            }
            caps.push(c);
        }
    }
    Ok(caps)
}

/// The user a container process runs as, resolved against the image's /etc/passwd and
/// /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// `user`, `uid`, `user:group`, `uid:gid` (Docker's `--user`), looked up in the rootfs files.
pub fn resolve_user(
    spec: &str,
    passwd: &str,
    group: &str,
    group_add: &[String],
) -> ApiResult<User> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let (uid, mut gid, name, home) = if u.is_empty() {
        (0, 0, "root".to_string(), "/root".to_string())
    } else if let Ok(uid) = u.parse::<u32>() {
        match entries.iter().find(|f| f[2] == u) {
            Some(f) => (
                uid,
                f[3].parse().unwrap_or(0),
                f[0].to_string(),
                f[5].to_string(),
            ),
            None => (uid, 0, String::new(), "/".to_string()),
        }
    } else {
        let f = entries.iter().find(|f| f[0] == u).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to find user {u}: no matching entries in passwd file"
            ))
        })?;
        (
            f[2].parse().unwrap_or(0),
            f[3].parse().unwrap_or(0),
            u.to_string(),
            f[5].to_string(),
        )
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let lookup_group = |g: &str| -> ApiResult<u32> {
        if let Ok(n) = g.parse() {
            return Ok(n);
        }
        groups
            .iter()
            .find(|f| f[0] == g)
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unable to find group {g}: no matching entries in group file"
                ))
            })
    };
    if let Some(g) = g {
        gid = lookup_group(g)?;
    }
    let mut additional: Vec<u32> = if name.is_empty() || g.is_some() {
        Vec::new()
    } else {
        groups
            .iter()
            .filter(|f| f[3].split(',').any(|m| m == name))
            .filter_map(|f| f[2].parse().ok())
            .filter(|&x| x != gid)
            .collect()
    };
    for g in group_add {
        let n = lookup_group(g)?;
        if !additional.contains(&n) {
            additional.push(n);
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids: additional,
        home,
    })
}

/// The parts of the spec that come from outside the record.
pub struct Inputs<'a> {
    pub rootfs: &'a Path,
    pub user: User,
    /// `<data-root>/containers/<id>`: hostname, hosts, resolv.conf to bind.
    pub etc_dir: &'a Path,
    pub cgroups_path: String,
    /// Host path of docker-init when `--init` was asked for.
    pub init: Option<&'a Path>,
    /// A network namespace to join (from berthd's pool); None with the host's network.
    pub netns: Option<&'a Path>,
}

pub fn build(rec: &Record, inp: &Inputs<'_>) -> ApiResult<Value> {
    let c = &rec.config;
    let h = &rec.host_config;
    let host_net = h.network_mode == "host";
    let mut env = c.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={}", c.hostname));
    }
    if c.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", inp.user.home));
    }
    let mut args: Vec<String> = Vec::new();
    if inp.init.is_some() {
        args.extend(["/sbin/docker-init".to_string(), "--".to_string()]);
    }
    args.push(rec.path.clone());
    args.extend(rec.args.iter().cloned());
    let caps = capabilities(&h.cap_add, &h.cap_drop, h.privileged)?;
    let nnp = h.security_opt.iter().any(|o| {
        o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true"
    });

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if h.privileged { "rw" } else { "ro" }]}),
        // As in Docker's default spec: the container's own cgroups (the runtime lays out
        // one directory per v1 hierarchy it is in), read-only unless privileged.
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if h.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={}", if h.shm_size > 0 { h.shm_size } else { 64 << 20 })]}),
    ];
    for (file, dest) in [
        ("resolv.conf", "/etc/resolv.conf"),
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
    ] {
        mounts.push(json!({"destination": dest, "type": "bind", "source": inp.etc_dir.join(file), "options": ["rbind", "rprivate"]}));
    }
    if let Some(init) = inp.init {
        mounts.push(json!({"destination": "/sbin/docker-init", "type": "bind", "source": init, "options": ["rbind", "ro", "rprivate"]}));
    }
    for m in &rec.mounts {
        mounts.push(mount_json(m));
    }

    let mut namespaces = vec![
        json!({"type": "mount"}),
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "cgroup"}),
    ];
    if !host_net {
        namespaces.push(match inp.netns {
            Some(p) => json!({"type": "network", "path": p}),
            None => json!({"type": "network"}),
        });
        namespaces.push(json!({"type": "uts"}));
    }

    let mut resources = json!({
        "devices": if h.privileged {
            json!([{"allow": true, "access": "rwm"}])
        } else {
            json!([
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
                {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
                {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
                {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
                {"allow": true, "type": "c", "major": 136, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
                {"allow": true, "type": "c", "access": "m"},
                {"allow": true, "type": "b", "access": "m"}
            ])
        }
    });
    if h.memory > 0 {
        resources["memory"] = json!({"limit": h.memory});
        if h.memory_swap != 0 {
            resources["memory"]["swap"] = json!(h.memory_swap);
        }
    }
    let mut cpu = serde_json::Map::new();
    if h.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(h.cpu_shares));
    }
    if h.nano_cpus > 0 {
        let period = 100_000i64;
        cpu.insert("period".into(), json!(period));
        cpu.insert("quota".into(), json!(h.nano_cpus * period / 1_000_000_000));
    } else {
        if h.cpu_period > 0 {
            cpu.insert("period".into(), json!(h.cpu_period));
        }
        if h.cpu_quota > 0 {
            cpu.insert("quota".into(), json!(h.cpu_quota));
        }
    }
    if !h.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(h.cpuset_cpus));
    }
    if !h.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(h.cpuset_mems));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = h.pids_limit.filter(|&p| p > 0) {
        resources["pids"] = json!({"limit": p});
    }

    let rlimits: Vec<Value> = h
        .ulimits
        .iter()
        .map(|u| json!({"type": format!("RLIMIT_{}", u.name.to_ascii_uppercase()), "soft": u.soft, "hard": u.hard}))
        .collect();

    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": inp.cgroups_path,
    });
    if !h.privileged {
        linux["maskedPaths"] = json!(MASKED);
        linux["readonlyPaths"] = json!(READONLY);
    }
    if !h.sysctls.is_empty() {
        linux["sysctl"] = json!(h.sysctls);
    }
    if let Some(filter) = super::seccomp::for_container(&h.security_opt, &caps, h.privileged)? {
        linux["seccomp"] = filter;
    }
    let mut process = json!({
        "terminal": c.tty,
        "user": {"uid": inp.user.uid, "gid": inp.user.gid, "additionalGids": inp.user.additional_gids},
        "args": args,
        "env": env,
        "cwd": if c.working_dir.is_empty() { "/" } else { c.working_dir.as_str() },
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": nnp,
        "oomScoreAdj": h.oom_score_adj,
    });
    if !rlimits.is_empty() {
        process["rlimits"] = json!(rlimits);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": inp.rootfs, "readonly": h.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    });
    if !host_net {
        spec["hostname"] = json!(c.hostname);
        if !c.domainname.is_empty() {
            spec["domainname"] = json!(c.domainname);
        }
    }
    Ok(spec)
}

fn mount_json(m: &MountPoint) -> Value {
    match m.kind.as_str() {
        "tmpfs" => {
            let mut opts = vec![
                "nosuid".to_string(),
                "nodev".to_string(),
                "noexec".to_string(),
            ];
            opts.extend(m.options.iter().cloned());
            json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": opts})
        }
        _ => json!({
            "destination": m.destination,
            "type": "bind",
            "source": m.source,
            "options": ["rbind", if m.rw { "rw" } else { "ro" }, "rprivate"],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nadm:x:4:www\n";

    #[test]
    fn users_resolve_like_docker() {
        let u = resolve_user("www", PASSWD, GROUP, &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.clone()), (33, 33, vec![4]));
        assert_eq!(u.home, "/var/www");
        let u = resolve_user("1000:adm", PASSWD, GROUP, &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 4));
        let u = resolve_user("", PASSWD, GROUP, &["33".into()]).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (0, 0, vec![33]));
        assert!(resolve_user("nobody", PASSWD, GROUP, &[]).is_err());
        assert!(resolve_user("root:nogroup", PASSWD, GROUP, &[]).is_err());
    }

    #[test]
    fn capability_arithmetic() {
        let c = capabilities(&["net_admin".into()], &["CHOWN".into()], false).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        let c = capabilities(&["KILL".into()], &["ALL".into()], false).unwrap();
        assert_eq!(c, ["CAP_KILL"]);
        assert!(capabilities(&["BOGUS".into()], &[], false).is_err());
        let held = (0..ALL_CAPS.len()).filter(|&n| grantable(n)).count();
        assert_eq!(capabilities(&[], &[], true).unwrap().len(), held);
    }
}
