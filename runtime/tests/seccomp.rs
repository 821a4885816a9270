//! seccomp filters from config.json, enforced on the container and on exec'd processes.

mod common;

use common::{unique_id, Bundle, Runtime};
use serde_json::json;

fn deny_mkdir_and_sethostname(c: &mut serde_json::Value, no_new_privs: bool) {
    c["process"]["noNewPrivileges"] = json!(no_new_privs);
    c["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            // Only personality(0xffffffff) (a query) is denied: argument filters work.
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 4294967295u32, "op": "SCMP_CMP_EQ"}]}
        ]
    });
}

#[test]
fn a_filter_denies_what_it_lists_with_or_without_no_new_privs() {
    for nnp in [true, false] {
        let rt = Runtime::new();
        let mut b = Bundle::sh(
            "mkdir /tmp/x 2>&1; hostname x 2>&1; echo still-running; grep Seccomp: /proc/self/status",
        );
        b.edit(|c| {
            deny_mkdir_and_sethostname(c, nnp);
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/tmp", "type": "tmpfs", "source": "tmpfs"
            }));
        });
        let (code, out, err) = rt.run(&b, &unique_id("seccomp"));
        assert_eq!(code, 0, "nnp={nnp}: {err}");
        assert!(out.contains("Operation not permitted"), "nnp={nnp}: {out}");
        assert!(out.contains("Function not implemented"), "nnp={nnp}: {out}");
        assert!(out.contains("still-running"), "{out}");
        // Mode 2: filter.
        assert!(out.contains("Seccomp:\t2"), "{out}");
    }
}

#[test]
fn exec_gets_the_containers_filter() {
    let rt = Runtime::new();
    let id = unique_id("secexec");
    let mut b = Bundle::new(&["sleep", "100"]);
    b.edit(|c| deny_mkdir_and_sethostname(c, true));
    rt.create(&b, &id);
    rt.ok(&["start", &id]);
    let o = rt
        .cmd()
        .args([
            "exec",
            &id,
            "sh",
            "-c",
            "hostname x 2>&1; grep Seccomp: /proc/self/status",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Function not implemented"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn a_default_deny_filter_with_an_allow_list() {
    let rt = Runtime::new();
    // Everything echo and exit need, nothing else: the shell's fork fails, its builtin works.
    let mut b = Bundle::sh("echo allowed; exit 4");
    b.edit(|c| {
        c["process"]["noNewPrivileges"] = json!(true);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "syscalls": [{"names": [
                "execve", "brk", "arch_prctl", "set_tid_address", "mmap", "munmap", "mprotect",
                "rt_sigaction", "rt_sigprocmask", "getpid", "getppid", "getuid", "geteuid",
                "getgid", "getegid", "write", "read", "exit", "exit_group", "ioctl", "fcntl",
                "newfstatat", "fstat", "stat", "lstat", "uname", "prctl", "getcwd", "close",
                "openat", "access", "faccessat", "faccessat2", "dup2", "dup3", "sigaltstack",
                "rseq", "set_robust_list", "prlimit64", "getrandom"
            ], "action": "SCMP_ACT_ALLOW"}]
        });
    });
    let (code, out, err) = rt.run(&b, &unique_id("secallow"));
    assert_eq!((code, out.as_str()), (4, "allowed\n"), "{err}");
}

/// A profile written before close_range existed denies it (runtime-tools' default profile is
/// an allow list without it). The runtime's own syscalls must not be caught by the container's
/// filter: without no_new_privs it is loaded before privileges drop, so whatever the runtime
/// still does after it has to be something a profile cannot forbid — as with runc.
#[test]
fn a_filter_that_denies_close_range_still_runs_the_container_and_exec() {
    for nnp in [false, true] {
        let rt = Runtime::new();
        let id = unique_id("secnoclose");
        let mut b = Bundle::new(&["sleep", "100"]);
        b.edit(|c| {
            c["process"]["noNewPrivileges"] = json!(nnp);
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["close_range"], "action": "SCMP_ACT_ERRNO"}]
            });
        });
        rt.create(&b, &id);
        rt.ok(&["start", &id]);
        assert_eq!(rt.status(&id), "running", "nnp={nnp}");
        let out = rt.ok(&["exec", &id, "sh", "-c", "echo exec-ran"]);
        assert_eq!(out, "exec-ran\n", "nnp={nnp}");
        rt.ok(&["delete", "--force", &id]);
    }
}

/// A seccomp agent for the tests: listens on a unix socket, takes each listener sent to it
/// (with its container process state), and answers mkdir notifications: a path ending in
/// "deny" fails with EMLINK, anything else continues in the kernel.
mod agent {
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use std::os::unix::fs::FileExt;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::sync::mpsc;

    #[repr(C)]
    #[derive(Default)]
    struct Notif {
        id: u64,
        pid: u32,
        flags: u32,
        nr: i32,
        arch: u32,
        ip: u64,
        args: [u64; 6],
    }

    #[repr(C)]
    struct Resp {
        id: u64,
        val: i64,
        error: i32,
        flags: u32,
    }

    // _IOWR('!', 0, struct seccomp_notif) and _IOWR('!', 1, struct seccomp_notif_resp).
    const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
    const NOTIF_SEND: libc::c_ulong = 0xc018_2101;
    const FLAG_CONTINUE: u32 = 1;

    pub struct Agent {
        pub path: PathBuf,
        _dir: tempfile::TempDir,
        /// The JSON each connection brought.
        pub states: mpsc::Receiver<serde_json::Value>,
    }

    pub fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let server = UnixListener::bind(&path).unwrap();
        let (tx, states) = mpsc::channel();
        std::thread::spawn(move || {
            for conn in server.incoming() {
                let conn = conn.unwrap();
                let mut buf = vec![0u8; 65536];
                let (fd, n) = berth_runtime::sys::recv_fd(conn.as_fd(), &mut buf).unwrap();
                let _ = tx.send(serde_json::from_slice(&buf[..n]).unwrap());
                std::thread::spawn(move || answer(fd));
            }
        });
        Agent {
            path,
            _dir: dir,
            states,
        }
    }

    fn path_arg(n: &Notif) -> String {
        let addr = if n.nr as libc::c_long == libc::SYS_mkdirat {
            n.args[1]
        } else {
            n.args[0]
        };
        let mem = std::fs::File::open(format!("/proc/{}/mem", n.pid)).unwrap();
        let mut buf = [0u8; 256];
        let got = mem.read_at(&mut buf, addr).unwrap_or(0);
        let end = buf[..got].iter().position(|&b| b == 0).unwrap_or(got);
        String::from_utf8_lossy(&buf[..end]).into_owned()
    }

    fn answer(fd: OwnedFd) {
        loop {
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut p, 1, 10_000) } <= 0 || p.revents & libc::POLLIN == 0 {
                return; // POLLHUP: every process using the filter is gone.
            }
            let mut n = Notif::default();
            // SAFETY: NOTIF_RECV fills a struct seccomp_notif, which Notif mirrors.
            if unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_RECV, &mut n) } != 0 {
                continue; // the process died meanwhile
            }
            let deny = path_arg(&n).ends_with("deny");
            let resp = Resp {
                id: n.id,
                val: 0,
                error: if deny { -libc::EMLINK } else { 0 },
                flags: if deny { 0 } else { FLAG_CONTINUE },
            };
            // SAFETY: NOTIF_SEND reads a struct seccomp_notif_resp, which Resp mirrors.
            unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_SEND, &resp) };
        }
    }
}

fn notify_mkdir(c: &mut serde_json::Value, listener: &std::path::Path) {
    c["process"]["noNewPrivileges"] = json!(true);
    c["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": listener,
        "listenerMetadata": "test-meta",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    c["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/tmp", "type": "tmpfs", "source": "tmpfs"
    }));
}

#[test]
fn notify_hands_the_listener_to_the_agent_which_decides_mkdir() {
    let agent = agent::start();
    let rt = Runtime::new();
    let id = unique_id("secnotify");
    let mut b = Bundle::sh(
        "mkdir /tmp/deny 2>&1; echo deny=$?; mkdir /tmp/allow && echo allow=$?; [ -d /tmp/allow ] && echo made",
    );
    b.edit(|c| notify_mkdir(c, &agent.path));
    let (code, out, err) = rt.run(&b, &id);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Too many links\ndeny=1\n"), "{out}");
    assert!(out.contains("allow=0\nmade\n"), "{out}");
    let st = agent
        .states
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    assert_eq!(st["fds"], json!(["seccompFd"]));
    assert_eq!(st["metadata"], "test-meta");
    assert_eq!(st["ociVersion"], b.config["ociVersion"]);
    assert_eq!(st["state"]["id"], id.as_str());
    assert_eq!(st["state"]["status"], "creating");
    assert!(st["pid"].as_i64().unwrap() > 0);
    assert_eq!(st["pid"], st["state"]["pid"]);
}

#[test]
fn an_exec_sends_its_own_listener_to_the_agent() {
    let agent = agent::start();
    let rt = Runtime::new();
    let id = unique_id("secnotifyexec");
    let mut b = Bundle::new(&["sleep", "100"]);
    b.edit(|c| notify_mkdir(c, &agent.path));
    rt.create(&b, &id);
    rt.ok(&["start", &id]);
    let init = agent
        .states
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let out = rt.ok(&["exec", &id, "sh", "-c", "mkdir /tmp/deny 2>&1; echo $?"]);
    assert_eq!(
        out,
        "mkdir: can't create directory '/tmp/deny': Too many links\n1\n"
    );
    let exec = agent
        .states
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let pid = rt.state(&id)["pid"].clone();
    assert_eq!(init["pid"], pid);
    assert_eq!(exec["state"]["pid"], pid);
    assert_eq!(exec["state"]["status"], "running");
    assert_ne!(exec["pid"], pid);
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn notify_without_a_listener_path_or_with_no_agent_is_a_clear_error() {
    let rt = Runtime::new();
    let id = unique_id("secnoagent");
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        notify_mkdir(c, std::path::Path::new("/nonexistent/agent.sock"));
        c["linux"]["seccomp"]
            .as_object_mut()
            .unwrap()
            .remove("listenerPath");
    });
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        err.contains("SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath"),
        "{err}"
    );
    assert!(!rt.container_dir(&id).exists());
    // A listenerPath nobody listens on: create fails once the filter is loaded, and the
    // container is gone.
    b.edit(|c| notify_mkdir(c, std::path::Path::new("/nonexistent/agent.sock")));
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        err.contains("connect to seccomp agent /nonexistent/agent.sock"),
        "{err}"
    );
    assert!(!rt.container_dir(&id).exists());
}
