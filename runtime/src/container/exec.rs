//! `exec`: run another process in a container that is running — in every namespace of its
//! init (joined through the init's pidfd, several at once), in its cgroups, chrooted into its
//! root — with its own stdio, terminal, credentials and capabilities.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use oci_spec::runtime::Process;

use super::create::{await_child, fork_child, write_pid_file, Mode};
use super::{Container, Status};
use crate::error::{Error, IoContext, Result};
use crate::init::{ChildPlan, Gate, PlanNames};
use crate::seccomp_agent::Agent;
use crate::sys;

/// What `exec` is asked to run.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// Descriptors to become the process's stdin/stdout/stderr (the caller's own when None).
    pub stdio: Option<[RawFd; 3]>,
}

/// A process started in a container. The caller is its parent.
pub struct Execed {
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
    /// With process.terminal and no console socket: the pty master, for the caller to relay.
    pub console: Option<OwnedFd>,
}

/// The namespaces an exec'd process shares with the container's init (pid is entered by the
/// parent, for its next child).
const JOIN: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP;

/// The user and time namespaces are joined only when the init's differ from ours (setns
/// refuses to "join" one's own user namespace).
fn other_namespaces(pid: libc::pid_t) -> libc::c_int {
    let differs = |ns: &str| {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok();
        theirs.is_some() && theirs != std::fs::read_link(format!("/proc/self/ns/{ns}")).ok()
    };
    let mut flags = 0;
    if differs("user") {
        flags |= libc::CLONE_NEWUSER;
    }
    if differs("time") {
        flags |= crate::init::CLONE_NEWTIME;
    }
    flags
}

pub fn exec(root: &std::path::Path, id: &str, opts: &ExecOptions) -> Result<Execed> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if !matches!(status, Status::Running | Status::Created) {
        return Err(Error::BadState {
            id: id.to_string(),
            status: status.as_str(),
            what: "exec needs a running container",
        });
    }
    let config = c.record.bundle.join("config.json");
    let p = &opts.process;
    match p.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => {
            return Err(Error::InvalidConfig {
                path: config,
                msg: "exec: process.args must name a program".into(),
            })
        }
    }
    if !p.cwd().is_absolute() {
        return Err(Error::InvalidConfig {
            path: config,
            msg: format!("exec: cwd {:?} must be absolute", p.cwd()),
        });
    }
    crate::lsm::check(p.apparmor_profile(), p.selinux_label(), &None, "exec: ")?;
    let terminal = p.terminal().unwrap_or(false);
    let (console_child, console_parent) =
        super::console_ends(terminal, opts.console_socket.as_deref())?;

    let init = c.init_pidfd().ok_or(Error::BadState {
        id: id.to_string(),
        status: "stopped",
        what: "exec needs a running container",
    })?;
    let pid = c.record.pid;
    // The container's root as its init sees it; opened while the pidfd pins the init, so it
    // cannot be another process's.
    let root_path = PathBuf::from(format!("/proc/{pid}/root"));
    let root_fd = sys::openat(
        None,
        &crate::cgroups::cstr(&root_path)?,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .ctx("open", &root_path)?;
    let join_fd = init.try_clone().map_err(|e| Error::sys("dup pidfd", e))?;

    let mut names = PlanNames::default();
    names
        .join
        .push(format!("namespaces of container {id} (init pid {pid})"));
    // The container's seccomp filter applies to everything that runs in it.
    let bundle = crate::spec::load_created(&c.record.bundle)?;
    let seccomp = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(|s| crate::seccomp::cache::compile(root, s))
        .transpose()?;
    let process = super::process::plan(p, &config, console_child, seccomp, &mut names)?;
    let (sync_r, sync_w) = sys::socketpair().map_err(|e| Error::sys("socketpair", e))?;
    let mut plan = ChildPlan {
        sync: sync_w.as_raw_fd(),
        go: None,
        go_parent: None,
        cgroup_join: Vec::new(),
        stdio: opts.stdio,
        unshare_cgroupns: false,
        join: vec![(join_fd, JOIN | other_namespaces(pid))],
        exec_root: Some(root_fd),
        hostname: None,
        domainname: None,
        rootfs: None,
        sysctls: Vec::new(),
        process,
        preserve_fds: opts.preserve_fds,
        gate: Gate::Immediate,
        timens_offsets: None,
        userns_root: false,
        join_userns: None,
        create_hooks: None,
        start_hooks: None,
        park: None,
    };
    let (child, pidfd) = fork_child(
        &mut plan,
        &c.record.cgroup,
        0,
        Some((init.as_fd(), root_path.as_path())),
    )?;
    drop(sync_w);
    // The exec'd process loads the container's filter too: a notify listener of its own goes
    // to the agent with its pid and the container's state.
    let agent = plan
        .process
        .seccomp
        .as_ref()
        .and_then(|s| s.listener.as_ref())
        .map(|l| {
            let state =
                crate::hooks::state_json(&bundle.spec, id, pid, status.as_str(), &c.record.bundle);
            Agent::new(l, bundle.spec.version(), child, &state)
        });
    if let Err(e) = await_child(&plan, &names, &sync_r, Mode::Run, agent.as_ref()) {
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        let _ = sys::waitid_pidfd(pidfd.as_fd(), false);
        return Err(e);
    }
    let console = match console_parent {
        Some(sock) => {
            let mut b = [0u8; 1];
            let (fd, _) = sys::recv_fd(sock.as_fd(), &mut b)
                .map_err(|e| Error::sys("receive the console from the container", e))?;
            Some(fd)
        }
        None => None,
    };
    if let Some(path) = &opts.pid_file {
        write_pid_file(path, child)?;
    }
    Ok(Execed {
        pid: child,
        pidfd,
        console,
    })
}

/// `exec` in the foreground: forward signals, relay the terminal, return the exit status.
pub fn exec_and_wait(root: &std::path::Path, id: &str, opts: &ExecOptions) -> Result<i32> {
    let set = super::run::block_forwarded();
    let e = exec(root, id, opts)?;
    super::run::supervise(&e.pidfd, e.console.as_ref(), &set)
}
