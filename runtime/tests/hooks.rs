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
fn container_side_hooks_are_refused_clearly() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["hooks"] = json!({"startContainer": [{"path": "/bin/true"}]}));
    let err = rt.fails(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        &unique_id("hookcc"),
    ]);
    assert!(
        err.contains("startContainer") && err.contains("not supported"),
        "{err}"
    );
}
