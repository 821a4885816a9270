//! /containers/{id}/exec and /exec/{id}/… endpoints: the Docker view of exec sessions, each
//! run by its container's shim (`crate::exec`).

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::Ctx;
use crate::attach::{splice_then, switching, wants_upgrade};
use crate::container::model::Status;
use crate::container::shim::{self, AttachStream, Request as ShimReq, Response as ShimResp};
use crate::container::Ctr;
use crate::daemon::Daemon;
use crate::exec::{self as sessions, ExecConfig, Session};
use crate::http::{self, ok_json, read_json, status, ApiError, ApiResult};

/// How long the shim may take to start an exec before the start fails.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Exec needs a running container: dockerd's refusals (409) otherwise.
fn runnable(c: &Ctr) -> ApiResult<()> {
    match c.status() {
        Status::Running => Ok(()),
        Status::Paused => Err(ApiError::conflict(format!(
            "Container {} is paused, unpause the container before exec",
            c.id
        ))),
        Status::Restarting => Err(ApiError::conflict(format!(
            "Container {} is restarting, wait until the container is running",
            c.id
        ))),
        _ => Err(ApiError::conflict(format!(
            "container {} is not running",
            c.id
        ))),
    }
}

/// Docker's event action text: entrypoint, a space, the arguments.
fn action(what: &str, cmd: &[String]) -> String {
    let (first, rest) = cmd.split_first().map_or(("", &[][..]), |(f, r)| (f, r));
    format!("{what}: {first} {}", rest.join(" "))
}

pub async fn create(ctx: &Ctx, id: &str, req: Request<Incoming>) -> ApiResult {
    let c = ctx.d.find(id)?;
    let cfg: ExecConfig = read_json(req.into_body()).await?;
    if cfg.cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    runnable(&c)?;
    if cfg.privileged {
        return Err(ApiError::bad_request(
            "exec --privileged is not supported by berthd yet",
        ));
    }
    let exec_id = crate::util::random_id();
    let event = action("exec_create", &cfg.cmd);
    ctx.d.exec.lock().unwrap().insert(Session {
        id: exec_id.clone(),
        container: c.id.clone(),
        config: cfg,
        running: false,
        started: false,
        exit_code: None,
        pid: 0,
    });
    ctx.d
        .container_event(&c, &event, &[("execID", exec_id.clone())]);
    Ok(http::json(StatusCode::CREATED, &json!({"Id": exec_id})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: bool,
    tty: bool,
    console_size: Option<[u16; 2]>,
}

/// A session berthd knows, or one a shim reports (berthd was restarted since it started).
async fn session(ctx: &Ctx, id: &str) -> ApiResult<Session> {
    let known = ctx.d.exec.lock().unwrap().get(id).cloned();
    match known {
        Some(s) => Ok(s),
        None => sessions::find_in_shims(&ctx.d, id)
            .await
            .ok_or_else(|| no_such_exec(id)),
    }
}

fn no_such_exec(id: &str) -> ApiError {
    ApiError::not_found(format!("No such exec instance: {id}"))
}

/// Marks the session started (once: a second start is refused as dockerd does).
fn claim(d: &Daemon, id: &str) -> ApiResult<Session> {
    let mut t = d.exec.lock().unwrap();
    let s = t.get_mut(id).ok_or_else(|| no_such_exec(id))?;
    if s.started {
        let what = if s.running {
            "is already running"
        } else {
            "has already run"
        };
        return Err(ApiError::conflict(format!(
            "Error: Exec command {id} {what}"
        )));
    }
    s.started = true;
    s.running = true;
    Ok(s.clone())
}

/// What the shim said to a start.
enum Started {
    /// Attached: the stream, from the process's first byte.
    Stream(AttachStream),
    /// Detached.
    Detached,
    /// Not started: the message (the session is finished with Docker's code for it).
    Failed(String),
}

/// Asks the container's shim to start the session's process (attached unless `detach`).
async fn run_in_shim(
    d: &Arc<Daemon>,
    c: &Ctr,
    s: &Session,
    b: &StartBody,
    tty: bool,
) -> ApiResult<Started> {
    let process = match sessions::process(&s.config, &d.paths(&c.id).merged(), tty, b.console_size)
    {
        Ok(p) => p,
        Err(e) => return Ok(Started::Failed(e.message)),
    };
    let req = ShimReq::Exec {
        exec_id: s.id.clone(),
        process,
        attach: !b.detach,
    };
    let sd = d.paths(&c.id).shim;
    let asked = tokio::time::timeout(START_TIMEOUT, async {
        let conn = shim::Conn::connect(&sd).await?;
        if b.detach {
            let mut conn = conn;
            conn.call(&req).await.map(Err)
        } else {
            conn.switch(&req).await
        }
    })
    .await
    .unwrap_or(Err(shim::CallError::Timeout));
    let (pid, started) = match asked {
        Ok(Ok(sw)) => (sw.pid, Started::Stream(sw.stream)),
        Ok(Err(ShimResp::ExecStarted { pid })) => (Some(pid), Started::Detached),
        Ok(Err(ShimResp::Error { message })) => return Ok(Started::Failed(message)),
        Ok(Err(other)) => {
            return Ok(Started::Failed(format!(
                "unexpected reply from the shim: {other:?}"
            )))
        }
        Err(e) => return Ok(Started::Failed(e.to_string())),
    };
    if let Some(x) = d.exec.lock().unwrap().get_mut(&s.id) {
        x.pid = pid.unwrap_or(0);
    }
    Ok(started)
}

pub async fn start(ctx: &Ctx, id: &str, req: Request<Incoming>) -> ApiResult {
    let upgrade = wants_upgrade(&req);
    let (parts, body) = req.into_parts();
    let b: StartBody = read_json(body).await?;
    let mut req = Request::from_parts(parts, ());
    let container = ctx
        .d
        .exec
        .lock()
        .unwrap()
        .get(id)
        .map(|s| s.container.clone())
        .ok_or_else(|| no_such_exec(id))?;
    let c = ctx.d.find(&container)?;
    runnable(&c)?;
    let s = claim(&ctx.d, id)?;
    let tty = b.tty || s.config.tty;
    ctx.d.container_event(
        &c,
        &action("exec_start", &s.config.cmd),
        &[("execID", s.id.clone())],
    );
    let started = run_in_shim(&ctx.d, &c, &s, &b, tty).await?;
    let d = ctx.d.clone();
    match started {
        Started::Failed(msg) => {
            // As dockerd: the code is recorded first (the CLI asks for it once the stream
            // ends); a detached start answers with the error, an attached one writes it to
            // the stream.
            crate::log::debug(format_args!("exec {id} in {}: {msg}", c.id));
            sessions::finish(&d, &c, id, Some(sessions::start_error_code(&msg)));
            if b.detach {
                return Err(ApiError::new(start_error_status(&msg), msg));
            }
            let text = format!("{msg}\r\n");
            if !upgrade {
                let (tx, reply) = http::stream(content_type(tty));
                let _ = tx.try_send(framed(tty, text.as_bytes()).into());
                return Ok(reply);
            }
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on_upgrade.await {
                    let mut io = TokioIo::new(up);
                    let _ = io.write_all(&framed(tty, text.as_bytes())).await;
                    let _ = io.shutdown().await;
                }
            });
            Ok(switching(tty))
        }
        Started::Detached => {
            tokio::spawn(async move { sessions::wait_and_finish(&d, &c, &s.id).await });
            status(StatusCode::OK)
        }
        Started::Stream(stream) if !upgrade => {
            // A plain (non-hijacked) start: the output is the body; no stdin.
            let (tx, reply) = http::stream(content_type(tty));
            tokio::spawn(async move {
                let AttachStream {
                    pending,
                    mut stream,
                } = stream;
                if pending.is_empty() || tx.send(pending.into()).await.is_ok() {
                    http::pump(&mut stream, &tx).await;
                }
                drop(stream);
                // Recorded before the body ends: the CLI asks as soon as the output is over.
                sessions::wait_and_finish(&d, &c, &s.id).await;
                drop(tx);
            });
            Ok(reply)
        }
        Started::Stream(stream) => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            let stdin = s.config.attach_stdin;
            tokio::spawn(async move {
                let recorded = sessions::wait_and_finish(&d, &c, &s.id);
                match on_upgrade.await {
                    // Recorded before the stream ends: the CLI asks as soon as the output
                    // is over.
                    Ok(up) => splice_then(TokioIo::new(up), stream, stdin, recorded).await,
                    Err(_) => {
                        // The client is gone: the process runs on; its end is still
                        // recorded.
                        drop(stream);
                        recorded.await;
                    }
                }
            });
            Ok(switching(tty))
        }
    }
}

fn content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// `data` as the stdout of a stream: raw with a tty, in a frame without.
fn framed(tty: bool, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 8);
    if !tty {
        v.extend_from_slice(&berth_shim::protocol::frame_header(
            berth_shim::protocol::STREAM_STDOUT,
            data.len(),
        ));
    }
    v.extend_from_slice(data);
    v
}

/// dockerd answers a detached start that failed with 400 when the program is missing or
/// not executable (a bad request), 500 for anything else.
fn start_error_status(msg: &str) -> StatusCode {
    let m = msg.to_ascii_lowercase();
    if sessions::start_error_code(msg) == 127 || m.contains("permission denied") {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// POST /exec/{id}/resize?h=&w=: the exec's pty, through its shim.
pub async fn resize(ctx: &Ctx, id: &str) -> ApiResult {
    let dim = |k: &str| -> ApiResult<u16> {
        let v = ctx.query.int(k)?.unwrap_or(0);
        u16::try_from(v).map_err(|_| ApiError::bad_request(format!("invalid resize {k}: {v}")))
    };
    let (rows, cols) = (dim("h")?, dim("w")?);
    let s = session(ctx, id).await?;
    if !s.started {
        return Err(ApiError::bad_request("exec process is not started"));
    }
    if !s.running {
        return Err(ApiError::conflict(format!("Exec {id} is not running")));
    }
    let req = ShimReq::Resize {
        rows,
        cols,
        exec_id: Some(s.id.clone()),
    };
    match shim::call(&ctx.d.paths(&s.container).shim, &req).await {
        Ok(ShimResp::Ok) => status(StatusCode::OK),
        // Without a tty there is nothing to size: accepted, as containerd does.
        Ok(ShimResp::Error { .. }) if !s.config.tty => status(StatusCode::OK),
        Ok(ShimResp::Error { message }) => Err(ApiError::conflict(message)),
        Ok(other) => Err(ApiError::internal(format!(
            "unexpected reply from the shim: {other:?}"
        ))),
        Err(e) => Err(ApiError::internal(e)),
    }
}

pub async fn inspect(ctx: &Ctx, id: &str) -> ApiResult {
    let s = session(ctx, id).await?;
    ok_json(&json!({
        "ID": s.id,
        "Running": s.running,
        "ExitCode": s.exit_code,
        "ProcessConfig": {
            "tty": s.config.tty,
            "entrypoint": s.config.cmd.first(),
            "arguments": s.config.cmd.get(1..).unwrap_or(&[]),
            "privileged": s.config.privileged,
            "user": s.config.user,
        },
        "OpenStdin": s.config.attach_stdin,
        "OpenStderr": s.config.attach_stderr,
        "OpenStdout": s.config.attach_stdout,
        "CanRemove": false,
        "ContainerID": s.container,
        "DetachKeys": "",
        "Pid": s.pid,
    }))
}
