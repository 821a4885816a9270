//! The container's init between clone3 and execve. Everything it needs was prepared by the
//! parent in a [`ChildPlan`] (C strings, descriptors, flags); here it only makes syscalls. It
//! never allocates, takes locks or logs: a failure is sent to the parent as a fixed-size
//! [`Report`] naming the step, and the parent turns it into a message.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::hooks::in_container::{self, Output};
use crate::mounts::{MountOp, Op, Target};
use crate::sys::{self, FdPath, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};

/// CLONE_NEWTIME (not in every libc crate version).
pub const CLONE_NEWTIME: libc::c_int = 0x80;

pub mod late;
mod report;

pub use report::{
    describe, Failure, PlanNames, Report, Step, TAG_FAILED, TAG_PARKED, TAG_READY,
    TAG_SECCOMP_LISTENER,
};
type Res<T> = std::result::Result<T, Failure>;

fn fail(step: Step, index: usize) -> impl FnOnce(io::Error) -> Failure {
    move |e| Failure {
        step,
        index: index as u32,
        errno: sys::errno_of(&e),
        status: 0,
    }
}

/// A device node to create under the rootfs.
#[derive(Debug)]
pub struct DeviceNode {
    pub target: Target,
    /// S_IFCHR/S_IFBLK/S_IFIFO | permissions.
    pub mode: libc::mode_t,
    pub dev: libc::dev_t,
    pub uid: u32,
    pub gid: u32,
    /// In a user namespace mknod is not permitted: the host's node at this path is
    /// bind-mounted instead (as runc does).
    pub host: Option<CString>,
}

/// Capability sets as bitmasks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
    pub last_cap: u32,
}

/// How the child waits to be started.
#[derive(Debug)]
pub enum Gate {
    /// Exec as soon as set-up is done (`run`).
    Immediate,
    /// Report ready, then block opening this FIFO (O_PATH) for writing until `start` reads it.
    Fifo(OwnedFd),
}

#[derive(Debug)]
pub struct RootfsPlan {
    pub rootfs: CString,
    pub propagation: libc::c_ulong,
    /// The mount holding the rootfs, made private (not recursively) before the rootfs is
    /// bound: it would be shared, which pivot_root refuses and which would propagate the bind
    /// back to the host.
    pub private_parent: Option<CString>,
    pub ops: Vec<Op>,
    /// Index of the first op that needs the container's cgroups (ops.len() when none).
    pub cgroup_from: usize,
    pub devices: Vec<DeviceNode>,
    /// (link path inside the rootfs, target)
    pub dev_symlinks: Vec<(Target, CString)>,
    pub no_pivot: bool,
    /// No mount namespace of its own (the spec's "inherit the runtime's"): the mounts are made
    /// in ours, under the rootfs bound onto itself (which `delete` detaches, taking them all),
    /// "/" keeps its propagation, and the init chroots instead of pivot_root.
    pub host_mount_ns: bool,
    pub masked: Vec<CString>,
    pub readonly: Vec<CString>,
    pub readonly_root: bool,
    /// Propagation to set on "/" after pivot_root (rootfsPropagation), if any.
    pub root_propagation_after: Option<libc::c_ulong>,
}

/// The program to run and the credentials, limits and terminal it runs with: what `create`
/// and `exec` share.
#[derive(Debug)]
pub struct ProcessPlan {
    pub console: Option<OwnedFd>,
    pub console_size: Option<(u16, u16)>,
    /// (resource, soft, hard)
    pub rlimits: Vec<(libc::c_int, u64, u64)>,
    pub oom_score_adj: Option<CString>,
    pub caps: Option<Caps>,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub additional_gids: Vec<libc::gid_t>,
    pub umask: libc::mode_t,
    pub no_new_privs: bool,
    pub cwd: CString,
    /// Candidate paths for argv[0] (PATH resolved in the parent), tried in order.
    pub exec_candidates: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// The container's seccomp filter, compiled.
    pub seccomp: Option<crate::seccomp::Program>,
    /// AppArmor profile or SELinux label for the program, written last before execve.
    pub exec_label: Option<crate::lsm::ExecLabel>,
}

/// Everything the child needs, prepared by the parent before clone.
#[derive(Debug)]
pub struct ChildPlan {
    /// Write end of the report pipe; owned by the caller of clone3.
    pub sync: RawFd,
    /// Read end of the pipe on which the parent says the cgroups are ready (create only).
    pub go: Option<RawFd>,
    /// The parent's write end of that pipe, closed by the child first thing: the parent
    /// dropping its end (it failed to set up the cgroups) must read as EOF here, or the child
    /// would wait on itself and the parent on the child's report, forever.
    pub go_parent: Option<RawFd>,
    /// Files to write "0" into to join the container's cgroups (host paths, before pivot).
    pub cgroup_join: Vec<CString>,
    pub stdio: Option<[RawFd; 3]>,
    pub unshare_cgroupns: bool,
    /// Namespaces to join (descriptor, CLONE_NEW* types), in order. A pidfd joins several at
    /// once.
    pub join: Vec<(OwnedFd, libc::c_int)>,
    /// exec: the container's root (/proc/INIT/root, opened before joining), to chroot into.
    pub exec_root: Option<OwnedFd>,
    pub hostname: Option<CString>,
    pub domainname: Option<CString>,
    /// create: the rootfs to build; exec: None (the container's is joined).
    pub rootfs: Option<RootfsPlan>,
    /// (/proc/sys/... path, value)
    pub sysctls: Vec<(CString, CString)>,
    pub process: ProcessPlan,
    pub preserve_fds: u32,
    pub gate: Gate,
    /// A new time namespace: entered with unshare (the program joins it at execve), with
    /// these offsets ("monotonic S N\nboottime S N\n") written first.
    pub timens_offsets: Option<CString>,
    /// In a new user namespace: once the parent has written the id maps (and the host cgroup
    /// files are joined as host root), become the namespace's root so files can be created.
    pub userns_root: bool,
    /// A user namespace to join by path (descriptor, path for messages): joined by a helper
    /// before the init is cloned (see container::create), never by the init itself.
    pub join_userns: Option<(OwnedFd, CString)>,
    /// createContainer hooks: run after the mounts, before pivot_root.
    pub create_hooks: Option<in_container::Plan>,
    /// startContainer hooks: run once released, right before execve.
    pub start_hooks: Option<in_container::Plan>,
    /// Park once the container is set up: report `TAG_PARKED`, then read the program from
    /// the sync socket into this memory (see [`late`]).
    pub park: Option<late::Arena>,
}

/// Run in the child after clone3; never returns.
pub fn child_main(
    plan: &ChildPlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    if let Some(fd) = plan.go_parent {
        // SAFETY: our copy of the parent's descriptor, not used by anything in the child.
        unsafe { libc::close(fd) };
    }
    let mut out = Output::default();
    let mut released: Option<OwnedFd> = None;
    let failure = match setup(plan, argv, envp, &mut out, &mut released) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    let detail = if failure.is_hook() { out.bytes() } else { &[] };
    let report = Report {
        tag: TAG_FAILED,
        step: failure.step as u32,
        index: failure.index,
        errno: failure.errno,
        status: failure.status,
        detail_len: detail.len() as u32,
    };
    // Until `start` released us, the runtime that made us reads the sync pipe; after that
    // only `start` listens, on exec.fifo.
    let sink = match &released {
        Some(fifo) => fifo.as_fd(),
        // SAFETY: the caller keeps the write end open across clone; the child has its copy.
        None => unsafe { BorrowedFd::borrow_raw(plan.sync) },
    };
    let _ = sys::write_all(sink, &report.to_bytes());
    let _ = sys::write_all(sink, detail);
    // SAFETY: _exit is async-signal-safe and skips Rust/libc teardown that is not ours to run.
    unsafe { libc::_exit(1) }
}

fn setup(
    p: &ChildPlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    out: &mut Output,
    released: &mut Option<OwnedFd>,
) -> Res<std::convert::Infallible> {
    // CVE-2019-5736: until execve replaces it, this process is berth-runtime's image inside the
    // container's pid namespace. Non-dumpable, its /proc/PID/exe (and the rest of /proc/PID)
    // cannot be opened by container processes, which lack CAP_SYS_PTRACE in the host user
    // namespace, so the host binary can never be reopened for writing through it. execve of
    // the container's program makes the process dumpable again.
    sys::prctl(libc::PR_SET_DUMPABLE, 0).map_err(fail(Step::NonDumpable, 0))?;
    // The parent may have blocked signals it forwards; the program starts with none blocked.
    // SAFETY: sigset_t is plain data; an empty set and SIG_SETMASK are always valid.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
    // Every Rust program (this runtime, the shim that embeds it) ignores SIGPIPE, and an
    // ignored signal stays ignored across execve: without this, `yes | head` in a container
    // spins on EPIPE forever instead of dying.
    // SAFETY: signal() with SIG_DFL is async-signal-safe and touches no memory of ours.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    if let Some(fds) = p.stdio {
        for (i, fd) in fds.iter().enumerate() {
            sys::dup2(*fd, i as RawFd).map_err(fail(Step::Stdio, i))?;
        }
    }
    if p.rootfs.is_none() {
        // exec: the cgroup files are host paths, reachable only before the mount namespace
        // changes.
        await_cgroups(p)?;
    }
    for (i, (fd, nstype)) in p.join.iter().enumerate() {
        sys::setns(fd.as_fd(), *nstype).map_err(fail(Step::JoinNamespace, i))?;
    }
    if let Some(off) = &p.timens_offsets {
        // Offsets can be set only before any process is in the namespace: unshare makes it
        // for our children and for our own execve, which enters it.
        sys::unshare(CLONE_NEWTIME).map_err(fail(Step::TimeNamespace, 0))?;
        if !off.is_empty() {
            let fd = sys::openat(None, c"/proc/self/timens_offsets", libc::O_WRONLY, 0)
                .map_err(fail(Step::TimeNamespace, 1))?;
            sys::write_all(fd.as_fd(), off.to_bytes()).map_err(fail(Step::TimeNamespace, 2))?;
        }
    }
    if let Some(root) = &p.exec_root {
        sys::fchdir(root.as_fd()).map_err(fail(Step::PivotRoot, 7))?;
        sys::chroot(c".").map_err(fail(Step::PivotRoot, 8))?;
    }
    if let Some(h) = &p.hostname {
        sys::sethostname(h.to_bytes()).map_err(fail(Step::Hostname, 0))?;
    }
    if let Some(d) = &p.domainname {
        sys::setdomainname(d.to_bytes()).map_err(fail(Step::Domainname, 0))?;
    }
    // SAFETY: umask cannot fail. Devices and mountpoints get exactly the modes we ask for.
    unsafe { libc::umask(0) };
    if let Some(r) = &p.rootfs {
        prepare_rootfs(p, r, out)?;
    }
    for (i, (path, value)) in p.sysctls.iter().enumerate() {
        let fd = sys::openat(None, path, libc::O_WRONLY | libc::O_TRUNC, 0)
            .map_err(fail(Step::Sysctl, i))?;
        sys::write_all(fd.as_fd(), value.to_bytes()).map_err(fail(Step::Sysctl, i))?;
    }
    if let Some(r) = &p.rootfs {
        finish_rootfs(r)?;
    }
    if let Some(arena) = &p.park {
        // SAFETY: the sync socket stays open until exec (it is close-on-exec).
        let sync = unsafe { BorrowedFd::borrow_raw(p.sync) };
        let parked = Report::tagged(TAG_PARKED).to_bytes();
        sys::write_all(sync, &parked).map_err(fail(Step::Park, 0))?;
        let mut gids = [0; late::MAX_GIDS];
        let prog = late::receive(sync, arena, &mut gids).map_err(fail(Step::Park, 1))?;
        if p.process.console.is_none() {
            // berth-shim parks in its launcher's session (in the background): a session of
            // our own now, away from that one's terminal signals. A console's setup makes
            // one anyway.
            // SAFETY: setsid has no memory effects; we are not a group leader after clone.
            unsafe { libc::setsid() };
        }
        return run_program(p, &prog.view, prog.argv, prog.envp, out, released);
    }
    run_program(p, &late::View::of(&p.process), argv, envp, out, released)
}

/// From a set-up container to its program: the terminal, limits, credentials, capabilities
/// and seccomp filter, then the start gate and execve. `v` is the program's half of the
/// process: the plan's own, or a parked init's claim.
fn run_program(
    p: &ChildPlan,
    v: &late::View<'_>,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    out: &mut Output,
    released: &mut Option<OwnedFd>,
) -> Res<std::convert::Infallible> {
    if let Some(sock) = &p.process.console {
        setup_console(sock.as_fd(), p.process.console_size).map_err(fail(Step::Console, 0))?;
    }
    let mut i = 0;
    while let Some((res, soft, hard)) = v.rlimits.get(i) {
        sys::setrlimit(res, soft, hard).map_err(fail(Step::Rlimit, i))?;
        i += 1;
    }
    if let Some(adj) = &p.process.oom_score_adj {
        let fd = sys::openat(None, c"/proc/self/oom_score_adj", libc::O_WRONLY, 0)
            .map_err(fail(Step::OomScoreAdj, 0))?;
        sys::write_all(fd.as_fd(), adj.to_bytes()).map_err(fail(Step::OomScoreAdj, 0))?;
    }
    // Descriptors beyond stdio and the preserved ones never reach the program. Marked before any
    // seccomp filter is loaded: a filter from an older profile (runtime-tools' default allows a
    // fixed list, without close_range) would otherwise fail the container at this step.
    sys::close_range_from(3 + p.preserve_fds, sys::CLOSE_RANGE_CLOEXEC)
        .map_err(fail(Step::Exec, 0))?;
    // Without no_new_privs the kernel only accepts a filter from a privileged caller: install it
    // before dropping privileges (the filter then also governs setuid and capset), as runc.
    if let (Some(f), false) = (&p.process.seccomp, p.process.no_new_privs) {
        load_seccomp(p, f)?;
    }
    if let Some(c) = &p.process.caps {
        for cap in 0..=c.last_cap {
            if c.bounding & (1 << cap) == 0 {
                sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong)
                    .map_err(fail(Step::Capabilities, cap as usize))?;
            }
        }
        sys::prctl(libc::PR_SET_KEEPCAPS, 1).map_err(fail(Step::Capabilities, 0))?;
    }
    sys::setgroups(v.gids).map_err(fail(Step::Setgroups, 0))?;
    sys::setresgid(v.gid).map_err(fail(Step::Setgid, 0))?;
    sys::setresuid(v.uid).map_err(fail(Step::Setuid, 0))?;
    if let Some(c) = &p.process.caps {
        sys::capset(c.effective, c.permitted, c.inheritable)
            .map_err(fail(Step::Capabilities, 0))?;
        sys::prctl3(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
        )
        .map_err(fail(Step::Capabilities, 0))?;
        for cap in 0..=c.last_cap {
            if c.ambient & (1 << cap) != 0 {
                sys::prctl3(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                )
                .map_err(fail(Step::Capabilities, cap as usize))?;
            }
        }
    }
    if p.process.no_new_privs {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(fail(Step::NoNewPrivileges, 0))?;
    }
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(v.umask) };
    sys::chdir(v.cwd).map_err(fail(Step::Chdir, 0))?;
    let exe = find_executable(&v.candidates)?;
    if let (Some(f), true) = (&p.process.seccomp, p.process.no_new_privs) {
        load_seccomp(p, f)?;
    }
    if let Gate::Fifo(fifo) = &p.gate {
        // SAFETY: the sync write end stays open until exec (it is O_CLOEXEC).
        let sync = unsafe { BorrowedFd::borrow_raw(p.sync) };
        sys::write_all(sync, &Report::ready().to_bytes()).map_err(fail(Step::StartFifo, 0))?;
        // Blocks until `start` opens the FIFO for reading. `start` then reads until the
        // descriptor closes at execve (close-on-exec), or a report of what failed after it.
        let path = FdPath::new(fifo.as_raw_fd());
        let w = sys::openat(None, path.as_cstr(), libc::O_WRONLY, 0)
            .map_err(fail(Step::StartFifo, 0))?;
        sys::write_all(w.as_fd(), b"0").map_err(fail(Step::StartFifo, 0))?;
        *released = Some(w);
    }
    if let Some(hooks) = &p.start_hooks {
        in_container::run_all(hooks, out)
            .map_err(|f| Failure::hook(Step::StartContainerHook, f))?;
    }
    if let Some(label) = &p.process.exec_label {
        apply_exec_label(label)?;
    }
    // SAFETY: argv and envp are NULL-terminated arrays of pointers into C strings the plan
    // keeps alive; execve only returns on failure.
    unsafe { libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Err(fail(Step::Exec, 0)(io::Error::last_os_error()))
}

/// Load the container's filter; a notify listener goes to the runtime over the sync socket
/// right away (the syscalls it traps wait for the agent, which gets it from there).
fn load_seccomp(p: &ChildPlan, f: &crate::seccomp::Program) -> Res<()> {
    if let Some(listener) = crate::seccomp::load(f).map_err(fail(Step::Seccomp, 0))? {
        // SAFETY: the sync socket stays open until exec (it is close-on-exec).
        let sync = unsafe { BorrowedFd::borrow_raw(p.sync) };
        let report = Report::tagged(TAG_SECCOMP_LISTENER).to_bytes();
        sys::send_fd(sync, &report, listener.as_raw_fd()).map_err(fail(Step::Seccomp, 1))?;
    }
    Ok(())
}

/// The LSM label the next execve enters: the first of the label's files that exists.
fn apply_exec_label(label: &crate::lsm::ExecLabel) -> Res<()> {
    let mut last = io::Error::from_raw_os_error(libc::ENOENT);
    for (i, path) in label.paths.iter().enumerate() {
        match sys::openat(None, path, libc::O_WRONLY, 0) {
            Ok(fd) => {
                return sys::write_all(fd.as_fd(), label.value.to_bytes())
                    .map_err(fail(Step::SecurityLabel, i));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => last = e,
            Err(e) => return Err(fail(Step::SecurityLabel, i)(e)),
        }
    }
    Err(fail(
        Step::SecurityLabel,
        label.paths.len().saturating_sub(1),
    )(last))
}

fn find_executable<'a>(candidates: &late::Strings<'a>) -> Res<&'a CStr> {
    let mut last = libc::ENOENT;
    let found = candidates.find(|c| {
        // SAFETY: c is a valid C string; stat is plain data.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above; st is valid for writes.
        if unsafe { libc::stat(c.as_ptr(), &mut st) } != 0 {
            last = sys::errno_of(&io::Error::last_os_error());
            return None;
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            last = libc::EACCES;
            return None;
        }
        // SAFETY: c is a valid C string.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
            last = sys::errno_of(&io::Error::last_os_error());
            return None;
        }
        Some(c)
    });
    found.ok_or(Failure {
        step: Step::FindExecutable,
        index: 0,
        errno: last,
        status: 0,
    })
}

/// Open `target` inside the rootfs, creating missing directories (and the last component as
/// a file when `file`), every lookup confined by RESOLVE_IN_ROOT.
fn ensure_target(root: BorrowedFd<'_>, target: &Target, file: bool) -> io::Result<OwnedFd> {
    let Some(last) = target.prefixes.len().checked_sub(1) else {
        return open_in_root(root, c".", libc::O_DIRECTORY);
    };
    // Usually the whole path exists already: one lookup (of whatever it is, file or not).
    match open_in_root(root, &target.prefixes[last], 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        found => return found,
    }
    let parent = ensure_parent(root, target)?;
    let name = &target.names[last];
    let made = if file {
        let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW;
        sys::openat(Some(parent.as_fd()), name, flags, 0o644).map(drop)
    } else {
        sys::mkdirat(parent.as_fd(), name, 0o755)
    };
    match made {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    open_in_root(root, &target.prefixes[last], 0)
}

/// The parent directory of `target` inside the rootfs, created if missing.
fn ensure_parent(root: BorrowedFd<'_>, target: &Target) -> io::Result<OwnedFd> {
    match target.prefixes.len() {
        0 | 1 => open_in_root(root, c".", libc::O_DIRECTORY),
        n => ensure_dir(root, target, n - 2),
    }
}

/// Prefix `i` of `target` as a directory, made (with any missing parent) if absent. The
/// deepest existing prefix is found from the end: one lookup when the directory exists, and
/// for each missing level one failed lookup, a mkdirat in the parent and a lookup of the new
/// directory, again from the root under RESOLVE_IN_ROOT.
fn ensure_dir(root: BorrowedFd<'_>, target: &Target, i: usize) -> io::Result<OwnedFd> {
    match open_in_root(root, &target.prefixes[i], libc::O_DIRECTORY) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        found => return found,
    }
    let parent = match i {
        0 => None,
        _ => Some(ensure_dir(root, target, i - 1)?),
    };
    let at = parent.as_ref().map_or(root, |f| f.as_fd());
    match sys::mkdirat(at, &target.names[i], 0o755) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    open_in_root(root, &target.prefixes[i], libc::O_DIRECTORY)
}

/// An O_PATH descriptor of `path`, resolved inside the rootfs.
fn open_in_root(root: BorrowedFd<'_>, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    sys::openat2(root, path, libc::O_PATH | flags, 0, resolve)
}

fn do_mount(root: BorrowedFd<'_>, i: usize, m: &MountOp) -> Res<()> {
    let target = ensure_target(root, &m.target, m.file).map_err(fail(Step::MountTarget, i))?;
    let path = FdPath::new(target.as_raw_fd());
    sys::mount(
        m.source.as_deref(),
        path.as_cstr(),
        m.fstype.as_deref(),
        m.flags,
        m.data.as_deref(),
    )
    .map_err(fail(Step::Mount, i))?;
    if m.remount.is_none() && m.propagation.is_empty() {
        return Ok(());
    }
    // The descriptor still names the covered directory: reopen to reach the new mount.
    let resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    let mounted = sys::openat2(root, m.target.relative(), libc::O_PATH, 0, resolve)
        .map_err(fail(Step::MountRemount, i))?;
    let path = FdPath::new(mounted.as_raw_fd());
    if let Some(flags) = m.remount {
        sys::mount(None, path.as_cstr(), None, flags, None).map_err(fail(Step::MountRemount, i))?;
    }
    for flag in &m.propagation {
        sys::mount(None, path.as_cstr(), None, *flag, None)
            .map_err(fail(Step::MountPropagation, i))?;
    }
    Ok(())
}

/// Block until the parent has made the cgroups and moved us in, then enter a new cgroup
/// namespace rooted there if asked.
fn await_cgroups(p: &ChildPlan) -> Res<()> {
    if let Some(go) = p.go {
        // SAFETY: the parent keeps the read end open across clone; we hold our own copy.
        let go = unsafe { BorrowedFd::borrow_raw(go) };
        let mut b = [0u8; 1];
        match sys::read(go, &mut b) {
            Ok(1) => {}
            Ok(_) => {
                let e = io::Error::from_raw_os_error(libc::EPIPE);
                return Err(fail(Step::AwaitCgroup, 0)(e));
            }
            Err(e) => return Err(fail(Step::AwaitCgroup, 0)(e)),
        }
    }
    for (i, path) in p.cgroup_join.iter().enumerate() {
        let fd = sys::openat(None, path, libc::O_WRONLY, 0).map_err(fail(Step::JoinCgroup, i))?;
        sys::write_all(fd.as_fd(), b"0").map_err(fail(Step::JoinCgroup, i))?;
    }
    if p.unshare_cgroupns {
        sys::unshare(libc::CLONE_NEWCGROUP).map_err(fail(Step::UnshareCgroup, 0))?;
    }
    if p.userns_root {
        sys::setresgid(0).map_err(fail(Step::Setgid, 0))?;
        sys::setresuid(0).map_err(fail(Step::Setuid, 0))?;
    }
    Ok(())
}

fn prepare_rootfs(p: &ChildPlan, r: &RootfsPlan, out: &mut Output) -> Res<()> {
    if !r.host_mount_ns {
        sys::mount(None, c"/", None, r.propagation, None)
            .map_err(fail(Step::RootPropagation, 0))?;
    }
    if let Some(parent) = &r.private_parent {
        sys::mount(None, parent, None, libc::MS_PRIVATE, None)
            .map_err(fail(Step::RootPropagation, 2))?;
    }
    sys::mount(
        Some(&r.rootfs),
        &r.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(fail(Step::BindRootfs, 0))?;
    let root = sys::openat(None, &r.rootfs, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(fail(Step::OpenRootfs, 0))?;
    for (i, op) in r.ops.iter().enumerate() {
        if i == r.cgroup_from {
            await_cgroups(p)?;
        }
        match op {
            Op::Mount(m) => do_mount(root.as_fd(), i, m)?,
            Op::Symlink { target, at } => {
                let dir = ensure_parent(root.as_fd(), at).map_err(fail(Step::Symlink, i))?;
                let name = at.names.last().expect("symlink has a name");
                match sys::symlinkat(target, dir.as_fd(), name) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(fail(Step::Symlink, i)(e)),
                }
            }
        }
    }
    if r.cgroup_from >= r.ops.len() {
        await_cgroups(p)?;
    }
    for (i, d) in r.devices.iter().enumerate() {
        let dir = ensure_parent(root.as_fd(), &d.target).map_err(fail(Step::Device, i))?;
        let name = d.target.names.last().expect("device has a name");
        if let Some(host) = &d.host {
            let node = sys::openat(
                Some(dir.as_fd()),
                name,
                libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW,
                0o644,
            )
            .map_err(fail(Step::Device, i))?;
            let at = FdPath::new(node.as_raw_fd());
            sys::mount(Some(host), at.as_cstr(), None, libc::MS_BIND, None)
                .map_err(fail(Step::Device, i))?;
            continue;
        }
        match sys::mknodat(dir.as_fd(), name, d.mode, d.dev) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(fail(Step::Device, i)(e)),
        }
        sys::fchownat(dir.as_fd(), name, d.uid, d.gid).map_err(fail(Step::Device, i))?;
    }
    for (i, (at, target)) in r.dev_symlinks.iter().enumerate() {
        let dir = ensure_parent(root.as_fd(), at).map_err(fail(Step::Symlink, 1000 + i))?;
        let name = at.names.last().expect("symlink has a name");
        match sys::symlinkat(target, dir.as_fd(), name) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(fail(Step::Symlink, 1000 + i)(e)),
        }
    }
    sys::fchdir(root.as_fd()).map_err(fail(Step::PivotRoot, 0))?;
    // In the container's namespaces, with its mounts made and the rootfs as cwd, but still
    // under the runtime's root: the hooks' paths resolve there (OCI config.md).
    if let Some(hooks) = &p.create_hooks {
        in_container::run_all(hooks, out)
            .map_err(|f| Failure::hook(Step::CreateContainerHook, f))?;
    }
    if r.host_mount_ns {
        // Moving the rootfs over "/" or pivoting would change the host's own root.
        sys::chroot(c".").map_err(fail(Step::PivotRoot, 2))?;
    } else if r.no_pivot {
        sys::mount(Some(c"."), c"/", None, libc::MS_MOVE, None)
            .map_err(fail(Step::PivotRoot, 1))?;
        sys::chroot(c".").map_err(fail(Step::PivotRoot, 2))?;
    } else {
        sys::pivot_root(c".", c".").map_err(fail(Step::PivotRoot, 3))?;
        // The old root is stacked under the new one: detach it without propagating the
        // unmount back to the host.
        sys::mount(None, c".", None, libc::MS_SLAVE | libc::MS_REC, None)
            .map_err(fail(Step::PivotRoot, 4))?;
        sys::umount2(c".", libc::MNT_DETACH).map_err(fail(Step::PivotRoot, 5))?;
    }
    sys::chdir(c"/").map_err(fail(Step::PivotRoot, 6))?;
    if let Some(flag) = r.root_propagation_after {
        sys::mount(None, c"/", None, flag, None).map_err(fail(Step::RootPropagation, 1))?;
    }
    Ok(())
}

/// After sysctls: read-only and masked paths, then the read-only root.
fn finish_rootfs(r: &RootfsPlan) -> Res<()> {
    for (i, path) in r.readonly.iter().enumerate() {
        match sys::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(fail(Step::ReadonlyPath, i)(e)),
        }
        let flags =
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC | locked_flags(path);
        sys::mount(Some(path), path, None, flags, None).map_err(fail(Step::ReadonlyPath, i))?;
    }
    for (i, path) in r.masked.iter().enumerate() {
        // SAFETY: path is a valid C string; st is plain data valid for writes.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::stat(path.as_ptr(), &mut st) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOENT) {
                continue;
            }
            return Err(fail(Step::MaskPath, i)(e));
        }
        let r = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            sys::mount(Some(c"tmpfs"), path, Some(c"tmpfs"), libc::MS_RDONLY, None)
        } else {
            sys::mount(Some(c"/dev/null"), path, None, libc::MS_BIND, None)
        };
        r.map_err(fail(Step::MaskPath, i))?;
    }
    if r.readonly_root {
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked_flags(c"/");
        sys::mount(None, c"/", None, flags, None).map_err(fail(Step::ReadonlyRoot, 0))?;
    }
    Ok(())
}

/// nosuid/nodev/noexec already on a mount must be kept when remounting it.
fn locked_flags(path: &CStr) -> libc::c_ulong {
    // SAFETY: statvfs is plain data; path is a valid C string.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(path.as_ptr(), &mut s) } != 0 {
        return 0;
    }
    let mut f = 0;
    for (st, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
    ] {
        if s.f_flag & st != 0 {
            f |= ms;
        }
    }
    f
}

/// Open a pty in the container's devpts, make it our controlling terminal and stdio, and send
/// the master to whoever listens on the console socket.
fn setup_console(sock: BorrowedFd<'_>, size: Option<(u16, u16)>) -> io::Result<()> {
    let master = sys::openat(None, c"/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY, 0)?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to int.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TIOCGPTPEER returns a new descriptor for the pty's peer.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ takes a pointer to winsize.
        unsafe { libc::ioctl(slave, libc::TIOCSWINSZ, &ws) };
    }
    sys::send_fd(sock, b"c", master.as_raw_fd())?;
    drop(master);
    // SAFETY: setsid has no memory effects; we are not a group leader after clone.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TIOCSCTTY takes an int argument.
    if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    for fd in 0..3 {
        sys::dup2(slave, fd)?;
    }
    if slave > 2 {
        // SAFETY: slave is our own descriptor, now duplicated onto stdio.
        unsafe { libc::close(slave) };
    }
    Ok(())
}
