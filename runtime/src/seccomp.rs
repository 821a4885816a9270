//! seccomp: config.json's `linux.seccomp` compiled to classic BPF with libseccomp in the parent,
//! before clone. The child only hands the prepared program to `seccomp(SET_MODE_FILTER)`, the
//! last thing before exec (or before dropping privileges when no_new_privs is off, as runc).
//! create and exec go through `cache`, which compiles each profile once.
//! With SCMP_ACT_NOTIFY rules the filter is loaded with a new listener, which the child hands
//! to the runtime and the runtime to the agent at `listenerPath` (see [`crate::seccomp_agent`]).

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompOperator};
use serde::Serialize;

use crate::error::{Error, Result};

pub mod cache;

/// A BPF program ready for `seccomp(SECCOMP_SET_MODE_FILTER)`.
#[derive(Debug, Clone)]
pub struct Program {
    pub filter: Vec<libc::sock_filter>,
    /// SECCOMP_FILTER_FLAG_* bits from the config's `flags` (plus NEW_LISTENER for notify).
    pub flags: libc::c_ulong,
    /// Where the notify listener goes, when a rule uses SCMP_ACT_NOTIFY.
    pub listener: Option<Listener>,
}

/// The seccomp agent that receives the notify listener.
#[derive(Debug, Clone)]
pub struct Listener {
    /// linux.seccomp.listenerPath: a unix socket the agent listens on.
    pub path: PathBuf,
    /// linux.seccomp.listenerMetadata, passed through to the agent.
    pub metadata: String,
}

/// SECCOMP_FILTER_FLAG_NEW_LISTENER: seccomp() returns a notify descriptor.
pub const FLAG_NEW_LISTENER: libc::c_ulong = 1 << 3;

fn unsupported(msg: impl Into<String>) -> Error {
    Error::Unsupported(format!("linux.seccomp: {}", msg.into()))
}

/// The OCI name of an enum value (its serde form), e.g. "SCMP_ACT_ERRNO".
fn name_of<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn action(name: &str, errno: Option<u32>) -> Result<ScmpAction> {
    match name {
        "SCMP_ACT_NOTIFY" => Ok(ScmpAction::Notify),
        // runc's default errno is EPERM.
        "SCMP_ACT_ERRNO" => Ok(ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32)),
        "SCMP_ACT_TRACE" => Ok(ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16)),
        other => {
            ScmpAction::from_str(other, None).map_err(|e| unsupported(format!("{other}: {e}")))
        }
    }
}

fn compare(op: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> (ScmpCompareOp, u64) {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        // value is the mask, valueTwo the expected value (as runc reads it).
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            (ScmpCompareOp::MaskedEqual(value), value_two.unwrap_or(0))
        }
    }
}

/// Compile `s` to BPF.
pub fn compile(s: &LinuxSeccomp) -> Result<Program> {
    let listener = notify_listener(s)?;
    let default = action(&name_of(&s.default_action()), s.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| unsupported(e.to_string()))?;
    // A binary search over syscall numbers rather than a list tested in turn. libseccomp takes
    // longer to build it (Docker's default profile: ~8 ms instead of ~5, once per profile with
    // the cache), but every load gets cheaper: the kernel runs the filter once per syscall
    // number to find those it always allows, and does that on each load (0.22 ms instead of
    // 0.56 for Docker's profile, measured here). Syscalls the filter must look at cost ~9
    // comparisons instead of up to one per listed syscall. Needs libseccomp 2.5.
    if let Err(e) = ctx.set_ctl_optimize(2) {
        crate::log::debug(&format!(
            "seccomp: libseccomp cannot build a binary tree ({e}); using a list"
        ));
    }
    for arch in s.architectures().iter().flatten() {
        let name = name_of(arch);
        let a: ScmpArch = name
            .parse()
            .map_err(|_| unsupported(format!("unknown architecture {name}")))?;
        // The native architecture is already in a new filter.
        if let Err(e) = ctx.add_arch(a) {
            if e.errno() != Some(libseccomp::error::SeccompErrno::EEXIST) {
                return Err(unsupported(format!("add architecture {name}: {e}")));
            }
        }
    }
    let mut flags: libc::c_ulong = 0;
    for f in s.flags().iter().flatten() {
        flags |= match name_of(f).as_str() {
            "SECCOMP_FILTER_FLAG_TSYNC" => 1,
            "SECCOMP_FILTER_FLAG_LOG" => 2,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => 4,
            other => return Err(unsupported(format!("flag {other} is not supported"))),
        };
    }
    for rule in s.syscalls().iter().flatten() {
        let act = action(&name_of(&rule.action()), rule.errno_ret())?;
        if act == default {
            // libseccomp refuses a rule that repeats the default; it would change nothing.
            continue;
        }
        let args: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                let (op, datum) = compare(a.op(), a.value(), a.value_two());
                ScmpArgCompare::new(a.index() as u32, op, datum)
            })
            .collect();
        // Two conditions on the same argument cannot be ANDed in one libseccomp rule; as runc,
        // they become one rule each.
        let mut indexes: Vec<u32> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| a.index() as u32)
            .collect();
        indexes.sort_unstable();
        let split = indexes.windows(2).any(|w| w[0] == w[1]);
        for name in rule.names() {
            let Ok(sys) = ScmpSyscall::from_name(name) else {
                // Profiles list syscalls newer kernels or other architectures have.
                crate::log::debug(&format!("seccomp: skipping unknown syscall {name}"));
                continue;
            };
            let r = if args.is_empty() {
                ctx.add_rule(act, sys)
            } else if split {
                args.iter()
                    .try_for_each(|a| ctx.add_rule_conditional(act, sys, &[*a]).map(|_| ()))
                    .map(|()| &mut ctx)
            } else {
                ctx.add_rule_conditional(act, sys, &args)
            };
            r.map_err(|e| unsupported(format!("rule for {name}: {e}")))?;
        }
    }
    // Export through a memfd: libseccomp 2.5 has no in-memory export.
    // SAFETY: memfd_create with a static name; a fresh descriptor on success.
    let fd = unsafe { libc::memfd_create(c"berth-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::sys("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is fresh and ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    ctx.export_bpf(&fd)
        .map_err(|e| unsupported(format!("export BPF: {e}")))?;
    let mut f = std::fs::File::from(fd);
    let mut bytes = Vec::new();
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.read_to_end(&mut bytes))
        .map_err(|e| Error::sys("read seccomp BPF", e))?;
    let filter = filter_from_bytes(&bytes);
    if filter.is_empty() || filter.len() > u16::MAX as usize {
        return Err(unsupported(format!(
            "BPF program of {} instructions",
            filter.len()
        )));
    }
    if listener.is_some() {
        // The kernel refuses a new listener for a filter synchronised to all threads.
        if flags & 1 != 0 {
            return Err(unsupported(
                "SECCOMP_FILTER_FLAG_TSYNC cannot be combined with SCMP_ACT_NOTIFY",
            ));
        }
        flags |= FLAG_NEW_LISTENER;
    }
    Ok(Program {
        filter,
        flags,
        listener,
    })
}

/// Classic BPF instructions in their in-memory layout (8 bytes each, native endian), as
/// libseccomp exports them and the cache stores them.
fn filter_from_bytes(bytes: &[u8]) -> Vec<libc::sock_filter> {
    bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

/// SCMP_ACT_NOTIFY is usable only with an agent to hand the listener to, and never on the
/// syscalls that hand it over (the child would wait for an agent that has no listener yet).
fn notify_listener(s: &LinuxSeccomp) -> Result<Option<Listener>> {
    const NOTIFY: &str = "SCMP_ACT_NOTIFY";
    if name_of(&s.default_action()) == NOTIFY {
        return Err(unsupported(
            "SCMP_ACT_NOTIFY cannot be the defaultAction (the runtime itself must still send the listener to the agent)",
        ));
    }
    let mut notify = false;
    for rule in s.syscalls().iter().flatten() {
        if name_of(&rule.action()) != NOTIFY {
            continue;
        }
        notify = true;
        if let Some(n) = rule.names().iter().find(|n| *n == "sendmsg") {
            return Err(unsupported(format!(
                "SCMP_ACT_NOTIFY cannot be used for {n} (the listener is sent with it)"
            )));
        }
    }
    let path = s
        .listener_path()
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty());
    match (notify, path) {
        (true, None) => Err(unsupported(
            "SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath (the seccomp agent's socket)",
        )),
        (true, Some(p)) if !p.is_absolute() => Err(unsupported(format!(
            "listenerPath {} must be absolute",
            p.display()
        ))),
        (true, Some(p)) => Ok(Some(Listener {
            path: p.clone(),
            metadata: s.listener_metadata().clone().unwrap_or_default(),
        })),
        (false, Some(p)) => {
            crate::log::warn_once(
                "seccomp_listener_unused",
                &format!(
                    "linux.seccomp.listenerPath {} is not used: no rule has SCMP_ACT_NOTIFY",
                    p.display()
                ),
            );
            Ok(None)
        }
        (false, None) => Ok(None),
    }
}

/// Install `p` on the calling thread; returns the notify listener when `p` asks for one. Runs
/// in the child: no allocation.
pub fn load(p: &Program) -> std::io::Result<Option<OwnedFd>> {
    let prog = libc::sock_fprog {
        len: p.filter.len() as u16,
        filter: p.filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points to `len` valid instructions that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            p.flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if p.flags & FLAG_NEW_LISTENER == 0 {
        return Ok(None);
    }
    // SAFETY: with NEW_LISTENER, seccomp() returned a fresh descriptor that we now own.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(r as libc::c_int) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_json(v: serde_json::Value) -> Result<Program> {
        compile(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn compiles_rules_with_arguments() {
        let p = compile_json(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["read", "write", "exit_group", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }))
        .unwrap();
        assert!(p.filter.len() > 10);
        assert_eq!(p.flags, 0);
    }

    #[test]
    fn notify_needs_a_listener_path_and_gets_a_listener() {
        let e = compile_json(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }))
        .unwrap_err();
        assert!(
            e.to_string().contains("needs linux.seccomp.listenerPath"),
            "{e}"
        );
        let p = compile_json(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "listenerMetadata": "m",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }))
        .unwrap();
        assert_eq!(p.flags, FLAG_NEW_LISTENER);
        let l = p.listener.unwrap();
        assert_eq!(
            (l.path.to_str(), l.metadata.as_str()),
            (Some("/run/agent.sock"), "m")
        );
    }

    #[test]
    fn notify_is_refused_as_default_and_for_sendmsg() {
        for (default, names) in [
            ("SCMP_ACT_NOTIFY", vec!["mkdir"]),
            ("SCMP_ACT_ALLOW", vec!["mkdir", "sendmsg"]),
        ] {
            let e = compile_json(serde_json::json!({
                "defaultAction": default,
                "listenerPath": "/run/agent.sock",
                "syscalls": [{"names": names, "action": "SCMP_ACT_NOTIFY"}]
            }))
            .unwrap_err();
            assert!(e.to_string().contains("SCMP_ACT_NOTIFY cannot be"), "{e}");
        }
    }

    #[test]
    fn flags_map_to_kernel_bits() {
        let p = compile_json(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        }))
        .unwrap();
        assert_eq!(p.flags, 6);
    }
}
