//! `update` of a live container's limits, seen through `events --stats`.

mod common;

use common::{unique_id, Bundle, Runtime};
use serde_json::Value;

fn stats(rt: &Runtime, id: &str) -> Value {
    let out = rt.ok(&["events", "--stats", id]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["id"].as_str()),
        (Some("stats"), Some(id))
    );
    v["data"].clone()
}

#[test]
fn update_changes_limits_and_events_reports_them() {
    let rt = Runtime::new();
    let id = unique_id("update");
    rt.create(&Bundle::new(&["sleep", "100"]), &id);
    rt.ok(&["start", &id]);
    let before = stats(&rt, &id);
    assert_eq!(before["pids"]["current"], 1, "{before}");
    rt.ok(&["update", "--memory", "64m", "--pids-limit", "20", &id]);
    let after = stats(&rt, &id);
    assert_eq!(after["memory"]["usage"]["limit"], 64 << 20, "{after}");
    assert_eq!(after["pids"]["limit"], 20, "{after}");
    // -r resources.json, with a flag overriding it.
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("r.json");
    std::fs::write(
        &r,
        r#"{"pids": {"limit": 7}, "memory": {"limit": 33554432}}"#,
    )
    .unwrap();
    rt.ok(&[
        "update",
        "-r",
        r.to_str().unwrap(),
        "--pids-limit",
        "9",
        &id,
    ]);
    let again = stats(&rt, &id);
    assert_eq!(again["memory"]["usage"]["limit"], 32 << 20, "{again}");
    assert_eq!(again["pids"]["limit"], 9, "{again}");
    assert!(again["cpu"]["usage"]["total"].as_u64().is_some());
    rt.ok(&["delete", "--force", &id]);
    assert!(rt
        .fails(&["update", "--pids-limit", "5", &id])
        .contains("does not exist"));
}

#[test]
fn update_refuses_bad_input() {
    let rt = Runtime::new();
    let id = unique_id("update-bad");
    rt.create(&Bundle::new(&["sleep", "100"]), &id);
    let err = rt.fails(&["update", "--memory", "lots", &id]);
    assert!(err.contains("invalid size"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("r.json");
    std::fs::write(&r, "{not json").unwrap();
    let err = rt.fails(&["update", "-r", r.to_str().unwrap(), &id]);
    assert!(err.contains("r.json"), "{err}");
    rt.ok(&["delete", "--force", &id]);
}

/// Without a cpu limit the container is not in the v1 cpu hierarchy (hybrid and v1 hosts);
/// `update --cpu-quota` makes its cgroup there and moves every process of it in, the ones it
/// forked too, and `delete` removes that cgroup as well.
#[test]
fn update_joins_a_hierarchy_the_container_was_not_in() {
    let Some(cpu) = common::cgroup_mount("cpu") else {
        eprintln!("skipped: no v1 cpu hierarchy on this host");
        return;
    };
    let rt = Runtime::new();
    let id = unique_id("update-join");
    rt.create(&Bundle::sh("sleep 100 & sleep 100 & wait"), &id);
    rt.ok(&["start", &id]);
    let own = common::own_cgroup("cpu");
    let dir = cpu.join(own.strip_prefix("/").unwrap()).join(&id);
    assert!(
        !dir.exists(),
        "{} exists before any cpu limit",
        dir.display()
    );
    let procs_of = |d: &std::path::Path| -> Vec<String> {
        let s = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        let mut v: Vec<String> = s.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let pids_dir = common::cgroup_mount("pids")
        .unwrap()
        .join(common::own_cgroup("pids").strip_prefix("/").unwrap())
        .join(&id);
    while procs_of(&pids_dir).len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the two sleeps never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    rt.ok(&[
        "update",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        &id,
    ]);
    assert_eq!(procs_of(&dir), procs_of(&pids_dir));
    assert_eq!(
        std::fs::read_to_string(dir.join("cpu.cfs_quota_us"))
            .unwrap()
            .trim(),
        "50000"
    );
    // The joined hierarchy is recorded: a second update writes there without joining again.
    rt.ok(&["update", "--cpu-quota", "20000", &id]);
    assert_eq!(
        std::fs::read_to_string(dir.join("cpu.cfs_quota_us"))
            .unwrap()
            .trim(),
        "20000"
    );
    rt.ok(&["delete", "--force", &id]);
    assert!(!dir.exists(), "{} left after delete", dir.display());
}
