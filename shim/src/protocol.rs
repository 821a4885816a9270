//! The control protocol on the shim's unix socket (`<state-dir>/shim.sock`), shared with the
//! daemon: one type per direction, imported on both sides, never re-declared.
//!
//! Framing: one JSON object per line each way. Each request gets exactly one reply line, in
//! order. Two requests hold their reply back: `wait` (until the container has exited and its
//! output is drained) and `shutdown` while the container still runs (until it is killed, reaped
//! and deleted).
//!
//! `attach` switches the connection: after the `{"reply":"attached",...}` line the socket
//! carries raw bytes.
//! - Shim → client, without a tty: Docker's multiplexed frames, an 8-byte header
//!   `[stream, 0, 0, 0, len (u32 big-endian)]` then `len` bytes; stream 1 is stdout, 2 stderr.
//!   With a tty: the pty's bytes as they are, no header.
//! - Client → shim: raw bytes for the container's stdin (if the attach asked for stdin).
//!   `shutdown(SHUT_WR)` or closing the socket ends this client's input; with `--stdin-once`
//!   that closes the container's stdin (Docker's `StdinOnce`).
//! - The shim closes the connection once the container has exited and all its output has been
//!   sent, or earlier if the client falls more than [`ATTACH_BUFFER_LIMIT`] bytes behind (the
//!   log file still gets every byte).
//!
//! Exec: `exec` starts a process in the running container with its own stdio (pipes, or a pty
//! with `process.tty`). With `attach: true` the reply is `attached` and that connection
//! becomes the exec's attach stream exactly as above (its stdin is the exec's when
//! `process.stdin`; the end of the client's input closes it) — switched before the process
//! starts, so no byte is missed; `attached` then carries the exec's `pid`. Unlike the
//! container's, an exec's slow client is never dropped: the exec's output waits for it (its
//! pipe fills and the process blocks), since no log keeps the bytes. Without `attach`, the
//! reply is `exec_started` and the output is discarded (dockerd never logs exec output). `wait`, `kill`, `resize` and `attach` take the
//! `exec_id` to address it; `state` lists the execs (the last 64 finished are kept).
//!
//! Errors never close the connection: the reply is `{"reply":"error","message":"…"}` and the
//! next request may follow.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Name of the control socket inside the state dir.
pub const SOCKET: &str = "shim.sock";
/// Name of the exit record inside the state dir (written atomically once the container exits).
pub const EXIT_FILE: &str = "exit.json";
/// Longest request line accepted; a longer one closes the connection.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;
/// Output an attached client may fall behind by before the shim drops it (queued in the shim;
/// the socket's own buffer comes on top). At ~600 MB/s of output this is ~14 ms of a reader
/// not being scheduled: on a 2-core machine at load 4, 4 MiB dropped a reader that kept up
/// on average in 3 of 5 runs, 8 MiB in none. The queue's memory goes back once it drains.
pub const ATTACH_BUFFER_LIMIT: usize = 8 * 1024 * 1024;
/// Stream numbers in attach frame headers (Docker's).
pub const STREAM_STDOUT: u8 = 1;
pub const STREAM_STDERR: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The container's state (never waits).
    State,
    /// Reply once the container (or exec) has exited and its output is in the log.
    Wait {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exec_id: Option<String>,
    },
    /// Signal the init through its pidfd; `all` signals every process in its cgroups.
    Kill {
        signal: i32,
        #[serde(default)]
        all: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exec_id: Option<String>,
    },
    /// Switch this connection to the attach stream (see the module documentation).
    Attach {
        #[serde(default)]
        stdin: bool,
        #[serde(default = "yes")]
        stdout: bool,
        #[serde(default = "yes")]
        stderr: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exec_id: Option<String>,
    },
    /// Set the pty's window size (tty containers only).
    Resize {
        rows: u16,
        cols: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exec_id: Option<String>,
    },
    /// CPU, memory and pids from the container's cgroups.
    Stats,
    /// Start the program of a container created with `--hold` (attach clients connected
    /// before it miss none of its output). An error once started.
    Start,
    /// Start a process inside the running container. `exec_id` is the caller's name for it
    /// (unique among this container's execs). With `attach`, the reply is `attached` and the
    /// connection is the exec's attach stream from its first byte; otherwise `exec_started`.
    Exec {
        exec_id: String,
        process: ExecProcess,
        #[serde(default)]
        attach: bool,
    },
    /// Kill the container if it runs, reap it, delete it from the runtime, then exit the shim.
    /// `exit.json` stays in the state dir. `background`: nobody waits for it; the shim does
    /// it at background priority (nice 19).
    Shutdown {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        background: bool,
    },
    /// Give a container created with `--park` its program from the bundle's config.json
    /// (which must be the parked one but for process args, env, cwd, user and rlimits), and
    /// the log limits; it is then held as with `--hold`. On an error the container is gone
    /// and the shim exits after replying.
    Claim {
        #[serde(default)]
        log_max_size: u64,
        #[serde(default = "one")]
        log_max_files: u32,
    },
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// What an exec runs: the container's own OCI `process` (env, cwd, user, capabilities,
/// rlimits…) with these fields on top, as `runc exec` does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecProcess {
    /// Program and arguments (the program is looked up in the container's PATH).
    pub args: Vec<String>,
    /// `KEY=VALUE` entries added to the container's, replacing those with the same key.
    #[serde(default)]
    pub env: Vec<String>,
    /// Absolute working directory (default: the container's).
    #[serde(default)]
    pub cwd: Option<String>,
    /// `UID` or `UID:GID`, numbers only: the daemon resolves names in the image's files.
    #[serde(default)]
    pub user: Option<String>,
    /// Supplementary groups (replace the container's when not empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
    /// Give the process a pty (its output is then one raw stream).
    #[serde(default)]
    pub tty: bool,
    /// Give the process a stdin the attached client writes to.
    #[serde(default)]
    pub stdin: bool,
    /// Initial pty size as [rows, cols] (Docker's ConsoleSize), with `tty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_size: Option<[u16; 2]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    /// kill, resize and shutdown succeeded.
    Ok,
    State(State),
    /// The answer to `wait`.
    Exited(ExitInfo),
    /// The connection is now an attach stream. `pid` is the exec's (host pid namespace) when
    /// the stream is an exec's; absent for the container's own.
    Attached {
        tty: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<i32>,
    },
    /// The answer to `exec` without `attach`: the process runs.
    ExecStarted {
        pid: i32,
    },
    Stats(Stats),
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    /// The init has exited; the exit is recorded once its output is drained.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    /// The init's pid in the host pid namespace.
    pub pid: i32,
    pub shim_pid: u32,
    pub status: Status,
    pub tty: bool,
    pub stdin: bool,
    pub log_path: PathBuf,
    /// "io_uring" or "epoll (…why…)".
    pub event_loop: String,
    /// Present once the exit is recorded.
    pub exit: Option<ExitInfo>,
    /// What starting took, as the shim measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Startup>,
    /// Running execs and the last finished ones, oldest first.
    #[serde(default)]
    pub execs: Vec<ExecState>,
}

/// Start-up accounting: `ready_us - runtime_us` is what the shim itself adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Startup {
    /// From the shim's main() until its socket listened with the container created (and
    /// started, without `--hold`).
    pub ready_us: u64,
    /// The runtime library's create (and start) within that.
    pub runtime_us: u64,
}

/// One exec as `state` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecState {
    pub exec_id: String,
    /// Its pid in the host pid namespace.
    pub pid: i32,
    pub tty: bool,
    /// Present once it has exited and its output is drained.
    pub exit: Option<ExitInfo>,
}

/// How the container ended: the record in `exit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The code, or 128 + signal when a signal ended it.
    pub exit_code: i32,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// RFC 3339 with nanoseconds, UTC.
    pub exited_at: String,
    /// The container's memory cgroup recorded an OOM kill.
    pub oom_killed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Total CPU time of the container's processes.
    pub cpu_usage_ns: u64,
    pub memory_usage_bytes: u64,
    /// None when unlimited.
    pub memory_limit_bytes: Option<u64>,
    pub pids: u64,
    /// OOM kills counted by the memory cgroup.
    pub oom_kills: u64,
    pub read_at: String,
}

/// Errors of the blocking client below.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{op} {}: {err}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error("bad reply from shim at {}: {err}", path.display())]
    Decode {
        path: PathBuf,
        err: serde_json::Error,
    },
    #[error("shim at {} closed the connection", path.display())]
    Closed { path: PathBuf },
}

/// A blocking client for the control socket: what berthd (and the tests) use.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    line: String,
}

impl Client {
    /// Connect to `<state_dir>/shim.sock`.
    pub fn connect(state_dir: &Path) -> Result<Client, ClientError> {
        let path = state_dir.join(SOCKET);
        let s = UnixStream::connect(&path).map_err(|err| ClientError::Io {
            op: "connect",
            path: path.clone(),
            err,
        })?;
        Ok(Client {
            path,
            reader: BufReader::new(s),
            line: String::new(),
        })
    }

    /// Bound every later read and write (None: wait forever).
    pub fn set_timeout(&self, t: Option<Duration>) -> Result<(), ClientError> {
        let s = self.reader.get_ref();
        s.set_read_timeout(t)
            .and_then(|()| s.set_write_timeout(t))
            .map_err(|err| self.io("set timeout", err))
    }

    fn io(&self, op: &'static str, err: io::Error) -> ClientError {
        ClientError::Io {
            op,
            path: self.path.clone(),
            err,
        }
    }

    /// Send one request and read its reply.
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        let mut line = serde_json::to_vec(req).expect("requests serialise");
        line.push(b'\n');
        self.reader
            .get_mut()
            .write_all(&line)
            .map_err(|e| self.io("send request to", e))?;
        self.line.clear();
        let n = self
            .reader
            .read_line(&mut self.line)
            .map_err(|e| self.io("read reply from", e))?;
        if n == 0 {
            return Err(ClientError::Closed {
                path: self.path.clone(),
            });
        }
        serde_json::from_str(&self.line).map_err(|err| ClientError::Decode {
            path: self.path.clone(),
            err,
        })
    }

    /// Send an attach request for the container; on `attached`, hand back the raw stream and
    /// whether it is a tty. On any other reply, that reply.
    pub fn attach(
        self,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<Result<(AttachStream, bool), Response>, ClientError> {
        self.switch(&Request::Attach {
            stdin,
            stdout,
            stderr,
            exec_id: None,
        })
    }

    /// Send a request that switches the connection to an attach stream (`attach`, or `exec`
    /// with `attach: true`); on `attached`, the raw stream and whether it is a tty.
    pub fn switch(
        mut self,
        req: &Request,
    ) -> Result<Result<(AttachStream, bool), Response>, ClientError> {
        match self.call(req)? {
            Response::Attached { tty, .. } => {
                // The reply line was read through a BufReader: bytes already buffered belong
                // to the stream.
                let pending = self.reader.buffer().to_vec();
                let stream = self.reader.into_inner();
                Ok(Ok((AttachStream { pending, stream }, tty)))
            }
            other => Ok(Err(other)),
        }
    }
}

/// The raw stream of an attach, with the bytes that arrived along with the reply line.
pub struct AttachStream {
    pending: Vec<u8>,
    pub stream: UnixStream,
}

impl Read for AttachStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.pending.is_empty() {
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        self.stream.read(buf)
    }
}

impl Write for AttachStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Read one multiplexed frame: `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut impl Read, payload: &mut Vec<u8>) -> io::Result<Option<u8>> {
    let mut hdr = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        let n = r.read(&mut hdr[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
    payload.resize(len, 0);
    r.read_exact(payload)?;
    Ok(Some(hdr[0]))
}

/// The frame header for `len` bytes of `stream`.
pub fn frame_header(stream: u8, len: usize) -> [u8; 8] {
    let l = (len as u32).to_be_bytes();
    [stream, 0, 0, 0, l[0], l[1], l[2], l[3]]
}

/// `berth-shim --standby` reads its arguments from stdin: each ended by NUL, the list by an
/// empty one.
pub fn encode_launch_args<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in args {
        out.extend_from_slice(a.as_ref());
        out.push(0);
    }
    out.push(0);
    out
}

/// The arguments in what a standby shim has read so far; None until the list is complete.
pub fn decode_launch_args(input: &[u8]) -> Option<Vec<String>> {
    if !(input.ends_with(b"\0\0") || input == b"\0") {
        return None;
    }
    Some(
        input
            .split(|&b| b == 0)
            .take_while(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// A shim's answer to whoever launched it, ended by NUL: `ok` once it serves, or the error.
pub const READY_OK: &str = "ok";

/// The byte a standby shim started `--standby --announce` writes on its answer pipe once
/// it waits for its arguments (at normal priority after a start-up in the background),
/// before the launch's outcome. Without `--announce` (an older berthd) it writes nothing.
pub const STANDBY_WAITS: u8 = b'+';

/// The launch's outcome in a shim's answer (read up to its NUL or the end of the pipe).
pub fn decode_ready(answer: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(answer);
    match text.split('\0').next().unwrap_or_default().trim() {
        READY_OK => Ok(()),
        "" => Err("berth-shim exited while starting".into()),
        m => Err(m.trim_start_matches("berth-shim: ").to_string()),
    }
}

/// Read `exit.json` from a state dir: how the container ended, even after the shim is gone.
pub fn read_exit(state_dir: &Path) -> io::Result<Option<ExitInfo>> {
    match std::fs::read(state_dir.join(EXIT_FILE)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_args_and_ready_answers_round_trip() {
        let args = ["--id", "abc", "--bundle", "/run/b"];
        let wire = encode_launch_args(&args);
        assert_eq!(decode_launch_args(&wire[..wire.len() - 1]), None);
        assert_eq!(decode_launch_args(&wire).unwrap(), args);
        assert_eq!(decode_ready(b"ok\0"), Ok(()));
        assert_eq!(
            decode_ready(b""),
            Err("berth-shim exited while starting".into())
        );
        assert_eq!(decode_ready(b"berth-shim: bad\0"), Err("bad".into()));
    }

    #[test]
    fn requests_have_a_stable_wire_form() {
        let r: Request = serde_json::from_str(r#"{"op":"kill","signal":15}"#).unwrap();
        assert_eq!(
            r,
            Request::Kill {
                signal: 15,
                all: false,
                exec_id: None
            }
        );
        let a: Request = serde_json::from_str(r#"{"op":"attach","stdin":true}"#).unwrap();
        assert_eq!(
            a,
            Request::Attach {
                stdin: true,
                stdout: true,
                stderr: true,
                exec_id: None
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::State).unwrap(),
            r#"{"op":"state"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::Ok).unwrap(),
            r#"{"reply":"ok"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::Attached {
                tty: false,
                pid: None
            })
            .unwrap(),
            r#"{"reply":"attached","tty":false}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::Attached {
                tty: true,
                pid: Some(42)
            })
            .unwrap(),
            r#"{"reply":"attached","tty":true,"pid":42}"#
        );
    }

    #[test]
    fn exec_and_state_round_trip() {
        let req = Request::Exec {
            exec_id: "e1".into(),
            process: ExecProcess {
                args: vec!["sh".into(), "-c".into(), "id".into()],
                user: Some("1000:1000".into()),
                tty: true,
                console_size: Some([24, 80]),
                ..Default::default()
            },
            attach: true,
        };
        let wire = serde_json::to_string(&req).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&wire).unwrap(), req);
        // Fields a client leaves out take their defaults.
        let short: Request =
            serde_json::from_str(r#"{"op":"exec","exec_id":"e2","process":{"args":["ls"]}}"#)
                .unwrap();
        let Request::Exec {
            process, attach, ..
        } = short
        else {
            panic!()
        };
        assert!(!attach && !process.tty && process.env.is_empty());
        let st = Response::State(State {
            id: "c".into(),
            pid: 7,
            shim_pid: 6,
            status: Status::Stopped,
            tty: false,
            stdin: false,
            log_path: "/x.log".into(),
            event_loop: "io_uring".into(),
            exit: Some(ExitInfo {
                exit_code: 0,
                signal: None,
                exited_at: "2026-01-01T00:00:00Z".into(),
                oom_killed: false,
            }),
            startup: None,
            execs: vec![ExecState {
                exec_id: "e1".into(),
                pid: 8,
                tty: true,
                exit: None,
            }],
        });
        let wire = serde_json::to_string(&st).unwrap();
        assert!(
            wire.starts_with(r#"{"reply":"state","id":"c","pid":7,"#),
            "{wire}"
        );
        assert_eq!(serde_json::from_str::<Response>(&wire).unwrap(), st);
        assert_eq!(
            serde_json::to_string(&Response::ExecStarted { pid: 9 }).unwrap(),
            r#"{"reply":"exec_started","pid":9}"#
        );
    }

    #[test]
    fn frames_round_trip() {
        let mut wire = frame_header(STREAM_STDERR, 3).to_vec();
        wire.extend_from_slice(b"abc");
        let mut r = &wire[..];
        let mut p = Vec::new();
        assert_eq!(read_frame(&mut r, &mut p).unwrap(), Some(2));
        assert_eq!(p, b"abc");
        assert_eq!(read_frame(&mut r, &mut p).unwrap(), None);
    }
}
