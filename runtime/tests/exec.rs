//! `exec`: a new process in a running container, in all its namespaces and cgroups.

mod common;

use std::ffi::OsStr;

use common::{unique_id, Bundle, Runtime};
use serde_json::json;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A running `sleep` container.
fn running(rt: &Runtime, prefix: &str) -> (String, Bundle) {
    let id = unique_id(prefix);
    let mut b = Bundle::new(&["sleep", "100"]);
    b.edit(|c| c["hostname"] = json!("exec-box"));
    rt.create(&b, &id);
    rt.ok(&["start", &id]);
    (id, b)
}

fn exec(rt: &Runtime, args: &[&str]) -> (i32, String, String) {
    let o = rt
        .cmd()
        .arg("exec")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn exec_joins_the_containers_namespaces_and_cgroups() {
    let rt = Runtime::new();
    let (id, _b) = running(&rt, "ex");
    let init = rt.state(&id)["pid"].as_i64().unwrap();
    let script = "hostname; echo $$; ps -o comm | grep -c sleep; \
                  readlink /proc/self/ns/net; cat /proc/self/cgroup; ls /bin/busybox; exit 7";
    let (code, out, err) = exec(&rt, &[&id, "sh", "-c", script]);
    assert_eq!(code, 7, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "exec-box");
    assert_ne!(lines[1], "1", "a new process, not the init");
    assert_eq!(lines[2], "1", "sees the container's sleep: {out}");
    let init_net = std::fs::read_link(format!("/proc/{init}/ns/net")).unwrap();
    assert_eq!(lines[3], init_net.to_str().unwrap());
    // In the container's cgroup namespace, at its root, like the init.
    assert!(
        out.lines()
            .filter(|l| l.contains(":/"))
            .all(|l| l.ends_with(":/")),
        "{out}"
    );
    assert!(out.contains("/bin/busybox"));
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn exec_flags_set_env_cwd_user_and_caps() {
    let rt = Runtime::new();
    let (id, _b) = running(&rt, "exf");
    let (code, out, err) = exec(
        &rt,
        &[
            "-e",
            "GREETING=hi",
            "--cwd",
            "/tmp",
            "-u",
            "1000:1001",
            "-g",
            "7",
            &id,
            "sh",
            "-c",
            "echo $GREETING; pwd; id -u; id -g; id -G",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hi\n/tmp\n1000\n1001\n1001 7\n");
    // NET_ADMIN is bit 12; the default spec does not have it.
    let (_, out, _) = exec(&rt, &[&id, "grep", "CapEff", "/proc/self/status"]);
    let eff = u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(eff & (1 << 12), 0);
    let (code, out, err) = exec(
        &rt,
        &[
            "--cap",
            "CAP_NET_ADMIN",
            &id,
            "grep",
            "CapEff",
            "/proc/self/status",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let eff = u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_ne!(eff & (1 << 12), 0);
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn exec_with_a_process_json() {
    let rt = Runtime::new();
    let (id, b) = running(&rt, "exp");
    let process = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo from-json $X"],
        "env": ["PATH=/bin", "X=42"],
        "cwd": "/"
    });
    let path = b.path().join("process.json");
    std::fs::write(&path, process.to_string()).unwrap();
    let (code, out, err) = exec(&rt, &["--process", path.to_str().unwrap(), &id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "from-json 42\n");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn exec_errors_are_clear() {
    let rt = Runtime::new();
    let (id, _b) = running(&rt, "exe");
    let (code, _, err) = exec(&rt, &[&id, "no-such-program"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("no-such-program") && err.contains("not found"),
        "{err}"
    );
    let (code, _, err) = exec(&rt, &["--cwd", "/nope", &id, "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("chdir to cwd /nope"), "{err}");
    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    let (code, _, err) = exec(&rt, &[&id, "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("exec needs a running container"), "{err}");
    rt.ok(&["delete", &id]);
}

#[test]
fn exec_detach_and_pid_file() {
    let rt = Runtime::new();
    let (id, b) = running(&rt, "exd");
    let pid_file = b.path().join("exec.pid");
    let (ok, err) = rt.detached(&[
        os("exec"),
        os("--detach"),
        os("--pid-file"),
        pid_file.as_os_str(),
        os(&id),
        os("sleep"),
        os("100"),
    ]);
    assert!(ok, "{err}");
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let pids: Vec<i64> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    // Same cgroups as the init.
    let init = rt.state(&id)["pid"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
        std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap()
    );
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn no_host_descriptor_or_directory_reaches_an_exec() {
    let rt = Runtime::new();
    let (id, _b) = running(&rt, "exleak");
    // Only stdio, plus the directory ls opens itself; cwd and root are the container's.
    let (code, out, err) = exec(
        &rt,
        &[
            &id,
            "sh",
            "-c",
            "ls /proc/self/fd | wc -l; readlink /proc/self/cwd; cd ..; cd ..; ls /",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "4", "{out}");
    assert_eq!(lines[1], "/");
    assert!(
        out.contains("bin") && !out.contains("boot") && !out.contains("home"),
        "{out}"
    );
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn exec_with_a_terminal_over_the_console_socket() {
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixListener;
    let rt = Runtime::new();
    let (id, b) = running(&rt, "extty");
    let sock = b.path().join("exec-console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let h = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut p = [0u8; 8];
        let (master, _) = berth_runtime::sys::recv_fd(conn.as_fd(), &mut p).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = berth_runtime::sys::read(master.as_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    let (ok, err) = rt.detached(&[
        os("exec"),
        os("--tty"),
        os("--detach"),
        os("--console-socket"),
        sock.as_os_str(),
        os(&id),
        os("sh"),
        os("-c"),
        os("tty; echo exec-pty"),
    ]);
    assert!(ok, "{err}");
    let out = h.join().unwrap();
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("exec-pty"), "{out:?}");
    rt.ok(&["delete", "--force", &id]);
}
