//! One relayed TCP connection and the byte pump for each of its two directions.
//!
//! The pump moves bytes with non-blocking splice(2) through a pipe borrowed from the pool only
//! while bytes are in flight; when no pipe is available it copies through the engine's scratch
//! buffer and keeps at most one read's worth of unsent bytes per direction. It never blocks and
//! never touches the ring: it returns what it is waiting for and the engine arms the poll.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use crate::engine::{log, user_data, Engine, Listener, Op};
use crate::pipes::{Pipe, PipePool};
use crate::reactor::Req;
use crate::sys::{self, SockAddr};

/// Direction 0 moves client → backend, direction 1 backend → client.
pub const TO_BACKEND: usize = 0;
pub const TO_CLIENT: usize = 1;

/// Most reads per pump call before yielding to other connections.
const PUMP_BUDGET: usize = 16;

#[derive(Default)]
pub struct Direction {
    pipe: Option<Pipe>,
    /// Bytes sitting in `pipe`.
    in_pipe: usize,
    /// Buffered-fallback bytes not yet written (empty, capacity 0 when unused).
    pending: Vec<u8>,
    pending_off: usize,
    /// The source reached end of stream.
    eof: bool,
    /// shutdown(SHUT_WR) was sent to the destination: this direction is finished.
    pub done: bool,
}

/// What a direction needs next.
#[derive(Debug)]
pub enum Next {
    /// Wait until the source is readable.
    Readable,
    /// Wait until the destination is writable.
    Writable,
    /// Used its budget with more to do: poll the source again (completes at once if ready).
    Yield,
    /// End of stream forwarded with shutdown(SHUT_WR) — or, when the other direction was
    /// already finished, left to the close(2) that must follow (it sends the FIN).
    Finished,
    /// A side failed (reset, refused write): the connection must be torn down with RST.
    Abort(io::Error),
}

pub struct Conn {
    /// Slab index and generation of the owning mapping.
    pub mapping: (u32, u32),
    /// [client, backend]
    pub fds: [OwnedFd; 2],
    /// The backend address, alive while the connect request may still read it.
    pub backend: Rc<SockAddr>,
    pub connected: bool,
    pub dirs: [Direction; 2],
    /// Bit set of ops in flight on the ring (see engine::Op), cancelled when the conn closes.
    pub armed: u8,
}

impl Conn {
    pub fn new(
        mapping: (u32, u32),
        client: OwnedFd,
        backend_fd: OwnedFd,
        backend: Rc<SockAddr>,
    ) -> Self {
        Conn {
            mapping,
            fds: [client, backend_fd],
            backend,
            connected: false,
            dirs: [Direction::default(), Direction::default()],
            armed: 0,
        }
    }

    /// The two sockets and the backend address, for closing.
    pub fn into_parts(self) -> ([OwnedFd; 2], Rc<SockAddr>) {
        (self.fds, self.backend)
    }

    pub fn finished(&self) -> bool {
        self.dirs[0].done && self.dirs[1].done
    }

    /// Release pipes to the pool (empty ones) or drop them (ones still holding bytes).
    pub fn release_pipes(&mut self, pool: &mut PipePool) {
        for d in &mut self.dirs {
            if let Some(p) = d.pipe.take() {
                if d.in_pipe == 0 {
                    pool.put(p);
                } else {
                    pool.discard(p);
                }
                d.in_pipe = 0;
            }
        }
    }

    /// Turn the next close of both sockets into RST.
    pub fn arm_reset(&self) {
        for fd in &self.fds {
            // Best effort: a socket that is already reset cannot be reset again.
            let _ = sys::set_linger_zero(fd.as_fd());
        }
    }

    /// Move bytes in direction `d` until it must wait. Returns the next wait and the bytes
    /// delivered to the destination.
    pub fn pump(&mut self, d: usize, pool: &mut PipePool, scratch: &mut [u8]) -> (Next, u64) {
        let src = self.fds[d].as_raw_fd();
        let dst = self.fds[1 - d].as_raw_fd();
        // With the other direction finished, this one finishing means the connection closes:
        // close(2) sends the FIN, so shutdown(2) would be a syscall for nothing.
        let other_done = self.dirs[1 - d].done;
        let dir = &mut self.dirs[d];
        let mut moved = 0u64;
        let mut budget = PUMP_BUDGET;
        // The last read came back short: the source's queue is (very likely) empty. Wait for it
        // rather than spend a syscall on EAGAIN; a poll armed on a socket that is readable after
        // all completes at once, so nothing is lost if it was not.
        let mut drained = false;
        loop {
            // 1. Deliver what is already in flight.
            if dir.in_pipe > 0 {
                let pipe = dir.pipe.as_ref().expect("bytes in pipe without a pipe");
                match sys::splice(pipe.read_end(), dst, dir.in_pipe) {
                    Ok(n) => {
                        dir.in_pipe -= n;
                        moved += n as u64;
                        if dir.in_pipe > 0 {
                            continue;
                        }
                        pool.put(dir.pipe.take().expect("pipe present"));
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                        return (Next::Writable, moved)
                    }
                    Err(e) => return (Next::Abort(e), moved),
                }
            } else if dir.pending_off < dir.pending.len() {
                match sys::send(dst, &dir.pending[dir.pending_off..]) {
                    Ok(n) => {
                        dir.pending_off += n;
                        moved += n as u64;
                        if dir.pending_off < dir.pending.len() {
                            continue;
                        }
                        dir.pending = Vec::new();
                        dir.pending_off = 0;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                        return (Next::Writable, moved)
                    }
                    Err(e) => return (Next::Abort(e), moved),
                }
            }
            // 2. Forward end of stream once everything before it is delivered.
            if dir.eof {
                if !dir.done {
                    dir.done = true;
                    if other_done {
                        return (Next::Finished, moved);
                    }
                    if let Err(e) = sys::shutdown_write(self.fds[1 - d].as_fd()) {
                        if e.raw_os_error() != Some(libc::ENOTCONN) {
                            return (Next::Abort(e), moved);
                        }
                    }
                }
                return (Next::Finished, moved);
            }
            if drained {
                return (Next::Readable, moved);
            }
            if budget == 0 {
                return (Next::Yield, moved);
            }
            budget -= 1;
            // 3. Read more: splice into a pooled pipe, or copy when none is available.
            if let Some(pipe) = dir.pipe.take().or_else(|| pool.get()) {
                let want = pipe.capacity();
                match sys::splice(src, pipe.write_end(), want) {
                    Ok(0) => {
                        pool.put(pipe);
                        dir.eof = true;
                    }
                    Ok(n) => {
                        // A TCP splice takes everything queued that fits, so a short one
                        // emptied the socket (or filled the pipe's slots: then the poll
                        // completes at once).
                        drained = n < want;
                        dir.in_pipe = n;
                        dir.pipe = Some(pipe);
                    }
                    Err(e) => {
                        pool.put(pipe);
                        if e.raw_os_error() == Some(libc::EAGAIN) {
                            return (Next::Readable, moved);
                        }
                        return (Next::Abort(e), moved);
                    }
                }
            } else {
                match sys::read(src, scratch) {
                    Ok(0) => dir.eof = true,
                    Ok(n) => {
                        drained = n < scratch.len();
                        match sys::send(dst, &scratch[..n]) {
                            Ok(w) => {
                                moved += w as u64;
                                if w < n {
                                    dir.pending.extend_from_slice(&scratch[w..n]);
                                }
                            }
                            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                                dir.pending.extend_from_slice(&scratch[..n]);
                            }
                            Err(e) => return (Next::Abort(e), moved),
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                        return (Next::Readable, moved)
                    }
                    Err(e) => return (Next::Abort(e), moved),
                }
            }
        }
    }
}

// ---- the engine's TCP events ----

impl Engine {
    pub(crate) fn on_accept(&mut self, mi: u32, mg: u32, res: i32, more: bool) {
        let shutting = self.draining();
        let Some(m) = self.mappings.get_mut(mi, mg) else {
            if res >= 0 {
                // SAFETY: a successful accept returned a new descriptor that nobody owns yet.
                drop(unsafe { OwnedFd::from_raw_fd(res) });
            }
            return;
        };
        if res < 0 {
            let err = io::Error::from_raw_os_error(-res);
            match -res {
                libc::ECANCELED => return,
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                    // Out of descriptors or memory: stop accepting until the next tick rather
                    // than spin; waiting clients stay in the backlog.
                    m.accept_paused = true;
                    let mapping = (mi, mg);
                    self.note_failure(mapping, "accept", &err);
                }
                _ => log!("mapping {}: accept on {}: {err}", m.id, m.spec.host),
            }
            let paused = self.mappings.get(mi, mg).is_some_and(|m| m.accept_paused);
            if !more && !paused {
                self.arm_accept(mi, mg);
            }
            return;
        }
        // SAFETY: a successful accept returned a new descriptor that nobody owns yet.
        let client = unsafe { OwnedFd::from_raw_fd(res) };
        if !more {
            self.arm_accept(mi, mg);
        }
        if shutting {
            return;
        }
        let m = self.mappings.get_mut(mi, mg).expect("checked above");
        m.counters.connections += 1;
        let Listener::Tcp { backend, .. } = &m.listener else {
            return;
        };
        let backend = Rc::clone(backend);
        let container = m.spec.container;
        let backend_fd = match sys::socket_for(&container, libc::SOCK_STREAM) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = sys::set_linger_zero(client.as_fd());
                self.note_failure((mi, mg), "socket for", &e);
                return;
            }
        };
        // Small request/response writes must not wait for Nagle. The client side inherits
        // TCP_NODELAY from the listener (set in Engine::install).
        let _ = sys::set_nodelay(backend_fd.as_fd());
        m.counters.active += 1;
        let bfd = backend_fd.as_raw_fd();
        let (ci, cg) =
            self.conns
                .insert(Conn::new((mi, mg), client, backend_fd, Rc::clone(&backend)));
        self.push(Req::Connect {
            fd: bfd,
            addr: backend,
            ud: user_data(Op::Connect, cg, ci),
        });
        self.conns.get_mut(ci, cg).expect("just inserted").armed |= Op::Connect.bit();
    }

    pub(crate) fn on_connect(&mut self, ci: u32, cg: u32, res: i32) {
        let Some(c) = self.conns.get_mut(ci, cg) else {
            return;
        };
        c.armed &= !Op::Connect.bit();
        if res < 0 {
            // Refused, unreachable or timed out (ECANCELED from the linked timeout): the client
            // learns at once through RST, as it would talking to the backend directly.
            let err = match -res {
                libc::ECANCELED => io::Error::from_raw_os_error(libc::ETIMEDOUT),
                e => io::Error::from_raw_os_error(e),
            };
            let mapping = c.mapping;
            self.note_failure(mapping, "connect", &err);
            self.close_conn(ci, cg, true);
            return;
        }
        c.connected = true;
        // The client has usually sent its request already: try it now, and wait for the backend.
        self.pump_conn(ci, cg, TO_BACKEND);
        if let Some(c) = self.conns.get_mut(ci, cg) {
            if c.dirs[TO_CLIENT].done {
                return;
            }
            c.armed |= Op::In1.bit();
            let fd = c.fds[1].as_raw_fd();
            self.poll(fd, libc::POLLIN, Op::In1, cg, ci);
        }
    }

    pub(crate) fn on_conn_ready(&mut self, ci: u32, cg: u32, op: Op) {
        let Some(c) = self.conns.get_mut(ci, cg) else {
            return;
        };
        c.armed &= !op.bit();
        let d = match op {
            Op::In0 | Op::Out0 => TO_BACKEND,
            _ => TO_CLIENT,
        };
        self.pump_conn(ci, cg, d);
    }

    fn pump_conn(&mut self, ci: u32, cg: u32, d: usize) {
        let Some(c) = self.conns.get_mut(ci, cg) else {
            return;
        };
        let (next, moved) = c.pump(d, &mut self.pipes, &mut self.scratch);
        let mapping = c.mapping;
        let (wait_op, fd, events) = match next {
            Next::Readable | Next::Yield => (
                if d == 0 { Op::In0 } else { Op::In1 },
                c.fds[d].as_raw_fd(),
                libc::POLLIN,
            ),
            Next::Writable => (
                if d == 0 { Op::Out0 } else { Op::Out1 },
                c.fds[1 - d].as_raw_fd(),
                libc::POLLOUT,
            ),
            Next::Finished => {
                let finished = c.finished();
                self.count_bytes(mapping, d, moved);
                if finished {
                    self.close_conn(ci, cg, false);
                }
                return;
            }
            Next::Abort(e) => {
                self.count_bytes(mapping, d, moved);
                if e.raw_os_error() != Some(libc::ECONNRESET)
                    && e.raw_os_error() != Some(libc::EPIPE)
                {
                    log!("relay: {e}");
                }
                self.close_conn(ci, cg, true);
                return;
            }
        };
        c.armed |= wait_op.bit();
        self.count_bytes(mapping, d, moved);
        self.poll(fd, events, wait_op, cg, ci);
    }

    fn count_bytes(&mut self, mapping: (u32, u32), d: usize, moved: u64) {
        if moved == 0 {
            return;
        }
        if let Some(k) = self.counters(mapping) {
            if d == TO_BACKEND {
                k.bytes_in += moved;
            } else {
                k.bytes_out += moved;
            }
        }
    }

    /// Tear a connection down; `reset` sends RST both ways instead of FIN.
    pub(crate) fn close_conn(&mut self, ci: u32, cg: u32, reset: bool) {
        let Some(mut c) = self.conns.remove(ci, cg) else {
            return;
        };
        for op in [Op::Connect, Op::In0, Op::In1, Op::Out0, Op::Out1] {
            if c.armed & op.bit() != 0 {
                self.cancel(user_data(op, cg, ci));
            }
        }
        if reset {
            c.arm_reset();
        }
        c.release_pipes(&mut self.pipes);
        if let Some(k) = self.counters(c.mapping) {
            k.active -= 1;
        }
        let (fds, backend) = c.into_parts();
        for fd in fds {
            self.push(Req::Close { fd });
        }
        self.grave_addrs.push(backend);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::OwnedFd;

    /// A connected pair (ours, theirs) over loopback; ours is non-blocking.
    fn pair(l: &TcpListener) -> (OwnedFd, TcpStream) {
        let theirs = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (OwnedFd::from(ours), theirs)
    }

    fn conn(pool_max: usize) -> (Conn, TcpStream, TcpStream, PipePool) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (c_ours, client) = pair(&l);
        let (b_ours, backend) = pair(&l);
        let addr = Rc::new(SockAddr::from_std(l.local_addr().unwrap()));
        let mut c = Conn::new((0, 0), c_ours, b_ours, addr);
        c.connected = true;
        (c, client, backend, PipePool::new(pool_max, 64 * 1024))
    }

    fn relay_until(c: &mut Conn, d: usize, pool: &mut PipePool, want: Next) -> u64 {
        let mut scratch = vec![0u8; 4096];
        let mut total = 0;
        for _ in 0..1000 {
            let (next, n) = c.pump(d, pool, &mut scratch);
            total += n;
            if std::mem::discriminant(&next) == std::mem::discriminant(&want) {
                return total;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("direction {d} never reached {want:?}");
    }

    #[test]
    fn splice_path_moves_bytes_and_half_close() {
        let (mut c, mut client, mut backend, mut pool) = conn(4);
        client.write_all(b"hello backend").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let n = relay_until(&mut c, TO_BACKEND, &mut pool, Next::Finished);
        assert_eq!(n, 13);
        let mut got = Vec::new();
        backend.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello backend");
        assert_eq!(pool.in_use(), 0, "pipe kept after the transfer");
        // the other direction still works after the half-close
        backend.write_all(b"reply").unwrap();
        drop(backend);
        relay_until(&mut c, TO_CLIENT, &mut pool, Next::Finished);
        assert!(c.finished());
        // Both directions done: the FIN to the client comes from closing, not shutdown(2).
        drop(c);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"reply");
    }

    #[test]
    fn buffered_fallback_when_pool_is_empty() {
        let (mut c, mut client, mut backend, mut pool) = conn(0);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let data = data.clone();
            std::thread::spawn(move || {
                client.write_all(&data).unwrap();
                client.shutdown(std::net::Shutdown::Write).unwrap();
                client
            })
        };
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            backend.read_to_end(&mut got).unwrap();
            got
        });
        relay_until(&mut c, TO_BACKEND, &mut pool, Next::Finished);
        drop(c);
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), data);
    }
}
