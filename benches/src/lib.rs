//! Fixtures for berth's criterion micro-benchmarks: bundles on disk (runc's default config and
//! one shaped like what dockerd hands its runtime), and fixed /proc texts of a hybrid-cgroup host.
//! Benchmarks measure in-process steps only; whole-process timings, side by side with runc and
//! crun, live in perf/. Nothing here touches the host beyond a temporary directory it removes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// /proc/self/mountinfo of a hybrid host (v1 controllers, cgroup2 at /sys/fs/cgroup/unified),
/// as on the benchmark machine.
pub const HYBRID_MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334432k,nr_inodes=3083608,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683656k
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// /proc/self/cgroup of a process on that host.
pub const HYBRID_SELF_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/580f0ba2c14c363c58216d0e294418f9
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

/// The same host running `containers` Docker containers: each adds an overlay root and its
/// resolv.conf, hostname and hosts bind mounts (and shm) to the host's mountinfo, which every
/// parse must then scan.
pub fn busy_mountinfo(containers: usize) -> String {
    let mut s = String::from(HYBRID_MOUNTINFO);
    for i in 0..containers {
        let id = format!("{i:064x}");
        let n = 100 + i * 5;
        s.push_str(&format!(
            "{n} 27 0:{d} / /var/lib/docker/overlay2/{id}/merged rw,relatime - overlay overlay \
             rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,\
             upperdir=/var/lib/docker/overlay2/{id}/diff,workdir=/var/lib/docker/overlay2/{id}/work\n\
             {n1} 27 0:{d1} / /var/lib/docker/containers/{id}/mounts/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k\n\
             {n2} 27 0:{d2} / /run/docker/netns/{i:012x} rw - nsfs nsfs rw\n",
            d = 100 + i * 3,
            n1 = n + 1,
            d1 = 101 + i * 3,
            n2 = n + 2,
            d2 = 102 + i * 3,
        ));
    }
    s
}

/// A temporary directory holding benchmark bundles, removed on drop.
pub struct Bundles {
    dir: PathBuf,
    /// runc's default config (berth_runtime::spec::DEFAULT_SPEC) and an empty rootfs.
    pub default: PathBuf,
    /// A config shaped like dockerd's for `docker run` (see [`docker_config`]).
    pub docker: PathBuf,
}

impl Bundles {
    pub fn create() -> io::Result<Bundles> {
        let dir = std::env::temp_dir().join(format!("berth-benches-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let b = Bundles {
            default: dir.join("default"),
            docker: dir.join("docker"),
            dir,
        };
        for bundle in [&b.default, &b.docker] {
            fs::create_dir_all(bundle.join("rootfs"))?;
        }
        fs::write(
            b.default.join("config.json"),
            berth_runtime::spec::DEFAULT_SPEC,
        )?;
        // dockerd bind-mounts these per-container files from its container directory.
        for f in ["resolv.conf", "hostname", "hosts"] {
            fs::write(b.docker.join(f), "")?;
        }
        let cfg = docker_config(&b.docker);
        fs::write(
            b.docker.join("config.json"),
            serde_json::to_string_pretty(&cfg).expect("a Value serialises"),
        )?;
        Ok(b)
    }
}

impl Drop for Bundles {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// runc's default config.json with what dockerd adds for `docker run -m 512m --cpus 1 nginx`:
/// 20 mounts (with the per-container bind mounts taken from `files`), image env, rlimits,
/// resources with the default device rules, masked and read-only paths, a network namespace
/// and a prestart hook. No seccomp or AppArmor profile: berth-runtime refuses those for now.
pub fn docker_config(files: &Path) -> Value {
    let mut spec: Value =
        serde_json::from_str(berth_runtime::spec::DEFAULT_SPEC).expect("DEFAULT_SPEC is JSON");
    let caps = json!([
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
        "CAP_AUDIT_WRITE"
    ]);
    let file = |name: &str| files.join(name).to_string_lossy().into_owned();
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}),
        json!({"destination": "/etc/resolv.conf", "type": "bind", "source": file("resolv.conf"),
               "options": ["rbind", "rprivate"]}),
        json!({"destination": "/etc/hostname", "type": "bind", "source": file("hostname"),
               "options": ["rbind", "rprivate"]}),
        json!({"destination": "/etc/hosts", "type": "bind", "source": file("hosts"),
               "options": ["rbind", "rprivate"]}),
    ];
    // Volumes and tmpfs mounts a compose file typically adds.
    for i in 0..5 {
        mounts.push(
            json!({"destination": format!("/data/vol{i}"), "type": "bind",
            "source": files.to_string_lossy(), "options": ["rbind", "rprivate", "ro"]}),
        );
        mounts.push(
            json!({"destination": format!("/run/tmp{i}"), "type": "tmpfs",
            "source": "tmpfs", "options": ["rw", "nosuid", "nodev", "noexec", "size=16m"]}),
        );
    }
    let s = spec.as_object_mut().expect("spec is an object");
    s.insert("hostname".into(), json!("3f4e8a1b2c9d"));
    s.insert("mounts".into(), Value::Array(mounts));
    s.insert(
        "hooks".into(),
        json!({"prestart": [{"path": "/proc/4242/exe",
            "args": ["libnetwork-setkey", "-exec-root=/var/run/docker", "3f4e8a1b2c9d", "c0ffee"]}]}),
    );
    let process = s["process"].as_object_mut().expect("process is an object");
    process.insert("terminal".into(), json!(false));
    process.insert(
        "args".into(),
        json!(["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]),
    );
    process.insert(
        "env".into(),
        json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=3f4e8a1b2c9d",
            "NGINX_VERSION=1.25.3",
            "NJS_VERSION=0.8.2",
            "PKG_RELEASE=1~bookworm",
            "LANG=C.UTF-8",
            "TZ=UTC",
            "APP_ENV=production",
            "APP_LOG_LEVEL=info",
            "DATABASE_URL=postgres://app@db:5432/app",
            "REDIS_URL=redis://cache:6379/0",
            "HOME=/root"
        ]),
    );
    process.insert(
        "capabilities".into(),
        json!({"bounding": caps, "effective": caps, "permitted": caps}),
    );
    process.insert(
        "rlimits".into(),
        json!([
            {"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576},
            {"type": "RLIMIT_NPROC", "hard": 65536, "soft": 65536},
            {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}
        ]),
    );
    process.insert("oomScoreAdj".into(), json!(0));
    let linux = s["linux"].as_object_mut().expect("linux is an object");
    linux.insert(
        "cgroupsPath".into(),
        json!("/docker/3f4e8a1b2c9d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f"),
    );
    linux.insert(
        "sysctl".into(),
        json!({"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}),
    );
    linux.insert(
        "namespaces".into(),
        json!([{"type": "mount"}, {"type": "network"}, {"type": "uts"}, {"type": "pid"},
               {"type": "ipc"}, {"type": "cgroup"}]),
    );
    let mut devices = vec![json!({"allow": false, "access": "rwm"})];
    for (typ, major, minor, access) in [
        ("c", 1, 5, "rwm"),
        ("c", 1, 3, "rwm"),
        ("c", 1, 9, "rwm"),
        ("c", 1, 8, "rwm"),
        ("c", 5, 0, "rwm"),
        ("c", 5, 1, "rwm"),
        ("c", 1, 7, "rwm"),
        ("c", 5, 2, "rwm"),
        ("c", 10, 200, "rwm"),
        ("c", 136, -1, "rwm"),
    ] {
        let mut d = json!({"allow": true, "type": typ, "major": major, "access": access});
        if minor >= 0 {
            d["minor"] = json!(minor);
        }
        devices.push(d);
    }
    devices.push(json!({"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"}));
    linux.insert(
        "resources".into(),
        json!({
            "devices": devices,
            "memory": {"limit": 536870912i64, "swap": 1073741824i64},
            "cpu": {"shares": 1024, "quota": 100000, "period": 100000},
            "pids": {"limit": 4096},
            "blockIO": {"weight": 500}
        }),
    );
    linux.insert(
        "maskedPaths".into(),
        json!([
            "/proc/asound",
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap"
        ]),
    );
    linux.insert(
        "readonlyPaths".into(),
        json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]),
    );
    spec
}
