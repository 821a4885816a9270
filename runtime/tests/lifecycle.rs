//! The OCI lifecycle through the runc-style CLI: create/start/state/kill/delete, run, and the
//! edge cases the spec pins down. Real containers; needs root.

mod common;

use std::ffi::OsStr;

use common::{unique_id, Bundle, Runtime};
use serde_json::json;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn run_passes_exit_codes_and_output_through() {
    let rt = Runtime::new();
    let (code, out, err) = rt.run(&Bundle::sh("echo hello; exit 3"), &unique_id("run"));
    assert_eq!(code, 3, "stderr: {err}");
    assert_eq!(out, "hello\n");
    let (code, _, err) = rt.run(&Bundle::new(&["/bin/true"]), &unique_id("true"));
    assert_eq!(code, 0, "stderr: {err}");
    // Killed by a signal: 128 + signal, as a shell reports it. (The container's init cannot
    // SIGKILL itself: it is pid 1 of its namespace; kill it from outside.)
    let id = unique_id("sig");
    let b = Bundle::new(&["sleep", "100"]);
    let mut child = rt
        .cmd()
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while rt.output(&["state", &id]).stdout.is_empty() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    rt.ok(&["kill", &id, "KILL"]);
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert!(!rt.container_dir(&id).exists());
}

#[test]
fn run_forwards_signals_to_the_container() {
    let rt = Runtime::new();
    let id = unique_id("fwd");
    let b = Bundle::sh("trap 'exit 7' TERM; while true; do sleep 0.05; done");
    let mut child = rt
        .cmd()
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while rt.output(&["state", &id]).stdout.is_empty() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(7));
}

#[test]
fn run_deletes_the_container_afterwards() {
    let rt = Runtime::new();
    let id = unique_id("gone");
    let (code, _, err) = rt.run(&Bundle::new(&["/bin/true"]), &id);
    assert_eq!(code, 0, "{err}");
    assert!(!rt.container_dir(&id).exists());
    assert!(rt.fails(&["state", &id]).contains("does not exist"));
}

#[test]
fn create_start_kill_delete() {
    let rt = Runtime::new();
    let b = Bundle::new(&["sleep", "100"]);
    let id = unique_id("life");
    rt.create(&b, &id);
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], json!(id));
    assert_eq!(st["bundle"], json!(b.path()));
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    // Created: the init exists but has not run the program yet.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "berth-runtime");

    rt.ok(&["start", &id]);
    rt.wait_status(&id, "running");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");
    assert_eq!(rt.state(&id)["pid"].as_i64().unwrap(), pid);

    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    assert_eq!(rt.state(&id)["pid"], 0);
    rt.ok(&["delete", &id]);
    assert!(rt.fails(&["state", &id]).contains("does not exist"));
    assert!(!rt.container_dir(&id).exists());
}

#[test]
fn start_twice_is_an_error() {
    let rt = Runtime::new();
    let id = unique_id("twice");
    rt.create(&Bundle::new(&["sleep", "100"]), &id);
    rt.ok(&["start", &id]);
    let err = rt.fails(&["start", &id]);
    assert!(
        err.contains("only a created container can be started"),
        "{err}"
    );
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn delete_running_needs_force() {
    let rt = Runtime::new();
    let id = unique_id("busy");
    rt.create(&Bundle::new(&["sleep", "100"]), &id);
    rt.ok(&["start", &id]);
    let err = rt.fails(&["delete", &id]);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(rt.status(&id), "running");
    rt.ok(&["delete", "--force", &id]);
    assert!(!rt.container_dir(&id).exists());
}

#[test]
fn kill_of_a_stopped_container_is_an_error() {
    let rt = Runtime::new();
    let id = unique_id("dead");
    rt.create(&Bundle::new(&["/bin/true"]), &id);
    rt.ok(&["start", &id]);
    rt.wait_status(&id, "stopped");
    let err = rt.fails(&["kill", &id, "TERM"]);
    assert!(err.contains("not running"), "{err}");
    rt.ok(&["delete", &id]);
}

#[test]
fn init_that_dies_before_start() {
    let rt = Runtime::new();
    let id = unique_id("early");
    rt.create(&Bundle::new(&["sleep", "100"]), &id);
    // The waiting init can be killed while created.
    rt.ok(&["kill", &id, "9"]);
    rt.wait_status(&id, "stopped");
    let err = rt.fails(&["start", &id]);
    assert!(err.contains("stopped"), "{err}");
    rt.ok(&["delete", &id]);
    assert!(!rt.container_dir(&id).exists());
}

#[test]
fn state_stays_right_after_the_init_exits_on_its_own() {
    let rt = Runtime::new();
    let id = unique_id("self");
    rt.create(&Bundle::sh("exit 0"), &id);
    rt.ok(&["start", &id]);
    rt.wait_status(&id, "stopped");
    // Reusing ids after delete works.
    rt.ok(&["delete", &id]);
    rt.create(&Bundle::new(&["sleep", "100"]), &id);
    assert_eq!(rt.status(&id), "created");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn delete_of_a_created_container_kills_its_init() {
    let rt = Runtime::new();
    let id = unique_id("cdel");
    rt.create(&Bundle::new(&["sleep", "100"]), &id);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    rt.ok(&["delete", &id]);
    // Reaped by whoever adopted it, or a zombie: either way no longer running.
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z"))
        .unwrap_or(false);
    assert!(!alive, "init {pid} survived delete");
    assert!(!rt.container_dir(&id).exists());
}

#[test]
fn create_twice_with_the_same_id_is_refused() {
    let rt = Runtime::new();
    let id = unique_id("dup");
    let b = Bundle::new(&["sleep", "100"]);
    rt.create(&b, &id);
    let (ok, err) = rt.detached(&[os("create"), os("--bundle"), b.path().as_os_str(), os(&id)]);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    // The first one is untouched.
    assert_eq!(rt.status(&id), "created");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn pid_file_list_and_ps() {
    let rt = Runtime::new();
    let b = Bundle::new(&["sleep", "100"]);
    let id = unique_id("ls");
    let pid_file = b.path().join("pid");
    let (ok, err) = rt.detached(&[
        os("create"),
        os("--pid-file"),
        pid_file.as_os_str(),
        os("--bundle"),
        b.path().as_os_str(),
        os(&id),
    ]);
    assert!(ok, "{err}");
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(rt.state(&id)["pid"].as_i64().unwrap(), pid);
    rt.ok(&["start", &id]);

    let table = rt.ok(&["list"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&id) && table.contains("running"), "{table}");
    let list: serde_json::Value =
        serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(list[0]["id"], json!(id));
    assert_eq!(list[0]["status"], "running");
    assert_eq!(rt.ok(&["list", "-q"]).trim(), id);

    let pids: Vec<i64> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    assert_eq!(pids, vec![pid]);
    let ps = rt.ok(&["ps", &id]);
    assert!(ps.lines().next().unwrap().contains("PID"), "{ps}");
    assert!(ps.contains("sleep 100"), "{ps}");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn kill_all_reaches_every_process() {
    let rt = Runtime::new();
    let id = unique_id("all");
    let b = Bundle::sh("sleep 100 & sleep 100 & wait");
    rt.create(&b, &id);
    rt.ok(&["start", &id]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let pids: Vec<i64> =
            serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
        if pids.len() == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{pids:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    rt.ok(&["kill", "--all", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    let pids: Vec<i64> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(pids.is_empty(), "{pids:?}");
    rt.ok(&["delete", &id]);
}

#[test]
fn signals_by_name_reach_the_program() {
    let rt = Runtime::new();
    let id = unique_id("usr1");
    let b = Bundle::sh("trap 'exit 42' USR1; while true; do sleep 0.05; done");
    rt.create(&b, &id);
    rt.ok(&["start", &id]);
    rt.wait_status(&id, "running");
    std::thread::sleep(std::time::Duration::from_millis(100));
    rt.ok(&["kill", &id, "SIGUSR1"]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    let err = rt.fails(&["kill", &id, "NOSUCHSIG"]);
    assert!(err.contains("unknown signal"), "{err}");
}

#[test]
fn pause_and_resume() {
    let rt = Runtime::new();
    let id = unique_id("pause");
    rt.create(&Bundle::new(&["sleep", "100"]), &id);
    rt.ok(&["start", &id]);
    rt.ok(&["pause", &id]);
    assert_eq!(rt.status(&id), "paused");
    rt.ok(&["resume", &id]);
    assert_eq!(rt.status(&id), "running");
    assert!(rt.fails(&["resume", &id]).contains("only a paused"));
    // A paused container can still be force-deleted.
    rt.ok(&["pause", &id]);
    rt.ok(&["delete", "--force", &id]);
    assert!(!rt.container_dir(&id).exists());
}

#[test]
fn run_detach_leaves_it_running() {
    let rt = Runtime::new();
    let id = unique_id("detach");
    let b = Bundle::new(&["sleep", "100"]);
    let (ok, err) = rt.detached(&[
        os("run"),
        os("--detach"),
        os("--bundle"),
        b.path().as_os_str(),
        os(&id),
    ]);
    assert!(ok, "{err}");
    assert_eq!(rt.status(&id), "running");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn spec_features_and_flags() {
    let rt = Runtime::new();
    let d = tempfile::tempdir().unwrap();
    rt.ok(&["spec", "--bundle", d.path().to_str().unwrap()]);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["process"]["args"], json!(["sh"]));
    assert!(rt
        .fails(&["spec", "--bundle", d.path().to_str().unwrap()])
        .contains("exists"));
    let f: serde_json::Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    assert_eq!(f["linux"]["cgroup"]["v1"], true);
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("pid")));
    assert!(rt
        .fails(&["--systemd-cgroup", "list"])
        .contains("not supported"));
    assert!(rt
        .fails(&["state", "../etc"])
        .contains("invalid container id"));
    assert!(rt.fails(&["state", "nope"]).contains("does not exist"));
}

#[test]
fn log_file_gets_json_errors() {
    let rt = Runtime::new();
    let log = rt.root.path().join("log.json");
    let o = rt
        .cmd()
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", "missing"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let line = std::fs::read_to_string(&log).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("does not exist"));
}
