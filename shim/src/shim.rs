//! The shim proper: create and start the container in-process (so its init is our child),
//! then one single-threaded loop over readiness polls — the init's pidfd, SIGCHLD (orphans),
//! the control socket, the container's output and stdin, and each client.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use berth_runtime::container::{self, Container, Spawned};
use berth_runtime::sys::{self as rsys, Exit};
use berth_runtime::CreateOptions;

use crate::attach::{self, Stdin};
use crate::control::{Attach, Conn, Input, Mode};
use crate::exec::Exec;
use crate::logfile::{LogError, LogWriter, Stream};
use crate::protocol::{ExecState, ExitInfo, Request, Response, Startup, State, Status};
use crate::reactor::{Event, Reactor};
use crate::record::{self, RecordError};
use crate::{stats, sys};

/// What the shim is started with (its command line).
#[derive(Debug, Clone)]
pub struct Config {
    pub id: String,
    pub bundle: PathBuf,
    pub state_dir: PathBuf,
    pub runtime_root: PathBuf,
    pub log_path: PathBuf,
    /// Rotate the log at this many bytes (0: never).
    pub log_max_size: u64,
    pub log_max_files: u32,
    /// Keep the container's stdin open for attached clients (Docker's OpenStdin).
    pub stdin: bool,
    /// Close the container's stdin when the first attached client's input ends.
    pub stdin_once: bool,
    /// Use the epoll loop even if io_uring works.
    pub force_epoll: bool,
    /// Create the container but start its program only on a `start` request.
    pub hold: bool,
    /// Create the container parked (without its program) until a `claim` request; implies
    /// `hold`. Not with `stdin` or a terminal.
    pub park: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{op} container {id}: {err}")]
    Runtime {
        op: &'static str,
        id: String,
        err: berth_runtime::Error,
    },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{op}: {err}")]
    Sys {
        op: &'static str,
        err: std::io::Error,
    },
}

fn sys_err(op: &'static str) -> impl FnOnce(std::io::Error) -> ShimError {
    move |err| ShimError::Sys { op, err }
}

const T_PIDFD: u64 = 1;
const T_SIGNAL: u64 = 2;
const T_LISTEN: u64 = 3;
const T_OUT: u64 = 4;
const T_ERR: u64 = 5;
const T_STDIN: u64 = 6;
const T_LAUNCHER: u64 = 7;
const CONN_BIT: u64 = 1 << 63;
/// Tokens of exec sources: EXEC_BIT | slot << 8 | source number.
pub(crate) const EXEC_BIT: u64 = 1 << 62;
/// Most clients at once; more are refused (closed on accept).
const MAX_CONNS: usize = 256;
/// How long output may keep flowing after the init exited (descendants outside its pid
/// namespace holding the pipes) before the exit is recorded anyway.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes read from the container per read(2).
pub(crate) const READ_BUF: usize = 128 * 1024;
/// Reads per readiness event before other sources get their turn.
pub(crate) const READS_PER_WAKE: usize = 16;
/// Send buffer asked for a socket attached to the container's output.
const ATTACH_SOCKET_BUFFER: usize = 1 << 20;
/// Pipe size asked for the container's stdout (fewer wake-ups under heavy output).
const STDOUT_PIPE: usize = 1 << 20;

fn conn_token(slot: usize, gen: u32) -> u64 {
    CONN_BIT | (slot as u64) << 32 | gen as u64
}

pub struct Shim {
    pub(crate) cfg: Config,
    pub(crate) reactor: Reactor,
    event_loop: String,
    container: Container,
    pid: libc::pid_t,
    pidfd: OwnedFd,
    sigfd: OwnedFd,
    listener: UnixListener,
    tty: bool,
    /// Stdout pipe (or the pty master) and stderr pipe; None once at end of file.
    out: [Option<OwnedFd>; 2],
    /// Which fixed sources have a poll armed (bit = token).
    armed: u32,
    stdin: Stdin,
    log: LogWriter,
    pub(crate) buf: Vec<u8>,
    pub(crate) conns: Vec<Option<Conn>>,
    /// Exec processes by slot; finished ones stay (for wait and state) until pruned.
    pub(crate) execs: Vec<Option<Exec>>,
    /// Slots of finished execs, oldest first.
    pub(crate) finished: VecDeque<usize>,
    init_exit: Option<(Exit, SystemTime)>,
    drain_deadline: Option<Instant>,
    exit: Option<ExitInfo>,
    shutdown: bool,
    done: bool,
    /// Microseconds the runtime's create and start took (for start-up accounting).
    pub runtime_us: u64,
    /// Microseconds from the shim's main() to ready, set by the binary (0: not measured).
    pub ready_us: u64,
    /// Created with `hold` and not started yet.
    held: bool,
    /// Created with `park` and not claimed yet.
    parked: Option<container::Parked>,
    /// The container's mount namespace, held until shutdown: the init's exit then only
    /// drops a reference, and the namespace's teardown (unmounting /proc, /sys, /dev and the
    /// rest, ~0.3-0.5 ms here) comes after the exit is reported instead of before the kernel
    /// tells us of it. Released before the runtime's delete and the shutdown's reply, so
    /// the container's rootfs is free when the daemon unmounts it.
    mnt_ns: Option<OwnedFd>,
    /// The control socket's path is removed (see `unlink_socket`).
    unlinked: bool,
    /// While parked: our end of the pipe the daemon gave us our arguments on. The daemon
    /// keeps its end open while the container is parked; its closing before a claim (the
    /// daemon dropped the slot, or died) shuts the parked container down.
    launcher: Option<OwnedFd>,
}

impl Shim {
    /// After a container was parked in the background (see berth-shim's `serve`): this shim
    /// in a session of its own, it and the parked init back at `nice`, so that the
    /// claim and the program do not wait on a busy host. The init, blocked until the claim,
    /// competes with nobody meanwhile; it leaves the launcher's session at the claim.
    pub fn leave_background(&self, nice: libc::c_int) -> Result<(), ShimError> {
        sys::setsid().map_err(sys_err("setsid"))?;
        sys::set_nice(0, nice).map_err(sys_err("leave the background"))?;
        sys::set_nice(self.pid, nice).map_err(sys_err("the parked init leaving the background"))
    }

    /// Watches `fd`, the launcher's pipe, while the container is parked (see `launcher`).
    pub fn watch_launcher(&mut self, fd: OwnedFd) {
        if self.parked.is_some() {
            self.launcher = Some(fd);
        }
    }

    /// The launcher's pipe is readable: at its end, a container still parked is shut down
    /// (the shim exits once it is gone). Nothing is written on it; anything else is read
    /// away.
    fn on_launcher(&mut self) {
        let Some(fd) = &self.launcher else {
            return;
        };
        let mut b = [0u8; 64];
        match sys::read(fd.as_raw_fd(), &mut b) {
            Ok(0) => {}
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {}
            _ => return,
        }
        self.launcher = None;
        if self.parked.take().is_some() {
            // Its init, reading the program from the parked handle just dropped, exits; the
            // kill makes sure. Its exit finishes the shutdown (delete, then exit).
            self.shutdown = true;
            let _ = rsys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        }
    }

    /// Create and start the container. The caller is single-threaded, is a child subreaper,
    /// and has bound `listener` at `<state_dir>/shim.sock`.
    pub fn start(cfg: Config, listener: UnixListener) -> Result<Shim, ShimError> {
        let (reactor, event_loop) =
            Reactor::new(cfg.force_epoll).map_err(sys_err("set up event loop"))?;
        let log = LogWriter::open(&cfg.log_path, cfg.log_max_size, cfg.log_max_files)?;
        let (out_r, out_w) = rsys::pipe().map_err(sys_err("pipe for stdout"))?;
        let (err_r, err_w) = rsys::pipe().map_err(sys_err("pipe for stderr"))?;
        let (in_r, in_w) = if cfg.stdin {
            let (r, w) = rsys::pipe().map_err(sys_err("pipe for stdin"))?;
            (r, Some(w))
        } else {
            let null =
                sys::open(c"/dev/null", libc::O_RDONLY, 0).map_err(sys_err("open /dev/null"))?;
            (null, None)
        };
        let opts = CreateOptions {
            id: cfg.id.clone(),
            bundle: cfg.bundle.clone(),
            root: cfg.runtime_root.clone(),
            stdio: Some([in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()]),
            ..Default::default()
        };
        let t0 = Instant::now();
        let create_err = |err| ShimError::Runtime {
            op: "create",
            id: cfg.id.clone(),
            err,
        };
        let (spawned, parked) = if cfg.park {
            let parked = container::create_parked(&opts).map_err(create_err)?;
            let spawned = Spawned {
                container: Container {
                    dir: parked.container().dir.clone(),
                    record: parked.container().record.clone(),
                },
                pidfd: parked
                    .pidfd()
                    .try_clone_to_owned()
                    .map_err(sys_err("dup the init's pidfd"))?,
                console: None,
            };
            (spawned, Some(parked))
        } else {
            (container::create(&opts).map_err(create_err)?, None)
        };
        // The container's ends now live in the init only.
        drop((in_r, out_w, err_w));
        // The init was cloned with default dispositions; from here on a vanished reader is
        // an EPIPE for the shim, never a fatal signal.
        // SAFETY: setting a signal to SIG_IGN has no memory effects.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        if !cfg.hold {
            if let Err(err) = container::start(&cfg.runtime_root, &cfg.id) {
                let _ = rsys::pidfd_send_signal(spawned.pidfd.as_fd(), libc::SIGKILL);
                let _ = rsys::waitid_pidfd(spawned.pidfd.as_fd(), false);
                let _ = container::delete(&cfg.runtime_root, &cfg.id, true);
                return Err(ShimError::Runtime {
                    op: "start",
                    id: cfg.id.clone(),
                    err,
                });
            }
        }
        let runtime_us = t0.elapsed().as_micros() as u64;
        let sigfd = sys::signalfd(&[libc::SIGCHLD]).map_err(sys_err("signalfd"))?;

        let tty = spawned.console.is_some();
        let (out, stdin_fd) = match spawned.console {
            Some(master) => {
                let input = if cfg.stdin {
                    Some(master.try_clone().map_err(sys_err("dup pty master"))?)
                } else {
                    None
                };
                ([Some(master), None], input)
            }
            None => {
                let _ = sys::set_pipe_size(out_r.as_fd(), STDOUT_PIPE);
                ([Some(out_r), Some(err_r)], in_w)
            }
        };
        for fd in out.iter().flatten().chain(stdin_fd.iter()) {
            sys::set_nonblocking(fd.as_fd()).map_err(sys_err("set non-blocking"))?;
        }
        listener
            .set_nonblocking(true)
            .map_err(sys_err("set control socket non-blocking"))?;
        // A namespace we cannot hold is torn down at the exit, as it would be anyway.
        let mnt_ns = std::fs::File::open(format!("/proc/{}/ns/mnt", spawned.container.record.pid))
            .ok()
            .map(OwnedFd::from);
        // Container set-up allocated and freed; hand the pages back before idling.
        sys::trim_heap();
        Ok(Shim {
            mnt_ns,
            unlinked: false,
            launcher: None,
            held: cfg.hold,
            parked,
            pid: spawned.container.record.pid,
            container: spawned.container,
            pidfd: spawned.pidfd,
            cfg,
            reactor,
            event_loop,
            sigfd,
            listener,
            tty,
            out,
            armed: 0,
            stdin: Stdin::new(stdin_fd),
            log,
            buf: Vec::new(),
            conns: Vec::new(),
            execs: Vec::new(),
            finished: VecDeque::new(),
            init_exit: None,
            drain_deadline: None,
            exit: None,
            shutdown: false,
            done: false,
            runtime_us,
            ready_us: 0,
        })
    }

    pub fn container_pid(&self) -> libc::pid_t {
        self.pid
    }

    pub fn event_loop(&self) -> &str {
        &self.event_loop
    }

    /// Serve until `shutdown`. Orphans that exited before the loop began are reaped first.
    pub fn run(mut self) -> Result<(), ShimError> {
        self.reap_children();
        sys::trim_stack(16 * 1024);
        let mut events: Vec<Event> = Vec::with_capacity(64);
        while !self.done {
            self.arm();
            let deadline = self
                .execs
                .iter()
                .flatten()
                .filter_map(|e| e.drain_deadline)
                .chain(self.drain_deadline)
                .min();
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            events.clear();
            self.reactor
                .wait(&mut events, timeout)
                .map_err(sys_err("wait for events"))?;
            for &(token, revents) in &events {
                self.dispatch(token, revents);
            }
            self.maybe_finish_execs();
            self.maybe_finish();
        }
        self.unlink_socket();
        Ok(())
    }

    /// Removes the control socket's path, once: before the last reply of a shim that is
    /// done. After that reply the daemon may start another shim in the same state dir (a
    /// parked container replaced by one of its own), whose socket a late unlink by path
    /// would take away.
    fn unlink_socket(&mut self) {
        if !self.unlinked {
            self.unlinked = true;
            let _ = std::fs::remove_file(self.cfg.state_dir.join(crate::protocol::SOCKET));
        }
    }

    fn arm(&mut self) {
        let launcher = self
            .launcher
            .as_ref()
            .filter(|_| self.parked.is_some())
            .map(|f| f.as_raw_fd());
        let fixed: [(u64, Option<RawFd>, u32); 6] = [
            (T_LAUNCHER, launcher, libc::POLLIN as u32),
            (
                T_PIDFD,
                self.init_exit.is_none().then(|| self.pidfd.as_raw_fd()),
                libc::POLLIN as u32,
            ),
            (T_SIGNAL, Some(self.sigfd.as_raw_fd()), libc::POLLIN as u32),
            (
                T_LISTEN,
                Some(self.listener.as_raw_fd()),
                libc::POLLIN as u32,
            ),
            (
                T_OUT,
                self.out[0].as_ref().map(|f| f.as_raw_fd()),
                libc::POLLIN as u32,
            ),
            (
                T_ERR,
                self.out[1].as_ref().map(|f| f.as_raw_fd()),
                libc::POLLIN as u32,
            ),
        ];
        for (token, fd, events) in fixed {
            let bit = 1 << token;
            if let Some(fd) = fd {
                if self.armed & bit == 0 {
                    self.reactor.poll(fd, events, token);
                    self.armed |= bit;
                }
            }
        }
        if self.stdin.armed {
            if let Some(fd) = self.stdin.raw() {
                if self.armed & (1 << T_STDIN) == 0 {
                    self.reactor.poll(fd, libc::POLLOUT as u32, T_STDIN);
                    self.armed |= 1 << T_STDIN;
                }
            }
        }
        self.arm_execs();
        let room = self.stdin.room() > 0;
        for slot in 0..self.conns.len() {
            let target_room = match &self.conns[slot] {
                Some(Conn {
                    mode: Mode::Attached(Attach { exec: Some(x), .. }),
                    ..
                }) => self.execs[*x].as_ref().is_some_and(|e| e.stdin.room() > 0),
                _ => room,
            };
            let Some(c) = &mut self.conns[slot] else {
                continue;
            };
            let want = c.wanted(target_room);
            if want == c.armed {
                continue;
            }
            if c.armed != 0 {
                self.reactor
                    .cancel(c.fd.as_raw_fd(), conn_token(slot, c.gen));
            }
            c.gen = c.gen.wrapping_add(1);
            if want != 0 {
                self.reactor
                    .poll(c.fd.as_raw_fd(), want, conn_token(slot, c.gen));
            }
            c.armed = want;
        }
    }

    fn dispatch(&mut self, token: u64, revents: u32) {
        if token & CONN_BIT != 0 {
            let slot = ((token & !CONN_BIT) >> 32) as usize;
            let gen = token as u32;
            match self.conns.get_mut(slot) {
                Some(Some(c)) if c.gen == gen && c.armed != 0 => c.armed = 0,
                _ => return,
            }
            self.on_conn(slot, revents);
            return;
        }
        if token & EXEC_BIT != 0 {
            self.on_exec_event(token);
            return;
        }
        self.armed &= !(1 << token);
        match token {
            T_PIDFD => self.on_init_exit(),
            T_SIGNAL => {
                sys::drain_signalfd(self.sigfd.as_raw_fd());
                self.reap_children();
            }
            T_LISTEN => self.accept(),
            T_OUT => self.read_output(0),
            T_ERR => self.read_output(1),
            T_STDIN => self.flush_stdin(),
            T_LAUNCHER => self.on_launcher(),
            _ => {}
        }
    }

    // ---- the init and its descendants ----

    fn on_init_exit(&mut self) {
        if self.init_exit.is_some() {
            return;
        }
        match rsys::waitid_pidfd(self.pidfd.as_fd(), true) {
            Ok(Some(exit)) => {
                self.init_exit = Some((exit, SystemTime::now()));
                self.drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
            }
            Ok(None) => {}
            Err(e) => eprintln!("berth-shim: waitid on the init's pidfd: {e}"),
        }
    }

    /// Reap every exited child: the init through its pidfd, orphans by pid.
    fn reap_children(&mut self) {
        // Bounded: each pass reaps one child.
        for _ in 0..1024 {
            match sys::peek_exited_child() {
                Ok(Some(pid)) if pid == self.pid => {
                    if self.init_exit.is_some() {
                        return;
                    }
                    self.on_init_exit();
                }
                Ok(Some(pid)) => {
                    // An exec is reaped through its pidfd, keeping its status; others by pid.
                    let exec = self
                        .execs
                        .iter()
                        .position(|e| e.as_ref().is_some_and(|e| e.pid == pid && e.running()));
                    match exec {
                        Some(slot) => {
                            if !self.on_exec_exit(slot) {
                                return;
                            }
                        }
                        None => sys::reap(pid),
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    eprintln!("berth-shim: waitid for exited children: {e}");
                    return;
                }
            }
        }
    }

    /// Record the exit once the init is reaped and its output has ended (or the drain
    /// timeout passed).
    fn maybe_finish(&mut self) {
        let Some((exit, when)) = self.init_exit else {
            return;
        };
        if self.exit.is_some() {
            return;
        }
        let drained = self.out.iter().all(|o| o.is_none());
        let late = self.drain_deadline.is_some_and(|d| Instant::now() >= d);
        if !drained && !late {
            return;
        }
        for i in 0..2 {
            if self.out[i].is_some() {
                // Whatever is still buffered, without waiting for the holders to close.
                self.read_output(i);
                self.close_output(i);
            }
        }
        for s in [Stream::Stdout, Stream::Stderr] {
            if let Err(e) = self.log.end(s) {
                eprintln!("berth-shim: {e}");
            }
        }
        if let Err(e) = self.log.flush() {
            eprintln!("berth-shim: {e}");
        }
        let info = ExitInfo {
            exit_code: exit.status(),
            signal: match exit {
                Exit::Signal(s) => Some(s),
                Exit::Code(_) => None,
            },
            exited_at: berth_runtime::time::rfc3339(when),
            oom_killed: self.container.record.cgroup.oom_kills() > 0,
        };
        if let Err(e) = record::write_exit(&self.cfg.state_dir, &info) {
            eprintln!("berth-shim: {e}");
        }
        self.exit = Some(info.clone());
        self.drain_deadline = None;
        if let Some(fd) = self.stdin.close() {
            self.forget_stdin(fd);
        }
        let reply = Response::Exited(info);
        for slot in 0..self.conns.len() {
            let Some(c) = &mut self.conns[slot] else {
                continue;
            };
            match c.mode {
                Mode::Waiting(None) => {
                    c.mode = Mode::Control;
                    if c.reply(&reply).is_err() {
                        self.close_conn(slot);
                        continue;
                    }
                    self.after_parked_reply(slot);
                }
                Mode::Attached(Attach { exec: None, .. }) => {
                    c.mode = Mode::Closing;
                    self.finish_closing(slot);
                }
                _ => {}
            }
        }
        if self.shutdown {
            self.finish_shutdown();
        }
    }

    /// What goes before a shim's last reply, after which the daemon may unmount the rootfs
    /// and start another shim in the same state dir: the container's mount namespace, and
    /// the control socket's path (see `unlink_socket`).
    fn let_go(&mut self) {
        self.mnt_ns = None;
        self.unlink_socket();
    }

    fn finish_shutdown(&mut self) {
        self.let_go();
        let reply = match container::delete(&self.cfg.runtime_root, &self.cfg.id, true) {
            Ok(()) => Response::Ok,
            // The runtime's state went first (berthd removed a slot under a shim still
            // parking, then went away): what this shim holds of the container is enough
            // to remove its cgroups.
            Err(berth_runtime::Error::NotFound(_)) => {
                let _ = self.container.destroy();
                Response::Ok
            }
            Err(e) => Response::Error {
                message: format!("delete container {}: {e}", self.cfg.id),
            },
        };
        for c in self.conns.iter_mut().flatten() {
            if c.mode == Mode::ShuttingDown {
                c.reply_last(&reply);
            }
        }
        self.done = true;
    }

    // ---- output ----

    fn read_output(&mut self, i: usize) {
        let stream = if i == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        if self.buf.is_empty() {
            self.buf = vec![0u8; READ_BUF];
        }
        let mut buf = std::mem::take(&mut self.buf);
        let mut dropped = Vec::new();
        let mut eof = false;
        for _ in 0..READS_PER_WAKE {
            let Some(fd) = &self.out[i] else { break };
            match sys::read(fd.as_raw_fd(), &mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    if let Err(e) = self.log.feed(stream, &buf[..n]) {
                        eprintln!("berth-shim: {e}");
                    }
                    attach::broadcast(
                        &mut self.conns,
                        None,
                        self.tty,
                        stream,
                        &buf[..n],
                        &mut dropped,
                    );
                    for slot in dropped.drain(..) {
                        self.close_conn(slot);
                    }
                    if n < buf.len() {
                        // The pipe is empty for now: one read saved.
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // EIO from a pty master: every slave end is closed.
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        self.buf = buf;
        if let Err(e) = self.log.flush() {
            eprintln!("berth-shim: {e}");
        }
        if eof {
            if let Err(e) = self.log.end(stream) {
                eprintln!("berth-shim: {e}");
            }
            self.close_output(i);
        }
    }

    fn close_output(&mut self, i: usize) {
        let token = if i == 0 { T_OUT } else { T_ERR };
        if let Some(fd) = self.out[i].take() {
            if self.armed & (1 << token) != 0 {
                self.reactor.cancel(fd.as_raw_fd(), token);
                self.armed &= !(1 << token);
            }
        }
        if self.outputs_closed()
            && self
                .execs
                .iter()
                .flatten()
                .all(|e| e.out.iter().all(|o| o.is_none()))
        {
            // The relay buffer is not needed any more.
            self.buf = Vec::new();
        }
    }

    // ---- stdin ----

    fn flush_stdin(&mut self) {
        let mut closed = None;
        self.stdin.armed = self.stdin.flush(&mut closed);
        if let Some(fd) = closed {
            self.forget_stdin(fd);
        }
    }

    fn forget_stdin(&mut self, fd: OwnedFd) {
        if self.armed & (1 << T_STDIN) != 0 {
            self.reactor.cancel(fd.as_raw_fd(), T_STDIN);
            self.armed &= !(1 << T_STDIN);
        }
        self.stdin.armed = false;
    }

    // ---- clients ----

    fn accept(&mut self) {
        // Bounded per wake; the listener stays armed for the rest.
        for _ in 0..32 {
            let fd = match sys::accept(self.listener.as_fd()) {
                Ok(fd) => fd,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    eprintln!("berth-shim: accept on the control socket: {e}");
                    return;
                }
            };
            let free = self.conns.iter().position(|c| c.is_none());
            match free {
                Some(slot) => self.conns[slot] = Some(Conn::new(fd)),
                None if self.conns.len() < MAX_CONNS => self.conns.push(Some(Conn::new(fd))),
                None => drop(fd),
            }
        }
    }

    pub(crate) fn close_conn(&mut self, slot: usize) {
        if let Some(c) = self.conns[slot].take() {
            if c.armed != 0 {
                self.reactor
                    .cancel(c.fd.as_raw_fd(), conn_token(slot, c.gen));
            }
            if let Mode::Attached(a) = c.mode {
                if a.stdin && a.input_open {
                    self.end_client_stdin(a.exec);
                }
            }
        }
    }

    /// An attached client's input ended: with StdinOnce, the container's stdin closes; an
    /// exec's stdin always does (as `docker exec -i`).
    fn end_client_stdin(&mut self, target: Option<usize>) {
        match target {
            None => {
                if self.cfg.stdin_once && self.stdin.is_open() {
                    self.stdin.close_after_drain();
                    self.flush_stdin();
                }
            }
            Some(x) => self.end_exec_stdin(x),
        }
    }

    /// A parked reply was sent: close if the client's input had ended, else go on reading.
    pub(crate) fn after_parked_reply(&mut self, slot: usize) {
        match &mut self.conns[slot] {
            Some(c) if c.input_eof => {
                c.mode = Mode::Closing;
                self.finish_closing(slot);
            }
            Some(_) => self.serve_requests(slot),
            None => {}
        }
    }

    pub(crate) fn finish_closing(&mut self, slot: usize) {
        let Some(c) = &mut self.conns[slot] else {
            return;
        };
        if c.flush().is_err() || c.pending() == 0 {
            sys::shutdown_write(c.fd.as_fd());
            self.close_conn(slot);
        }
    }

    fn on_conn(&mut self, slot: usize, revents: u32) {
        let Some(c) = &mut self.conns[slot] else {
            return;
        };
        if revents & libc::POLLOUT as u32 != 0 && c.flush().is_err() {
            self.close_conn(slot);
            return;
        }
        if c.mode == Mode::Closing {
            self.finish_closing(slot);
            return;
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) as u32 == 0 {
            return;
        }
        match c.mode {
            Mode::Attached(a) => self.on_attach_input(slot, a),
            _ => {
                let limit = crate::protocol::MAX_REQUEST_LINE + 1
                    - c.inbuf.len().min(crate::protocol::MAX_REQUEST_LINE);
                match c.read_input(limit) {
                    // A half-closed client still gets its parked reply (`nc -N`, socat).
                    Input::Eof if matches!(c.mode, Mode::Waiting(_) | Mode::ShuttingDown) => {
                        c.input_eof = true
                    }
                    Input::Eof => self.close_conn(slot),
                    Input::Again => {}
                    Input::Data => self.serve_requests(slot),
                }
            }
        }
    }

    fn on_attach_input(&mut self, slot: usize, mut a: Attach) {
        let room = match a.exec {
            None => self.stdin.room(),
            Some(x) => self.execs[x].as_ref().map_or(0, |e| e.stdin.room()),
        };
        let Some(c) = &mut self.conns[slot] else {
            return;
        };
        let limit = if a.stdin { room } else { 16 * 1024 };
        match c.read_input(limit) {
            Input::Again => {}
            Input::Data => {
                let data = std::mem::take(&mut c.inbuf);
                if a.stdin {
                    self.push_stdin(a.exec, &data);
                }
                if let Some(c) = &mut self.conns[slot] {
                    c.inbuf = data;
                    c.inbuf.clear();
                }
            }
            Input::Eof => {
                a.input_open = false;
                c.mode = Mode::Attached(a);
                if a.stdin {
                    self.end_client_stdin(a.exec);
                }
            }
        }
    }

    /// Queue client bytes for the stdin of `target` and write what it takes now.
    fn push_stdin(&mut self, target: Option<usize>, data: &[u8]) {
        match target {
            None => {
                self.stdin.push(data);
                self.flush_stdin();
            }
            Some(x) => {
                if let Some(e) = &mut self.execs[x] {
                    e.stdin.push(data);
                }
                self.flush_exec_stdin(x);
            }
        }
    }

    /// Answer the complete request lines a client has sent, until it parks or switches.
    pub(crate) fn serve_requests(&mut self, slot: usize) {
        // Bounded: MAX_REQUEST_LINE of input holds at most this many minimal requests.
        for _ in 0..8192 {
            let Some(c) = &mut self.conns[slot] else {
                return;
            };
            if c.mode != Mode::Control {
                return;
            }
            let Some(req) = c.next_request() else { return };
            let reply = match req {
                Ok(r) => self.handle(slot, r),
                Err(message) => Some(Response::Error { message }),
            };
            let Some(c) = &mut self.conns[slot] else {
                return;
            };
            if let Some(r) = reply {
                if c.reply(&r).is_err() {
                    self.close_conn(slot);
                    return;
                }
            }
            // Bytes after an attach line are the client's first stdin bytes.
            if let Mode::Attached(a) = c.mode {
                let data = std::mem::take(&mut c.inbuf);
                if a.stdin && !data.is_empty() {
                    self.push_stdin(a.exec, &data);
                }
                return;
            }
        }
    }

    pub(crate) fn is_held(&self) -> bool {
        self.held
    }

    /// The container's stdout and stderr have both ended.
    pub(crate) fn outputs_closed(&self) -> bool {
        self.out.iter().all(|o| o.is_none())
    }

    pub(crate) fn running(&self) -> bool {
        self.init_exit.is_none()
    }

    /// One request; None when the reply waits (wait, shutdown).
    fn handle(&mut self, slot: usize, req: Request) -> Option<Response> {
        let err = |m: &str| Some(Response::Error { message: m.into() });
        match req {
            Request::State => Some(Response::State(State {
                id: self.cfg.id.clone(),
                pid: self.pid,
                shim_pid: std::process::id(),
                status: if self.running() {
                    Status::Running
                } else {
                    Status::Stopped
                },
                tty: self.tty,
                stdin: self.cfg.stdin,
                log_path: self.cfg.log_path.clone(),
                event_loop: self.event_loop.clone(),
                exit: self.exit.clone(),
                startup: (self.ready_us > 0).then_some(Startup {
                    ready_us: self.ready_us,
                    runtime_us: self.runtime_us,
                }),
                execs: self
                    .execs
                    .iter()
                    .flatten()
                    .map(|e| ExecState {
                        exec_id: e.id.clone(),
                        pid: e.pid,
                        tty: e.tty,
                        exit: e.info.clone(),
                    })
                    .collect(),
            })),
            Request::Exec {
                exec_id,
                process,
                attach,
            } => Some(self.start_exec(slot, exec_id, &process, attach)),
            Request::Wait { exec_id: Some(id) } => self.wait_exec(slot, &id),
            Request::Kill {
                signal,
                exec_id: Some(id),
                ..
            } => Some(self.kill_exec(&id, signal)),
            Request::Attach {
                stdin,
                stdout,
                stderr,
                exec_id: Some(id),
            } => Some(self.attach_exec(slot, &id, stdin, stdout, stderr)),
            Request::Resize {
                rows,
                cols,
                exec_id: Some(id),
            } => Some(self.resize_exec(&id, rows, cols)),
            Request::Wait { exec_id: None } => match &self.exit {
                Some(info) => Some(Response::Exited(info.clone())),
                None => {
                    self.set_mode(slot, Mode::Waiting(None));
                    None
                }
            },
            Request::Kill { signal, all, .. } => {
                if !(1..=64).contains(&signal) {
                    return err(&format!("invalid signal {signal}"));
                }
                if !self.running() {
                    return err("container is not running");
                }
                let r = if all {
                    self.container
                        .record
                        .cgroup
                        .signal_all(signal)
                        .map_err(|e| e.to_string())
                } else {
                    rsys::pidfd_send_signal(self.pidfd.as_fd(), signal)
                        .map_err(|e| format!("pidfd_send_signal: {e}"))
                };
                match r {
                    Ok(()) => Some(Response::Ok),
                    Err(m) => err(&m),
                }
            }
            Request::Attach {
                stdin,
                stdout,
                stderr,
                ..
            } => {
                if self.exit.is_some() {
                    return err("container is not running");
                }
                if let Some(c) = &self.conns[slot] {
                    // Room in the kernel as well as in our queue (ATTACH_BUFFER_LIMIT) before a
                    // reader is dropped; used only while the reader is behind.
                    let _ = sys::set_send_buffer(c.fd.as_fd(), ATTACH_SOCKET_BUFFER);
                }
                self.set_mode(
                    slot,
                    Mode::Attached(Attach {
                        exec: None,
                        stdin: stdin && self.stdin.is_open(),
                        stdout,
                        stderr,
                        input_open: true,
                    }),
                );
                Some(Response::Attached {
                    tty: self.tty,
                    pid: None,
                })
            }
            Request::Resize { rows, cols, .. } => {
                if !self.tty {
                    return err("container has no tty");
                }
                let Some(master) = &self.out[0] else {
                    return err("container is not running");
                };
                match sys::set_winsize(master.as_fd(), rows, cols) {
                    Ok(()) => Some(Response::Ok),
                    Err(e) => err(&format!("set window size: {e}")),
                }
            }
            Request::Stats => Some(Response::Stats(stats::read(&self.container.record.cgroup))),
            Request::Start => {
                if !self.held {
                    return err("container already started");
                }
                if self.parked.is_some() {
                    return err("container is parked: claim it first");
                }
                // The init is ours and so is its pidfd: no state to load, no pid to prove.
                // One that died while held is seen on the pidfd by `start_held`.
                match container::start_held(&self.container, self.pidfd.as_fd()) {
                    Ok(()) => {
                        self.held = false;
                        Some(Response::Ok)
                    }
                    Err(e) => err(&format!("start container {}: {e}", self.cfg.id)),
                }
            }
            Request::Claim {
                log_max_size,
                log_max_files,
            } => {
                let Some(parked) = self.parked.take() else {
                    return err("container is not parked");
                };
                match container::claim(parked, &self.cfg.bundle) {
                    Ok(_) => {
                        self.log.set_limits(log_max_size, log_max_files);
                        Some(Response::Ok)
                    }
                    Err(e) => {
                        // The runtime destroyed the container (and reaped the init): reply,
                        // then exit as a shut-down shim does.
                        let reply = Response::Error {
                            message: format!("claim container {}: {e}", self.cfg.id),
                        };
                        self.let_go();
                        if let Some(c) = self.conns[slot].as_mut() {
                            c.reply_last(&reply);
                        }
                        self.done = true;
                        None
                    }
                }
            }
            Request::Shutdown { background } => {
                if background {
                    sys::enter_background();
                }
                self.shutdown = true;
                self.set_mode(slot, Mode::ShuttingDown);
                if self.exit.is_some() {
                    self.finish_shutdown();
                } else if self.running() {
                    let _ = self.container.record.cgroup.signal_all(libc::SIGKILL);
                    let _ = rsys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
                }
                None
            }
        }
    }

    pub(crate) fn set_mode(&mut self, slot: usize, mode: Mode) {
        if let Some(c) = &mut self.conns[slot] {
            c.mode = mode;
        }
    }
}
