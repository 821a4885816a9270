//! Linux security modules that confine a container's processes: an AppArmor profile
//! (`process.apparmorProfile`) and SELinux labels (`process.selinuxLabel`, `linux.mountLabel`).
//! They are applied when the host runs the module — the label is written to
//! /proc/self/attr/…/exec as the very last step before execve, and the mount label becomes a
//! `context=` option of the filesystems the runtime mounts — and refused with the reason when
//! it does not, before any side effect. Never skipped silently.

use std::ffi::CString;
use std::path::Path;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::mounts::cstring;

/// Which modules this host runs.
#[derive(Debug, Clone)]
pub struct Modules {
    pub apparmor: bool,
    pub selinux: bool,
    /// The active LSM list as the kernel gives it (for messages).
    pub list: String,
}

const LSM_LIST: &str = "/sys/kernel/security/lsm";

/// Probed once: the LSM list (securityfs), then each module's own switch.
pub fn host() -> &'static Modules {
    static HOST: OnceLock<Modules> = OnceLock::new();
    HOST.get_or_init(|| {
        let list = std::fs::read_to_string(LSM_LIST)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let listed = |m: &str| list.split(',').any(|x| x == m);
        let apparmor = listed("apparmor")
            && std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
                .is_ok_and(|s| s.trim_start().starts_with('Y'));
        let selinux = listed("selinux") && Path::new("/sys/fs/selinux/enforce").exists();
        Modules {
            apparmor,
            selinux,
            list,
        }
    })
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

impl Modules {
    fn no_module(&self, field: &str, value: &str, module: &str) -> Error {
        let list = if self.list.is_empty() {
            format!("{LSM_LIST} unreadable")
        } else {
            format!("active LSMs: {}", self.list)
        };
        Error::Unsupported(format!(
            "{field} {value:?}: this host has no {module} ({list}); remove it from the config or run on a host with {module} enabled"
        ))
    }

    /// Refuse labels this host cannot apply.
    fn check(
        &self,
        apparmor_profile: &Option<String>,
        selinux_label: &Option<String>,
        mount_label: &Option<String>,
        context: &str,
    ) -> Result<()> {
        if let (Some(p), false) = (nonempty(apparmor_profile), self.apparmor) {
            return Err(self.no_module(
                &format!("{context}process.apparmorProfile"),
                p,
                "AppArmor",
            ));
        }
        if let (Some(l), false) = (nonempty(selinux_label), self.selinux) {
            return Err(self.no_module(&format!("{context}process.selinuxLabel"), l, "SELinux"));
        }
        if let (Some(l), false) = (nonempty(mount_label), self.selinux) {
            return Err(self.no_module("linux.mountLabel", l, "SELinux"));
        }
        Ok(())
    }
}

/// Refuse labels this host cannot apply. The host is probed only when a label is asked for:
/// most configs name none, and each runtime invocation would read securityfs again.
pub fn check(
    apparmor_profile: &Option<String>,
    selinux_label: &Option<String>,
    mount_label: &Option<String>,
    context: &str,
) -> Result<()> {
    if [apparmor_profile, selinux_label, mount_label]
        .iter()
        .all(|l| nonempty(l).is_none())
    {
        return Ok(());
    }
    host().check(apparmor_profile, selinux_label, mount_label, context)
}

/// What the child writes right before execve: `value` into the first of `paths` that exists.
#[derive(Debug)]
pub struct ExecLabel {
    pub paths: Vec<CString>,
    pub value: CString,
}

/// The exec label for a process (already checked against the host). AppArmor wins when both
/// are given (a host runs only one of them as its major LSM).
pub fn exec_label(
    apparmor_profile: &Option<String>,
    selinux_label: &Option<String>,
    config: &Path,
) -> Result<Option<ExecLabel>> {
    if let Some(p) = nonempty(apparmor_profile) {
        return Ok(Some(ExecLabel {
            // The per-module file (Linux 5.8+) first, the shared one on older kernels.
            paths: vec![
                c"/proc/self/attr/apparmor/exec".into(),
                c"/proc/self/attr/exec".into(),
            ],
            value: cstring(format!("exec {p}").as_bytes(), config)?,
        }));
    }
    if let Some(l) = nonempty(selinux_label) {
        return Ok(Some(ExecLabel {
            paths: vec![c"/proc/self/attr/exec".into()],
            value: cstring(l.as_bytes(), config)?,
        }));
    }
    Ok(None)
}

/// Filesystems that take an SELinux `context=` mount option (as runc labels them: not proc,
/// sysfs, cgroup or bind mounts, whose labels come from elsewhere).
pub fn takes_mount_label(fstype: &str) -> bool {
    matches!(fstype, "tmpfs" | "devpts" | "mqueue" | "shm" | "ramfs")
}

/// `data` with `context="LABEL"` appended.
pub fn with_mount_label(data: Option<&str>, label: &str) -> String {
    match data.filter(|d| !d.is_empty()) {
        Some(d) => format!("{d},context=\"{label}\""),
        None => format!("context=\"{label}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn without() -> Modules {
        Modules {
            apparmor: false,
            selinux: false,
            list: "lockdown,capability,landlock,bpf".into(),
        }
    }

    #[test]
    fn labels_are_refused_with_the_reason_when_the_host_lacks_the_module() {
        let m = without();
        let e = m
            .check(&Some("docker-default".into()), &None, &None, "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("process.apparmorProfile \"docker-default\": this host has no AppArmor (active LSMs: lockdown,capability,landlock,bpf)"), "{e}");
        let e = m
            .check(
                &None,
                &Some("system_u:system_r:container_t:s0".into()),
                &None,
                "exec: ",
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exec: process.selinuxLabel") && e.contains("no SELinux"),
            "{e}"
        );
        let e = m
            .check(
                &None,
                &None,
                &Some("system_u:object_r:container_file_t:s0".into()),
                "",
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.mountLabel") && e.contains("no SELinux"),
            "{e}"
        );
        assert!(m.check(&Some(String::new()), &None, &None, "").is_ok());
    }

    #[test]
    fn labels_pass_when_the_host_has_the_module() {
        let m = Modules {
            apparmor: true,
            selinux: true,
            list: "capability,selinux,apparmor".into(),
        };
        assert!(m
            .check(&Some("p".into()), &Some("l".into()), &Some("m".into()), "")
            .is_ok());
    }

    #[test]
    fn exec_labels_and_mount_labels_take_the_kernel_forms() {
        let a = exec_label(&Some("docker-default".into()), &None, Path::new("/c"))
            .unwrap()
            .unwrap();
        assert_eq!(a.value.to_str().unwrap(), "exec docker-default");
        assert_eq!(
            a.paths[0].to_str().unwrap(),
            "/proc/self/attr/apparmor/exec"
        );
        let s = exec_label(&None, &Some("u:r:t:s0".into()), Path::new("/c"))
            .unwrap()
            .unwrap();
        assert_eq!((s.value.to_str().unwrap(), s.paths.len()), ("u:r:t:s0", 1));
        assert!(exec_label(&None, &None, Path::new("/c")).unwrap().is_none());
        assert_eq!(
            with_mount_label(Some("mode=755"), "u:o:t:s0"),
            "mode=755,context=\"u:o:t:s0\""
        );
        assert_eq!(with_mount_label(None, "x"), "context=\"x\"");
        assert!(takes_mount_label("tmpfs") && !takes_mount_label("proc"));
    }

    #[test]
    fn this_host_is_probed_from_its_lsm_list() {
        let h = host();
        let listed = std::fs::read_to_string(LSM_LIST).unwrap_or_default();
        if !listed.contains("apparmor") {
            assert!(!h.apparmor);
        }
        if !listed.contains("selinux") {
            assert!(!h.selinux);
        }
    }
}
