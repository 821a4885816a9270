//! Each area of config.json, checked from inside a real container.

mod common;

use common::{cgroup_mount, own_cgroup, unique_id, Bundle, Runtime};
use serde_json::json;

/// Run `script` with the config edited by `f`; returns stdout, asserting exit 0.
fn run_with(script: &str, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let rt = Runtime::new();
    let mut b = Bundle::sh(script);
    b.edit(f);
    let (code, out, err) = rt.run(&b, &unique_id("cfg"));
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    out
}

#[test]
fn hostname_domainname_env_cwd() {
    let out = run_with(
        "hostname; cat /proc/sys/kernel/domainname; echo $GREETING; pwd",
        |c| {
            c["hostname"] = json!("box1");
            c["domainname"] = json!("example.test");
            c["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!("GREETING=hi there"));
            c["process"]["cwd"] = json!("/tmp");
        },
    );
    assert_eq!(out, "box1\nexample.test\nhi there\n/tmp\n");
}

#[test]
fn user_groups_and_umask() {
    let out = run_with(
        "id -u; id -g; id -G; umask; touch /tmp/f; stat -c %a /tmp/f",
        |c| {
            c["process"]["user"] =
                json!({"uid": 1000, "gid": 1001, "additionalGids": [5, 7], "umask": 63});
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]
            }));
        },
    );
    assert_eq!(out, "1000\n1001\n1001 5 7\n0077\n600\n");
}

#[test]
fn rlimits_are_applied() {
    let out = run_with("ulimit -n; ulimit -Hn", |c| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 768}]);
    });
    assert_eq!(out, "512\n768\n");
}

#[test]
fn raising_a_hard_rlimit_beyond_ours_gets_a_clear_error() {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a plain struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) };
    let rt = Runtime::new();
    let mut b = Bundle::new(&["/bin/true"]);
    let above = cur.rlim_max.saturating_add(1);
    b.edit(|c| {
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": above, "hard": above}])
    });
    let id = unique_id("rlim");
    let (code, _, err) = rt.run(&b, &id);
    // Without CAP_SYS_RESOURCE this must fail, and say why; with it, it may succeed.
    if code != 0 {
        assert!(err.contains("setrlimit RLIMIT_NOFILE"), "{err}");
        assert!(err.contains("CAP_SYS_RESOURCE"), "{err}");
        assert!(!rt.container_dir(&id).exists());
    }
}

#[test]
fn capabilities_follow_the_config() {
    // The default spec keeps only AUDIT_WRITE, KILL, NET_BIND_SERVICE: bits 29, 5, 10.
    let out = run_with("grep -E '^Cap(Eff|Bnd|Prm)' /proc/self/status", |_| {});
    let want = format!("{:016x}", (1u64 << 29) | (1 << 5) | (1 << 10));
    for line in out.lines() {
        assert!(line.ends_with(&want), "{line} (want {want})");
    }
    let out = run_with("grep NoNewPrivs /proc/self/status", |_| {});
    assert!(out.contains("1"), "{out}");
}

#[test]
fn readonly_rootfs_and_paths_and_masks() {
    let out = run_with(
        "touch /x 2>/dev/null && echo rootfs-rw || echo rootfs-ro; \
         echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys-rw || echo sys-ro; \
         [ -z \"$(ls /proc/acpi 2>/dev/null)\" ] && echo acpi-masked; \
         wc -c < /proc/kcore 2>/dev/null || echo kcore-gone",
        |_| {},
    );
    assert!(out.contains("rootfs-ro"), "{out}");
    assert!(out.contains("sys-ro"), "{out}");
    assert!(out.contains("acpi-masked"), "{out}");
    // /proc/kcore is masked with /dev/null: zero bytes.
    assert!(
        out.lines().any(|l| l.trim() == "0" || l == "kcore-gone"),
        "{out}"
    );
}

#[test]
fn mounts_bind_tmpfs_and_options() {
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("hello"), "from host\n").unwrap();
    let host_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(host_file.path(), "single file\n").unwrap();
    let rw = tempfile::tempdir().unwrap();
    let out = run_with(
        "cat /data/hello; cat /etc/one; echo written > /rw/new; \
         touch /data/x 2>/dev/null && echo data-rw || echo data-ro; \
         grep ' /scratch ' /proc/mounts",
        |c| {
            let m = c["mounts"].as_array_mut().unwrap();
            m.push(json!({"destination": "/data", "type": "bind", "source": host.path(), "options": ["rbind", "ro"]}));
            m.push(json!({"destination": "/etc/one", "type": "bind", "source": host_file.path(), "options": ["bind"]}));
            m.push(json!({"destination": "/rw", "type": "bind", "source": rw.path(), "options": ["rbind", "rw"]}));
            m.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=1m", "mode=700"]}));
        },
    );
    assert!(out.starts_with("from host\nsingle file\n"), "{out}");
    assert!(out.contains("data-ro"), "{out}");
    let scratch = out.lines().find(|l| l.contains(" /scratch ")).unwrap();
    assert!(
        scratch.contains("nosuid") && scratch.contains("nodev") && scratch.contains("size=1024k"),
        "{scratch}"
    );
    assert_eq!(
        std::fs::read_to_string(rw.path().join("new")).unwrap(),
        "written\n"
    );
}

#[test]
fn default_devices_and_symlinks() {
    let out = run_with(
        "echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | wc -c; \
         readlink /dev/fd; readlink /dev/stdin; readlink /dev/ptmx; ls /dev/pts/ptmx && echo pts; \
         [ -c /dev/urandom ] && echo urandom",
        |_| {},
    );
    assert_eq!(
        out,
        "null-ok\n4\n/proc/self/fd\n/proc/self/fd/0\npts/ptmx\n/dev/pts/ptmx\npts\nurandom\n"
    );
}

#[test]
fn extra_devices_and_the_device_cgroup() {
    let out = run_with(
        "ls -l /dev/mynull | cut -c1; echo z > /dev/mynull && echo ok; \
         head -c1 /dev/fuse 2>/dev/null; echo fuse=$?",
        |c| {
            c["linux"]["devices"] = json!([
                {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 438},
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}
            ]);
            // Allow mynull's numbers (1:3 is in the default allow list anyway), not fuse's.
        },
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("c"));
    assert_eq!(lines.next(), Some("ok"));
    if cgroup_mount("devices").is_some() {
        // v1 devices cgroup denies 10:229 (only the defaults are allowed).
        assert_eq!(lines.next(), Some("fuse=1"), "{out}");
    }
}

#[test]
fn sysctl_and_oom_score_adj() {
    let out = run_with(
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni /proc/self/oom_score_adj",
        |c| {
            c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
            c["process"]["oomScoreAdj"] = json!(500);
        },
    );
    assert_eq!(out, "1\n1234\n500\n");
}

#[test]
fn namespaces_are_new_unless_joined() {
    let rt = Runtime::new();
    let a = unique_id("nsa");
    rt.create(&Bundle::new(&["sleep", "100"]), &a);
    rt.ok(&["start", &a]);
    let pid = rt.state(&a)["pid"].as_i64().unwrap();
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    let a_net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_ne!(host_net, a_net);
    let a_uts = std::fs::read_link(format!("/proc/{pid}/ns/uts")).unwrap();

    let mut b = Bundle::sh("readlink /proc/self/ns/net; readlink /proc/self/ns/uts; echo $$");
    b.edit(|c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!(format!("/proc/{pid}/ns/net"));
            }
        }
    });
    let (code, out, err) = rt.run(&b, &unique_id("nsb"));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], a_net.to_str().unwrap());
    assert_ne!(lines[1], a_uts.to_str().unwrap());
    // New pid namespace: the shell is pid 1.
    assert_eq!(lines[2], "1");
    rt.ok(&["delete", "--force", &a]);
}

#[test]
fn joining_a_pid_namespace_by_path() {
    let rt = Runtime::new();
    let a = unique_id("pida");
    rt.create(&Bundle::new(&["sleep", "100"]), &a);
    rt.ok(&["start", &a]);
    let pid = rt.state(&a)["pid"].as_i64().unwrap();
    let mut b = Bundle::sh("echo $$; ps -o pid,comm | grep -c sleep");
    b.edit(|c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "pid" {
                ns["path"] = json!(format!("/proc/{pid}/ns/pid"));
            }
        }
    });
    let (code, out, err) = rt.run(&b, &unique_id("pidb"));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "1", "joined pid ns: not its init");
    assert_eq!(lines[1], "1", "sees the other container's sleep: {out}");
    rt.ok(&["delete", "--force", &a]);
    // Our own pid namespace for children is untouched: a plain run still gets pid 1.
    let (_, out, _) = rt.run(&Bundle::sh("echo $$"), &unique_id("pidc"));
    assert_eq!(out, "1\n");
}

#[test]
fn cgroups_are_made_limited_joined_and_removed() {
    let rt = Runtime::new();
    let id = unique_id("cg");
    let mut b = Bundle::new(&["sleep", "100"]);
    let path = format!("/berth-test/{id}");
    b.edit(|c| {
        c["linux"]["cgroupsPath"] = json!(path);
        c["linux"]["resources"]["memory"] = json!({"limit": 64 * 1024 * 1024});
        c["linux"]["resources"]["pids"] = json!({"limit": 50});
        c["linux"]["resources"]["cpu"] = json!({"shares": 512, "quota": 50000, "period": 100000});
    });
    rt.create(&b, &id);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mut dirs = Vec::new();
    if let Some(mem) = cgroup_mount("memory") {
        let dir = mem.join(path.trim_start_matches('/'));
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.limit_in_bytes"))
                .unwrap()
                .trim(),
            (64 * 1024 * 1024).to_string()
        );
        assert!(own.contains(&format!(":memory:{path}")), "{own}");
        dirs.push(dir);
    }
    if let Some(pids) = cgroup_mount("pids") {
        let dir = pids.join(path.trim_start_matches('/'));
        assert_eq!(
            std::fs::read_to_string(dir.join("pids.max"))
                .unwrap()
                .trim(),
            "50"
        );
        dirs.push(dir);
    }
    if let Some(cpu) = cgroup_mount("cpu") {
        let dir = cpu.join(path.trim_start_matches('/'));
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.shares"))
                .unwrap()
                .trim(),
            "512"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.cfs_quota_us"))
                .unwrap()
                .trim(),
            "50000"
        );
        dirs.push(dir);
    }
    if let Some(u) = cgroup_mount("") {
        // The v2 part (all of it on pure v2, hugetlb on hybrid): born there by CLONE_INTO_CGROUP.
        assert!(own.contains(&format!("0::{path}")), "{own}");
        dirs.push(u.join(path.trim_start_matches('/')));
    }
    assert!(!dirs.is_empty());
    rt.ok(&["delete", "--force", &id]);
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    for m in ["memory", "pids", "cpu", ""] {
        if let Some(root) = cgroup_mount(m) {
            let _ = std::fs::remove_dir(root.join("berth-test"));
        }
    }
}

#[test]
fn default_cgroup_is_below_our_own() {
    let rt = Runtime::new();
    let id = unique_id("cgdef");
    rt.create(&Bundle::new(&["sleep", "100"]), &id);
    if let Some(mem) = cgroup_mount("memory") {
        let own = own_cgroup("memory");
        let dir = mem.join(own.strip_prefix("/").unwrap()).join(&id);
        assert!(dir.join("cgroup.procs").exists(), "{}", dir.display());
        rt.ok(&["delete", "--force", &id]);
        assert!(!dir.exists());
    } else {
        rt.ok(&["delete", "--force", &id]);
    }
}

#[test]
fn cgroup_namespace_and_mount_show_the_containers_cgroup_as_root() {
    let out = run_with("cat /proc/self/cgroup; ls /sys/fs/cgroup", |_| {});
    for line in out.lines().filter(|l| l.contains(':')) {
        assert!(line.ends_with(":/"), "{out}");
    }
    if cgroup_mount("memory").is_some() {
        assert!(out.lines().any(|l| l == "memory"), "{out}");
    }
}

#[test]
fn no_pivot_works() {
    let rt = Runtime::new();
    let b = Bundle::sh("cat /proc/self/mountinfo | wc -l; ls /");
    let o = rt
        .cmd()
        .args(["run", "--no-pivot", "--bundle"])
        .arg(b.path())
        .arg(unique_id("nopivot"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("bin"));
}

#[test]
fn preserve_fds_passes_extra_descriptors() {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let rt = Runtime::new();
    let b = Bundle::sh("echo through-fd3 >&3; ls /proc/self/fd | wc -l");
    let mut fds = [0; 2];
    // SAFETY: pipe fills two descriptors we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fresh descriptors.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let wfd = w.as_raw_fd();
    let mut cmd = rt.cmd();
    cmd.args(["run", "--preserve-fds", "1", "--bundle"])
        .arg(b.path())
        .arg(unique_id("fds"));
    // SAFETY: only dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(wfd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    drop(w);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut got = String::new();
    std::fs::File::from(r).read_to_string(&mut got).unwrap();
    assert_eq!(got, "through-fd3\n");
    // stdio + fd 3 + the directory fd ls itself holds: nothing else leaked in.
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "5");
}

#[test]
fn terminal_is_sent_over_the_console_socket() {
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixListener;
    let rt = Runtime::new();
    let mut b = Bundle::sh("tty; echo on-the-pty");
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let sock_path = b.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let id = unique_id("tty");
    let h = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut p = [0u8; 8];
        let (master, _) = berth_runtime::sys::recv_fd(conn.as_fd(), &mut p).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the pty closes (EIO) once the program exits.
        while let Ok(n) = berth_runtime::sys::read(master.as_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let (ok, err) = rt.detached(&[
        "create".as_ref(),
        "--console-socket".as_ref(),
        sock_path.as_os_str(),
        "--bundle".as_ref(),
        b.path().as_os_str(),
        id.as_ref(),
    ]);
    assert!(ok, "{err}");
    rt.ok(&["start", &id]);
    let out = h.join().unwrap();
    assert!(out.contains("/dev/pts/0"), "{out:?}");
    assert!(out.contains("on-the-pty"), "{out:?}");
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
}

/// linux.resources.network: net_cls.classid and net_prio.ifpriomap where the host has those v1
/// controllers; where it does not (cgroup v2 has no counterpart), a clear error rather than a
/// container that silently lacks the limit.
#[test]
fn network_class_and_priorities_are_applied_or_refused() {
    let net = |c: &mut serde_json::Value| {
        c["linux"]["resources"]["network"] =
            json!({"classID": 0x100001, "priorities": [{"name": "lo", "priority": 7}]});
    };
    if let (Some(cls), Some(prio)) = (cgroup_mount("net_cls"), cgroup_mount("net_prio")) {
        let rt = Runtime::new();
        let id = unique_id("net");
        let mut b = Bundle::new(&["sleep", "100"]);
        b.edit(|c| {
            net(c);
            c["linux"]["cgroupsPath"] = json!(format!("/{id}"));
        });
        rt.create(&b, &id);
        let classid = std::fs::read_to_string(cls.join(&id).join("net_cls.classid")).unwrap();
        let map = std::fs::read_to_string(prio.join(&id).join("net_prio.ifpriomap")).unwrap();
        rt.ok(&["delete", "--force", &id]);
        assert_eq!(classid.trim(), 0x100001.to_string());
        assert!(map.lines().any(|l| l == "lo 7"), "{map}");
        return;
    }
    let rt = Runtime::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(net);
    let (code, _, err) = rt.run(&b, &unique_id("net"));
    assert_ne!(code, 0);
    assert!(
        err.contains("net_cls") && err.contains("does not provide"),
        "{err}"
    );
}
