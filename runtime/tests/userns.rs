//! User namespaces (uidMappings/gidMappings written by the parent) and time namespaces
//! (offsets written before the program enters it).

mod common;

use common::{unique_id, Bundle, Runtime};
use serde_json::json;

fn with_userns(c: &mut serde_json::Value) {
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
}

#[test]
fn a_user_namespace_maps_root_to_an_unprivileged_host_uid() {
    let rt = Runtime::new();
    let mut b = Bundle::sh(
        "id -u; cat /proc/self/uid_map /proc/self/gid_map; \
         echo x > /dev/null && echo dev-null-ok; \
         if echo owned > /proc/sys/kernel/hostname 2>/dev/null; then echo host-write; fi; \
         hostname",
    );
    b.edit(with_userns);
    let (code, out, err) = rt.run(&b, &unique_id("userns"));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(lines[1], "0 100000 65536", "{out}");
    assert_eq!(lines[2], "0 100000 65536", "{out}");
    assert!(out.contains("dev-null-ok"), "{out}");
}

#[test]
fn exec_joins_the_user_namespace() {
    let rt = Runtime::new();
    let id = unique_id("userns-exec");
    let mut b = Bundle::new(&["sleep", "100"]);
    b.edit(with_userns);
    rt.create(&b, &id);
    rt.ok(&["start", &id]);
    let o = rt
        .cmd()
        .args(["exec", &id, "cat", "/proc/self/uid_map"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"],
        "{o:?}"
    );
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn mappings_without_a_user_namespace_are_refused() {
    let rt = Runtime::new();
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]));
    let err = rt.fails(&[
        "run",
        "--bundle",
        b.path().to_str().unwrap(),
        &unique_id("nouserns"),
    ]);
    assert!(err.contains("need a new user namespace"), "{err}");
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
    });
    let err = rt.fails(&[
        "run",
        "--bundle",
        b.path().to_str().unwrap(),
        &unique_id("nomaps"),
    ]);
    assert!(err.contains("uidMappings"), "{err}");
}

#[test]
fn a_time_namespace_shifts_the_monotonic_and_boot_clocks() {
    let rt = Runtime::new();
    let mut b = Bundle::sh("cut -d' ' -f1 /proc/uptime; cat /proc/self/timens_offsets");
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({
            "boottime": {"secs": 86400, "nanosecs": 0},
            "monotonic": {"secs": 3600, "nanosecs": 5}
        });
    });
    let host_up: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (code, out, err) = rt.run(&b, &unique_id("timens"));
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    let up: f64 = lines.next().unwrap().parse().unwrap();
    assert!(
        up - host_up > 86_000.0 && up - host_up < 86_800.0,
        "{up} vs host {host_up}"
    );
    let offsets: String = lines.collect::<Vec<_>>().join("\n");
    assert!(
        offsets.contains("monotonic") && offsets.contains("3600"),
        "{offsets}"
    );
}

/// Joins `kind` by `path`, replacing the default spec's entry for it (or adding one).
fn join_ns(c: &mut serde_json::Value, kind: &str, path: &str) {
    let list = c["linux"]["namespaces"].as_array_mut().unwrap();
    list.retain(|n| n["type"] != kind);
    list.push(json!({"type": kind, "path": path}));
}

/// A second container joins the first one's user and network namespaces by path: the user
/// namespace is joined first, and the new namespaces (mount, pid, uts, ipc) belong to it: the
/// init, privileged only in that user namespace, could not otherwise mount /proc and sysfs
/// (for the joined network namespace) or set the hostname "berth" in its new uts namespace.
#[test]
fn a_user_namespace_joined_by_path_with_other_namespaces() {
    let rt = Runtime::new();
    let holder = unique_id("userns-holder");
    let mut b = Bundle::new(&["sleep", "100"]);
    b.edit(with_userns);
    rt.create(&b, &holder);
    rt.ok(&["start", &holder]);
    let pid = rt.state(&holder)["pid"].as_i64().unwrap();

    let id = unique_id("userns-join");
    let mut j = Bundle::sh(
        "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user; readlink /proc/self/ns/net; \
         hostname; ls /sys/class/net | tr '\\n' ' '; echo; \
         readlink /proc/self/ns/uts",
    );
    j.edit(|c| {
        join_ns(c, "user", &format!("/proc/{pid}/ns/user"));
        join_ns(c, "network", &format!("/proc/{pid}/ns/net"));
    });
    let (code, out, err) = rt.run(&j, &id);
    assert_eq!(code, 0, "{err}");
    let mut lines: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    // The last line is the joiner's uts namespace: a new one, neither the holder's nor ours.
    let uts = lines.pop().unwrap();
    let link = |ns: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
            .unwrap()
            .display()
            .to_string()
    };
    assert_eq!(
        lines,
        [
            "0".to_string(),
            "0 100000 65536".into(),
            link("user"),
            link("net"),
            "berth".into(),
            "lo".into(),
        ],
        "{out}"
    );
    assert!(uts.starts_with("uts:["), "{out}");
    assert_ne!(uts, link("uts"));
    assert_ne!(
        uts,
        std::fs::read_link("/proc/self/ns/uts")
            .unwrap()
            .display()
            .to_string()
    );
    rt.ok(&["delete", "--force", &holder]);
}

#[test]
fn mappings_with_a_joined_user_namespace_are_refused() {
    let rt = Runtime::new();
    let id = unique_id("userns-joinmaps");
    let mut b = Bundle::new(&["true"]);
    b.edit(|c| {
        join_ns(c, "user", "/proc/self/ns/user");
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    });
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        err.contains("cannot be given when joining a user namespace by path"),
        "{err}"
    );
    assert!(!rt.container_dir(&id).exists());
}

#[test]
fn joining_a_user_namespace_that_is_not_one_fails_cleanly() {
    let rt = Runtime::new();
    let id = unique_id("userns-notns");
    let mut b = Bundle::new(&["true"]);
    // A network namespace file where a user namespace is expected: setns says EINVAL.
    b.edit(|c| join_ns(c, "user", "/proc/self/ns/net"));
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        err.contains("setns user namespace /proc/self/ns/net: Invalid argument"),
        "{err}"
    );
    assert!(!rt.container_dir(&id).exists());
}
