//! `create`: validate, make the state dir and cgroups, prepare the child's plan, clone3 into the
//! new namespaces (and cgroup v2 directory), and wait for the child to report. A failure at any
//! point undoes everything done so far.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::{proc_stat, validate_id, Container, Record};
use crate::cgroups::{self, Cgroup, Host};
use crate::error::{Error, IoContext, Result};
use crate::hooks::{in_container, Kind};
use crate::init::{self, ChildPlan, DeviceNode, Failure, Gate, PlanNames, Report, RootfsPlan};
use crate::mounts::{self, cstring, CgroupMountCtx, Target};
use crate::seccomp_agent::Agent;
use crate::spec::{self, Bundle};
use crate::sys::{self, Forked};

/// What `create` and `run` are asked to do.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    /// The state root (`--root`).
    pub root: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    /// Descriptors to become the container's stdin/stdout/stderr (the caller's own when None).
    pub stdio: Option<[RawFd; 3]>,
    /// Library only ([`create_parked`]): stop the init before its program.
    pub park: bool,
}

/// A container whose init is set up (and, for `run`, already exec'd).
pub struct Spawned {
    pub container: Container,
    /// The init's pidfd; the caller is its parent, so `waitid(P_PIDFD)` reaps it.
    pub pidfd: OwnedFd,
    /// With process.terminal and no console socket: the pty master, for the caller to relay.
    pub console: Option<OwnedFd>,
}

/// OCI `create`: the init waits on exec.fifo until `start`. The caller becomes the init's
/// parent (the shim calls this in-process and reaps it through `Spawned::pidfd`).
pub fn create(opts: &CreateOptions) -> Result<Spawned> {
    spawn(opts, Mode::Create)
}

/// A container created parked: everything set up but its program, which its init waits
/// for (see `init::late`). [`claim`] gives it one; dropping it leaves the init waiting, so
/// a caller that gives up kills it and deletes the container.
pub struct Parked {
    spawned: Spawned,
    root: PathBuf,
    sync: OwnedFd,
    plan: ChildPlan,
    names: PlanNames,
    /// The parked config without its program (what a claim's must equal).
    spec: Spec,
    _arena: init::late::ArenaMemory,
}

impl Parked {
    pub fn container(&self) -> &Container {
        &self.spawned.container
    }

    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.spawned.pidfd.as_fd()
    }
}

/// `create`, stopped before the program: a container made ahead of the request that will
/// name its program. Not for a terminal, hooks, a user namespace or a seccomp notify
/// listener (refused); `opts.park` is implied.
pub fn create_parked(opts: &CreateOptions) -> Result<Parked> {
    let opts = CreateOptions {
        park: true,
        ..opts.clone()
    };
    let (spawned, parts) = spawn_parts(&opts, Mode::Create)?;
    let (sync, plan, names, spec, arena) = parts.expect("parked");
    Ok(Parked {
        spawned,
        root: opts.root.clone(),
        sync,
        plan,
        names,
        spec: without_program(&spec),
        _arena: arena,
    })
}

/// The parked container's program, from `bundle`'s config.json: the config must be the
/// parked one but for `process` args, env, cwd, user and rlimits. On success the container
/// is created as by `create` (its init waits on exec.fifo); on failure it is destroyed.
pub fn claim(mut p: Parked, bundle: &Path) -> Result<Spawned> {
    let claimed = (|| {
        let new = spec::load(bundle)?;
        let config = new.dir.join("config.json");
        if without_program(&new.spec) != p.spec {
            return Err(Error::InvalidConfig {
                path: config,
                msg: "differs from the parked container's in more than its program".into(),
            });
        }
        let process = new.spec.process().as_ref().expect("validated");
        let mut names = PlanNames::default();
        let got = super::process::plan(process, &config, None, None, &mut names)?;
        let pp = &mut p.plan.process;
        pp.rlimits = got.rlimits;
        pp.uid = got.uid;
        pp.gid = got.gid;
        pp.additional_gids = got.additional_gids;
        pp.umask = got.umask;
        pp.cwd = got.cwd;
        pp.exec_candidates = got.exec_candidates;
        pp.argv = got.argv;
        pp.envp = got.envp;
        p.names.rlimits = names.rlimits;
        let msg = init::late::encode(pp).ok_or_else(|| Error::InvalidConfig {
            path: config.clone(),
            msg: "the program is too large for a parked container".into(),
        })?;
        sys::write_all(p.sync.as_fd(), &msg)
            .map_err(|e| Error::sys("send the program to the parked container", e))?;
        // The parent's view: what follows is the init's ready report, as for `create`.
        p.plan.park = None;
        await_child(&p.plan, &p.names, &p.sync, Mode::Create, None)
    })();
    match claimed {
        Ok(()) => Ok(p.spawned),
        Err(e) => {
            let _ = sys::pidfd_send_signal(p.spawned.pidfd.as_fd(), libc::SIGKILL);
            let _ = sys::waitid_pidfd(p.spawned.pidfd.as_fd(), false);
            let id = p.spawned.container.record.id.clone();
            let _ = super::delete(&p.root, &id, true);
            Err(e)
        }
    }
}

/// `spec` with the program a parked container is given late taken out.
fn without_program(spec: &Spec) -> Spec {
    let mut s = spec.clone();
    if let Some(p) = s.process_mut() {
        p.set_args(None)
            .set_env(None)
            .set_cwd(PathBuf::from("/"))
            .set_user(Default::default())
            .set_rlimits(None);
    }
    s
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Wait on exec.fifo for `start`.
    Create,
    /// Exec right away; a terminal without console socket is relayed by the caller.
    Run,
}

/// Undoes a half-made container unless disarmed.
struct Cleanup<'a> {
    dir: &'a Path,
    cgroup: Option<&'a Cgroup>,
    /// The rootfs bound in our own mount namespace (a container without one) and the mount it
    /// was on before, to detach.
    host_rootfs: Option<(&'a Path, u64)>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(cg) = self.cgroup {
            let _ = cg.signal_all(libc::SIGKILL);
            let _ = cg.destroy();
        }
        if let Some((rootfs, under)) = self.host_rootfs {
            let _ = super::detach_host_rootfs(rootfs, under);
        }
        let _ = fs::remove_dir_all(self.dir);
    }
}

pub(super) fn spawn(opts: &CreateOptions, mode: Mode) -> Result<Spawned> {
    spawn_parts(opts, mode).map(|(s, _)| s)
}

/// What a parked create keeps for the claim: the sync socket, the plan, its names, the
/// config and the arena.
type ParkedParts = (OwnedFd, ChildPlan, PlanNames, Spec, init::late::ArenaMemory);

fn spawn_parts(opts: &CreateOptions, mode: Mode) -> Result<(Spawned, Option<ParkedParts>)> {
    validate_id(&opts.id)?;
    let bundle = spec::load(&opts.bundle)?;
    let spec = &bundle.spec;
    let process = spec.process().as_ref().expect("validated");
    let linux = spec.linux().as_ref().expect("validated");
    if !has_mount_ns(linux) {
        // The container inherits our mount namespace (config-linux.md: a namespace type not
        // listed is the runtime's). What only a namespace of its own can confine is refused.
        let confined = [
            (
                linux.masked_paths().as_ref().is_some_and(|v| !v.is_empty()),
                "maskedPaths",
            ),
            (
                linux
                    .readonly_paths()
                    .as_ref()
                    .is_some_and(|v| !v.is_empty()),
                "readonlyPaths",
            ),
            (linux.rootfs_propagation().is_some(), "rootfsPropagation"),
        ];
        if let Some((_, what)) = confined.iter().find(|(set, _)| *set) {
            return Err(Error::InvalidConfig {
                path: bundle.dir.join("config.json"),
                msg: format!("{what} needs a mount namespace of the container's own"),
            });
        }
    }
    let terminal = process.terminal().unwrap_or(false);
    if opts.park {
        let hooks = spec.hooks().as_ref().is_some_and(|h| {
            h.prestart().is_some()
                || h.create_runtime().is_some()
                || h.create_container().is_some()
                || h.start_container().is_some()
                || h.poststart().is_some()
                || h.poststop().is_some()
        });
        let userns = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::User);
        let listener = linux
            .seccomp()
            .as_ref()
            .is_some_and(|s| s.listener_path().is_some());
        let why = [
            (mode != Mode::Create, "only a create"),
            (terminal, "a terminal"),
            (hooks, "hooks"),
            (userns, "a user namespace"),
            (listener, "a seccomp notify listener"),
        ];
        if let Some((_, what)) = why.iter().find(|(set, _)| *set) {
            return Err(Error::InvalidConfig {
                path: bundle.dir.join("config.json"),
                msg: format!("a parked container cannot have {what}"),
            });
        }
    }
    // Compiled before any side effect: a filter libseccomp refuses changes nothing.
    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(|s| crate::seccomp::cache::compile(&opts.root, s))
        .transpose()?;
    let (console_child, console_parent) =
        super::console_ends(terminal, opts.console_socket.as_deref())?;

    let host = Host::detect()?;
    let cgroup = Cgroup::plan(
        &host,
        linux.cgroups_path().as_deref(),
        &opts.id,
        linux.resources().as_ref(),
    );
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&opts.root)
        .ctx("create state root", &opts.root)?;
    let dir = Container::dir_of(&opts.root, &opts.id);
    match fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(Error::Exists(opts.id.clone()))
        }
        Err(e) => return Err(Error::io("create state dir", &dir, e)),
    }
    let host_mount_ns = !has_mount_ns(linux);
    let mut cleanup = Cleanup {
        dir: &dir,
        cgroup: None,
        host_rootfs: None,
        armed: true,
    };

    // Only the v2 directory is needed before clone; the rest is made while the child works.
    cleanup.cgroup = Some(&cgroup);
    cgroup.create_unified(&host, linux.resources().as_ref())?;

    let gate = match mode {
        Mode::Create => {
            let fifo = dir.join(super::FIFO);
            let c = cgroups::cstr(&fifo)?;
            // SAFETY: c is a valid C string.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o622) } != 0 {
                return Err(Error::io("mkfifo", &fifo, std::io::Error::last_os_error()));
            }
            // Exactly 0622 whatever the umask: an init mapped to an unprivileged host uid (a
            // user namespace) must still be able to open it for writing.
            fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
                .ctx("chmod", &fifo)?;
            Gate::Fifo(sys::openat(None, &c, libc::O_PATH, 0).ctx("open", &fifo)?)
        }
        Mode::Run => Gate::Immediate,
    };

    let (sync_r, sync_w) = sys::socketpair().map_err(|e| Error::sys("socketpair", e))?;
    let (go_r, go_w) = sys::pipe().map_err(|e| Error::sys("pipe", e))?;
    let prepared = prepare(&bundle, &host, &cgroup, opts, gate, console_child, seccomp)?;
    let Prepared {
        mut plan,
        names,
        clone_flags,
        pidns,
        id_maps,
    } = prepared;
    plan.sync = sync_w.as_raw_fd();
    plan.go = Some(go_r.as_raw_fd());
    plan.go_parent = Some(go_w.as_raw_fd());
    let arena = opts.park.then(|| {
        let (arena, memory) = init::late::Arena::new();
        plan.park = Some(arena);
        memory
    });
    let pidns = pidns
        .as_ref()
        .map(|(fd, path)| (fd.as_fd(), path.as_path()));
    let host_rootfs_mount = if host_mount_ns {
        let c = cgroups::cstr(&bundle.rootfs)?;
        let under = sys::mount_id(&c).map_err(|e| Error::io("statx", &bundle.rootfs, e))?;
        cleanup.host_rootfs = Some((&bundle.rootfs, under));
        Some(under)
    } else {
        None
    };
    let (pid, pidfd) = fork_child(&mut plan, &cgroup, clone_flags, pidns)?;
    drop(sync_w);
    drop(go_r);
    let released = release(
        spec,
        &opts.id,
        &bundle.dir,
        pid,
        &plan,
        &names,
        id_maps.as_ref(),
        &cgroup,
        (&sync_r, go_w),
        mode,
    );
    if let Err(e) = released {
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        let _ = sys::waitid_pidfd(pidfd.as_fd(), false);
        // The container is destroyed (OCI lifecycle step 12), then the poststop hooks run
        // (step 13), whatever stage create failed at once the init existed.
        drop(cleanup);
        let state = crate::hooks::state_json(spec, &opts.id, 0, "stopped", &bundle.dir);
        crate::hooks::run_warn(spec, crate::hooks::Kind::Poststop, &state);
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

    let pid_start = proc_stat(pid).map_or(0, |(s, _)| s);
    let annotations: BTreeMap<String, String> = spec
        .annotations()
        .clone()
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    let container = Container {
        dir: dir.clone(),
        record: Record {
            id: opts.id.clone(),
            pid,
            pid_start,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: crate::time::now(),
            oci_version: spec.version().clone(),
            annotations,
            cgroup: cgroup.clone(),
            hooks: !crate::hooks::of(spec, crate::hooks::Kind::Poststart).is_empty()
                || !crate::hooks::of(spec, crate::hooks::Kind::Poststop).is_empty(),
            host_rootfs_mount,
        },
    };
    let saved = container.save().and_then(|()| match &opts.pid_file {
        Some(p) => write_pid_file(p, pid),
        None => Ok(()),
    });
    if let Err(e) = saved {
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        let _ = sys::waitid_pidfd(pidfd.as_fd(), false);
        drop(cleanup);
        let state = crate::hooks::state_json(spec, &opts.id, 0, "stopped", &bundle.dir);
        crate::hooks::run_warn(spec, crate::hooks::Kind::Poststop, &state);
        return Err(e);
    }
    cleanup.armed = false;
    let spawned = Spawned {
        container,
        pidfd,
        console,
    };
    let parked = arena.map(|a| (sync_r, plan, names, bundle.spec.clone(), a));
    Ok((spawned, parked))
}

/// From a cloned init to one that is ready (create) or has exec'd (run): its id maps, the
/// state the in-container hooks read, the prestart and createRuntime hooks, the v1 cgroups and
/// limits, then the go byte, and the init's own report.
#[allow(clippy::too_many_arguments)]
fn release(
    spec: &Spec,
    id: &str,
    bundle: &Path,
    pid: libc::pid_t,
    plan: &ChildPlan,
    names: &PlanNames,
    id_maps: Option<&(Vec<u8>, Vec<u8>)>,
    cgroup: &Cgroup,
    (sync_r, go_w): (&OwnedFd, OwnedFd),
    mode: Mode,
) -> Result<()> {
    if let Some((uid_map, gid_map)) = id_maps {
        write_id_map(pid, "uid_map", uid_map)?;
        write_id_map(pid, "gid_map", gid_map)?;
    }
    let state = crate::hooks::state_json(spec, id, pid, "creating", bundle);
    if let Some(h) = &plan.create_hooks {
        h.write_state(&state)?;
    }
    if let Some(h) = &plan.start_hooks {
        h.write_state(&crate::hooks::state_json(spec, id, pid, "created", bundle))?;
    }
    // prestart and createRuntime: the namespaces exist, the root is not set up yet (the
    // child waits for the go byte).
    crate::hooks::run(spec, crate::hooks::Kind::Prestart, &state)?;
    crate::hooks::run(spec, crate::hooks::Kind::CreateRuntime, &state)?;
    let agent = plan
        .process
        .seccomp
        .as_ref()
        .and_then(|s| s.listener.as_ref())
        .map(|l| Agent::new(l, spec.version(), pid, &state));

    // While the child prepares its rootfs: the v1 cgroups and every limit. Then the child
    // joins them itself.
    let linux = spec.linux().as_ref().expect("validated");
    let joined = cgroup
        .create_rest(linux.resources().as_ref())
        .and_then(|()| {
            sys::write_all(go_w.as_fd(), b"g").map_err(|e| Error::sys("release container init", e))
        });
    drop(go_w);
    // If the child failed before taking the go byte, its own report says why; one that only
    // says the go byte never came is our failure, which `e` tells better.
    match joined {
        Ok(()) => await_child(plan, names, sync_r, mode, agent.as_ref()),
        Err(e) => match await_child_after(plan, names, sync_r, mode, agent.as_ref(), true) {
            Err(child @ Error::Init(_)) => Err(child),
            _ => Err(e),
        },
    }
}

/// clone3 the child that runs `plan`: in `pidns` when given (entered for our next child only,
/// then restored), born in the container's cgroup v2 directory where the kernel allows it
/// (CLONE_INTO_CGROUP; otherwise the child joins it like the v1 ones). Returns the child's pid
/// and pidfd; the child itself never returns from here.
pub(super) fn fork_child(
    plan: &mut ChildPlan,
    cgroup: &Cgroup,
    clone_flags: u64,
    pidns: Option<(BorrowedFd<'_>, &Path)>,
) -> Result<(libc::pid_t, OwnedFd)> {
    let argv = mounts::null_terminated(&plan.process.argv);
    let envp = mounts::null_terminated(&plan.process.envp);
    let clone_into = cgroup.open_unified()?;
    let own_pidns = match pidns {
        Some((fd, path)) => {
            let own = sys::openat(None, c"/proc/self/ns/pid", libc::O_RDONLY, 0)
                .ctx("open", "/proc/self/ns/pid")?;
            sys::setns(fd, libc::CLONE_NEWPID).ctx("setns pid", path)?;
            Some(own)
        }
        None => None,
    };
    plan.cgroup_join = join_cstrings(cgroup, clone_into.is_some())?;
    if plan.join_userns.is_some() {
        // The child joins its cgroups itself: the helper's clone3 stays simple.
        plan.cgroup_join = join_cstrings(cgroup, false)?;
        let forked = fork_in_userns(plan, clone_flags, &argv, &envp);
        if let Some(own) = &own_pidns {
            let restored = sys::setns(own.as_fd(), libc::CLONE_NEWPID);
            if let (Ok((_, pidfd)), Err(_)) = (&forked, &restored) {
                let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
                let _ = sys::waitid_pidfd(pidfd.as_fd(), false);
            }
            restored.ctx("restore pid namespace", "/proc/self/ns/pid")?;
        }
        return forked;
    }
    // SAFETY: berth-runtime (and the shim that embeds it) is single-threaded when it creates a
    // process; the child only runs `child_main`, which makes syscalls and exits or execs.
    let mut forked = unsafe { sys::clone3(clone_flags, clone_into.as_ref().map(|f| f.as_fd())) };
    if clone_into.is_some() && forked.is_err() {
        // Some v2 set-ups refuse CLONE_INTO_CGROUP (a threaded subtree, say): the child then
        // joins through cgroup.procs.
        crate::log::warn_once(
            "clone_into_cgroup",
            "clone3 refused CLONE_INTO_CGROUP; the container joins its cgroup after clone",
        );
        plan.cgroup_join = join_cstrings(cgroup, false)?;
        // SAFETY: as above.
        forked = unsafe { sys::clone3(clone_flags, None) };
    }
    // The child diverges here, before any more of this function runs in it.
    if let Ok(Forked::Child) = forked {
        init::child_main(plan, &argv, &envp);
    }
    if let Some(own) = &own_pidns {
        let restored = sys::setns(own.as_fd(), libc::CLONE_NEWPID);
        if let Ok(Forked::Parent { pidfd, .. }) = &forked {
            if restored.is_err() {
                let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
                let _ = sys::waitid_pidfd(pidfd.as_fd(), false);
            }
        }
        restored.ctx("restore pid namespace", "/proc/self/ns/pid")?;
    }
    match forked.map_err(|e| Error::sys("clone3", e))? {
        Forked::Child => unreachable!("the child never returns from child_main"),
        Forked::Parent { pid, pidfd } => Ok((pid, pidfd)),
    }
}

/// Joining a user namespace by path: the new namespaces must belong to it (as runc makes
/// them), so they cannot come from our clone3. A short-lived helper joins the user namespace
/// first and clones the init with the namespace flags and CLONE_PARENT — the init is still our
/// child, reaped through its pidfd, which the helper passes back before it exits. Its other
/// namespaces given by path are joined by the init, after the user namespace.
fn fork_in_userns(
    plan: &ChildPlan,
    clone_flags: u64,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> Result<(libc::pid_t, OwnedFd)> {
    let (ours, theirs) = sys::socketpair().map_err(|e| Error::sys("socketpair", e))?;
    let (userns, userns_path) = plan.join_userns.as_ref().expect("checked by the caller");
    // SAFETY: single-threaded, as in fork_child; the helper only makes syscalls and exits.
    match unsafe { sys::clone3(0, None) }.map_err(|e| Error::sys("clone3", e))? {
        Forked::Child => {
            drop(ours);
            let step = (|| {
                sys::setns(userns.as_fd(), libc::CLONE_NEWUSER).map_err(|e| (0u32, e))?;
                // SAFETY: the helper is single-threaded; the init only runs child_main.
                match unsafe { sys::clone3(clone_flags | sys::CLONE_PARENT, None) } {
                    Ok(Forked::Child) => init::child_main(plan, argv, envp),
                    Ok(Forked::Parent { pidfd, .. }) => {
                        sys::send_fd(theirs.as_fd(), &[0u8], pidfd.as_raw_fd()).map_err(|e| (2, e))
                    }
                    Err(e) => Err((1, e)),
                }
            })();
            if let Err((what, e)) = step {
                let mut msg = [0u8; 8];
                msg[..4].copy_from_slice(&what.to_ne_bytes());
                msg[4..].copy_from_slice(&sys::errno_of(&e).to_ne_bytes());
                let _ = sys::write_all(theirs.as_fd(), &msg);
            }
            // SAFETY: _exit is async-signal-safe; nothing of ours to tear down.
            unsafe { libc::_exit(0) }
        }
        Forked::Parent { pidfd: helper, .. } => {
            drop(theirs);
            let mut msg = [0u8; 8];
            let got = sys::recv_maybe_fd(ours.as_fd(), &mut msg);
            let _ = sys::waitid_pidfd(helper.as_fd(), false);
            let name = userns_path.to_string_lossy();
            match got.map_err(|e| Error::sys("receive the container init's pidfd", e))? {
                (_, Some(pidfd)) => {
                    let pid = sys::pidfd_pid(pidfd.as_fd())
                        .map_err(|e| Error::sys("read the container init's pid", e))?;
                    Ok((pid, pidfd))
                }
                (8, None) => {
                    let what = u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]);
                    let errno = i32::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]);
                    let err = std::io::Error::from_raw_os_error(errno);
                    Err(Error::Init(match what {
                        0 => format!("setns user namespace {name}: {err}"),
                        1 => format!("clone3 in user namespace {name}: {err}"),
                        _ => format!("pass the container init's pidfd: {err}"),
                    }))
                }
                _ => Err(Error::Init(format!(
                    "the helper joining user namespace {name} exited without a word"
                ))),
            }
        }
    }
}

/// Read the child's reports: a failure becomes an error naming the step; `Create` waits for
/// READY, `Run` for the socket to close on exec. A seccomp notify listener on the way is
/// passed to `agent`.
pub(super) fn await_child(
    plan: &ChildPlan,
    names: &PlanNames,
    sync: &OwnedFd,
    mode: Mode,
    agent: Option<&Agent>,
) -> Result<()> {
    await_child_after(plan, names, sync, mode, agent, false)
}

/// As `await_child`; when `we_failed` (the go byte was never sent), a report that the child
/// gave up waiting for it is no news: Ok, so the caller reports its own error.
fn await_child_after(
    plan: &ChildPlan,
    names: &PlanNames,
    sync: &OwnedFd,
    mode: Mode,
    agent: Option<&Agent>,
    we_failed: bool,
) -> Result<()> {
    let mut buf = [0u8; Report::SIZE];
    let (mut got, mut fd) = recv_full(sync.as_fd(), &mut buf)?;
    while got == Report::SIZE && Report::from_bytes(&buf).tag == init::TAG_SECCOMP_LISTENER {
        let listener = fd.take().ok_or_else(|| {
            Error::Init("the seccomp listener report came without a descriptor".into())
        })?;
        match agent {
            Some(a) => a.send(listener)?,
            None => {
                return Err(Error::Init(
                    "container init sent a seccomp listener nobody asked for".into(),
                ))
            }
        }
        (got, fd) = recv_full(sync.as_fd(), &mut buf)?;
    }
    if got == Report::SIZE {
        let r = Report::from_bytes(&buf);
        if let Some(f) = Failure::from_report(&r) {
            if we_failed && f.step == init::Step::AwaitCgroup {
                return Ok(());
            }
            let mut detail = vec![0u8; (r.detail_len as usize).min(Report::MAX_DETAIL)];
            let n = sys::read_full(sync.as_fd(), &mut detail)
                .map_err(|e| Error::sys("read from container init", e))?;
            return Err(Error::Init(init::describe(plan, &f, names, &detail[..n])));
        }
        // A parked init reports parked where another reports ready.
        let ready = match plan.park {
            Some(_) => init::TAG_PARKED,
            None => init::TAG_READY,
        };
        if r.tag == ready && mode == Mode::Create {
            return Ok(());
        }
    }
    if got == 0 && mode == Mode::Run {
        // The pipe is O_CLOEXEC: it closed without a report because execve succeeded (the
        // program may well have finished already).
        return Ok(());
    }
    Err(Error::Init(
        "container init exited without reporting".into(),
    ))
}

/// recvmsg until `buf` is full or the writer is gone; returns how much was read and a
/// descriptor that came with it.
fn recv_full(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, Option<OwnedFd>)> {
    let mut got = 0;
    let mut passed = None;
    while got < buf.len() {
        let (n, f) = sys::recv_maybe_fd(fd, &mut buf[got..])
            .map_err(|e| Error::sys("read from container init", e))?;
        if f.is_some() {
            passed = f;
        }
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok((got, passed))
}

/// Read until `buf` is full or the writer is gone; returns how much was read.
fn join_cstrings(cgroup: &Cgroup, born_in_unified: bool) -> Result<Vec<CString>> {
    cgroup
        .join_files(born_in_unified)
        .iter()
        .map(|p| cgroups::cstr(p))
        .collect()
}

/// The parent writes the child's id maps (it has the privilege the child lacks outside).
fn write_id_map(pid: libc::pid_t, file: &str, map: &[u8]) -> Result<()> {
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    fs::write(&path, map).ctx("write", &path)
}

pub(super) fn write_pid_file(path: &Path, pid: libc::pid_t) -> Result<()> {
    let tmp = path.with_extension("berth-tmp");
    fs::write(&tmp, pid.to_string()).ctx("write pid file", &tmp)?;
    fs::rename(&tmp, path).ctx("rename pid file", path)
}

struct Prepared {
    plan: ChildPlan,
    names: PlanNames,
    clone_flags: u64,
    pidns: Option<(OwnedFd, PathBuf)>,
    /// uid_map and gid_map contents for a new user namespace, written by the parent.
    id_maps: Option<(Vec<u8>, Vec<u8>)>,
}

fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => 0x80,
    }
}

/// Turn the validated spec into the child's plan; every allocation happens here.
fn prepare(
    bundle: &Bundle,
    host: &Host,
    cgroup: &Cgroup,
    opts: &CreateOptions,
    gate: Gate,
    console: Option<OwnedFd>,
    seccomp: Option<crate::seccomp::Program>,
) -> Result<Prepared> {
    let spec: &Spec = &bundle.spec;
    let config = bundle.dir.join("config.json");
    let process = spec.process().as_ref().expect("validated");
    let linux = spec.linux().as_ref().expect("validated");
    let mut names = PlanNames::default();

    let mut clone_flags: u64 = 0;
    let mut join = Vec::new();
    let mut pidns = None;
    let mut new_cgroupns = false;
    let mut new_userns = false;
    let mut join_userns = None;
    let mut new_timens = false;
    for ns in linux.namespaces().iter().flatten() {
        let flag = ns_flag(ns.typ());
        match ns.path() {
            None => {
                clone_flags |= flag as u64;
                match ns.typ() {
                    LinuxNamespaceType::Cgroup => new_cgroupns = true,
                    LinuxNamespaceType::User => new_userns = true,
                    LinuxNamespaceType::Time => new_timens = true,
                    _ => {}
                }
            }
            Some(p) => {
                let fd = sys::openat(None, &cgroups::cstr(p)?, libc::O_RDONLY, 0)
                    .ctx("open namespace", p)?;
                if ns.typ() == LinuxNamespaceType::Pid {
                    pidns = Some((fd, p.clone()));
                } else if ns.typ() == LinuxNamespaceType::User {
                    join_userns = Some((fd, cstring(p.as_os_str().as_bytes(), &config)?));
                } else {
                    names
                        .join
                        .push(format!("{:?} namespace {}", ns.typ(), p.display()));
                    join.push((fd, flag));
                }
            }
        }
    }

    // The parent moves the child into its v1 cgroups after clone, so a new cgroup namespace
    // is entered only once that is done (its root is the cgroup at the time of unshare).
    let unshare_cgroupns = new_cgroupns;
    clone_flags &= !(libc::CLONE_NEWCGROUP as u64);
    // A time namespace's offsets must be written before anyone is in it: the child unshares
    // it and writes them; the program enters it at execve.
    clone_flags &= !(init::CLONE_NEWTIME as u64);
    let timens_offsets = if new_timens {
        let mut s = String::new();
        for (clock, off) in linux.time_offsets().iter().flatten() {
            s.push_str(&format!(
                "{clock} {} {}\n",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            ));
        }
        Some(cstring(s.as_bytes(), &config)?)
    } else {
        None
    };
    let id_maps = if new_userns {
        let fmt = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> Vec<u8> {
            m.iter()
                .flatten()
                .map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size()))
                .collect::<String>()
                .into_bytes()
        };
        Some((fmt(linux.uid_mappings()), fmt(linux.gid_mappings())))
    } else {
        None
    };

    let hostname = spec
        .hostname()
        .as_deref()
        .filter(|h| !h.is_empty())
        .map(|h| cstring(h.as_bytes(), &config))
        .transpose()?;
    let domainname = spec
        .domainname()
        .as_deref()
        .filter(|h| !h.is_empty())
        .map(|h| cstring(h.as_bytes(), &config))
        .transpose()?;

    // In a user namespace, new or joined, device nodes are bind-mounted and the init becomes
    // the namespace's root once it is in it.
    let in_userns = new_userns || join_userns.is_some();
    let rootfs = prepare_rootfs(bundle, host, cgroup, new_cgroupns, in_userns, opts.no_pivot)?;

    let mut sysctls = Vec::new();
    for (k, v) in linux.sysctl().iter().flatten() {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        sysctls.push((
            cstring(path.as_bytes(), &config)?,
            cstring(v.as_bytes(), &config)?,
        ));
    }

    let process_plan = super::process::plan(process, &config, console, seccomp, &mut names)?;
    let create_hooks = in_container::Plan::new(spec, Kind::CreateContainer, &config)?;
    let start_hooks = in_container::Plan::new(spec, Kind::StartContainer, &config)?;

    let plan = ChildPlan {
        sync: -1,
        go: None,
        go_parent: None,
        cgroup_join: Vec::new(),
        stdio: opts.stdio,
        unshare_cgroupns,
        join,
        exec_root: None,
        hostname,
        domainname,
        rootfs: Some(rootfs),
        sysctls,
        process: process_plan,
        preserve_fds: opts.preserve_fds,
        gate,
        timens_offsets,
        userns_root: in_userns,
        join_userns,
        create_hooks,
        start_hooks,
        park: None,
    };
    Ok(Prepared {
        plan,
        names,
        clone_flags,
        pidns,
        id_maps,
    })
}

/// The devices every container gets in a fresh /dev (runc's defaults).
const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn prepare_rootfs(
    bundle: &Bundle,
    host: &Host,
    cgroup: &Cgroup,
    new_cgroupns: bool,
    userns: bool,
    no_pivot: bool,
) -> Result<RootfsPlan> {
    let spec = &bundle.spec;
    let linux = spec.linux().as_ref().expect("validated");
    let config = bundle.dir.join("config.json");
    let mounts = spec.mounts().clone().unwrap_or_default();
    let ctx = CgroupMountCtx {
        host,
        cgroup,
        new_cgroupns,
    };
    let mut planned = mounts::plan(&mounts, &bundle.dir, &ctx)?;
    // linux.mountLabel (checked against the host already): the SELinux context of the
    // filesystems we make.
    if let Some(label) = linux.mount_label().as_deref().filter(|l| !l.is_empty()) {
        for op in &mut planned.ops {
            let mounts::Op::Mount(m) = op else { continue };
            let takes = m
                .fstype
                .as_deref()
                .is_some_and(|t| crate::lsm::takes_mount_label(&t.to_string_lossy()));
            if takes {
                let data = m.data.as_deref().map(|d| d.to_string_lossy().into_owned());
                let labelled = crate::lsm::with_mount_label(data.as_deref(), label);
                m.data = Some(cstring(labelled.as_bytes(), &config)?);
            }
        }
    }
    // A bind-mounted /dev is the host's business; otherwise populate it as runc does.
    let dev_is_bind = mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    });
    let mut devices = Vec::new();
    let mut dev_symlinks = Vec::new();
    if !dev_is_bind {
        let mut seen = std::collections::HashSet::new();
        for d in linux.devices().iter().flatten() {
            let kind = match d.typ() {
                oci_spec::runtime::LinuxDeviceType::B => libc::S_IFBLK,
                oci_spec::runtime::LinuxDeviceType::P => libc::S_IFIFO,
                oci_spec::runtime::LinuxDeviceType::C | oci_spec::runtime::LinuxDeviceType::U => {
                    libc::S_IFCHR
                }
                oci_spec::runtime::LinuxDeviceType::A => {
                    return Err(Error::InvalidConfig {
                        path: config.clone(),
                        msg: format!("device {} has type 'a'", d.path().display()),
                    })
                }
            };
            seen.insert(d.path().clone());
            devices.push(DeviceNode {
                target: Target::new(d.path())?,
                mode: kind | (d.file_mode().unwrap_or(0o666) & 0o7777) as libc::mode_t,
                dev: libc::makedev(d.major() as u32, d.minor() as u32),
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
                host: userns
                    .then(|| cstring(d.path().as_os_str().as_bytes(), &config))
                    .transpose()?,
            });
        }
        for (path, major, minor) in DEFAULT_DEVICES {
            if seen.contains(Path::new(path)) {
                continue;
            }
            devices.push(DeviceNode {
                target: Target::new(Path::new(path))?,
                mode: libc::S_IFCHR | 0o666,
                dev: libc::makedev(major, minor),
                uid: 0,
                gid: 0,
                host: userns
                    .then(|| cstring(path.as_bytes(), &config))
                    .transpose()?,
            });
        }
        let mut links = vec![
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
            ("/dev/ptmx", "pts/ptmx"),
        ];
        if Path::new("/proc/kcore").exists() {
            links.push(("/dev/core", "/proc/kcore"));
        }
        for (at, target) in links {
            dev_symlinks.push((
                Target::new(Path::new(at))?,
                cstring(target.as_bytes(), &config)?,
            ));
        }
    }
    let to_c = |v: &Option<Vec<String>>| -> Result<Vec<CString>> {
        v.iter()
            .flatten()
            .map(|p| cstring(p.as_bytes(), &config))
            .collect()
    };
    let explicit = linux
        .rootfs_propagation()
        .as_deref()
        .map(|p| mounts::propagation_flag(p).expect("validated"));
    // Before the rootfs is bound, "/" gets the requested propagation, except unbindable: the
    // bind of a directory on an unbindable mount fails (EINVAL), so that one is only set on the
    // new root, below.
    let propagation = match explicit {
        Some(p) if p & libc::MS_UNBINDABLE == 0 => p,
        _ => libc::MS_SLAVE | libc::MS_REC,
    };
    // In our own namespace "/" keeps its propagation and nothing is pivoted.
    let parent = if has_mount_ns(linux) {
        shared_parent_mount(&bundle.rootfs, propagation)?
    } else {
        None
    };
    let private_parent = match parent {
        Some(p) => Some(cstring(p.as_os_str().as_bytes(), &config)?),
        None => None,
    };
    Ok(RootfsPlan {
        rootfs: cstring(bundle.rootfs.as_os_str().as_bytes(), &config)?,
        propagation,
        private_parent,
        ops: planned.ops,
        // In a new user namespace nothing can be created before the parent has written the
        // id maps (an unmapped fsuid cannot make files): wait for it before the first mount.
        cgroup_from: if userns { 0 } else { planned.cgroup_from },
        devices,
        dev_symlinks,
        no_pivot,
        host_mount_ns: !has_mount_ns(linux),
        masked: to_c(linux.masked_paths())?,
        readonly: to_c(linux.readonly_paths())?,
        readonly_root: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        // As runc: the rootfs's own propagation is set again on "/" once it is the root.
        root_propagation_after: explicit,
    })
}

/// Whether the container has a mount namespace of its own (new or joined).
fn has_mount_ns(linux: &oci_spec::runtime::Linux) -> bool {
    linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Mount)
}

/// The mount holding the rootfs if it will be shared once "/" has `propagation` in the
/// container's mount namespace (a copy of ours: a shared mount stays in its peer group). The
/// table is only read when that can happen: the default rslave, and rprivate, make every mount
/// unshared.
fn shared_parent_mount(rootfs: &Path, propagation: libc::c_ulong) -> Result<Option<PathBuf>> {
    let recursive = propagation & libc::MS_REC != 0;
    let to_shared = propagation & libc::MS_SHARED != 0;
    if recursive && !to_shared {
        return Ok(None);
    }
    let info = "/proc/self/mountinfo";
    let table = std::fs::read_to_string(info).ctx("read", info)?;
    let real = std::fs::canonicalize(rootfs).ctx("resolve the rootfs", rootfs)?;
    let Some((point, shared)) = mounts::parent_mount(&table, &real) else {
        return Ok(None);
    };
    let is_root = point == Path::new("/");
    let shared_after = if to_shared {
        shared || recursive || is_root
    } else {
        shared && !is_root
    };
    Ok(shared_after.then_some(point))
}
