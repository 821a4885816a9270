//! AppArmor and SELinux: this build applies them where the host runs the module and refuses
//! them, saying so, where it does not. The development host runs neither (its LSMs are
//! lockdown,capability,landlock,bpf), so these tests exercise the refusal; on a host with the
//! module they check that the refusal is not given.

mod common;

use common::{unique_id, Bundle, Runtime};
use serde_json::json;

fn host_has(module: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/lsm")
        .unwrap_or_default()
        .trim()
        .split(',')
        .any(|m| m == module)
}

/// `create` with `edit` applied: refused with `message` (nothing left behind) when the host
/// lacks `module`.
fn refused_without(module: &str, message: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let rt = Runtime::new();
    let id = unique_id("lsm");
    let mut b = Bundle::new(&["true"]);
    b.edit(edit);
    let o = rt.output(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let err = String::from_utf8_lossy(&o.stderr);
    if host_has(module) {
        assert!(!err.contains("this host has no"), "{err}");
        return;
    }
    assert!(
        !o.status.success(),
        "create with a {module} label succeeded"
    );
    assert!(err.contains(message), "{err}");
    assert!(err.contains("active LSMs:"), "{err}");
    assert!(!rt.container_dir(&id).exists());
}

#[test]
fn an_apparmor_profile_is_refused_on_a_host_without_apparmor() {
    refused_without(
        "apparmor",
        "process.apparmorProfile \"docker-default\": this host has no AppArmor",
        |c| c["process"]["apparmorProfile"] = json!("docker-default"),
    );
}

#[test]
fn selinux_labels_are_refused_on_a_host_without_selinux() {
    refused_without(
        "selinux",
        "process.selinuxLabel \"system_u:system_r:container_t:s0\": this host has no SELinux",
        |c| c["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0"),
    );
    refused_without(
        "selinux",
        "linux.mountLabel \"system_u:object_r:container_file_t:s0\": this host has no SELinux",
        |c| c["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0"),
    );
}

#[test]
fn exec_with_a_label_is_refused_on_a_host_without_the_module() {
    if host_has("apparmor") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("lsmexec");
    let b = Bundle::new(&["sleep", "100"]);
    rt.create(&b, &id);
    rt.ok(&["start", &id]);
    let dir = tempfile::tempdir().unwrap();
    let process = dir.path().join("process.json");
    let mut p = b.config["process"].clone();
    p["args"] = json!(["true"]);
    p["apparmorProfile"] = json!("docker-default");
    std::fs::write(&process, p.to_string()).unwrap();
    let err = rt.fails(&["exec", "-p", process.to_str().unwrap(), &id]);
    assert!(
        err.contains("exec: process.apparmorProfile \"docker-default\": this host has no AppArmor"),
        "{err}"
    );
    // The container is untouched.
    assert_eq!(rt.status(&id), "running");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn features_report_the_hosts_modules() {
    let rt = Runtime::new();
    let f: serde_json::Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    assert_eq!(f["linux"]["apparmor"]["enabled"], host_has("apparmor"));
    assert_eq!(f["linux"]["selinux"]["enabled"], host_has("selinux"));
}
