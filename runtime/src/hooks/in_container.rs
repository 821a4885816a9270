//! `createContainer` and `startContainer` hooks: run by the container's init itself, between
//! clone and exec, so they live in every namespace of the container. `createContainer` runs
//! once the mounts are made and before pivot_root (its path resolves in the runtime's root,
//! the cwd is the rootfs); `startContainer` runs after `start` released the init, right before
//! the program's execve (its path resolves in the container's root).
//!
//! The runtime prepares everything before clone — C strings, argv and envp arrays, a memfd
//! that it fills with the state JSON once the pid is known and then seals — so the init only
//! makes syscalls here: no allocation, no locks, no logging.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::Hook;

use super::Kind;
use crate::error::{Error, Result};
use crate::mounts::{cstring, null_terminated};
use crate::sys::{self, Forked};

/// One hook, ready for execve.
#[derive(Debug)]
pub struct Planned {
    pub path: CString,
    /// Keeps the strings `argv` and `envp` point into alive.
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// Seconds, as configured (None: wait as long as it takes).
    pub timeout: Option<i64>,
}

/// The hooks of one kind and the state they read on stdin.
#[derive(Debug)]
pub struct Plan {
    pub kind: Kind,
    pub hooks: Vec<Planned>,
    /// A memfd holding the state JSON, written and sealed by the runtime after clone.
    pub state: OwnedFd,
}

impl Plan {
    /// The hooks of `kind` in `spec` (None when there are none). `config` names errors.
    pub fn new(spec: &oci_spec::runtime::Spec, kind: Kind, config: &Path) -> Result<Option<Plan>> {
        let hooks = super::of(spec, kind);
        if hooks.is_empty() {
            return Ok(None);
        }
        let hooks = hooks
            .iter()
            .map(|h| planned(h, config))
            .collect::<Result<Vec<_>>>()?;
        let state = sys::memfd(c"berth-hook-state").map_err(|e| Error::sys("memfd_create", e))?;
        Ok(Some(Plan { kind, hooks, state }))
    }

    /// Fill the state memfd (once, before the init reads it) and seal it, so a hook cannot
    /// change what the next one reads.
    pub fn write_state(&self, state: &[u8]) -> Result<()> {
        sys::write_all(self.state.as_fd(), state)
            .and_then(|()| sys::seal_all(self.state.as_fd()))
            .map_err(|e| Error::sys("write the hooks' state", e))
    }
}

fn planned(h: &Hook, config: &Path) -> Result<Planned> {
    let path = cstring(h.path().as_os_str().as_encoded_bytes(), config)?;
    let args = h.args().clone().unwrap_or_default();
    let mut strings = Vec::new();
    if args.is_empty() {
        strings.push(path.clone());
    }
    for a in &args {
        strings.push(cstring(a.as_bytes(), config)?);
    }
    let argc = strings.len();
    for e in h.env().iter().flatten() {
        strings.push(cstring(e.as_bytes(), config)?);
    }
    let argv = null_terminated(&strings[..argc]);
    let envp = null_terminated(&strings[argc..]);
    Ok(Planned {
        path,
        _strings: strings,
        argv,
        envp,
        timeout: h.timeout().filter(|&t| t > 0),
    })
}

/// How a hook failed; travels to the runtime as (errno, status) in the init's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Exit(i32),
    Signal(i32),
    TimedOut,
    /// execve of the hook failed with this errno.
    Exec(i32),
    /// Making the pipes or the process failed with this errno.
    Spawn(i32),
}

const SIGNALED: i32 = 0x100;
const TIMED_OUT: i32 = 0x200;
const EXEC: i32 = 0x201;
const SPAWN: i32 = 0x202;

impl Outcome {
    /// (errno, status) for the report.
    pub fn encode(self) -> (i32, i32) {
        match self {
            Outcome::Exit(c) => (0, c & 0xff),
            Outcome::Signal(s) => (0, SIGNALED + (s & 0xff)),
            Outcome::TimedOut => (0, TIMED_OUT),
            Outcome::Exec(e) => (e, EXEC),
            Outcome::Spawn(e) => (e, SPAWN),
        }
    }

    pub fn decode(errno: i32, status: i32) -> Outcome {
        match status {
            EXEC => Outcome::Exec(errno),
            SPAWN => Outcome::Spawn(errno),
            TIMED_OUT => Outcome::TimedOut,
            s if s >= SIGNALED => Outcome::Signal(s - SIGNALED),
            s => Outcome::Exit(s),
        }
    }
}

/// The message for a failed hook, in the words the runtime-side hooks use.
pub fn describe(
    kind: Kind,
    index: usize,
    path: &str,
    timeout: Option<i64>,
    outcome: Outcome,
    output: &[u8],
) -> String {
    let out = String::from_utf8_lossy(output);
    let out = out.trim();
    let what = match outcome {
        Outcome::Exit(c) => format!("exit status {c}: {out}"),
        Outcome::Signal(s) => format!("killed by signal {s}: {out}"),
        Outcome::TimedOut => format!("timed out after {} s", timeout.unwrap_or(0)),
        Outcome::Exec(e) => format!("exec: {}", io::Error::from_raw_os_error(e)),
        Outcome::Spawn(e) => format!("start: {}", io::Error::from_raw_os_error(e)),
    };
    format!("{} hook #{index} ({path}): {what}", kind.name())
}

/// The first bytes a hook wrote to stdout and stderr, kept for the error message.
pub struct Output {
    buf: [u8; 1024],
    len: usize,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            buf: [0; 1024],
            len: 0,
        }
    }
}

impl Output {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Read once from `fd`, keeping what fits; false at end of file or on error.
    fn read_from(&mut self, fd: BorrowedFd<'_>) -> bool {
        let mut scratch = [0u8; 512];
        match sys::read(fd, &mut scratch) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                let keep = n.min(self.buf.len() - self.len);
                self.buf[self.len..self.len + keep].copy_from_slice(&scratch[..keep]);
                self.len += keep;
                true
            }
        }
    }
}

/// Run every hook of `plan` in order, in the calling process's namespaces; the first failure
/// stops the rest. Runs in the container's init: no allocation.
pub fn run_all(plan: &Plan, out: &mut Output) -> std::result::Result<(), (usize, Outcome)> {
    // The init may have inherited SIGCHLD ignored, which would reap the hook before we can.
    // SAFETY: signal() with SIG_DFL is async-signal-safe and touches no memory of ours.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    for (i, h) in plan.hooks.iter().enumerate() {
        out.len = 0;
        run_one(h, plan.state.as_fd(), out).map_err(|o| (i, o))?;
    }
    Ok(())
}

fn run_one(
    h: &Planned,
    state: BorrowedFd<'_>,
    out: &mut Output,
) -> std::result::Result<(), Outcome> {
    let spawn = |e: io::Error| Outcome::Spawn(sys::errno_of(&e));
    sys::rewind(state).map_err(spawn)?;
    let (out_r, out_w) = sys::pipe().map_err(spawn)?;
    let (err_r, err_w) = sys::pipe().map_err(spawn)?;
    // SAFETY: the container's init is single-threaded; the child only calls exec_hook, which
    // makes syscalls and execs or exits.
    let pidfd = match unsafe { sys::clone3(0, None) }.map_err(spawn)? {
        Forked::Child => exec_hook(h, state, out_w.as_fd(), err_w.as_fd()),
        Forked::Parent { pidfd, .. } => pidfd,
    };
    drop(out_w);
    drop(err_w);
    let deadline = h.timeout.map(|t| sys::monotonic_ms() + t * 1000);
    let mut out_open = true;
    loop {
        let wait = match deadline {
            None => -1,
            Some(d) => (d - sys::monotonic_ms()).clamp(0, i32::MAX as i64) as libc::c_int,
        };
        let mut fds = [
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if out_open { out_r.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        sys::poll(&mut fds, wait).map_err(spawn)?;
        if fds[1].revents != 0 {
            out_open = out.read_from(out_r.as_fd());
        }
        if fds[0].revents != 0 {
            break;
        }
        if deadline.is_some_and(|d| sys::monotonic_ms() >= d) {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            let _ = sys::waitid_pidfd(pidfd.as_fd(), false);
            return Err(Outcome::TimedOut);
        }
    }
    let exit = sys::waitid_pidfd(pidfd.as_fd(), false).map_err(spawn)?;
    // What the hook wrote just before it exited (a daemon it left behind may keep the pipe
    // open: take only what is already there).
    while out_open {
        let mut p = [libc::pollfd {
            fd: out_r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        out_open = sys::poll(&mut p, 0).unwrap_or(0) == 1 && out.read_from(out_r.as_fd());
    }
    let mut errno = [0u8; 4];
    if matches!(sys::read(err_r.as_fd(), &mut errno), Ok(4)) {
        return Err(Outcome::Exec(i32::from_ne_bytes(errno)));
    }
    match exit {
        Some(sys::Exit::Code(0)) => Ok(()),
        Some(sys::Exit::Code(c)) => Err(Outcome::Exit(c)),
        Some(sys::Exit::Signal(s)) => Err(Outcome::Signal(s)),
        None => Err(Outcome::Spawn(libc::ECHILD)),
    }
}

/// In the hook's process: the state on stdin, stdout and stderr into the output pipe, no
/// other descriptor, then execve. A failed execve sends its errno over `err` (close-on-exec,
/// so a successful one sends nothing).
fn exec_hook(h: &Planned, state: BorrowedFd<'_>, out: BorrowedFd<'_>, err: BorrowedFd<'_>) -> ! {
    let e = (|| -> io::Result<()> {
        sys::dup2(state.as_raw_fd(), 0)?;
        sys::dup2(out.as_raw_fd(), 1)?;
        sys::dup2(out.as_raw_fd(), 2)?;
        sys::close_range_from(3, sys::CLOSE_RANGE_CLOEXEC)?;
        // SAFETY: path, argv and envp are NUL-terminated and kept alive by the plan; execve
        // only returns on failure.
        unsafe { libc::execve(h.path.as_ptr(), h.argv.as_ptr(), h.envp.as_ptr()) };
        Err(io::Error::last_os_error())
    })();
    let errno = e.err().map_or(libc::EIO, |e| sys::errno_of(&e));
    let _ = sys::write_all(err, &errno.to_ne_bytes());
    // SAFETY: _exit is async-signal-safe and skips teardown that is not ours to run.
    unsafe { libc::_exit(127) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_the_report() {
        for o in [
            Outcome::Exit(3),
            Outcome::Exit(255),
            Outcome::Signal(9),
            Outcome::TimedOut,
            Outcome::Exec(libc::ENOENT),
            Outcome::Spawn(libc::EAGAIN),
        ] {
            let (errno, status) = o.encode();
            assert_eq!(Outcome::decode(errno, status), o);
        }
    }

    #[test]
    fn runs_hooks_with_state_args_env_and_reports_failures() {
        let spec: oci_spec::runtime::Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "hooks": {"createContainer": [
                {"path": "/bin/sh", "args": ["sh", "-c", "read s; [ \"$s\" = '{\"x\":1}' ] && [ \"$A\" = b ] && echo ok"], "env": ["A=b"]},
                {"path": "/bin/sh", "args": ["sh", "-c", "echo bad >&2; exit 4"]},
                {"path": "/bin/true"}
            ]}
        }))
        .unwrap();
        let plan = Plan::new(&spec, Kind::CreateContainer, Path::new("/c"))
            .unwrap()
            .unwrap();
        plan.write_state(br#"{"x":1}"#).unwrap();
        let mut out = Output::default();
        let r = run_all(&plan, &mut out);
        assert_eq!(r, Err((1, Outcome::Exit(4))));
        assert_eq!(out.bytes(), b"bad\n");
    }

    #[test]
    fn a_missing_hook_is_an_exec_failure_and_a_slow_one_times_out() {
        let spec: oci_spec::runtime::Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "hooks": {
                "createContainer": [{"path": "/nonexistent/hook"}],
                "startContainer": [{"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}]
            }
        }))
        .unwrap();
        let mut out = Output::default();
        let missing = Plan::new(&spec, Kind::CreateContainer, Path::new("/c"))
            .unwrap()
            .unwrap();
        missing.write_state(b"{}").unwrap();
        assert_eq!(
            run_all(&missing, &mut out),
            Err((0, Outcome::Exec(libc::ENOENT)))
        );
        let slow = Plan::new(&spec, Kind::StartContainer, Path::new("/c"))
            .unwrap()
            .unwrap();
        slow.write_state(b"{}").unwrap();
        let t = std::time::Instant::now();
        assert_eq!(run_all(&slow, &mut out), Err((0, Outcome::TimedOut)));
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }
}
