//! The process half of a container's plan — program, environment, credentials, capabilities,
//! limits and terminal — shared by `create` and `exec`. Everything is resolved here, before
//! clone, into C strings and bitmasks.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use crate::error::{Error, Result};
use crate::init::{Caps, PlanNames, ProcessPlan};
use crate::mounts::cstring;
use crate::sys;

/// Resolve `process` (from `config`, named in errors) into what the child applies.
pub(super) fn plan(
    process: &Process,
    config: &Path,
    console: Option<OwnedFd>,
    seccomp: Option<crate::seccomp::Program>,
    names: &mut PlanNames,
) -> Result<ProcessPlan> {
    let config = config.to_path_buf();
    let mut rlimits = Vec::new();
    for r in process.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let res = rlimit_resource(&name).ok_or_else(|| Error::InvalidConfig {
            path: config.clone(),
            msg: format!("unknown rlimit {name}"),
        })?;
        names.rlimits.push((name, r.soft(), r.hard()));
        rlimits.push((res, r.soft(), r.hard()));
    }

    let caps = match process.capabilities() {
        None => None,
        Some(c) => {
            let mask = |set: &Option<oci_spec::runtime::Capabilities>| -> Result<u64> {
                let mut m = 0u64;
                for cap in set.iter().flatten() {
                    let n = cap_number(&cap.to_string()).ok_or_else(|| Error::InvalidConfig {
                        path: config.clone(),
                        msg: format!("unknown capability CAP_{cap}"),
                    })?;
                    m |= 1 << n;
                }
                Ok(m)
            };
            let permitted = mask(c.permitted())?;
            let inheritable = mask(c.inheritable())?;
            let mut ambient = mask(c.ambient())?;
            // The kernel only raises ambient caps that are permitted and inheritable; like
            // runc, keep going without the others, but say so.
            let unraisable = ambient & !(permitted & inheritable);
            if unraisable != 0 {
                let names: Vec<String> = (0..64)
                    .filter(|b| unraisable & (1 << b) != 0)
                    .map(|b| format!("CAP_{}", CAP_NAMES.get(b).unwrap_or(&"?")))
                    .collect();
                crate::log::warn_once(
                    "ambient",
                    &format!(
                        "ambient capabilities {} are not both permitted and inheritable; not raised",
                        names.join(",")
                    ),
                );
                ambient &= !unraisable;
            }
            Some(Caps {
                bounding: mask(c.bounding())?,
                effective: mask(c.effective())?,
                permitted,
                inheritable,
                ambient,
                last_cap: sys::last_cap(),
            })
        }
    };

    let user = process.user();
    let args = process.args().as_ref().expect("validated");
    let argv: Vec<CString> = args
        .iter()
        .map(|a| cstring(a.as_bytes(), &config))
        .collect::<Result<_>>()?;
    let env = process.env().clone().unwrap_or_default();
    let envp: Vec<CString> = env
        .iter()
        .map(|e| cstring(e.as_bytes(), &config))
        .collect::<Result<_>>()?;
    let exec_candidates = exec_candidates(&args[0], &env, process.cwd(), &config)?;

    Ok(ProcessPlan {
        console,
        console_size: process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16)),
        rlimits,
        oom_score_adj: process
            .oom_score_adj()
            .map(|a| cstring(a.to_string().as_bytes(), &config))
            .transpose()?,
        caps,
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask().unwrap_or(0o022) as libc::mode_t,
        no_new_privs: process.no_new_privileges().unwrap_or(false),
        cwd: cstring(process.cwd().as_os_str().as_bytes(), &config)?,
        exec_candidates,
        argv,
        envp,
        seccomp,
        exec_label: crate::lsm::exec_label(
            process.apparmor_profile(),
            process.selinux_label(),
            &config,
        )?,
    })
}

/// PATH lookup as execvp would do it, but against the container's PATH, tried in the child.
fn exec_candidates(arg0: &str, env: &[String], cwd: &Path, config: &Path) -> Result<Vec<CString>> {
    if arg0.contains('/') {
        let p = if arg0.starts_with('/') {
            PathBuf::from(arg0)
        } else {
            cwd.join(arg0)
        };
        return Ok(vec![cstring(p.as_os_str().as_bytes(), config)?]);
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .map(|d| if d.is_empty() { "." } else { d })
        .map(|d| {
            let p = Path::new(d).join(arg0);
            let p = if p.is_absolute() { p } else { cwd.join(p) };
            cstring(p.as_os_str().as_bytes(), config)
        })
        .collect()
}

fn rlimit_resource(name: &str) -> Option<libc::c_int> {
    Some(match name {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        _ => return None,
    } as libc::c_int)
}

/// Capability names (without "CAP_") in kernel order.
const CAP_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

pub fn cap_names() -> &'static [&'static str] {
    &CAP_NAMES
}

pub fn cap_number(name: &str) -> Option<u32> {
    let name = name.strip_prefix("CAP_").unwrap_or(name);
    CAP_NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_numbers_match_the_kernel() {
        assert_eq!(cap_number("CHOWN"), Some(0));
        assert_eq!(cap_number("CAP_NET_BIND_SERVICE"), Some(10));
        assert_eq!(cap_number("SYS_ADMIN"), Some(21));
        assert_eq!(cap_number("AUDIT_WRITE"), Some(29));
        assert_eq!(cap_number("CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(cap_number("BOGUS"), None);
    }

    #[test]
    fn oci_spec_capability_names_all_map() {
        let all: oci_spec::runtime::Capabilities =
            serde_json::from_value(serde_json::json!(CAP_NAMES
                .iter()
                .map(|n| format!("CAP_{n}"))
                .collect::<Vec<_>>()))
            .unwrap();
        for c in all {
            assert!(cap_number(&c.to_string()).is_some(), "{c}");
        }
    }

    #[test]
    fn exec_candidates_follow_path() {
        let env = vec!["PATH=/a:/b".to_string()];
        let c = exec_candidates("sh", &env, Path::new("/"), Path::new("/c")).unwrap();
        assert_eq!(c, vec![c"/a/sh".to_owned(), c"/b/sh".to_owned()]);
        let c = exec_candidates("./x", &env, Path::new("/w"), Path::new("/c")).unwrap();
        assert_eq!(c, vec![c"/w/./x".to_owned()]);
        let c = exec_candidates("/bin/true", &[], Path::new("/"), Path::new("/c")).unwrap();
        assert_eq!(c, vec![c"/bin/true".to_owned()]);
    }

    #[test]
    fn every_rlimit_name_maps() {
        for n in [
            "RLIMIT_AS",
            "RLIMIT_CORE",
            "RLIMIT_CPU",
            "RLIMIT_DATA",
            "RLIMIT_FSIZE",
            "RLIMIT_LOCKS",
            "RLIMIT_MEMLOCK",
            "RLIMIT_MSGQUEUE",
            "RLIMIT_NICE",
            "RLIMIT_NOFILE",
            "RLIMIT_NPROC",
            "RLIMIT_RSS",
            "RLIMIT_RTPRIO",
            "RLIMIT_RTTIME",
            "RLIMIT_SIGPENDING",
            "RLIMIT_STACK",
        ] {
            assert!(rlimit_resource(n).is_some(), "{n}");
        }
    }
}
