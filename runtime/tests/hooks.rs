//! OCI lifecycle hooks: order, the state on stdin, args/env, timeouts and failures.

mod common;

use common::{unique_id, Bundle, Runtime};
use serde_json::json;

/// A hook that appends "<name> <its stdin>" to `log`.
fn recorder(log: &std::path::Path, name: &str) -> serde_json::Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("printf '%s %s\\n' \"$HOOK\" \"$(cat)\" >> {}", log.display())],
        "env": [format!("HOOK={name}")],
    })
}

#[test]
fn hooks_run_in_lifecycle_order_with_the_state_on_stdin() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hooks.log");
    let id = unique_id("hooks");
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["hooks"] = json!({
            "prestart": [recorder(&log, "prestart")],
            "createRuntime": [recorder(&log, "createRuntime")],
            "poststart": [recorder(&log, "poststart")],
            "poststop": [recorder(&log, "poststop")],
        })
    });
    rt.create(&b, &id);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    rt.ok(&["start", &id]);
    rt.ok(&["delete", "--force", &id]);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<(&str, serde_json::Value)> = text
        .lines()
        .map(|l| {
            let (name, state) = l.split_once(' ').unwrap();
            (name, serde_json::from_str(state).unwrap())
        })
        .collect();
    let names: Vec<&str> = lines.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["prestart", "createRuntime", "poststart", "poststop"]
    );
    for (name, st) in &lines {
        assert_eq!(st["id"], id.as_str(), "{name}");
        assert_eq!(st["bundle"], b.path().to_str().unwrap(), "{name}");
    }
    assert_eq!(lines[0].1["status"], "creating");
    assert_eq!(lines[0].1["pid"], pid);
    assert_eq!(lines[2].1["status"], "running");
    assert_eq!(lines[3].1["status"], "stopped");
}

#[test]
fn a_failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    let rt = Runtime::new();
    let id = unique_id("hookfail");
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}]})
    });
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        err.contains("createRuntime hook #0")
            && err.contains("exit status 3")
            && err.contains("nope"),
        "{err}"
    );
    assert!(rt.fails(&["state", &id]).contains("does not exist"));
}

#[test]
fn a_hook_past_its_timeout_is_killed() {
    let rt = Runtime::new();
    let id = unique_id("hooktimeout");
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["hooks"] =
            json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]})
    });
    let t = std::time::Instant::now();
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(err.contains("timed out after 1 s"), "{err}");
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn poststart_failure_only_warns() {
    let rt = Runtime::new();
    let id = unique_id("hookwarn");
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["hooks"] = json!({"poststart": [{"path": "/bin/false"}]}));
    rt.create(&b, &id);
    rt.ok(&["start", &id]);
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn a_relative_container_hook_path_is_refused_before_anything_happens() {
    let rt = Runtime::new();
    let id = unique_id("hookrel");
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["hooks"] = json!({"startContainer": [{"path": "bin/true"}]}));
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(err.contains("hook path bin/true is not absolute"), "{err}");
    assert!(!rt.container_dir(&id).exists());
}

fn read_state(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// createRuntime runs on the host; createContainer in the container's mount namespace with
/// the rootfs as cwd (before pivot_root: its path, /bin/dash, resolves on the host); startContainer only
/// at `start`, after pivot_root (its path and /tmp resolve in the container), before the
/// program. A host directory is bind-mounted on the container's /tmp to see it all.
#[test]
fn container_hooks_run_inside_the_container_at_create_and_start() {
    let rt = Runtime::new();
    let shared = tempfile::tempdir().unwrap();
    let s = shared.path().to_str().unwrap().to_string();
    let id = unique_id("hookin");
    let mut b = Bundle::sh("echo program >> /tmp/order");
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/tmp", "type": "bind", "source": s, "options": ["rbind", "rw"]
        }));
        c["hooks"] = json!({
            "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo createRuntime >> {s}/order")]}],
            // /bin/dash is on the host only (the rootfs is busybox).
            "createContainer": [{
                "path": "/bin/dash",
                "args": ["dash", "-c", "echo \"$HOOK $(readlink /proc/self/ns/mnt)\" >> tmp/order; cat > tmp/create-state"],
                "env": ["HOOK=createContainer"]
            }],
            "startContainer": [{
                "path": "/bin/sh",
                "args": ["sh", "-c", "echo startContainer >> /tmp/order; cat > /tmp/start-state"]
            }],
        })
    });
    rt.create(&b, &id);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let order = std::fs::read_to_string(shared.path().join("order")).unwrap();
    let container_mnt = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_ne!(container_mnt, host_mnt);
    assert_eq!(
        order,
        format!(
            "createRuntime\ncreateContainer {}\n",
            container_mnt.display()
        )
    );
    let st = read_state(&shared.path().join("create-state"));
    assert_eq!(
        (st["id"].as_str(), st["status"].as_str(), st["pid"].as_i64()),
        (Some(id.as_str()), Some("creating"), Some(pid))
    );
    assert!(!shared.path().join("start-state").exists());

    rt.ok(&["start", &id]);
    // `start` returns once the program is exec'd: the hook has run; the program may not yet.
    let st = read_state(&shared.path().join("start-state"));
    assert_eq!(
        (st["status"].as_str(), st["pid"].as_i64()),
        (Some("created"), Some(pid))
    );
    rt.wait_status(&id, "stopped");
    let order = std::fs::read_to_string(shared.path().join("order")).unwrap();
    let lines: Vec<&str> = order
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "createRuntime",
            "createContainer",
            "startContainer",
            "program"
        ]
    );
    rt.ok(&["delete", &id]);
}

#[test]
fn a_failing_create_container_hook_fails_create_and_leaves_nothing() {
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hooks.log");
    let id = unique_id("cchookfail");
    let cgroups_path = format!("/berth-test-{id}");
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["linux"]["cgroupsPath"] = json!(cgroups_path);
        c["hooks"] = json!({
            "createRuntime": [recorder(&log, "createRuntime")],
            "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope; echo really >&2; exit 3"]}],
            "poststop": [recorder(&log, "poststop")],
        })
    });
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        err.contains("createContainer hook #0 (/bin/sh): exit status 3: nope\nreally"),
        "{err}"
    );
    assert!(rt.fails(&["state", &id]).contains("does not exist"));
    assert!(!rt.container_dir(&id).exists());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<(&str, serde_json::Value)> = text
        .lines()
        .map(|l| {
            let (name, state) = l.split_once(' ').unwrap();
            (name, serde_json::from_str(state).unwrap())
        })
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0].0, "createRuntime");
    // The container is destroyed, then poststop runs (OCI lifecycle steps 12 and 13).
    assert_eq!(lines[1].0, "poststop");
    assert_eq!(lines[1].1["status"], "stopped");
    let pid = lines[0].1["pid"].as_i64().unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    for controller in ["memory", "pids", "cpu", "devices", ""] {
        if let Some(m) = common::cgroup_mount(controller) {
            let leftover = m.join(cgroups_path.trim_start_matches('/'));
            assert!(!leftover.exists(), "{} left behind", leftover.display());
        }
    }
}

#[test]
fn a_create_container_hook_past_its_timeout_is_killed() {
    let rt = Runtime::new();
    let id = unique_id("cchooktimeout");
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["hooks"] = json!({"createContainer": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]})
    });
    let t = std::time::Instant::now();
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        err.contains("createContainer hook #0 (/bin/sleep): timed out after 1 s"),
        "{err}"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    assert!(!rt.container_dir(&id).exists());
}

/// A failing startContainer hook: `start` fails with the hook's error, the program never
/// runs, the container is stopped, and `delete` removes it and runs poststop.
#[test]
fn a_failing_start_container_hook_fails_start_and_stops_the_container() {
    let rt = Runtime::new();
    let shared = tempfile::tempdir().unwrap();
    let s = shared.path().to_str().unwrap().to_string();
    let id = unique_id("schookfail");
    let mut b = Bundle::sh("echo ran > /tmp/program");
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/tmp", "type": "bind", "source": s, "options": ["rbind", "rw"]
        }));
        c["hooks"] = json!({
            "startContainer": [
                {"path": "/bin/true"},
                {"path": "/bin/sh", "args": ["sh", "-c", "echo broken >&2; exit 4"]},
                {"path": "/bin/sh", "args": ["sh", "-c", "echo never > /tmp/third"]}
            ],
            "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo x > {s}/poststart")]}],
            "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo x > {s}/poststop")]}],
        })
    });
    rt.create(&b, &id);
    let err = rt.fails(&["start", &id]);
    assert!(
        err.contains("startContainer hook #1 (/bin/sh): exit status 4: broken"),
        "{err}"
    );
    rt.wait_status(&id, "stopped");
    for never in ["program", "third", "poststart", "poststop"] {
        assert!(!shared.path().join(never).exists(), "{never} exists");
    }
    rt.ok(&["delete", &id]);
    assert!(shared.path().join("poststop").exists());
    assert!(!rt.container_dir(&id).exists());
}

/// With `run`, a startContainer hook that cannot be executed fails the run, which leaves
/// nothing behind.
#[test]
fn run_fails_when_a_start_container_hook_cannot_be_executed() {
    let rt = Runtime::new();
    let id = unique_id("schookexec");
    let mut b = Bundle::sh("echo should-not-run");
    // /bin/dash exists on the host, not in the busybox rootfs: the path resolves inside.
    b.edit(|c| c["hooks"] = json!({"startContainer": [{"path": "/bin/dash"}]}));
    assert!(std::path::Path::new("/bin/dash").exists());
    let (code, out, err) = rt.run(&b, &id);
    assert_ne!(code, 0);
    assert!(!out.contains("should-not-run"), "{out}");
    assert!(
        err.contains("startContainer hook #0 (/bin/dash): exec: No such file or directory"),
        "{err}"
    );
    assert!(!rt.container_dir(&id).exists());
}
