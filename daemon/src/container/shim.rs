//! berthd's side of berth-shim: starting one for a container, and the async client for its
//! control socket. The request/response types are berth-shim's own (`berth_shim::protocol`),
//! imported, never re-declared.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

pub use berth_shim::protocol::{ExecProcess, ExitInfo, Request, Response, State, Stats};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::config::Config;

/// How a shim is started for one container.
pub struct Launch<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub state_dir: &'a Path,
    pub log: &'a Path,
    pub log_max_size: u64,
    pub log_max_file: u32,
    pub stdin: bool,
    pub stdin_once: bool,
    /// Create the container parked (without its program) for a later `claim`, instead of
    /// held.
    pub park: bool,
}

/// A berth-shim started ahead of need (`berth-shim --standby`): exec'd, loaded and detached,
/// waiting on a pipe for its arguments. Taking one instead of starting a process takes the
/// exec, the dynamic loading and the daemonizing fork off a container's start.
pub struct Standby {
    args: tokio::process::ChildStdin,
    reply: tokio::process::ChildStdout,
}

/// One standby shim. It is started off the async thread (`--standby --announce`: its
/// start-up in the background, at nice 19) and joins the pool only once it says it waits,
/// back at normal priority: a create that finds the pool empty starts one of its own
/// instead of waiting for one still starting.
#[derive(Default)]
pub struct Pool {
    ready: std::sync::Mutex<Option<Standby>>,
    filling: std::sync::atomic::AtomicBool,
}

impl Pool {
    fn take(&self) -> Option<Standby> {
        self.ready.lock().unwrap().take()
    }

    /// Starts a standby shim for the next container unless one is waiting or starting.
    pub fn refill(self: &Arc<Pool>, shim: &Path) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.ready.lock().unwrap().is_some() || self.filling.swap(true, SeqCst) {
            return;
        }
        let (pool, shim) = (self.clone(), shim.to_path_buf());
        tokio::spawn(async move {
            match standby_off_thread(&shim, true).await {
                Ok(mut sb) => {
                    // Bounded: a shim that never says it waits (an older one, or one a busy
                    // host starves) is dropped, and exits on its pipe's end.
                    let mut b = [0u8; 1];
                    let said = tokio::time::timeout(Duration::from_secs(5), sb.reply.read(&mut b));
                    let waits = matches!(said.await, Ok(Ok(1)))
                        && b[0] == berth_shim::protocol::STANDBY_WAITS;
                    if waits {
                        let mut slot = pool.ready.lock().unwrap();
                        if slot.is_none() {
                            *slot = Some(sb);
                        }
                    }
                }
                Err(e) => crate::log::debug(format_args!("standby shim: {e}")),
            }
            pool.filling.store(false, SeqCst);
        });
    }
}

/// A standby shim started from a blocking thread: the spawn's vfork stops the thread that
/// calls it until the exec, which is not then the async one. `announce`: for the pool (see
/// `Pool`).
async fn standby_off_thread(shim: &Path, announce: bool) -> std::io::Result<Standby> {
    let shim = shim.to_path_buf();
    tokio::task::spawn_blocking(move || standby(&shim, announce))
        .await
        .map_err(std::io::Error::other)?
}

fn standby(shim: &Path, announce: bool) -> std::io::Result<Standby> {
    let mut child = tokio::process::Command::new(shim)
        .arg("--standby")
        .args(announce.then_some("--announce"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let (args, reply) = (child.stdin.take(), child.stdout.take());
    // The launching process exits at once, leaving the detached shim; reap it.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(Standby {
        args: args.expect("piped"),
        reply: reply.expect("piped"),
    })
}

/// The write end of the pipe a parked container's shim got its arguments on, kept open
/// while it is parked: the shim watches the other end, and when it closes (the slot
/// claimed or dropped, or berthd gone, killed or not) a shim still parked shuts its
/// container down and exits. A parked container never outlives berthd's knowledge of it.
pub struct ParkedPipe(#[allow(dead_code)] tokio::process::ChildStdin);

/// Has a berth-shim (the standby one, or a new one if none is ready) create the container and
/// hold it; returns when the shim's socket answers, or with the shim's error text. Parked
/// (`l.park`), with the pipe to keep while it is.
pub async fn launch(
    cfg: &Config,
    pool: &Arc<Pool>,
    l: &Launch<'_>,
) -> Result<Option<ParkedPipe>, String> {
    use std::os::unix::ffi::OsStrExt;
    std::fs::create_dir_all(l.state_dir)
        .map_err(|e| format!("creating {}: {e}", l.state_dir.display()))?;
    let runtime_root = cfg.exec_root.join("runtime");
    let (size, files) = (l.log_max_size.to_string(), l.log_max_file.to_string());
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--id".as_ref(),
        l.id.as_ref(),
        "--bundle".as_ref(),
        l.bundle.as_os_str(),
        "--state-dir".as_ref(),
        l.state_dir.as_os_str(),
        "--runtime-root".as_ref(),
        runtime_root.as_os_str(),
        "--log".as_ref(),
        l.log.as_os_str(),
        "--log-max-size".as_ref(),
        size.as_ref(),
        "--log-max-files".as_ref(),
        files.as_ref(),
        // Create only: the program starts on a `start` request, once attach clients are in
        // (and, parked, is named by a `claim` request first).
        if l.park { "--park" } else { "--hold" }.as_ref(),
    ];
    if l.stdin {
        args.push("--stdin".as_ref());
    }
    if l.stdin_once {
        args.push("--stdin-once".as_ref());
    }
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let msg = berth_shim::protocol::encode_launch_args(&bytes);
    let started = |e: std::io::Error| format!("starting {}: {e}", cfg.shim.display());
    // Parking starts a shim of its own, its start-up in the background too (`--announce`):
    // the pool's is for creates someone waits on.
    let pooled = if l.park { None } else { pool.take() };
    let mut sb = match pooled {
        Some(s) => s,
        None => standby_off_thread(&cfg.shim, l.park)
            .await
            .map_err(started)?,
    };
    if sb.args.write_all(&msg).await.is_err() {
        // That standby shim is gone (killed while it waited): a new one.
        sb = standby_off_thread(&cfg.shim, false)
            .await
            .map_err(started)?;
        sb.args.write_all(&msg).await.map_err(started)?;
    }
    let pipe = if l.park {
        Some(ParkedPipe(sb.args))
    } else {
        drop(sb.args);
        None
    };
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match sb.reply.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if reply.contains(&0) {
                    break;
                }
            }
        }
    }
    // A parking shim announces itself (the pool reads its own standby's byte).
    let reply = reply
        .strip_prefix(&[berth_shim::protocol::STANDBY_WAITS])
        .unwrap_or(&reply);
    berth_shim::protocol::decode_ready(reply).map(|()| pipe)
}

/// A request as the shim reads it: one JSON line.
fn request_line(req: &Request) -> Vec<u8> {
    let mut line = serde_json::to_vec(req).expect("requests serialise");
    line.push(b'\n');
    line
}

/// Shuts a shim down from blocking code (a slot's parked container, see `slots`), waiting
/// up to 5 s for its reply; a shim already gone is not an error.
pub fn shut_down_blocking(state_dir: &Path) {
    use std::io::{Read, Write};
    let path = state_dir.join(berth_shim::protocol::SOCKET);
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(&path) else {
        return;
    };
    let line = request_line(&Request::Shutdown { background: false });
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(&line).is_ok() {
        let mut reply = [0u8; 256];
        // Bounded by the timeout; the reply is one short line, then the shim exits.
        let _ = s.read(&mut reply);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("connecting to the shim at {path}: {err}")]
    Connect { path: String, err: std::io::Error },
    #[error("talking to the shim: {0}")]
    Io(#[from] std::io::Error),
    #[error("the shim closed the connection")]
    Closed,
    #[error("bad reply from the shim: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the shim did not answer in time")]
    Timeout,
}

/// A connection to one shim.
pub struct Conn {
    stream: BufReader<UnixStream>,
    line: String,
}

impl Conn {
    pub async fn connect(state_dir: &Path) -> Result<Conn, CallError> {
        let path = state_dir.join(berth_shim::protocol::SOCKET);
        let s = UnixStream::connect(&path)
            .await
            .map_err(|err| CallError::Connect {
                path: path.display().to_string(),
                err,
            })?;
        Ok(Conn {
            stream: BufReader::new(s),
            line: String::new(),
        })
    }

    pub async fn call(&mut self, req: &Request) -> Result<Response, CallError> {
        self.send(req).await?;
        self.reply().await
    }

    /// The first half of [`Conn::call`]: a request whose reply is read later (a `wait`
    /// parked in the shim before the event it waits for can happen).
    pub async fn send(&mut self, req: &Request) -> Result<(), CallError> {
        self.stream.get_mut().write_all(&request_line(req)).await?;
        Ok(())
    }

    /// The reply to the oldest request sent and not yet answered.
    pub async fn reply(&mut self) -> Result<Response, CallError> {
        self.line.clear();
        if self.stream.read_line(&mut self.line).await? == 0 {
            return Err(CallError::Closed);
        }
        Ok(serde_json::from_str(&self.line)?)
    }

    /// Sends an attach request; on success the connection is a raw stream from here on.
    /// Returns the stream (with any bytes already buffered) and whether it is a tty.
    pub async fn attach(
        self,
        req: &Request,
    ) -> Result<Result<(AttachStream, bool), Response>, CallError> {
        Ok(self.switch(req).await?.map(|s| (s.stream, s.tty)))
    }

    /// Sends a request that switches the connection to an attach stream (`attach`, or `exec`
    /// with `attach: true`); on `attached`, the stream with the shim's account of it.
    pub async fn switch(mut self, req: &Request) -> Result<Result<Switched, Response>, CallError> {
        match self.call(req).await? {
            Response::Attached { tty, pid } => {
                let pending = self.stream.buffer().to_vec();
                Ok(Ok(Switched {
                    stream: AttachStream {
                        pending,
                        stream: self.stream.into_inner(),
                    },
                    tty,
                    pid,
                }))
            }
            other => Ok(Err(other)),
        }
    }
}

/// A connection switched to an attach stream.
pub struct Switched {
    pub stream: AttachStream,
    pub tty: bool,
    /// The exec's pid (host pid namespace) when the stream is an exec's.
    pub pid: Option<i32>,
}

pub struct AttachStream {
    pub pending: Vec<u8>,
    pub stream: UnixStream,
}

/// One request on a fresh connection, bounded in time (not for `wait`).
pub async fn call(state_dir: &Path, req: &Request) -> Result<Response, CallError> {
    tokio::time::timeout(Duration::from_secs(10), async {
        Conn::connect(state_dir).await?.call(req).await
    })
    .await
    .map_err(|_| CallError::Timeout)?
}
