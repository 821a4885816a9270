//! The shim's event loop primitive: one-shot readiness polls, identified by a 64-bit token,
//! carried out by io_uring (`IORING_OP_POLL_ADD`, one ring entry each, the wait and the
//! submission in one `io_uring_enter`) or, when io_uring cannot be set up
//! (`kernel.io_uring_disabled`, a seccomp profile), by epoll with the same semantics.
//!
//! Rules the caller keeps: a poll is armed at most once per token; before closing a descriptor
//! the caller cancels every poll armed on it (io_uring holds a reference to the file otherwise,
//! and the peer would never see the close).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::{opcode, types, IoUring};

/// One completed poll: (token, revents). Errors other than cancellation come as POLLERR.
pub type Event = (u64, u32);

pub enum Reactor {
    Uring(Box<IoUring>),
    Epoll(Box<Epoll>),
}

/// The token of the cancel requests themselves, whose completions are dropped.
const CANCEL_TOKEN: u64 = u64::MAX;

impl Reactor {
    /// io_uring unless `force_epoll` or it cannot be set up; the string says which and why.
    pub fn new(force_epoll: bool) -> io::Result<(Reactor, String)> {
        if force_epoll {
            return Ok((
                Reactor::Epoll(Box::new(Epoll::new()?)),
                "epoll (requested)".into(),
            ));
        }
        match IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .build(32)
        {
            Ok(ring) => Ok((Reactor::Uring(Box::new(ring)), "io_uring".into())),
            Err(e) => Ok((
                Reactor::Epoll(Box::new(Epoll::new()?)),
                format!("epoll (io_uring unavailable: {e})"),
            )),
        }
    }

    pub fn is_uring(&self) -> bool {
        matches!(self, Reactor::Uring(_))
    }

    /// Arm a one-shot poll for `events` (POLLIN/POLLOUT…) on `fd`.
    pub fn poll(&mut self, fd: RawFd, events: u32, token: u64) {
        match self {
            Reactor::Uring(r) => {
                let e = opcode::PollAdd::new(types::Fd(fd), events)
                    .build()
                    .user_data(token);
                push(r, &e);
            }
            Reactor::Epoll(e) => e.poll(fd, events, token),
        }
    }

    /// Cancel the poll armed with `token` on `fd`, if any. It never completes afterwards.
    pub fn cancel(&mut self, fd: RawFd, token: u64) {
        match self {
            Reactor::Uring(r) => {
                let e = opcode::AsyncCancel::new(token)
                    .build()
                    .user_data(CANCEL_TOKEN);
                push(r, &e);
            }
            Reactor::Epoll(e) => e.cancel(fd, token),
        }
    }

    /// Submit what is queued, wait for at least one completion or the timeout, and append the
    /// completions to `out`.
    pub fn wait(&mut self, out: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Reactor::Uring(r) => {
                let res = match timeout {
                    None => r.submit_and_wait(1),
                    Some(t) => {
                        let ts = types::Timespec::new()
                            .sec(t.as_secs())
                            .nsec(t.subsec_nanos());
                        let args = types::SubmitArgs::new().timespec(&ts);
                        r.submitter().submit_with_args(1, &args)
                    }
                };
                match res {
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EINTR | libc::ETIME | libc::EBUSY)
                        ) => {}
                    Err(e) => return Err(e),
                }
                for c in r.completion() {
                    let (ud, res) = (c.user_data(), c.result());
                    if ud == CANCEL_TOKEN || res == -libc::ECANCELED {
                        continue;
                    }
                    let revents = if res < 0 {
                        libc::POLLERR as u32
                    } else {
                        res as u32
                    };
                    out.push((ud, revents));
                }
                Ok(())
            }
            Reactor::Epoll(e) => e.wait(out, timeout),
        }
    }
}

fn push(r: &mut IoUring, e: &io_uring::squeue::Entry) {
    // Bounded: a full queue is submitted (which empties it) and the push retried, twice at most.
    for _ in 0..3 {
        // SAFETY: poll and cancel entries carry no pointers into our memory.
        if unsafe { r.submission().push(e) }.is_ok() {
            return;
        }
        if let Err(err) = r.submit() {
            eprintln!("berth-shim: io_uring submit with a full queue: {err}");
        }
    }
    eprintln!("berth-shim: io_uring queue stays full; a poll was lost");
}

/// The epoll fallback: level-triggered registrations whose mask is the union of the one-shot
/// polls pending on each descriptor; a poll is removed when it fires.
pub struct Epoll {
    ep: OwnedFd,
    fds: HashMap<RawFd, Vec<(u32, u64)>>,
    registered: HashMap<RawFd, bool>,
    events: Vec<libc::epoll_event>,
    /// Polls that failed to register, reported as POLLERR at the next wait.
    errors: Vec<u64>,
}

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall creating a new epoll instance.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            // SAFETY: the kernel just returned this descriptor; we are its only owner.
            ep: unsafe { OwnedFd::from_raw_fd(fd) },
            fds: HashMap::new(),
            registered: HashMap::new(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 32],
            errors: Vec::new(),
        })
    }

    fn poll(&mut self, fd: RawFd, events: u32, token: u64) {
        self.fds.entry(fd).or_default().push((events, token));
        self.update(fd);
    }

    fn cancel(&mut self, fd: RawFd, token: u64) {
        if let Some(v) = self.fds.get_mut(&fd) {
            v.retain(|&(_, t)| t != token);
        }
        self.update(fd);
    }

    fn update(&mut self, fd: RawFd) {
        let mask = self
            .fds
            .get(&fd)
            .map_or(0, |v| v.iter().fold(0, |m, &(e, _)| m | e));
        let registered = self.registered.get(&fd).copied().unwrap_or(false);
        let mut ev = libc::epoll_event {
            events: mask,
            u64: fd as u64,
        };
        let ep = self.ep.as_raw_fd();
        if mask == 0 {
            self.fds.remove(&fd);
            if registered {
                // SAFETY: ev is valid; a descriptor already closed is simply not found.
                unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, &mut ev) };
                self.registered.remove(&fd);
            }
            return;
        }
        let op = if registered {
            libc::EPOLL_CTL_MOD
        } else {
            libc::EPOLL_CTL_ADD
        };
        // SAFETY: ev is a valid epoll_event and fd an open descriptor of the caller.
        let mut rc = unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) };
        if rc != 0 && op == libc::EPOLL_CTL_MOD {
            // The number was closed and reused since it was registered: register it afresh.
            // SAFETY: as above.
            rc = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        }
        if rc == 0 {
            self.registered.insert(fd, true);
        } else {
            // Not pollable (a regular file) or gone: report it as an error, like io_uring.
            self.registered.remove(&fd);
            if let Some(v) = self.fds.remove(&fd) {
                self.pending_errors(v);
            }
        }
    }

    fn pending_errors(&mut self, v: Vec<(u32, u64)>) {
        // Delivered at the next wait through a zero-timeout path.
        self.errors.extend(v.into_iter().map(|(_, t)| t));
    }

    fn wait(&mut self, out: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let ms = if !self.errors.is_empty() {
            0
        } else {
            timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128 - 1) as i32 + 1)
        };
        for t in self.errors.drain(..) {
            out.push((t, libc::POLLERR as u32));
        }
        // SAFETY: events is a writable array of the stated length.
        let n = unsafe {
            libc::epoll_wait(
                self.ep.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        let errhup = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
        for k in 0..n as usize {
            let fd = self.events[k].u64 as RawFd;
            let revents = self.events[k].events;
            if let Some(v) = self.fds.get_mut(&fd) {
                v.retain(|&(ev, tok)| {
                    if revents & (ev | errhup) != 0 {
                        out.push((tok, revents));
                        false
                    } else {
                        true
                    }
                });
            }
            self.update(fd);
        }
        Ok(())
    }
}
