//! Processes started in the running container on request (`exec`), through the runtime
//! library: each has its own stdio (pipes, or a pty master with resize), its pidfd and its
//! exit record. Their output goes to attached clients only — dockerd does not log exec
//! output either, so a byte a client misses is lost.
//!
//! Back-pressure: an exec's output is read only while every client attached to it has less
//! than [`OUTPUT_HIGH`] bytes queued; a slow client slows the process (it blocks on its full
//! pipe or pty), as with dockerd, and is never dropped for being slow. Without attached
//! clients (detached, or the client left) the output is drained and discarded, so an exec
//! never blocks on a pipe nobody reads.
//!
//! The process is the container's own (`process` of config.json: env, cwd, user,
//! capabilities, rlimits…) with the request's fields on top, as `runc exec` does.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime};

use berth_runtime::container::{self, ExecOptions};
use berth_runtime::sys::{self as rsys, Exit};
use oci_spec::runtime::Process;

use crate::attach::{self, Stdin};
use crate::control::{Attach, Conn, Mode};
use crate::logfile::Stream;
use crate::protocol::{ExecProcess, ExitInfo, Response};
use crate::shim::{Shim, DRAIN_TIMEOUT, EXEC_BIT, READS_PER_WAKE, READ_BUF};
use crate::sys;

/// Most execs held at once (running and finished).
const MAX_EXECS: usize = 1024;

/// Distinguishes an exec from an earlier one in the same slot, in poll tokens.
static GENERATION: AtomicU32 = AtomicU32::new(0);

fn token(slot: usize, gen: u32, src: u8) -> u64 {
    EXEC_BIT | u64::from(gen) << 24 | (slot as u64 & 0xffff) << 8 | u64::from(src)
}

/// Finished execs kept for `wait` and `state` (the oldest goes first).
pub const KEEP_FINISHED: usize = 64;

/// Output queued for an attached client beyond which the exec's output is no longer read
/// until that client catches up.
pub const OUTPUT_HIGH: usize = 64 * 1024;

/// A client attached to the exec in `slot` has [`OUTPUT_HIGH`] bytes or more queued.
fn backed_up(conns: &[Option<Conn>], slot: usize) -> bool {
    conns.iter().flatten().any(|c| {
        matches!(c.mode, Mode::Attached(Attach { exec: Some(x), .. }) if x == slot)
            && c.pending() >= OUTPUT_HIGH
    })
}

pub struct Exec {
    pub id: String,
    /// Its poll tokens' generation.
    pub gen: u32,
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
    pub tty: bool,
    /// Stdout pipe (or the pty master) and stderr pipe; None once at end of file.
    pub out: [Option<OwnedFd>; 2],
    pub stdin: Stdin,
    /// Which of its polls are armed (bit = [`Exec`] source number).
    pub armed: u8,
    /// Reaped: how and when (the output may still be draining).
    pub exit: Option<(Exit, SystemTime)>,
    pub drain_deadline: Option<Instant>,
    /// Recorded once the output is drained: what `wait` answers.
    pub info: Option<ExitInfo>,
}

/// Poll sources of an exec, numbered within its token.
pub const SRC_PIDFD: u8 = 0;
pub const SRC_OUT: u8 = 1;
pub const SRC_ERR: u8 = 2;
pub const SRC_STDIN: u8 = 3;

/// The OCI process for an exec: the container's, with the request applied.
pub fn process(bundle: &Path, req: &ExecProcess) -> Result<Process, String> {
    if req.args.is_empty() || req.args[0].is_empty() {
        return Err("exec: args must name a program".into());
    }
    let spec = berth_runtime::spec::load_created(bundle).map_err(|e| e.to_string())?;
    let mut p = spec.spec.process().clone().unwrap_or_default();
    p.set_args(Some(req.args.clone()));
    p.set_terminal(Some(req.tty));
    if !req.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &req.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(cwd) = req.cwd.as_deref().filter(|c| !c.is_empty()) {
        p.set_cwd(cwd.into());
    }
    if let Some(u) = req.user.as_deref().filter(|u| !u.is_empty()) {
        let bad = || format!("exec: user {u:?} must be UID or UID:GID (numbers)");
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
            None => (u.parse().map_err(|_| bad())?, p.user().gid()),
        };
        p.user_mut().set_uid(uid);
        p.user_mut().set_gid(gid);
    }
    if !req.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(req.additional_gids.clone()));
    }
    if let Some([rows, cols]) = req.console_size.filter(|_| req.tty) {
        let size = serde_json::json!({"height": rows, "width": cols});
        p.set_console_size(serde_json::from_value(size).ok());
    }
    Ok(p)
}

impl Exec {
    /// Start `req` in container `id`. The caller (the shim) becomes the process's parent.
    pub fn spawn(
        root: &Path,
        id: &str,
        bundle: &Path,
        exec_id: &str,
        req: &ExecProcess,
    ) -> Result<Exec, String> {
        let process = process(bundle, req)?;
        let pipe = |what: &str| rsys::pipe().map_err(|e| format!("exec: pipe for {what}: {e}"));
        let null =
            || sys::open(c"/dev/null", libc::O_RDWR, 0).map_err(|e| format!("open /dev/null: {e}"));
        // With a tty the pty replaces all three; the pipes are not made.
        let (out_r, out_w, err_r, err_w) = if req.tty {
            (None, null()?, None, null()?)
        } else {
            let (or, ow) = pipe("stdout")?;
            let (er, ew) = pipe("stderr")?;
            (Some(or), ow, Some(er), ew)
        };
        let (in_r, in_w) = if req.stdin && !req.tty {
            let (r, w) = pipe("stdin")?;
            (r, Some(w))
        } else {
            (null()?, None)
        };
        let opts = ExecOptions {
            process,
            console_socket: None,
            pid_file: None,
            preserve_fds: 0,
            stdio: Some([in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()]),
        };
        let e = container::exec(root, id, &opts).map_err(|e| format!("exec in {id}: {e}"))?;
        drop((in_r, out_w, err_w));
        let (out, stdin_fd) = match e.console {
            Some(master) => {
                let input = if req.stdin {
                    Some(
                        master
                            .try_clone()
                            .map_err(|e| format!("dup pty master: {e}"))?,
                    )
                } else {
                    None
                };
                ([Some(master), None], input)
            }
            None => ([out_r, err_r], in_w),
        };
        for fd in out.iter().flatten().chain(stdin_fd.iter()) {
            sys::set_nonblocking(fd.as_fd()).map_err(|e| format!("set non-blocking: {e}"))?;
        }
        Ok(Exec {
            id: exec_id.to_string(),
            gen: GENERATION.fetch_add(1, Ordering::Relaxed),
            pid: e.pid,
            pidfd: e.pidfd,
            tty: req.tty,
            out,
            stdin: Stdin::new(stdin_fd),
            armed: 0,
            exit: None,
            drain_deadline: None,
            info: None,
        })
    }

    pub fn running(&self) -> bool {
        self.exit.is_none()
    }

    /// Reap it if it has exited (idempotent); true when it was reaped now.
    pub fn try_reap(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match rsys::waitid_pidfd(self.pidfd.as_fd(), true) {
            Ok(Some(exit)) => {
                self.exit = Some((exit, SystemTime::now()));
                true
            }
            Ok(None) => false,
            Err(e) => {
                eprintln!("berth-shim: waitid on exec {}'s pidfd: {e}", self.id);
                false
            }
        }
    }

    pub fn exit_info(&self) -> Option<ExitInfo> {
        let (exit, when) = self.exit?;
        Some(ExitInfo {
            exit_code: exit.status(),
            signal: match exit {
                Exit::Signal(s) => Some(s),
                Exit::Code(_) => None,
            },
            exited_at: berth_runtime::time::rfc3339(when),
            oom_killed: false,
        })
    }
}

/// The event-loop side of execs: the shim's handlers for their polls and requests.
impl Shim {
    pub(crate) fn arm_execs(&mut self) {
        for (slot, e) in self.execs.iter_mut().enumerate() {
            let Some(e) = e else { continue };
            let read = !backed_up(&self.conns, slot);
            let sources = [
                (
                    SRC_PIDFD,
                    e.running().then(|| e.pidfd.as_raw_fd()),
                    libc::POLLIN,
                ),
                (
                    SRC_OUT,
                    e.out[0].as_ref().filter(|_| read).map(|f| f.as_raw_fd()),
                    libc::POLLIN,
                ),
                (
                    SRC_ERR,
                    e.out[1].as_ref().filter(|_| read).map(|f| f.as_raw_fd()),
                    libc::POLLIN,
                ),
                (
                    SRC_STDIN,
                    e.stdin.raw().filter(|_| e.stdin.armed),
                    libc::POLLOUT,
                ),
            ];
            for (src, fd, events) in sources {
                if let Some(fd) = fd {
                    if e.armed & 1 << src == 0 {
                        self.reactor
                            .poll(fd, events as u32, token(slot, e.gen, src));
                        e.armed |= 1 << src;
                    }
                }
            }
        }
    }

    pub(crate) fn on_exec_event(&mut self, tok: u64) {
        let slot = ((tok >> 8) & 0xffff) as usize;
        let gen = (tok >> 24) as u32;
        let src = tok as u8;
        match self.execs.get_mut(slot) {
            Some(Some(e)) if e.gen == gen => e.armed &= !(1 << src),
            _ => return,
        }
        match src {
            SRC_PIDFD => {
                self.on_exec_exit(slot);
            }
            SRC_OUT => self.read_exec_output(slot, 0, false),
            SRC_ERR => self.read_exec_output(slot, 1, false),
            SRC_STDIN => self.flush_exec_stdin(slot),
            _ => {}
        }
    }

    /// Reap the exec in `slot` if it has exited; true when it was reaped now.
    pub(crate) fn on_exec_exit(&mut self, slot: usize) -> bool {
        let Some(e) = &mut self.execs[slot] else {
            return false;
        };
        if !e.try_reap() {
            return false;
        }
        e.drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
        true
    }

    /// Read output `i` of the exec in `slot` and send it to its clients, until a client is
    /// backed up (unless `all`: the exec is finishing and what is left is taken).
    fn read_exec_output(&mut self, slot: usize, i: usize, all: bool) {
        let stream = if i == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        let Some(tty) = self.execs[slot].as_ref().map(|e| e.tty) else {
            return;
        };
        if self.buf.is_empty() {
            self.buf = vec![0u8; READ_BUF];
        }
        let mut buf = std::mem::take(&mut self.buf);
        let mut dropped = Vec::new();
        let mut eof = false;
        for _ in 0..READS_PER_WAKE {
            let Some(fd) = self.execs[slot]
                .as_ref()
                .and_then(|e| e.out[i].as_ref())
                .map(|f| f.as_raw_fd())
            else {
                break;
            };
            match sys::read(fd, &mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    attach::broadcast(
                        &mut self.conns,
                        Some(slot),
                        tty,
                        stream,
                        &buf[..n],
                        &mut dropped,
                    );
                    for c in dropped.drain(..) {
                        self.close_conn(c);
                    }
                    if n < buf.len() || (!all && backed_up(&self.conns, slot)) {
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
        if eof {
            self.close_exec_output(slot, i);
        }
    }

    fn close_exec_output(&mut self, slot: usize, i: usize) {
        let Some(e) = &mut self.execs[slot] else {
            return;
        };
        let src = if i == 0 { SRC_OUT } else { SRC_ERR };
        if let Some(fd) = e.out[i].take() {
            if e.armed & 1 << src != 0 {
                self.reactor.cancel(fd.as_raw_fd(), token(slot, e.gen, src));
                e.armed &= !(1 << src);
            }
        }
    }

    pub(crate) fn flush_exec_stdin(&mut self, slot: usize) {
        let Some(e) = &mut self.execs[slot] else {
            return;
        };
        let mut closed = None;
        e.stdin.armed = e.stdin.flush(&mut closed);
        if let Some(fd) = closed {
            if e.armed & 1 << SRC_STDIN != 0 {
                self.reactor
                    .cancel(fd.as_raw_fd(), token(slot, e.gen, SRC_STDIN));
                e.armed &= !(1 << SRC_STDIN);
            }
            e.stdin.armed = false;
        }
    }

    /// The client's input ended: the exec's stdin closes once what is queued is written.
    pub(crate) fn end_exec_stdin(&mut self, slot: usize) {
        if let Some(e) = &mut self.execs[slot] {
            if e.stdin.is_open() {
                e.stdin.close_after_drain();
                self.flush_exec_stdin(slot);
            }
        }
    }

    /// Record the exit of every exec that was reaped and whose output has ended (or whose
    /// drain time is over), answer its waiters and close its attached clients.
    pub(crate) fn maybe_finish_execs(&mut self) {
        for slot in 0..self.execs.len() {
            let Some(e) = &self.execs[slot] else { continue };
            if e.exit.is_none() || e.info.is_some() {
                continue;
            }
            let drained = e.out.iter().all(|o| o.is_none());
            let late = e.drain_deadline.is_some_and(|d| Instant::now() >= d);
            if !drained && !late {
                continue;
            }
            for i in 0..2 {
                self.read_exec_output(slot, i, true);
                self.close_exec_output(slot, i);
            }
            let Some(e) = &mut self.execs[slot] else {
                continue;
            };
            let info = e.exit_info();
            e.info = info.clone();
            e.drain_deadline = None;
            if let Some(fd) = e.stdin.close() {
                if e.armed & 1 << SRC_STDIN != 0 {
                    self.reactor
                        .cancel(fd.as_raw_fd(), token(slot, e.gen, SRC_STDIN));
                }
            }
            if e.armed & 1 << SRC_PIDFD != 0 {
                self.reactor
                    .cancel(e.pidfd.as_raw_fd(), token(slot, e.gen, SRC_PIDFD));
            }
            e.armed = 0;
            e.stdin.armed = false;
            let reply = Response::Exited(info.expect("reaped"));
            for c in 0..self.conns.len() {
                let Some(conn) = &mut self.conns[c] else {
                    continue;
                };
                match conn.mode {
                    Mode::Waiting(Some(x)) if x == slot => {
                        conn.mode = Mode::Control;
                        if conn.reply(&reply).is_err() {
                            self.close_conn(c);
                            continue;
                        }
                        self.after_parked_reply(c);
                    }
                    Mode::Attached(Attach { exec: Some(x), .. }) if x == slot => {
                        conn.mode = Mode::Closing;
                        self.finish_closing(c);
                    }
                    _ => {}
                }
            }
            self.finished.push_back(slot);
            while self.finished.len() > KEEP_FINISHED {
                if let Some(old) = self.finished.pop_front() {
                    self.execs[old] = None;
                }
            }
        }
        if self
            .execs
            .iter()
            .flatten()
            .all(|e| e.out.iter().all(|o| o.is_none()))
            && self.outputs_closed()
        {
            self.buf = Vec::new();
        }
    }

    fn find_exec(&self, id: &str) -> Option<usize> {
        self.execs
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| e.id == id))
    }

    /// `exec`: start the process; with `attach`, switch connection `conn` to its streams first.
    pub(crate) fn start_exec(
        &mut self,
        conn: usize,
        exec_id: String,
        process: &ExecProcess,
        attach: bool,
    ) -> Response {
        let err = |message: String| Response::Error { message };
        if !self.running() || self.is_held() {
            return err(format!("container {} is not running", self.cfg.id));
        }
        if exec_id.is_empty() || self.find_exec(&exec_id).is_some() {
            return err(format!("exec id {exec_id:?} is empty or in use"));
        }
        let free = self.execs.iter().position(|e| e.is_none());
        if free.is_none() && self.execs.len() >= MAX_EXECS {
            return err(format!("too many execs (at most {MAX_EXECS})"));
        }
        let e = match Exec::spawn(
            &self.cfg.runtime_root,
            &self.cfg.id,
            &self.cfg.bundle,
            &exec_id,
            process,
        ) {
            Ok(e) => e,
            Err(m) => return err(m),
        };
        let (pid, tty, stdin) = (e.pid, e.tty, e.stdin.is_open());
        let slot = match free {
            Some(s) => {
                self.execs[s] = Some(e);
                s
            }
            None => {
                self.execs.push(Some(e));
                self.execs.len() - 1
            }
        };
        if !attach {
            return Response::ExecStarted { pid };
        }
        self.set_mode(
            conn,
            Mode::Attached(Attach {
                exec: Some(slot),
                stdin,
                stdout: true,
                stderr: true,
                input_open: true,
            }),
        );
        Response::Attached {
            tty,
            pid: Some(pid),
        }
    }

    pub(crate) fn wait_exec(&mut self, conn: usize, id: &str) -> Option<Response> {
        let Some(slot) = self.find_exec(id) else {
            return Some(no_such_exec(id));
        };
        match self.execs[slot].as_ref().and_then(|e| e.info.clone()) {
            Some(info) => Some(Response::Exited(info)),
            None => {
                self.set_mode(conn, Mode::Waiting(Some(slot)));
                None
            }
        }
    }

    pub(crate) fn kill_exec(&mut self, id: &str, signal: i32) -> Response {
        if !(1..=64).contains(&signal) {
            return Response::Error {
                message: format!("invalid signal {signal}"),
            };
        }
        let Some(e) = self.find_exec(id).and_then(|s| self.execs[s].as_ref()) else {
            return no_such_exec(id);
        };
        if !e.running() {
            return Response::Error {
                message: format!("exec {id} is not running"),
            };
        }
        match rsys::pidfd_send_signal(e.pidfd.as_fd(), signal) {
            Ok(()) => Response::Ok,
            Err(err) => Response::Error {
                message: format!("pidfd_send_signal to exec {id}: {err}"),
            },
        }
    }

    pub(crate) fn attach_exec(
        &mut self,
        conn: usize,
        id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Response {
        let Some(slot) = self.find_exec(id) else {
            return no_such_exec(id);
        };
        let Some(e) = self.execs[slot].as_ref().filter(|e| e.info.is_none()) else {
            return Response::Error {
                message: format!("exec {id} is not running"),
            };
        };
        let (tty, pid, stdin) = (e.tty, e.pid, stdin && e.stdin.is_open());
        self.set_mode(
            conn,
            Mode::Attached(Attach {
                exec: Some(slot),
                stdin,
                stdout,
                stderr,
                input_open: true,
            }),
        );
        Response::Attached {
            tty,
            pid: Some(pid),
        }
    }

    pub(crate) fn resize_exec(&mut self, id: &str, rows: u16, cols: u16) -> Response {
        let Some(e) = self.find_exec(id).and_then(|s| self.execs[s].as_ref()) else {
            return no_such_exec(id);
        };
        let err = |message: String| Response::Error { message };
        if !e.tty {
            return err(format!("exec {id} has no tty"));
        }
        let Some(master) = &e.out[0] else {
            return err(format!("exec {id} is not running"));
        };
        match sys::set_winsize(master.as_fd(), rows, cols) {
            Ok(()) => Response::Ok,
            Err(e) => err(format!("set window size of exec {id}: {e}")),
        }
    }
}

fn no_such_exec(id: &str) -> Response {
    Response::Error {
        message: format!("no such exec: {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_on_the_containers_process() {
        let d = tempfile::tempdir().unwrap();
        let mut spec: serde_json::Value =
            serde_json::from_str(berth_runtime::spec::DEFAULT_SPEC).unwrap();
        spec["process"]["env"] = serde_json::json!(["PATH=/bin", "A=1"]);
        std::fs::write(d.path().join("config.json"), spec.to_string()).unwrap();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        let req = ExecProcess {
            args: vec!["sh".into()],
            env: vec!["A=2".into(), "B=3".into()],
            cwd: Some("/tmp".into()),
            user: Some("1000:1001".into()),
            tty: true,
            stdin: true,
            additional_gids: vec![5],
            console_size: Some([24, 80]),
        };
        let p = process(d.path(), &req).unwrap();
        assert_eq!(p.args().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(
            p.env().as_deref(),
            Some(&["PATH=/bin".to_string(), "A=2".into(), "B=3".into()][..])
        );
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1001));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[5][..]));
        assert_eq!(p.terminal(), Some(true));
        assert!(p.console_size().is_some());
        // The container's capabilities stay.
        assert!(p.capabilities().is_some());
        let bad = ExecProcess {
            user: Some("root".into()),
            ..req.clone()
        };
        assert!(process(d.path(), &bad).unwrap_err().contains("UID"));
        let empty = ExecProcess {
            args: vec![],
            ..req
        };
        assert!(process(d.path(), &empty).is_err());
    }
}
