//! berthd's side of berth-shim: starting one for a container, and the async client for its
//! control socket. The request/response types are berth-shim's own (`berth_shim::protocol`),
//! imported, never re-declared.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

pub use berth_shim::protocol::{ExecProcess, ExitInfo, Request, Response, State, Stats};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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
}

/// Starts berth-shim, which creates and starts the container and detaches; returns when the
/// container runs and the shim's socket answers, or with the shim's error text.
pub async fn launch(cfg: &Config, l: &Launch<'_>) -> Result<(), String> {
    std::fs::create_dir_all(l.state_dir)
        .map_err(|e| format!("creating {}: {e}", l.state_dir.display()))?;
    let mut cmd = tokio::process::Command::new(&cfg.shim);
    cmd.arg("--id")
        .arg(l.id)
        .arg("--bundle")
        .arg(l.bundle)
        .arg("--state-dir")
        .arg(l.state_dir)
        .arg("--runtime-root")
        .arg(cfg.exec_root.join("runtime"))
        .arg("--log")
        .arg(l.log)
        .arg("--log-max-size")
        .arg(l.log_max_size.to_string())
        .arg("--log-max-files")
        .arg(l.log_max_file.to_string());
    // Create only: the program starts on a `start` request, once attach clients are in.
    cmd.arg("--hold");
    if l.stdin {
        cmd.arg("--stdin");
    }
    if l.stdin_once {
        cmd.arg("--stdin-once");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("starting {}: {e}", cfg.shim.display()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg.trim().trim_start_matches("berth-shim: ");
        return Err(if msg.is_empty() {
            format!("berth-shim exited with {}", out.status)
        } else {
            msg.to_string()
        });
    }
    Ok(())
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
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        self.stream.get_mut().write_all(&line).await?;
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
