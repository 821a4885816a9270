//! The control socket's server side: JSON lines in, one JSON line out per request.
//!
//! Bad input is answered with an error response and never changes a mapping; a line longer
//! than `MAX_REQUEST_LINE` closes that control connection. Control connections are served in
//! the same loop as the relay, so a slow control client can never stall traffic: reads and
//! writes are non-blocking and each connection's buffers are bounded.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::engine::{log, user_data, Engine, EngineError, Op};
use crate::protocol::{Request, Response, MAX_REQUEST_LINE};
use crate::sys::{self, AsFdRef};

/// Unsent responses beyond this mean the client is not reading: it is dropped.
const MAX_PENDING_OUTPUT: usize = 4 * 1024 * 1024;

pub(crate) struct ControlServer {
    pub fd: OwnedFd,
    path: PathBuf,
}

impl ControlServer {
    pub fn bind(path: &Path) -> Result<Self, EngineError> {
        let err = |source| EngineError::Control {
            path: path.display().to_string(),
            source,
        };
        if path.exists() {
            // A live proxy still answers there: refuse to steal its socket. A stale file from a
            // crash is replaced.
            if UnixStream::connect(path).is_ok() {
                return Err(err(io::Error::from_raw_os_error(libc::EADDRINUSE)));
            }
            std::fs::remove_file(path).map_err(err)?;
        }
        let l = UnixListener::bind(path).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        l.set_nonblocking(true).map_err(err)?;
        Ok(ControlServer {
            fd: OwnedFd::from(l),
            path: path.to_path_buf(),
        })
    }

    pub fn unlink(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Remove the socket file and hand back the descriptor for closing.
    pub fn into_fd(self) -> OwnedFd {
        self.unlink();
        self.fd
    }
}

pub(crate) struct ControlConn {
    fd: OwnedFd,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Close once `output` is flushed.
    closing: bool,
}

impl Engine {
    pub(crate) fn on_control_accept(&mut self) {
        let Some(srv) = &self.ctl else { return };
        let lfd = srv.fd.as_raw_fd();
        loop {
            let Some(srv) = &self.ctl else { return };
            match sys::accept(srv.fd.as_fd_ref()) {
                Ok(fd) => {
                    let raw = fd.as_raw_fd();
                    let (i, g) = self.ctl_conns.insert(ControlConn {
                        fd,
                        input: Vec::new(),
                        output: Vec::new(),
                        closing: false,
                    });
                    self.poll(raw, libc::POLLIN, Op::CtlIn, g, i);
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
                Err(e) => {
                    log!("control accept: {e}");
                    break;
                }
            }
        }
        self.poll(lfd, libc::POLLIN, Op::CtlAccept, 0, 0);
    }

    pub(crate) fn on_control_readable(&mut self, i: u32, g: u32) {
        let mut eof = false;
        {
            let Some(c) = self.ctl_conns.get_mut(i, g) else {
                return;
            };
            loop {
                match sys::read(c.fd.as_raw_fd(), &mut self.scratch) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        c.input.extend_from_slice(&self.scratch[..n]);
                        // Answer what we have before reading more: input stays bounded even
                        // if a client writes faster than we respond (POLLIN fires again).
                        if c.input.len() > MAX_REQUEST_LINE {
                            break;
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
                    Err(_) => {
                        eof = true;
                        break;
                    }
                }
            }
        }
        // Answer every complete line.
        loop {
            let Some(c) = self.ctl_conns.get_mut(i, g) else {
                return;
            };
            let Some(nl) = c.input.iter().position(|&b| b == b'\n') else {
                if c.input.len() > MAX_REQUEST_LINE {
                    c.input.clear();
                    c.closing = true;
                    let resp = Response::Error {
                        message: format!(
                            "request line longer than {MAX_REQUEST_LINE} bytes; closing"
                        ),
                    };
                    Self::queue_response(c, &resp);
                }
                break;
            };
            let line: Vec<u8> = c.input.drain(..=nl).collect();
            let line = trim(&line[..line.len() - 1]);
            if line.is_empty() {
                continue;
            }
            let resp = match serde_json::from_slice::<Request>(line) {
                Ok(req) => self.handle_request(req),
                Err(e) => Response::Error {
                    message: format!("malformed request: {e}"),
                },
            };
            let Some(c) = self.ctl_conns.get_mut(i, g) else {
                return;
            };
            Self::queue_response(c, &resp);
        }
        let Some(c) = self.ctl_conns.get_mut(i, g) else {
            return;
        };
        if eof {
            c.closing = true;
        }
        self.flush_control(i, g);
    }

    pub(crate) fn on_control_writable(&mut self, i: u32, g: u32) {
        self.flush_control(i, g);
    }

    fn queue_response(c: &mut ControlConn, resp: &Response) {
        serde_json::to_writer(&mut c.output, resp).expect("responses always serialise");
        c.output.push(b'\n');
        if c.output.len() > MAX_PENDING_OUTPUT {
            c.output.clear();
            c.closing = true;
        }
    }

    /// Write pending output; then wait for more input, for writability, or close.
    fn flush_control(&mut self, i: u32, g: u32) {
        let Some(c) = self.ctl_conns.get_mut(i, g) else {
            return;
        };
        while !c.output.is_empty() {
            match sys::send(c.fd.as_raw_fd(), &c.output) {
                Ok(n) => {
                    c.output.drain(..n);
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    let fd = c.fd.as_raw_fd();
                    self.poll(fd, libc::POLLOUT, Op::CtlOut, g, i);
                    return;
                }
                Err(_) => {
                    c.output.clear();
                    c.closing = true;
                }
            }
        }
        if c.closing {
            self.close_control(i, g);
        } else {
            let fd = c.fd.as_raw_fd();
            self.poll(fd, libc::POLLIN, Op::CtlIn, g, i);
        }
    }

    pub(crate) fn close_control(&mut self, i: u32, g: u32) {
        if let Some(c) = self.ctl_conns.remove(i, g) {
            self.cancel(user_data(Op::CtlIn, g, i));
            self.cancel(user_data(Op::CtlOut, g, i));
            self.grave_fds.push(c.fd);
        }
    }

    fn handle_request(&mut self, req: Request) -> Response {
        match req {
            Request::Add(spec) => match self.add_mapping(spec) {
                Ok(id) => match self.sync_nftables() {
                    Ok(()) => Response::Added { id },
                    Err(e) => {
                        // Undo: a mapping is either fully published or not at all.
                        self.remove_mapping(id);
                        Response::Error {
                            message: e.to_string(),
                        }
                    }
                },
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            },
            Request::Remove { id } => {
                if self.remove_mapping(id) {
                    if let Err(e) = self.sync_nftables() {
                        return Response::Error {
                            message: format!("mapping {id} removed, but {e}"),
                        };
                    }
                    Response::Removed { id }
                } else {
                    Response::Error {
                        message: format!("no mapping with id {id}"),
                    }
                }
            }
            Request::List => Response::Mappings {
                mappings: self.list(),
            },
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |p| p + 1);
    &b[s..e]
}
