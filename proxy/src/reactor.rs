//! The engine's six kinds of asynchronous request, and the two ways of carrying them out.
//!
//! io_uring is the normal path: each request is one ring entry. When io_uring cannot be set up
//! (sysctl `kernel.io_uring_disabled`, a seccomp profile), an epoll reactor gives the same
//! completions — same user data, same result conventions (`-errno`, `IORING_CQE_F_MORE` for
//! multishot accepts) — so the engine above does not know which one runs.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use crate::sys::{self, SockAddr};

/// IORING_CQE_F_MORE: a multishot request stays armed after this completion.
pub const CQE_F_MORE: u32 = 1 << 1;

/// What the engine asks for; each completes once with the given user data (accepts: once per
/// connection, with `CQE_F_MORE` while still armed).
pub(crate) enum Req {
    /// One-shot readiness: completes with the returned poll events.
    Poll { fd: RawFd, events: i16, ud: u64 },
    /// Multishot accept (non-blocking, close-on-exec): completes with each new descriptor.
    Accept { fd: RawFd, ud: u64 },
    /// Connect with a timeout (expiry completes with -ECANCELED).
    Connect {
        fd: RawFd,
        addr: Rc<SockAddr>,
        ud: u64,
    },
    /// Cancel the request with user data `target`; it completes with -ECANCELED, if at all.
    Cancel { target: u64, ud: u64 },
    /// Complete with -ETIME after one second.
    Tick { ud: u64 },
    /// close(2) the descriptor, which the caller gives up, after every request queued before
    /// it has been issued. Completes only on failure (user data 0). A ring close saves the
    /// syscall per descriptor when connections churn.
    Close { fd: OwnedFd },
}

/// Which implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventLoop {
    /// io_uring, or epoll when io_uring cannot be set up.
    Auto,
    IoUring,
    Epoll,
}

pub(crate) enum Reactor {
    Uring(Box<Uring>),
    Epoll(Box<Epoll>),
}

impl Reactor {
    /// Build the requested reactor; with `Auto`, fall back to epoll and say why.
    pub fn new(
        kind: EventLoop,
        entries: u32,
        connect_timeout: Duration,
    ) -> io::Result<(Self, String)> {
        let uring = || Uring::new(entries, connect_timeout).map(|u| Reactor::Uring(Box::new(u)));
        let epoll = || Epoll::new(connect_timeout).map(|e| Reactor::Epoll(Box::new(e)));
        match kind {
            EventLoop::IoUring => Ok((uring()?, format!("io_uring ({entries} entries)"))),
            EventLoop::Epoll => Ok((epoll()?, "epoll (requested)".into())),
            EventLoop::Auto => match uring() {
                Ok(r) => Ok((r, format!("io_uring ({entries} entries)"))),
                Err(e) => Ok((epoll()?, format!("epoll (io_uring unavailable: {e})"))),
            },
        }
    }

    pub fn push(&mut self, r: Req) {
        match self {
            Reactor::Uring(u) => u.push(r),
            Reactor::Epoll(e) => e.push(r),
        }
    }

    /// Hand over queued requests, wait for at least one completion, append all that are ready.
    pub fn wait(&mut self, out: &mut Vec<(u64, i32, u32)>) -> io::Result<()> {
        match self {
            Reactor::Uring(u) => u.wait(out),
            Reactor::Epoll(e) => e.wait(out),
        }
    }
}

// ---- io_uring ----

pub(crate) struct Uring {
    ring: IoUring,
    tick_ts: Box<types::Timespec>,
    connect_ts: Box<types::Timespec>,
}

impl Uring {
    fn new(entries: u32, connect_timeout: Duration) -> io::Result<Self> {
        // Completions are run only when the loop asks for them (DEFER_TASKRUN, 6.1+): a socket
        // becoming ready never interrupts the loop mid-batch, and one io_uring_enter reaps all
        // that piled up. Older kernels refuse the flag; cooperative task running is the fallback.
        let ring = IoUring::builder()
            .setup_cqsize(entries * 8)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(entries * 8)
                    .setup_single_issuer()
                    .setup_coop_taskrun()
                    .build(entries)
            })?;
        Ok(Uring {
            ring,
            tick_ts: Box::new(types::Timespec::new().sec(1)),
            connect_ts: Box::new(
                types::Timespec::new()
                    .sec(connect_timeout.as_secs())
                    .nsec(connect_timeout.subsec_nanos()),
            ),
        })
    }

    fn push(&mut self, r: Req) {
        match r {
            Req::Poll { fd, events, ud } => {
                self.push_all(&[opcode::PollAdd::new(types::Fd(fd), events as u32)
                    .build()
                    .user_data(ud)])
            }
            Req::Accept { fd, ud } => self.push_all(&[opcode::AcceptMulti::new(types::Fd(fd))
                .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                .build()
                .user_data(ud)]),
            Req::Connect { fd, addr, ud } => {
                let connect = opcode::Connect::new(types::Fd(fd), addr.as_ptr(), addr.len())
                    .build()
                    .flags(squeue::Flags::IO_LINK)
                    .user_data(ud);
                let timeout = opcode::LinkTimeout::new(&*self.connect_ts as *const types::Timespec)
                    .build()
                    .user_data(0);
                self.push_all(&[connect, timeout]);
            }
            Req::Cancel { target, ud } => {
                self.push_all(&[opcode::AsyncCancel::new(target).build().user_data(ud)])
            }
            Req::Tick { ud } => {
                self.push_all(&[
                    opcode::Timeout::new(&*self.tick_ts as *const types::Timespec)
                        .build()
                        .user_data(ud),
                ])
            }
            Req::Close { fd } => {
                // The kernel owns the descriptor from here on.
                let fd = std::os::fd::IntoRawFd::into_raw_fd(fd);
                self.push_all(&[opcode::Close::new(types::Fd(fd))
                    .build()
                    .flags(squeue::Flags::SKIP_SUCCESS)
                    .user_data(0)])
            }
        }
    }

    /// Queue entries contiguously (linked requests must be adjacent), submitting if full.
    fn push_all(&mut self, entries: &[squeue::Entry]) {
        loop {
            // SAFETY: every pointer our entries carry (backend sockaddrs held by their
            // connection, which the engine keeps until after the next submit; the boxed
            // timespecs owned here) stays valid until the kernel reads it at submission.
            if unsafe { self.ring.submission().push_multiple(entries) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EINTR) && e.raw_os_error() != Some(libc::EBUSY) {
                    eprintln!("berth-proxy: io_uring submit while queue full: {e}");
                }
            }
        }
    }

    fn wait(&mut self, out: &mut Vec<(u64, i32, u32)>) -> io::Result<()> {
        match self.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EINTR)
                    || e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        out.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        Ok(())
    }
}

// ---- epoll ----

#[derive(Default)]
struct FdInterest {
    polls: Vec<(i16, u64)>,
    accept: Option<u64>,
    connect: Option<u64>,
    registered: bool,
}

pub(crate) struct Epoll {
    ep: OwnedFd,
    fds: HashMap<RawFd, FdInterest>,
    /// user data -> descriptor, to cancel without scanning.
    owner: HashMap<u64, RawFd>,
    /// Pending connects: user data -> deadline.
    connecting: HashMap<u64, Instant>,
    tick: Option<(u64, Instant)>,
    ready: Vec<(u64, i32, u32)>,
    connect_timeout: Duration,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    fn new(connect_timeout: Duration) -> io::Result<Self> {
        // SAFETY: plain syscall creating a new epoll instance.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            // SAFETY: the kernel just returned this descriptor; we are its only owner.
            ep: unsafe { OwnedFd::from_raw_fd(fd) },
            fds: HashMap::new(),
            owner: HashMap::new(),
            connecting: HashMap::new(),
            tick: None,
            ready: Vec::new(),
            connect_timeout,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        })
    }

    fn push(&mut self, r: Req) {
        match r {
            Req::Poll { fd, events, ud } => {
                self.fds.entry(fd).or_default().polls.push((events, ud));
                self.owner.insert(ud, fd);
                self.update(fd);
            }
            Req::Accept { fd, ud } => {
                self.fds.entry(fd).or_default().accept = Some(ud);
                self.owner.insert(ud, fd);
                self.update(fd);
            }
            Req::Connect { fd, addr, ud } => {
                // SAFETY: addr is a valid sockaddr of the stated length; fd is the caller's.
                let rc = unsafe { libc::connect(fd, addr.as_ptr(), addr.len()) };
                let err = io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO);
                if rc == 0 {
                    self.ready.push((ud, 0, 0));
                } else if err == libc::EINPROGRESS {
                    self.fds.entry(fd).or_default().connect = Some(ud);
                    self.owner.insert(ud, fd);
                    self.connecting
                        .insert(ud, Instant::now() + self.connect_timeout);
                    self.update(fd);
                } else {
                    self.ready.push((ud, -err, 0));
                }
            }
            Req::Cancel { target, ud: _ } => {
                if self.forget(target) {
                    self.ready.push((target, -libc::ECANCELED, 0));
                }
            }
            Req::Tick { ud } => self.tick = Some((ud, Instant::now() + Duration::from_secs(1))),
            Req::Close { fd } => {
                self.fds.remove(&fd.as_raw_fd());
                drop(fd);
            }
        }
    }

    /// Drop the request with user data `ud`; false if there is none.
    fn forget(&mut self, ud: u64) -> bool {
        let Some(fd) = self.owner.remove(&ud) else {
            return false;
        };
        self.connecting.remove(&ud);
        if let Some(i) = self.fds.get_mut(&fd) {
            i.polls.retain(|&(_, u)| u != ud);
            if i.accept == Some(ud) {
                i.accept = None;
            }
            if i.connect == Some(ud) {
                i.connect = None;
            }
        }
        self.update(fd);
        true
    }

    /// Make the kernel's interest in `fd` the union of what is pending on it.
    fn update(&mut self, fd: RawFd) {
        let Some(i) = self.fds.get_mut(&fd) else {
            return;
        };
        let mut mask = i.polls.iter().fold(0u32, |m, &(e, _)| m | e as u16 as u32);
        if i.accept.is_some() {
            mask |= libc::EPOLLIN as u32;
        }
        if i.connect.is_some() {
            mask |= libc::EPOLLOUT as u32;
        }
        let ep = self.ep.as_raw_fd();
        let mut ev = libc::epoll_event {
            events: mask,
            u64: fd as u64,
        };
        if mask == 0 {
            if i.registered {
                // SAFETY: removing a descriptor we registered; a closed one is already gone.
                unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, &mut ev) };
            }
            self.fds.remove(&fd);
            return;
        }
        let op = if i.registered {
            libc::EPOLL_CTL_MOD
        } else {
            libc::EPOLL_CTL_ADD
        };
        // SAFETY: ev is a valid epoll_event; fd is open (requests are cancelled before close).
        if unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) } == 0 {
            i.registered = true;
        } else {
            // Not pollable or gone: fail every request on it rather than wait forever.
            let err = io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EBADF);
            let i = self.fds.remove(&fd).expect("present above");
            for (_, ud) in i.polls {
                self.ready.push((ud, -err, 0));
            }
            for ud in i.accept.into_iter().chain(i.connect) {
                self.ready.push((ud, -err, 0));
            }
        }
    }

    fn wait(&mut self, out: &mut Vec<(u64, i32, u32)>) -> io::Result<()> {
        let now = Instant::now();
        let mut deadline = self.tick.map(|t| t.1);
        for &d in self.connecting.values() {
            deadline = Some(deadline.map_or(d, |x| x.min(d)));
        }
        let timeout = if !self.ready.is_empty() {
            0
        } else {
            deadline.map_or(-1, |d| {
                d.saturating_duration_since(now)
                    .as_millis()
                    .min(i32::MAX as u128) as i32
                    + 1
            })
        };
        // SAFETY: events is a writable array of the stated length.
        let n = unsafe {
            libc::epoll_wait(
                self.ep.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e);
            }
        }
        for k in 0..n.max(0) as usize {
            let fd = self.events[k].u64 as RawFd;
            let revents = self.events[k].events;
            self.on_ready(fd, revents, out);
        }
        let now = Instant::now();
        let expired: Vec<u64> = self
            .connecting
            .iter()
            .filter(|(_, &d)| d <= now)
            .map(|(&u, _)| u)
            .collect();
        for ud in expired {
            if self.forget(ud) {
                out.push((ud, -libc::ECANCELED, 0));
            }
        }
        if let Some((ud, d)) = self.tick {
            if d <= now {
                self.tick = None;
                out.push((ud, -libc::ETIME, 0));
            }
        }
        out.append(&mut self.ready);
        Ok(())
    }

    fn on_ready(&mut self, fd: RawFd, revents: u32, out: &mut Vec<(u64, i32, u32)>) {
        let Some(i) = self.fds.get_mut(&fd) else {
            return;
        };
        let errhup = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
        if let Some(ud) = i.connect {
            if revents & (libc::EPOLLOUT as u32 | errhup) != 0 {
                i.connect = None;
                self.owner.remove(&ud);
                self.connecting.remove(&ud);
                let mut err: libc::c_int = 0;
                let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                // SAFETY: err and len describe a writable c_int.
                unsafe {
                    libc::getsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_ERROR,
                        &mut err as *mut _ as *mut libc::c_void,
                        &mut len,
                    )
                };
                out.push((ud, -err, 0));
            }
        }
        let i = self.fds.get_mut(&fd).expect("still present");
        if let Some(ud) = i.accept {
            if revents & (libc::EPOLLIN as u32 | errhup) != 0 {
                // SAFETY: fd is a listening socket registered by the engine, borrowed here.
                let l = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                for _ in 0..64 {
                    match sys::accept(l) {
                        Ok(c) => out.push((ud, std::os::fd::IntoRawFd::into_raw_fd(c), CQE_F_MORE)),
                        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
                        Err(e) => {
                            // Like a multishot ring accept, an error ends the request.
                            i.accept = None;
                            self.owner.remove(&ud);
                            out.push((ud, -e.raw_os_error().unwrap_or(libc::EIO), 0));
                            break;
                        }
                    }
                }
            }
        }
        let i = self.fds.get_mut(&fd).expect("still present");
        let mut k = 0;
        while k < i.polls.len() {
            let (ev, ud) = i.polls[k];
            if revents & (ev as u16 as u32 | errhup) != 0 {
                i.polls.swap_remove(k);
                self.owner.remove(&ud);
                out.push((ud, revents as i32, 0));
            } else {
                k += 1;
            }
        }
        self.update(fd);
    }
}
