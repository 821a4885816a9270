//! Attached clients: the container's output fanned out to them (Docker's multiplexed frames,
//! or raw bytes with a tty) behind a bounded queue each, and their input relayed to the
//! container's stdin.
//!
//! Back-pressure: the container's output never waits for a client. A client more than
//! [`ATTACH_BUFFER_LIMIT`] bytes behind is dropped; the log has already taken the bytes.
//! An exec's output has no log: its clients are never dropped for being slow, the exec's
//! reads pause instead (`crate::exec`).
//! Input does wait: a client's input is read only while stdin has room, so a container that
//! does not read its stdin slows only the client typing into it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::control::{Conn, Mode};
use crate::logfile::Stream;
use crate::protocol::{frame_header, ATTACH_BUFFER_LIMIT, STREAM_STDERR, STREAM_STDOUT};

/// Send `data` read from `stream` of `target` (the container, or an exec's slot) to every
/// client attached to it that asked for that stream; the slots of clients that are gone (or,
/// for the container, too far behind) are pushed to `drop`.
pub fn broadcast(
    conns: &mut [Option<Conn>],
    target: Option<usize>,
    tty: bool,
    stream: Stream,
    data: &[u8],
    drop: &mut Vec<usize>,
) {
    let (no, _) = match stream {
        Stream::Stdout => (STREAM_STDOUT, ()),
        Stream::Stderr => (STREAM_STDERR, ()),
    };
    let hdr = frame_header(no, data.len());
    for (slot, c) in conns.iter_mut().enumerate() {
        let Some(c) = c else { continue };
        let Mode::Attached(a) = c.mode else { continue };
        if a.exec != target {
            continue;
        }
        let wanted = match stream {
            // With a tty there is one stream; it goes to whoever asked for either.
            _ if tty => a.stdout || a.stderr,
            Stream::Stdout => a.stdout,
            Stream::Stderr => a.stderr,
        };
        if !wanted {
            continue;
        }
        let sent = if tty {
            c.send(&[data])
        } else {
            c.send(&[&hdr, data])
        };
        if sent.is_err() || (target.is_none() && c.pending() > ATTACH_BUFFER_LIMIT) {
            drop.push(slot);
        }
    }
}

/// The container's stdin as the shim holds it: the write end of its pipe (or a duplicate of
/// the pty master), with the bytes clients sent that it has not taken yet.
pub struct Stdin {
    fd: Option<OwnedFd>,
    buf: Vec<u8>,
    pos: usize,
    close_when_drained: bool,
    /// A POLLOUT poll is armed on the descriptor.
    pub armed: bool,
}

/// Most client bytes held for stdin at once.
const STDIN_BUFFER: usize = 64 * 1024;

impl Stdin {
    pub fn new(fd: Option<OwnedFd>) -> Stdin {
        Stdin {
            fd,
            buf: Vec::new(),
            pos: 0,
            close_when_drained: false,
            armed: false,
        }
    }

    pub fn raw(&self) -> Option<RawFd> {
        self.fd.as_ref().map(|f| f.as_raw_fd())
    }

    pub fn is_open(&self) -> bool {
        self.fd.is_some()
    }

    /// How many more client bytes can be taken.
    pub fn room(&self) -> usize {
        if self.fd.is_none() || self.close_when_drained {
            return 0;
        }
        STDIN_BUFFER.saturating_sub(self.buf.len() - self.pos)
    }

    /// Queue bytes for the container (dropped when stdin is closed).
    pub fn push(&mut self, data: &[u8]) {
        if self.fd.is_some() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Close once what is queued has been written (StdinOnce).
    pub fn close_after_drain(&mut self) {
        self.close_when_drained = true;
    }

    /// Write what is queued. Returns true when a POLLOUT poll is needed. When the descriptor
    /// must be closed, it is returned in `closed` so the caller can cancel its poll first.
    pub fn flush(&mut self, closed: &mut Option<OwnedFd>) -> bool {
        let Some(fd) = &self.fd else { return false };
        // Bounded: each pass writes something or stops.
        for _ in 0..64 {
            if self.pos == self.buf.len() {
                break;
            }
            match crate::sys::writev(fd.as_raw_fd(), &[&self.buf[self.pos..]]) {
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => {
                    // The container closed its stdin: nothing more can be delivered.
                    self.buf.clear();
                    self.pos = 0;
                    *closed = self.fd.take();
                    return false;
                }
            }
        }
        self.buf.clear();
        self.pos = 0;
        if self.close_when_drained {
            *closed = self.fd.take();
        }
        false
    }

    /// Close now (container exited), returning the descriptor for poll cancellation.
    pub fn close(&mut self) -> Option<OwnedFd> {
        self.buf.clear();
        self.pos = 0;
        self.fd.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Attach;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    fn attached(stdout: bool, stderr: bool) -> (Conn, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut c = Conn::new(OwnedFd::from(a));
        c.mode = Mode::Attached(Attach {
            exec: None,
            stdin: false,
            stdout,
            stderr,
            input_open: true,
        });
        (c, b)
    }

    #[test]
    fn frames_per_stream_and_drops_a_slow_client() {
        let (c1, mut r1) = attached(true, false);
        let (c2, _r2) = attached(true, true);
        let mut conns = vec![Some(c1), Some(c2)];
        let mut dropped = Vec::new();
        broadcast(
            &mut conns,
            None,
            false,
            Stream::Stdout,
            b"out",
            &mut dropped,
        );
        broadcast(
            &mut conns,
            None,
            false,
            Stream::Stderr,
            b"err",
            &mut dropped,
        );
        assert!(dropped.is_empty());
        let mut got = [0u8; 11];
        r1.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"\x01\0\0\0\0\0\0\x03out");
        // Client 2 never reads: it is dropped once more than the limit is queued.
        let big = vec![b'x'; 256 * 1024];
        // Bounded: the limit is reached after a handful of rounds.
        for _ in 0..64 {
            broadcast(&mut conns, None, false, Stream::Stderr, &big, &mut dropped);
            if !dropped.is_empty() {
                break;
            }
        }
        assert_eq!(dropped, vec![1]);
    }

    #[test]
    fn an_execs_slow_client_is_kept() {
        let (mut c, _r) = attached(true, true);
        c.mode = Mode::Attached(Attach {
            exec: Some(0),
            stdin: false,
            stdout: true,
            stderr: true,
            input_open: true,
        });
        let mut conns = vec![Some(c)];
        let mut dropped = Vec::new();
        let big = vec![b'x'; 256 * 1024];
        // Twice the limit: more than the limit stays queued whatever the socket holds.
        for _ in 0..2 * ATTACH_BUFFER_LIMIT / big.len() {
            broadcast(
                &mut conns,
                Some(0),
                false,
                Stream::Stdout,
                &big,
                &mut dropped,
            );
        }
        assert!(dropped.is_empty());
        assert!(conns[0].as_ref().unwrap().pending() > ATTACH_BUFFER_LIMIT);
    }

    #[test]
    fn stdin_closes_after_drain_when_asked() {
        let (r, w) = berth_runtime::sys::pipe().unwrap();
        let mut s = Stdin::new(Some(w));
        s.push(b"hello");
        s.close_after_drain();
        let mut closed = None;
        assert!(!s.flush(&mut closed));
        assert!(closed.is_some() && !s.is_open());
        drop(closed);
        let mut f = std::fs::File::from(r);
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        assert_eq!(v, b"hello");
    }
}
