//! `run`: create and start in one step, then (unless detached) stay as the container's parent:
//! forward signals to it, relay its terminal when it has one, reap it through its pidfd and
//! delete it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::create::{spawn, Mode};
use super::CreateOptions;
use crate::error::{Error, Result};
use crate::sys;

/// Signals `run` passes on to the container instead of dying of them.
const FORWARDED: [libc::c_int; 7] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// Block the signals `supervise` forwards (before the child exists, so none is lost or kills
/// us half-way; the child clears its mask before exec).
pub(super) fn block_forwarded() -> libc::sigset_t {
    let set = sigset(&FORWARDED);
    // SAFETY: set is a valid sigset_t; we are single-threaded.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    set
}

fn sigset(sigs: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in sigs {
            libc::sigaddset(&mut set, *s);
        }
    }
    set
}

/// Returns the container's exit status (128+signal when killed).
pub fn run(opts: &CreateOptions, detach: bool, keep: bool) -> Result<i32> {
    if detach {
        if opts.console_socket.is_none() && terminal_requested(opts)? {
            return Err(Error::Unsupported(
                "run --detach with process.terminal needs --console-socket".into(),
            ));
        }
        let spawned = spawn(opts, Mode::Run)?;
        hooks_after(&spawned.container, "running");
        return Ok(0);
    }
    // Block before the child exists so no signal is lost or kills us half-way; the child
    // clears its mask before exec.
    let set = block_forwarded();
    let spawned = spawn(opts, Mode::Run)?;
    hooks_after(&spawned.container, "running");
    let status = supervise(&spawned.pidfd, spawned.console.as_ref(), &set);
    if !keep {
        spawned.container.destroy()?;
        hooks_after(&spawned.container, "stopped");
    }
    status
}

/// poststart once the program runs, poststop once the container is gone (failures warn).
fn hooks_after(c: &super::Container, status: &str) {
    if !c.record.hooks {
        return;
    }
    let (kind, pid) = match status {
        "running" => (crate::hooks::Kind::Poststart, c.record.pid),
        _ => (crate::hooks::Kind::Poststop, 0),
    };
    match crate::spec::load_created(&c.record.bundle) {
        Ok(b) => {
            let state = crate::hooks::state_json(&b.spec, &c.record.id, pid, status, &b.dir);
            crate::hooks::run_warn(&b.spec, kind, &state);
        }
        Err(e) => crate::log::warn(&format!("{status} hooks not run: {e}")),
    }
}

fn terminal_requested(opts: &CreateOptions) -> Result<bool> {
    let b = crate::spec::load(&opts.bundle)?;
    Ok(b.spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false))
}

/// Host terminal put in raw mode while we relay a container's pty; restored on drop.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> Option<RawMode> {
        // SAFETY: termios is plain data, filled by tcgetattr.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is a valid descriptor; t is valid for writes.
        if unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) } != 0 {
            return None;
        }
        let saved = t;
        // SAFETY: t is a valid termios.
        unsafe {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t);
        }
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the attributes read in `enter` on stdin.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}

fn copy_winsize(from: libc::c_int, to: libc::c_int) {
    // SAFETY: winsize is plain data; both ioctls take a pointer to it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Stay with a child until it exits: forward signals, relay its terminal, return its status.
pub(super) fn supervise(
    pidfd: &OwnedFd,
    console: Option<&OwnedFd>,
    set: &libc::sigset_t,
) -> Result<i32> {
    // SAFETY: set is a valid sigset_t; -1 asks for a new descriptor.
    let sfd = unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC) };
    if sfd < 0 {
        return Err(Error::sys("signalfd", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor we own.
    let sigfd = unsafe { OwnedFd::from_raw_fd(sfd) };
    let stdin = std::io::stdin();
    let _raw = console.and_then(|m| {
        copy_winsize(0, m.as_raw_fd());
        RawMode::enter(stdin.as_fd())
    });
    let mut stdin_open = console.is_some();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = vec![
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sigfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if let Some(m) = console {
            fds.push(libc::pollfd {
                fd: m.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            if stdin_open {
                fds.push(libc::pollfd {
                    fd: 0,
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        sys::poll(&mut fds, -1).map_err(|e| Error::sys("poll", e))?;
        if fds[1].revents != 0 {
            // SAFETY: signalfd_siginfo is plain data.
            let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            // SAFETY: si is valid for writes of its size.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(
                    &mut si as *mut _ as *mut u8,
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                )
            };
            if sys::read(sigfd.as_fd(), bytes).is_ok() {
                let sig = si.ssi_signo as libc::c_int;
                match (console, sig) {
                    (Some(m), libc::SIGWINCH) => copy_winsize(0, m.as_raw_fd()),
                    (None, libc::SIGWINCH) => {}
                    _ => {
                        let _ = sys::pidfd_send_signal(pidfd.as_fd(), sig);
                    }
                }
            }
        }
        if let Some(m) = console {
            if fds[2].revents != 0 && !relay(m.as_fd(), 1, &mut buf) {
                // EIO: every slave end closed.
            }
            if stdin_open && fds.len() > 3 && fds[3].revents != 0 {
                // SAFETY: fd 0 is our stdin, valid for the process lifetime.
                let input = unsafe { BorrowedFd::borrow_raw(0) };
                stdin_open = relay(input, m.as_raw_fd(), &mut buf);
            }
        }
        if fds[0].revents != 0 {
            if let Some(exit) =
                sys::waitid_pidfd(pidfd.as_fd(), true).map_err(|e| Error::sys("waitid", e))?
            {
                if let Some(m) = console {
                    drain(m.as_fd(), &mut buf);
                }
                return Ok(exit.status());
            }
        }
    }
}

/// Copy one read's worth from `from` to fd `to`; false at end of input.
fn relay(from: BorrowedFd<'_>, to: libc::c_int, buf: &mut [u8]) -> bool {
    match sys::read(from, buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            // SAFETY: `to` is a descriptor we hold for the whole relay.
            let out = unsafe { BorrowedFd::borrow_raw(to) };
            sys::write_all(out, &buf[..n]).is_ok()
        }
    }
}

/// Output still buffered in the pty after the container exited.
fn drain(master: BorrowedFd<'_>, buf: &mut [u8]) {
    loop {
        let mut p = [libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if sys::poll(&mut p, 0).unwrap_or(0) == 0 || !relay(master, 1, buf) {
            return;
        }
    }
}
