//! The single-threaded event loop that owns every mapping, connection and flow.
//!
//! Accepts (multishot) and connects (with a timeout) are reactor requests — io_uring ring
//! operations normally, epoll when io_uring is unavailable (see `reactor.rs`); readiness for
//! the relay is a one-shot poll per waiting direction, and the bytes then move with
//! non-blocking splice(2) in `tcp.rs`. Splice itself is not issued as a ring operation because
//! the kernel runs a blocking splice on an io-wq worker thread: 10,000 idle connections would
//! park 20,000 kernel threads.
//!
//! A connection's sockets are closed by ring requests queued behind everything else that names
//! them (the ring issues a submission in order), so the number cannot be reused while a queued
//! request still names it, and closing costs no syscall of its own. Other descriptors (listeners,
//! control and UDP sockets), and the backend addresses queued connects point into, are kept in a
//! graveyard until the next submit has handed every request to the kernel.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::control::{ControlConn, ControlServer};
use crate::pipes::PipePool;
use crate::protocol::{Counters, MappingSpec, MappingStatus, Proto};
use crate::reactor::{EventLoop, Reactor, Req, CQE_F_MORE};
use crate::slab::{Slab, GEN_MASK};
use crate::sys::{self, AsFdRef, SockAddr, SysError};
use crate::tcp::Conn;
use crate::udp::{Flow, UdpListener};

/// Tunables; `Default` is what the binary uses unless told otherwise.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bytes per pooled pipe (F_SETPIPE_SZ).
    pub pipe_size: usize,
    /// Most pipes alive at once; beyond that directions copy through the scratch buffer.
    pub max_pipes: usize,
    /// A UDP flow with no traffic either way for this long is forgotten.
    pub udp_idle: Duration,
    /// Most UDP flows per mapping; the least recently used is evicted to admit a new one.
    pub udp_max_flows: usize,
    /// Give up connecting to a backend after this long (the client gets RST).
    pub connect_timeout: Duration,
    /// After SIGTERM, wait this long for relayed connections to finish.
    pub drain_timeout: Duration,
    /// Submission queue entries (completion queue is 8× larger).
    pub ring_entries: u32,
    /// io_uring, epoll, or io_uring with epoll as the fallback.
    pub event_loop: EventLoop,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pipe_size: 128 * 1024,
            max_pipes: 256,
            udp_idle: Duration::from_secs(90),
            udp_max_flows: 4096,
            connect_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
            ring_entries: 512,
            event_loop: EventLoop::Auto,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("event loop setup ({kind:?}): {source}")]
    Reactor { kind: EventLoop, source: io::Error },
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("mapping {spec}: {reason}")]
    Invalid { spec: String, reason: &'static str },
    #[error("control socket {path}: {source}")]
    Control { path: String, source: io::Error },
    #[error("signalfd: {0}")]
    Signal(io::Error),
    #[error("event loop wait: {0}")]
    Wait(io::Error),
}

/// What a ring request was for; stored in the top byte of its user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    Ignore = 0,
    Accept,
    Connect,
    /// Source of direction 0 / 1 readable.
    In0,
    In1,
    /// Destination of direction 0 / 1 writable.
    Out0,
    Out1,
    UdpIn,
    FlowIn,
    CtlAccept,
    CtlIn,
    CtlOut,
    Signal,
    Tick,
}

impl Op {
    fn from_u8(v: u8) -> Op {
        match v {
            1 => Op::Accept,
            2 => Op::Connect,
            3 => Op::In0,
            4 => Op::In1,
            5 => Op::Out0,
            6 => Op::Out1,
            7 => Op::UdpIn,
            8 => Op::FlowIn,
            9 => Op::CtlAccept,
            10 => Op::CtlIn,
            11 => Op::CtlOut,
            12 => Op::Signal,
            13 => Op::Tick,
            _ => Op::Ignore,
        }
    }
    /// Bit of this op in `Conn::armed`.
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

pub(crate) fn user_data(op: Op, gen: u32, idx: u32) -> u64 {
    ((op as u64) << 56) | (((gen & GEN_MASK) as u64) << 32) | idx as u64
}

pub(crate) enum Listener {
    Tcp { fd: OwnedFd, backend: Rc<SockAddr> },
    Udp(UdpListener),
}

pub(crate) struct Mapping {
    pub id: u64,
    pub spec: MappingSpec,
    pub counters: Counters,
    pub listener: Listener,
    /// Accepting stopped on EMFILE/ENFILE; the tick re-arms it.
    pub accept_paused: bool,
    /// The first backend failure is logged, the rest only counted.
    pub logged_failure: bool,
}

macro_rules! log {
    ($($arg:tt)*) => { eprintln!("berth-proxy: {}", format_args!($($arg)*)) };
}
pub(crate) use log;

pub struct Engine {
    reactor: Reactor,
    /// Which reactor runs, and why (logged at start).
    pub reactor_name: String,
    pub(crate) cfg: Config,
    pub(crate) mappings: Slab<Mapping>,
    pub(crate) conns: Slab<Conn>,
    pub(crate) flows: Slab<Flow>,
    pub(crate) ctl: Option<ControlServer>,
    pub(crate) ctl_conns: Slab<ControlConn>,
    pub(crate) pipes: PipePool,
    pub(crate) scratch: Vec<u8>,
    signal: OwnedFd,
    /// Dropped after the next submit: a queued connect may point into an address, a queued
    /// request may name a descriptor.
    pub(crate) grave_addrs: Vec<Rc<SockAddr>>,
    pub(crate) grave_fds: Vec<OwnedFd>,
    next_id: u64,
    /// Seconds since start, advanced by the tick.
    pub(crate) now: u64,
    /// Set at the first SIGTERM: the moment draining must end.
    drain_deadline: Option<Instant>,
    exit_now: bool,
    /// When set, berth's nftables table mirrors the mappings (plus masquerade subnets).
    nft: Option<(crate::nft::Nft, Vec<crate::nft::Subnet>)>,
}

impl Engine {
    pub fn new(cfg: Config) -> Result<Self, EngineError> {
        let (reactor, reactor_name) =
            Reactor::new(cfg.event_loop, cfg.ring_entries, cfg.connect_timeout).map_err(
                |source| EngineError::Reactor {
                    kind: cfg.event_loop,
                    source,
                },
            )?;
        let signal = sys::termination_signalfd().map_err(EngineError::Signal)?;
        Ok(Engine {
            reactor,
            reactor_name,
            pipes: PipePool::new(cfg.max_pipes, cfg.pipe_size),
            scratch: vec![0u8; 65536],
            cfg,
            mappings: Slab::default(),
            conns: Slab::default(),
            flows: Slab::default(),
            ctl: None,
            ctl_conns: Slab::default(),
            signal,
            grave_addrs: Vec::new(),
            grave_fds: Vec::new(),
            next_id: 1,
            now: 0,
            drain_deadline: None,
            exit_now: false,
            nft: None,
        })
    }

    /// Bind `spec.host` and start relaying to `spec.container`. Returns the mapping id.
    pub fn add_mapping(&mut self, spec: MappingSpec) -> Result<u64, EngineError> {
        Self::validate(&spec)?;
        let fd = match spec.proto {
            Proto::Tcp => sys::tcp_listener(&spec.host)?,
            Proto::Udp => sys::udp_bound(&spec.host)?,
        };
        self.install(spec, fd)
    }

    /// Relay for a socket someone else bound (docker 28's `-use-listen-fd`).
    pub fn add_mapping_with_socket(
        &mut self,
        spec: MappingSpec,
        fd: OwnedFd,
    ) -> Result<u64, EngineError> {
        Self::validate(&spec)?;
        let want = match spec.proto {
            Proto::Tcp => libc::SOCK_STREAM,
            Proto::Udp => libc::SOCK_DGRAM,
        };
        let ty = sys::socket_type(fd.as_fd_ref()).map_err(|e| {
            SysError::addr("getsockopt SO_TYPE on inherited socket for", spec.host, e)
        })?;
        if ty != want {
            return Err(EngineError::Invalid {
                spec: spec.to_string(),
                reason: "inherited socket has the wrong type for the protocol",
            });
        }
        sys::set_nonblocking(fd.as_fd_ref())
            .map_err(|e| SysError::addr("set O_NONBLOCK on inherited socket for", spec.host, e))?;
        sys::set_cloexec(fd.as_fd_ref())
            .map_err(|e| SysError::addr("set FD_CLOEXEC on inherited socket for", spec.host, e))?;
        if spec.proto == Proto::Tcp {
            // Listening again on a listening socket only adjusts its backlog.
            sys::listen(fd.as_fd_ref(), 4096)
                .map_err(|e| SysError::addr("listen on inherited socket", spec.host, e))?;
        }
        self.install(spec, fd)
    }

    fn validate(spec: &MappingSpec) -> Result<(), EngineError> {
        let bad = |reason| {
            Err(EngineError::Invalid {
                spec: spec.to_string(),
                reason,
            })
        };
        if spec.container.port() == 0 {
            return bad("container port 0");
        }
        if spec.container.ip().is_unspecified() {
            return bad("container address is unspecified");
        }
        Ok(())
    }

    fn install(&mut self, mut spec: MappingSpec, fd: OwnedFd) -> Result<u64, EngineError> {
        // Report the port actually bound (host port 0 picks one).
        if let Ok(bound) = sys::local_addr(fd.as_fd_ref()) {
            spec.host = bound;
        }
        if spec.proto == Proto::Tcp {
            sys::set_nodelay(fd.as_fd_ref())
                .map_err(|e| SysError::addr("setsockopt TCP_NODELAY", spec.host, e))?;
        }
        let id = self.next_id;
        self.next_id += 1;
        let listener = match spec.proto {
            Proto::Tcp => Listener::Tcp {
                fd,
                backend: Rc::new(SockAddr::from_std(spec.container)),
            },
            Proto::Udp => Listener::Udp(UdpListener::new(fd)),
        };
        let (mi, mg) = self.mappings.insert(Mapping {
            id,
            spec,
            counters: Counters::default(),
            listener,
            accept_paused: false,
            logged_failure: false,
        });
        match spec.proto {
            Proto::Tcp => self.arm_accept(mi, mg),
            Proto::Udp => self.arm_udp(mi, mg),
        }
        log!("mapping {id}: {spec}");
        Ok(id)
    }

    /// Stop listening for mapping `id`. Relayed TCP connections finish on their own.
    pub fn remove_mapping(&mut self, id: u64) -> bool {
        let Some((mi, mg)) = self
            .mappings
            .iter()
            .find(|(_, _, m)| m.id == id)
            .map(|(i, g, _)| (i, g))
        else {
            return false;
        };
        let m = self.mappings.remove(mi, mg).expect("found above");
        match m.listener {
            Listener::Tcp { fd, .. } => {
                self.cancel(user_data(Op::Accept, mg, mi));
                self.grave_fds.push(fd);
            }
            Listener::Udp(u) => {
                self.cancel(user_data(Op::UdpIn, mg, mi));
                for (fi, fg) in u.flows.into_values() {
                    self.close_flow(fi, fg);
                }
                self.grave_fds.push(u.sock);
            }
        }
        log!("mapping {id} removed: {}", m.spec);
        true
    }

    pub fn list(&self) -> Vec<MappingStatus> {
        let mut v: Vec<MappingStatus> = self
            .mappings
            .iter()
            .map(|(_, _, m)| {
                let mut counters = m.counters.clone();
                if let Listener::Udp(u) = &m.listener {
                    counters.active = u.flows.len() as u64;
                }
                MappingStatus {
                    id: m.id,
                    spec: m.spec,
                    counters,
                }
            })
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// The address a mapping actually listens on.
    pub fn bound_addr(&self, id: u64) -> Option<SocketAddr> {
        self.mappings
            .iter()
            .find(|(_, _, m)| m.id == id)
            .map(|(_, _, m)| m.spec.host)
    }

    /// Serve control requests on a unix socket at `path`.
    pub fn listen_control(&mut self, path: &std::path::Path) -> Result<(), EngineError> {
        let srv = ControlServer::bind(path)?;
        self.poll(srv.fd.as_raw_fd(), libc::POLLIN, Op::CtlAccept, 0, 0);
        self.ctl = Some(srv);
        Ok(())
    }

    /// Keep berth's nftables table in step with the mappings from now on (applied at once,
    /// reconciling whatever an earlier run left), and delete it on clean shutdown.
    pub fn manage_nftables(
        &mut self,
        masquerade: Vec<crate::nft::Subnet>,
    ) -> Result<(), crate::nft::NftError> {
        self.nft = Some((crate::nft::Nft::open()?, masquerade));
        self.sync_nftables()
    }

    /// The ruleset for the current mappings: DNAT for every non-loopback host address.
    pub fn ruleset(&self, masquerade: &[crate::nft::Subnet]) -> crate::nft::Ruleset {
        let ports = self
            .mappings
            .iter()
            .filter(|(_, _, m)| !m.spec.host.ip().is_loopback())
            .map(|(_, _, m)| crate::nft::PublishedPort {
                proto: m.spec.proto,
                host_ip: Some(m.spec.host.ip()).filter(|ip| !ip.is_unspecified()),
                host_port: m.spec.host.port(),
                container: m.spec.container,
            })
            .collect();
        crate::nft::Ruleset {
            ports,
            masquerade: masquerade.to_vec(),
        }
    }

    pub(crate) fn sync_nftables(&mut self) -> Result<(), crate::nft::NftError> {
        let Some((_, subnets)) = &self.nft else {
            return Ok(());
        };
        let rules = self.ruleset(subnets);
        let (nft, _) = self.nft.as_mut().expect("checked above");
        nft.apply(&rules)
    }

    // ---- ring plumbing ----

    pub(crate) fn push(&mut self, r: Req) {
        self.reactor.push(r);
    }

    pub(crate) fn cancel(&mut self, target: u64) {
        self.push(Req::Cancel {
            target,
            ud: user_data(Op::Ignore, 0, 0),
        });
    }

    pub(crate) fn poll(&mut self, fd: i32, events: i16, op: Op, gen: u32, idx: u32) {
        self.push(Req::Poll {
            fd,
            events,
            ud: user_data(op, gen, idx),
        });
    }

    pub(crate) fn arm_accept(&mut self, mi: u32, mg: u32) {
        let Some(m) = self.mappings.get(mi, mg) else {
            return;
        };
        let Listener::Tcp { fd, .. } = &m.listener else {
            return;
        };
        let fd = fd.as_raw_fd();
        self.push(Req::Accept {
            fd,
            ud: user_data(Op::Accept, mg, mi),
        });
    }

    fn arm_tick(&mut self) {
        self.push(Req::Tick {
            ud: user_data(Op::Tick, 0, 0),
        });
    }

    fn arm_signal(&mut self) {
        let fd = self.signal.as_raw_fd();
        self.poll(fd, libc::POLLIN, Op::Signal, 0, 0);
    }

    // ---- the loop ----

    /// Run until SIGTERM/SIGINT and the drain that follows.
    pub fn run(&mut self) -> Result<(), EngineError> {
        self.arm_signal();
        self.arm_tick();
        let mut batch: Vec<(u64, i32, u32)> = Vec::with_capacity(256);
        if let Err(e) = sys::trim_startup_text() {
            log!("trim start-up pages: {e}");
        }
        log!(
            "event loop: {}, splice pipes {} x {} bytes",
            self.reactor_name,
            self.cfg.max_pipes,
            self.cfg.pipe_size
        );
        loop {
            if self.exit_now {
                break;
            }
            if let Some(deadline) = self.drain_deadline {
                if self.conns.is_empty() || Instant::now() >= deadline {
                    break;
                }
            }
            batch.clear();
            self.reactor.wait(&mut batch).map_err(EngineError::Wait)?;
            // Everything queued has been handed to the kernel: dropping is safe now.
            self.grave_addrs.clear();
            self.grave_fds.clear();
            for &(ud, res, flags) in &batch {
                self.dispatch(ud, res, flags);
            }
        }
        if !self.conns.is_empty() {
            log!(
                "drain ended with {} connections still open; closing them",
                self.conns.len()
            );
        }
        Ok(())
    }

    fn dispatch(&mut self, ud: u64, res: i32, flags: u32) {
        let op = Op::from_u8((ud >> 56) as u8);
        let gen = ((ud >> 32) as u32) & GEN_MASK;
        let idx = ud as u32;
        match op {
            Op::Ignore => {}
            Op::Accept => self.on_accept(idx, gen, res, flags & CQE_F_MORE != 0),
            Op::Connect => self.on_connect(idx, gen, res),
            Op::In0 | Op::In1 | Op::Out0 | Op::Out1 => self.on_conn_ready(idx, gen, op),
            Op::UdpIn => self.on_udp_readable(idx, gen),
            Op::FlowIn => self.on_flow_readable(idx, gen),
            Op::CtlAccept => self.on_control_accept(),
            Op::CtlIn => self.on_control_readable(idx, gen),
            Op::CtlOut => self.on_control_writable(idx, gen),
            Op::Signal => self.on_signal(),
            Op::Tick => self.on_tick(),
        }
    }

    fn on_signal(&mut self) {
        loop {
            match sys::read_signal(self.signal.as_fd_ref()) {
                Ok(Some(signo)) => {
                    if self.drain_deadline.is_some() {
                        log!("signal {signo} while draining: exiting now");
                        self.exit_now = true;
                        return;
                    }
                    log!(
                        "signal {signo}: closing listeners, draining {} connections",
                        self.conns.len()
                    );
                    self.begin_shutdown();
                }
                Ok(None) => break,
                Err(e) => {
                    log!("read signalfd: {e}");
                    break;
                }
            }
        }
        self.arm_signal();
    }

    pub(crate) fn draining(&self) -> bool {
        self.drain_deadline.is_some()
    }

    /// Close every listener and the control socket; relayed connections may finish.
    pub fn begin_shutdown(&mut self) {
        self.drain_deadline = Some(Instant::now() + self.cfg.drain_timeout);
        if let Some((nft, _)) = &mut self.nft {
            match nft.remove() {
                Ok(()) => log!("nftables table inet {} removed", crate::nft::TABLE),
                Err(e) => log!("{e}"),
            }
        }
        self.nft = None;
        let ids: Vec<u64> = self.mappings.iter().map(|(_, _, m)| m.id).collect();
        for id in ids {
            self.remove_mapping(id);
        }
        if let Some(srv) = self.ctl.take() {
            self.cancel(user_data(Op::CtlAccept, 0, 0));
            self.grave_fds.push(srv.into_fd());
        }
        for (i, g) in self.ctl_conns.keys() {
            self.close_control(i, g);
        }
    }

    fn on_tick(&mut self) {
        self.now += 1;
        self.expire_flows();
        for (mi, mg) in self.mappings.keys() {
            let m = self.mappings.get_mut(mi, mg).expect("key just listed");
            if m.accept_paused {
                m.accept_paused = false;
                self.arm_accept(mi, mg);
            }
        }
        self.arm_tick();
    }

    /// Count a backend failure on a mapping; log the first one.
    pub(crate) fn note_failure(&mut self, mapping: (u32, u32), what: &str, err: &io::Error) {
        if let Some(m) = self.mappings.get_mut(mapping.0, mapping.1) {
            m.counters.errors += 1;
            if !m.logged_failure {
                m.logged_failure = true;
                log!(
                    "mapping {}: {what} {}: {err} (further failures are only counted)",
                    m.id,
                    m.spec.container
                );
            }
        }
    }

    pub(crate) fn counters(&mut self, mapping: (u32, u32)) -> Option<&mut Counters> {
        self.mappings
            .get_mut(mapping.0, mapping.1)
            .map(|m| &mut m.counters)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(srv) = &self.ctl {
            srv.unlink();
        }
    }
}
