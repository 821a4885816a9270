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
