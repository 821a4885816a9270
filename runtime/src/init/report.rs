//! What the container's child tells the runtime: fixed-size reports naming the step that
//! failed (with, for a hook, its captured output after the report), and the parent-side
//! translation of a report into a message with the step's path and errno.

use std::io;

use super::ChildPlan;
use crate::hooks::in_container::{self, Outcome};
use crate::mounts::Op;

/// Steps of container set-up, named in failure reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Stdio = 1,
    AwaitCgroup,
    UnshareCgroup,
    JoinNamespace,
    Hostname,
    Domainname,
    RootPropagation,
    BindRootfs,
    OpenRootfs,
    MountTarget,
    Mount,
    MountRemount,
    MountPropagation,
    Symlink,
    Device,
    PivotRoot,
    Sysctl,
    ReadonlyPath,
    MaskPath,
    ReadonlyRoot,
    Console,
    Rlimit,
    OomScoreAdj,
    Capabilities,
    Setgroups,
    Setgid,
    Setuid,
    NoNewPrivileges,
    Chdir,
    FindExecutable,
    StartFifo,
    Exec,
    JoinCgroup,
    Seccomp,
    NonDumpable,
    TimeNamespace,
    CreateContainerHook,
    StartContainerHook,
    SecurityLabel,
    /// A parked init waiting for (or reading) its program: see `ChildPlan::park`.
    Park,
}

impl Step {
    fn from_u32(v: u32) -> Option<Step> {
        const ALL: [Step; 40] = [
            Step::Stdio,
            Step::AwaitCgroup,
            Step::UnshareCgroup,
            Step::JoinNamespace,
            Step::Hostname,
            Step::Domainname,
            Step::RootPropagation,
            Step::BindRootfs,
            Step::OpenRootfs,
            Step::MountTarget,
            Step::Mount,
            Step::MountRemount,
            Step::MountPropagation,
            Step::Symlink,
            Step::Device,
            Step::PivotRoot,
            Step::Sysctl,
            Step::ReadonlyPath,
            Step::MaskPath,
            Step::ReadonlyRoot,
            Step::Console,
            Step::Rlimit,
            Step::OomScoreAdj,
            Step::Capabilities,
            Step::Setgroups,
            Step::Setgid,
            Step::Setuid,
            Step::NoNewPrivileges,
            Step::Chdir,
            Step::FindExecutable,
            Step::StartFifo,
            Step::Exec,
            Step::JoinCgroup,
            Step::Seccomp,
            Step::NonDumpable,
            Step::TimeNamespace,
            Step::CreateContainerHook,
            Step::StartContainerHook,
            Step::SecurityLabel,
            Step::Park,
        ];
        ALL.iter().copied().find(|s| *s as u32 == v)
    }
}

/// What the child tells the parent over the sync pipe (or, once `start` released it, over
/// exec.fifo to `start`). A failed hook's report is followed by `detail_len` bytes of its
/// output.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub tag: u32,
    pub step: u32,
    pub index: u32,
    pub errno: i32,
    /// For hook steps: how the hook ended (see [`Outcome::encode`]).
    pub status: i32,
    pub detail_len: u32,
}

pub const TAG_READY: u32 = 1;
pub const TAG_FAILED: u32 = 2;
/// Carries the seccomp notify listener (SCM_RIGHTS) for the runtime to pass to the agent.
pub const TAG_SECCOMP_LISTENER: u32 = 3;
/// A parked init: its container is set up and it waits for its program (`ChildPlan::park`).
pub const TAG_PARKED: u32 = 4;

impl Report {
    pub const SIZE: usize = 24;
    /// The most detail a reader accepts after a report.
    pub const MAX_DETAIL: usize = 4096;

    pub fn ready() -> Report {
        Report::tagged(TAG_READY)
    }

    pub(super) fn tagged(tag: u32) -> Report {
        Report {
            tag,
            step: 0,
            index: 0,
            errno: 0,
            status: 0,
            detail_len: 0,
        }
    }

    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        let words = [
            self.tag,
            self.step,
            self.index,
            self.errno as u32,
            self.status as u32,
            self.detail_len,
        ];
        for (i, w) in words.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        b
    }

    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Report {
        let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Report {
            tag: w(0),
            step: w(4),
            index: w(8),
            errno: w(12) as i32,
            status: w(16) as i32,
            detail_len: w(20),
        }
    }
}

/// A failed step: which one, which item of its list, the errno, and for a hook how it ended.
#[derive(Clone, Copy, Debug)]
pub struct Failure {
    pub step: Step,
    pub index: u32,
    pub errno: i32,
    pub status: i32,
}

impl Failure {
    pub(super) fn hook(step: Step, (index, outcome): (usize, Outcome)) -> Failure {
        let (errno, status) = outcome.encode();
        Failure {
            step,
            index: index as u32,
            errno,
            status,
        }
    }

    pub(super) fn is_hook(&self) -> bool {
        matches!(
            self.step,
            Step::CreateContainerHook | Step::StartContainerHook
        )
    }
}

/// Turn a child's failure report into a message naming the step, path and errno.
pub fn describe(p: &ChildPlan, f: &Failure, extra: &PlanNames, detail: &[u8]) -> String {
    let err = io::Error::from_raw_os_error(f.errno);
    let i = f.index as usize;
    if f.is_hook() {
        let (kind, plan) = match f.step {
            Step::CreateContainerHook => (crate::hooks::Kind::CreateContainer, &p.create_hooks),
            _ => (crate::hooks::Kind::StartContainer, &p.start_hooks),
        };
        let hook = plan.as_ref().and_then(|pl| pl.hooks.get(i));
        return in_container::describe(
            kind,
            i,
            &hook.map_or("?".into(), |h| h.path.to_string_lossy()),
            hook.and_then(|h| h.timeout),
            Outcome::decode(f.errno, f.status),
            detail,
        );
    }
    let rootfs = p
        .rootfs
        .as_ref()
        .map_or("(the container's)".into(), |r| r.rootfs.to_string_lossy());
    let ops: &[Op] = p.rootfs.as_ref().map_or(&[], |r| &r.ops);
    let no_pivot = p.rootfs.as_ref().is_some_and(|r| r.no_pivot);
    let what = match f.step {
        Step::Stdio => format!("dup stdio fd {i}"),
        Step::AwaitCgroup => "wait for the runtime to set up cgroups".into(),
        Step::Seccomp if i == 1 => "send the seccomp notify listener to the runtime".into(),
        Step::Seccomp => "load the seccomp filter".into(),
        Step::NonDumpable => "prctl PR_SET_DUMPABLE 0".into(),
        Step::TimeNamespace => {
            "enter a new time namespace and write /proc/self/timens_offsets".into()
        }
        Step::JoinCgroup => format!(
            "join cgroup through {}",
            p.cgroup_join
                .get(i)
                .map_or("?".into(), |c| c.to_string_lossy())
        ),
        Step::UnshareCgroup => "unshare cgroup namespace".into(),
        Step::JoinNamespace => format!(
            "setns {}",
            extra.join.get(i).map_or("?".into(), |s| s.clone())
        ),
        Step::Hostname => "sethostname".into(),
        Step::Domainname => "setdomainname".into(),
        Step::RootPropagation if i == 2 => "make the rootfs's parent mount private".into(),
        Step::RootPropagation => "set mount propagation of /".into(),
        Step::BindRootfs => format!("bind mount rootfs {rootfs}"),
        Step::OpenRootfs => format!("open rootfs {rootfs}"),
        Step::MountTarget | Step::Mount | Step::MountRemount | Step::MountPropagation => {
            let verb = match f.step {
                Step::MountTarget => "create mountpoint",
                Step::Mount => "mount",
                Step::MountRemount => "remount",
                _ => "set propagation of",
            };
            match ops.get(i) {
                Some(Op::Mount(m)) => format!(
                    "{verb} {} on {} (type {}, in rootfs {rootfs})",
                    m.source
                        .as_deref()
                        .map_or("none".into(), |s| s.to_string_lossy()),
                    m.target.path.display(),
                    m.fstype
                        .as_deref()
                        .map_or("bind".into(), |s| s.to_string_lossy()),
                ),
                _ => format!("{verb} mount #{i}"),
            }
        }
        Step::Symlink => {
            let at = if i >= 1000 {
                p.rootfs
                    .as_ref()
                    .and_then(|r| r.dev_symlinks.get(i - 1000))
                    .map(|(t, _)| &t.path)
            } else {
                match ops.get(i) {
                    Some(Op::Symlink { at, .. }) => Some(&at.path),
                    _ => None,
                }
            };
            format!(
                "symlink {}",
                at.map_or("?".into(), |p| p.display().to_string())
            )
        }
        Step::Device => format!(
            "mknod {}",
            p.rootfs
                .as_ref()
                .and_then(|r| r.devices.get(i))
                .map_or("?".into(), |d| d.target.path.display().to_string())
        ),
        Step::PivotRoot if i >= 7 => "enter the container's root".into(),
        Step::PivotRoot => {
            if no_pivot {
                format!("move rootfs {rootfs} to / and chroot")
            } else {
                format!("pivot_root into {rootfs}")
            }
        }
        Step::Sysctl => format!(
            "write sysctl {}",
            p.sysctls
                .get(i)
                .map_or("?".into(), |(k, _)| k.to_string_lossy())
        ),
        Step::ReadonlyPath => format!(
            "make {} read-only",
            p.rootfs
                .as_ref()
                .and_then(|r| r.readonly.get(i))
                .map_or("?".into(), |s| s.to_string_lossy())
        ),
        Step::MaskPath => format!(
            "mask {}",
            p.rootfs
                .as_ref()
                .and_then(|r| r.masked.get(i))
                .map_or("?".into(), |s| s.to_string_lossy())
        ),
        Step::ReadonlyRoot => "remount rootfs read-only".into(),
        Step::Console => "set up the console (pty) and send it over --console-socket".into(),
        Step::Rlimit => {
            let (name, soft, hard) = extra.rlimits.get(i).cloned().unwrap_or(("?".into(), 0, 0));
            let hint = if f.errno == libc::EPERM {
                " (raising a hard limit needs CAP_SYS_RESOURCE, which this process lacks)"
            } else {
                ""
            };
            return format!("setrlimit {name} soft={soft} hard={hard}: {err}{hint}");
        }
        Step::OomScoreAdj => {
            let hint = if f.errno == libc::EACCES || f.errno == libc::EPERM {
                " (lowering it needs CAP_SYS_RESOURCE, which this process lacks)"
            } else {
                ""
            };
            return format!(
                "write oom_score_adj {}: {err}{hint}",
                p.process
                    .oom_score_adj
                    .as_deref()
                    .map_or("?".into(), |s| s.to_string_lossy())
            );
        }
        Step::Capabilities => format!("apply capabilities (cap {i})"),
        Step::Setgroups => format!("setgroups {:?}", p.process.additional_gids),
        Step::Setgid => format!("setgid {}", p.process.gid),
        Step::Setuid => format!("setuid {}", p.process.uid),
        Step::NoNewPrivileges => "set no_new_privs".into(),
        Step::Chdir => format!("chdir to cwd {}", p.process.cwd.to_string_lossy()),
        Step::FindExecutable => {
            let arg0 = p
                .process
                .argv
                .first()
                .map_or("?".into(), |a| a.to_string_lossy());
            return format!(
                "exec: {arg0:?}: executable file not found in $PATH or not executable: {err}"
            );
        }
        Step::StartFifo => "wait for start on exec.fifo".into(),
        Step::Park => "receive the program of a parked container".into(),
        Step::SecurityLabel => {
            let label = p.process.exec_label.as_ref();
            format!(
                "write {:?} to {}",
                label.map_or("?".into(), |l| l.value.to_string_lossy()),
                label
                    .and_then(|l| l.paths.get(i))
                    .map_or("?".into(), |c| c.to_string_lossy())
            )
        }
        Step::CreateContainerHook | Step::StartContainerHook => unreachable!("handled above"),
        Step::Exec => format!(
            "exec {}",
            p.process
                .argv
                .first()
                .map_or("?".into(), |a| a.to_string_lossy())
        ),
    };
    format!("{what}: {err}")
}

/// Names the parent keeps for describing failures of steps that have no path in the plan.
#[derive(Debug, Default)]
pub struct PlanNames {
    pub join: Vec<String>,
    pub rlimits: Vec<(String, u64, u64)>,
}

impl Failure {
    pub fn from_report(r: &Report) -> Option<Failure> {
        (r.tag == TAG_FAILED).then(|| Failure {
            step: Step::from_u32(r.step).unwrap_or(Step::Exec),
            index: r.index,
            errno: r.errno,
            status: r.status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        let r = Report {
            tag: TAG_FAILED,
            step: Step::StartContainerHook as u32,
            index: 7,
            errno: libc::EPERM,
            status: 0x201,
            detail_len: 12,
        };
        assert_eq!(Report::from_bytes(&r.to_bytes()), r);
        let f = Failure::from_report(&r).unwrap();
        assert_eq!(
            (f.step, f.index, f.errno, f.status),
            (Step::StartContainerHook, 7, libc::EPERM, 0x201)
        );
    }

    #[test]
    fn every_step_number_maps_back() {
        for v in 1..=Step::StartContainerHook as u32 {
            assert_eq!(Step::from_u32(v).unwrap() as u32, v);
        }
        assert!(Step::from_u32(0).is_none());
    }
}
