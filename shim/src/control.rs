//! One connection on the control socket: its request-line input, its bounded output queue,
//! and the mode it is in (answering requests, parked on `wait`/`shutdown`, or attached).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::protocol::{Request, Response, MAX_REQUEST_LINE};
use crate::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reading request lines, one reply each.
    Control,
    /// Parked on `wait` until the exit of the container (None) or of an exec (its slot) is
    /// recorded.
    Waiting(Option<usize>),
    /// Parked on `shutdown` until the container is gone.
    ShuttingDown,
    /// Switched to the attach stream.
    Attached(Attach),
    /// Sending what is queued, then closing.
    Closing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attach {
    /// The exec (its slot) whose streams these are; None for the container's.
    pub exec: Option<usize>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// The client has not ended its input yet.
    pub input_open: bool,
}

pub struct Conn {
    pub fd: OwnedFd,
    /// Bumped each time a poll is armed, so a stale completion is recognised.
    pub gen: u32,
    /// The poll mask currently armed (0: none).
    pub armed: u32,
    pub mode: Mode,
    /// Bytes received and not yet consumed (request lines, or stdin bytes after attach).
    pub inbuf: Vec<u8>,
    /// The client ended its input while a reply was parked (`wait`, `shutdown`): the
    /// connection closes once that reply is sent.
    pub input_eof: bool,
    out: Vec<u8>,
    out_pos: usize,
}

/// What reading from a connection produced.
pub enum Input {
    /// Bytes were appended to `inbuf`.
    Data,
    /// Nothing to read now.
    Again,
    /// End of input (orderly shutdown or reset).
    Eof,
}

impl Conn {
    pub fn new(fd: OwnedFd) -> Conn {
        Conn {
            fd,
            gen: 0,
            armed: 0,
            mode: Mode::Control,
            inbuf: Vec::new(),
            input_eof: false,
            out: Vec::new(),
            out_pos: 0,
        }
    }

    /// Bytes queued for the client.
    pub fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Write what is queued and then `parts`, as far as the socket takes them now, and queue
    /// the rest. Err: the client is gone.
    ///
    /// The socket is offered the queue too, not only when it is empty: a reader that keeps up
    /// on another core then never builds a queue, however many reads one wake-up relays
    /// (before, a queue waited for the next POLLOUT, and a burst of a full pipe dropped a
    /// reader that was keeping up).
    pub fn send(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let queued = self.pending();
        let mut iov: [&[u8]; 4] = [&[]; 4];
        iov[0] = &self.out[self.out_pos..];
        debug_assert!(parts.len() <= 3, "at most three parts per send");
        let n = parts.len().min(3);
        iov[1..=n].copy_from_slice(&parts[..n]);
        let mut skip = match sys::writev(self.fd.as_raw_fd(), &iov[..=n]) {
            Ok(w) => w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        let from_queue = skip.min(queued);
        self.out_pos += from_queue;
        skip -= from_queue;
        if self.pending() == 0 {
            self.settle();
        } else if self.out_pos >= self.out.len() / 2 {
            // Keep the buffer from growing by what was already sent.
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            self.out.extend_from_slice(&p[skip..]);
            skip = 0;
        }
        Ok(())
    }

    pub fn reply(&mut self, r: &Response) -> io::Result<()> {
        let mut line = serde_json::to_vec(r).expect("responses serialise");
        line.push(b'\n');
        self.send(&[&line])
    }

    /// A last reply, written out before the shim exits: waits up to ~100 ms for the socket
    /// to take it; a client that does not take it loses it.
    pub fn reply_last(&mut self, r: &Response) {
        let _ = self.reply(r);
        // Bounded: a reply line is small.
        for _ in 0..100 {
            if self.flush().is_err() || self.pending() == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Write what is queued, as far as the socket takes it. Err: the client is gone.
    pub fn flush(&mut self) -> io::Result<()> {
        // Bounded: each pass writes something or stops.
        for _ in 0..64 {
            if self.pending() == 0 {
                break;
            }
            match sys::send(self.fd.as_raw_fd(), &self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.pending() == 0 {
            self.settle();
        }
        Ok(())
    }

    /// The queue has drained: reset it, and give back a burst's buffer.
    fn settle(&mut self) {
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > 256 * 1024 {
            self.out = Vec::new();
        }
    }

    /// Read what the client sent (at most `limit` bytes) into `inbuf`.
    pub fn read_input(&mut self, limit: usize) -> Input {
        let mut buf = [0u8; 16 * 1024];
        let want = limit.min(buf.len());
        if want == 0 {
            return Input::Again;
        }
        match sys::read(self.fd.as_raw_fd(), &mut buf[..want]) {
            Ok(0) => Input::Eof,
            Ok(n) => {
                self.inbuf.extend_from_slice(&buf[..n]);
                Input::Data
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Input::Again,
            Err(_) => Input::Eof,
        }
    }

    /// The next complete request line, parsed. `Some(Err)` for a line that is not a request
    /// (or is too long: then the connection should close).
    pub fn next_request(&mut self) -> Option<Result<Request, String>> {
        let Some(nl) = self.inbuf.iter().position(|&b| b == b'\n') else {
            if self.inbuf.len() > MAX_REQUEST_LINE {
                self.inbuf.clear();
                return Some(Err(format!(
                    "request line longer than {MAX_REQUEST_LINE} bytes"
                )));
            }
            return None;
        };
        let r = serde_json::from_slice::<Request>(&self.inbuf[..nl])
            .map_err(|e| format!("bad request: {e}"));
        self.inbuf.drain(..=nl);
        Some(r)
    }

    /// The poll mask this connection needs now, given whether stdin can take more bytes.
    pub fn wanted(&self, stdin_room: bool) -> u32 {
        let out = if self.pending() > 0 {
            libc::POLLOUT as u32
        } else {
            0
        };
        let input = match self.mode {
            Mode::Control | Mode::Waiting(_) | Mode::ShuttingDown => {
                !self.input_eof && self.inbuf.len() <= MAX_REQUEST_LINE
            }
            Mode::Attached(a) => a.input_open && (!a.stdin || stdin_room),
            Mode::Closing => false,
        };
        out | if input { libc::POLLIN as u32 } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn parses_lines_and_queues_what_the_socket_refuses() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut c = Conn::new(OwnedFd::from(a));
        c.inbuf
            .extend_from_slice(b"{\"op\":\"state\"}\nnot json\n{\"op\":\"st");
        assert_eq!(c.next_request(), Some(Ok(Request::State)));
        assert!(matches!(c.next_request(), Some(Err(_))));
        assert_eq!(c.next_request(), None);
        // Fill the socket until it refuses, then check nothing is lost.
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0;
        while c.pending() == 0 {
            c.send(&[&chunk]).unwrap();
            sent += chunk.len();
        }
        assert!(c.wanted(true) & libc::POLLOUT as u32 != 0);
        let mut got = 0;
        let mut buf = vec![0u8; 1 << 20];
        b.set_nonblocking(true).unwrap();
        // Bounded: the total is finite; each round either reads or flushes.
        for _ in 0..10_000 {
            match b.read(&mut buf) {
                Ok(n) => got += n,
                Err(_) => c.flush().unwrap(),
            }
            if got == sent {
                break;
            }
        }
        assert_eq!(got, sent);
        assert_eq!(c.pending(), 0);
    }
}
