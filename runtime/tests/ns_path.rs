//! Namespaces joined by path are needed only at create: once the container holds them, the
//! path may go away (a daemon's fd closed, a holder process gone) and start, exec, state and
//! delete still work.

mod common;

use std::process::{Command, Stdio};

use common::{unique_id, Bundle, Runtime};
use serde_json::json;

#[test]
fn joined_network_namespace_path_may_vanish_after_create() {
    let rt = Runtime::new();
    // A process holding a new network namespace; its /proc path is what the config names.
    let mut holder = Command::new("unshare")
        .args(["-n", "sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let ns_path = format!("/proc/{}/ns/net", holder.id());
    // unshare has exec'd sleep once the link names a namespace other than ours.
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    for _ in 0..500 {
        match std::fs::read_link(&ns_path) {
            Ok(l) if l != ours => break,
            _ => std::thread::sleep(std::time::Duration::from_millis(2)),
        }
    }
    let want = std::fs::read_link(&ns_path).unwrap();
    assert_ne!(want, ours);

    let id = unique_id("nspath");
    let mut b = Bundle::new(&["sleep", "100"]);
    b.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
        ns.push(json!({"type": "network", "path": ns_path}));
    });
    rt.create(&b, &id);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(std::fs::metadata(&ns_path).is_err(), "the holder is gone");

    rt.ok(&["start", &id]);
    assert_eq!(rt.status(&id), "running");
    let got = rt.ok(&["exec", &id, "readlink", "/proc/self/ns/net"]);
    assert_eq!(got.trim(), want.display().to_string());
    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
}
