//! The seccomp filter of a container's config.json: berthd's default profile, none with
//! `--privileged` or `--security-opt seccomp=unconfined`, or the user's own profile (the
//! docker CLI sends the file's content in `seccomp=<json>`), in Docker's profile format.
//!
//! The default allows every system call except those that reach kernel state a container
//! does not own — modules, the clock, keyrings, reboot and kexec, swap, accounting, NUMA
//! placement of other processes, namespaces and mounts — unless the container holds the
//! capability that makes the call legitimate, which is how Docker's default profile behaves
//! for the calls its documentation lists as blocked. Denied calls fail with EPERM; clone3
//! fails with ENOSYS so that C libraries fall back to clone, whose flags a filter can see.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{ApiError, ApiResult};

/// System calls denied unless the container has `cap` (None: denied to every container
/// that is not privileged).
const DENY: &[(Option<&str>, &[&str])] = &[
    (
        Some("CAP_SYS_ADMIN"),
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "setns",
            "unshare",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "name_to_handle_at",
            "fanotify_init",
            "bpf",
            "perf_event_open",
            "swapon",
            "swapoff",
            "syslog",
        ],
    ),
    (
        Some("CAP_SYS_MODULE"),
        &[
            "init_module",
            "finit_module",
            "delete_module",
            "create_module",
            "query_module",
            "get_kernel_syms",
        ],
    ),
    (
        Some("CAP_SYS_BOOT"),
        &["reboot", "kexec_load", "kexec_file_load"],
    ),
    (
        Some("CAP_SYS_TIME"),
        &["settimeofday", "stime", "clock_settime", "clock_adjtime"],
    ),
    (Some("CAP_SYS_PACCT"), &["acct"]),
    (Some("CAP_SYS_PTRACE"), &["kcmp"]),
    (
        Some("CAP_SYS_NICE"),
        &["mbind", "set_mempolicy", "move_pages"],
    ),
    (Some("CAP_DAC_READ_SEARCH"), &["open_by_handle_at"]),
    (Some("CAP_SYS_RAWIO"), &["iopl", "ioperm"]),
    (
        None,
        &[
            "add_key",
            "keyctl",
            "request_key",
            "nfsservctl",
            "uselib",
            "ustat",
            "sysfs",
            "_sysctl",
            "vm86",
            "vm86old",
            "userfaultfd",
        ],
    ),
];

/// clone flags that make namespaces: clone(2) with any of them needs CAP_SYS_ADMIN.
const CLONE_NS_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The architectures a filter covers on this host: the native one and the compat ABIs a
/// process could switch to.
fn architectures() -> Vec<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        _ => vec![],
    }
}

/// `linux.seccomp` for a container with `caps`, from its `--security-opt` list.
pub fn for_container(
    security_opt: &[String],
    caps: &[String],
    privileged: bool,
) -> ApiResult<Option<Value>> {
    let mut chosen: Option<&str> = None;
    for o in security_opt {
        if let Some(v) = o
            .strip_prefix("seccomp=")
            .or_else(|| o.strip_prefix("seccomp:"))
        {
            chosen = Some(v);
        }
    }
    match chosen {
        Some("unconfined") => Ok(None),
        // As dockerd: a privileged container runs unconfined unless a profile is named.
        None if privileged => Ok(None),
        None | Some("builtin") => Ok(Some(default_profile(caps))),
        Some(text) => user_profile(text, caps).map(Some),
    }
}

fn default_profile(caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let mut rules = Vec::new();
    for (cap, names) in DENY {
        if cap.is_some_and(has) {
            continue;
        }
        rules.push(json!({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}));
    }
    if !has("CAP_SYS_ADMIN") {
        for flag in CLONE_NS_FLAGS {
            rules.push(json!({
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }));
        }
        rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": rules,
    })
}

/// A profile in Docker's format (what `docker run --security-opt seccomp=FILE` sends).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    syscalls: Vec<Rule>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    listener_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Docker's arch names in includes/excludes for this host.
fn host_arch_names() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" => &["amd64", "x86_64"],
        "aarch64" => &["arm64", "aarch64"],
        _ => &[],
    }
}

fn kernel_at_least(min: &str) -> bool {
    let parse = |s: &str| -> (u32, u32) {
        let mut it = s
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty());
        let major = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let minor = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        (major, minor)
    };
    parse(&crate::util::kernel_release()) >= parse(min)
}

fn user_profile(text: &str, caps: &[String]) -> ApiResult<Value> {
    let p: Profile = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("decoding seccomp profile failed: {e}")))?;
    let has_cap = |c: &String| caps.iter().any(|x| x == c);
    let arch_ok = |arches: &[String]| {
        arches
            .iter()
            .any(|a| host_arch_names().contains(&a.as_str()))
    };
    let mut archs: Vec<String> = p.architectures.clone();
    let native = architectures().first().map(|s| s.to_string());
    for m in &p.arch_map {
        if Some(&m.architecture) == native.as_ref() {
            archs.push(m.architecture.clone());
            archs.extend(m.sub_architectures.iter().cloned());
        }
    }
    let mut rules = Vec::new();
    for r in p.syscalls {
        let inc = &r.includes;
        if !inc.caps.iter().all(has_cap)
            || (!inc.arches.is_empty() && !arch_ok(&inc.arches))
            || inc
                .min_kernel
                .as_deref()
                .is_some_and(|k| !kernel_at_least(k))
        {
            continue;
        }
        let exc = &r.excludes;
        if (!exc.caps.is_empty() && exc.caps.iter().any(has_cap))
            || (!exc.arches.is_empty() && arch_ok(&exc.arches))
            || exc.min_kernel.as_deref().is_some_and(kernel_at_least)
        {
            continue;
        }
        let mut names = r.names;
        names.extend(r.name);
        if names.is_empty() {
            return Err(ApiError::bad_request(
                "seccomp profile: a syscall rule names no system call",
            ));
        }
        let mut rule = json!({"names": names, "action": r.action});
        if let Some(e) = r.errno_ret {
            rule["errnoRet"] = json!(e);
        }
        if !r.args.is_empty() {
            rule["args"] = json!(r.args);
        }
        rules.push(rule);
    }
    let mut out = json!({"defaultAction": p.default_action, "syscalls": rules});
    if let Some(e) = p.default_errno_ret {
        out["defaultErrnoRet"] = json!(e);
    }
    if !archs.is_empty() {
        out["architectures"] = json!(archs);
    }
    if !p.flags.is_empty() {
        out["flags"] = json!(p.flags);
    }
    if let Some(l) = p.listener_path {
        out["listenerPath"] = json!(l);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(p: &Value, name: &str) -> bool {
        p["syscalls"].as_array().unwrap().iter().any(|r| {
            r["args"].is_null() && r["names"].as_array().unwrap().iter().any(|n| n == name)
        })
    }

    #[test]
    fn default_follows_capabilities() {
        let caps: Vec<String> = vec!["CAP_CHOWN".into()];
        let p = for_container(&[], &caps, false).unwrap().unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ALLOW");
        for n in [
            "mount",
            "keyctl",
            "init_module",
            "reboot",
            "clone3",
            "unshare",
        ] {
            assert!(denied(&p, n), "{n}");
        }
        assert!(!denied(&p, "read"));
        let clone_rules = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"][0] == "clone")
            .count();
        assert_eq!(clone_rules, CLONE_NS_FLAGS.len());

        let caps: Vec<String> = vec!["CAP_SYS_ADMIN".into(), "CAP_SYS_TIME".into()];
        let p = for_container(&[], &caps, false).unwrap().unwrap();
        for n in ["mount", "unshare", "clone3", "settimeofday"] {
            assert!(!denied(&p, n), "{n}");
        }
        assert!(denied(&p, "keyctl") && denied(&p, "init_module"));
    }

    #[test]
    fn unconfined_privileged_and_user_profiles() {
        assert!(for_container(&["seccomp=unconfined".into()], &[], false)
            .unwrap()
            .is_none());
        assert!(for_container(&[], &[], true).unwrap().is_none());
        let text = r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
              {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
              {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
              {"name": "rmdir", "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_CHOWN"]}}
            ]}"#;
        let opt = format!("seccomp={text}");
        let p = for_container(&[opt], &["CAP_CHOWN".into()], true)
            .unwrap()
            .unwrap();
        let rules = p["syscalls"].as_array().unwrap();
        assert_eq!(rules.len(), 1, "{p}");
        assert_eq!(rules[0]["names"][0], "mkdir");
        assert_eq!(rules[0]["errnoRet"], 13);
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                p["architectures"],
                json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
            );
        }
        let e = for_container(&["seccomp={not json".into()], &[], false).unwrap_err();
        assert!(e.message.contains("seccomp profile"), "{}", e.message);
    }
}
