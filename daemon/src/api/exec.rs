//! /containers/{id}/exec and /exec/{id}/… endpoints: the Docker view of exec sessions, each
//! run by its container's shim (`crate::exec`).

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
use crate::exec::{self as sessions, ExecConfig, ExitWatch, Session};
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

/// What the shim said to a start that succeeded.
enum Started {
    /// Attached: the stream, from the process's first byte.
    Stream(AttachStream),
    Detached,
}

/// Asks the container's shim to start the session's process (attached unless `detach`);
/// on failure, the message.
async fn run_in_shim(
    d: &Daemon,
    c: &Ctr,
    s: &Session,
    b: &StartBody,
    tty: bool,
) -> Result<Started, String> {
    let root = d.paths(&c.id).merged();
    let process =
        sessions::process(&s.config, &root, tty, b.console_size).map_err(|e| e.message)?;
    let req = ShimReq::Exec {
        exec_id: s.id.clone(),
        process,
        attach: !b.detach,
    };
    let sd = d.paths(&c.id).shim;
    let asked = tokio::time::timeout(START_TIMEOUT, async {
        let mut conn = shim::Conn::connect(&sd).await?;
        if b.detach {
            conn.call(&req).await.map(Err)
        } else {
            conn.switch(&req).await
        }
    })
    .await
    .unwrap_or(Err(shim::CallError::Timeout));
    let (pid, started) = match asked.map_err(|e| e.to_string())? {
        Ok(sw) => (sw.pid.unwrap_or(0), Started::Stream(sw.stream)),
        Err(ShimResp::ExecStarted { pid }) => (pid, Started::Detached),
        Err(ShimResp::Error { message }) => return Err(message),
        Err(other) => return Err(format!("unexpected reply from the shim: {other:?}")),
    };
    if let Some(x) = d.exec.lock().unwrap().get_mut(&s.id) {
        x.pid = pid;
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
    let d = ctx.d.clone();
    let started = match run_in_shim(&d, &c, &s, &b, tty).await {
        Ok(started) => started,
        Err(msg) => return start_failed(&d, &c, id, msg, &b, tty, upgrade.then_some(req)),
    };
    let watch = ExitWatch::park(&d, &c, id).await;
    match started {
        Started::Detached => {
            tokio::spawn(async move { watch.finish(&d, &c).await });
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
                watch.finish(&d, &c).await;
                drop(tx);
            });
            Ok(reply)
        }
        Started::Stream(stream) => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            let stdin = s.config.attach_stdin;
            tokio::spawn(async move {
                let recorded = watch.finish(&d, &c);
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

/// A start the shim refused (or a user the container does not know), as dockerd answers
/// it: the session ends with 126 first (the CLI asks for the code once the stream
/// ends); a detached start answers with the error, an attached one writes it to the stream.
fn start_failed(
    d: &Daemon,
    c: &Ctr,
    id: &str,
    msg: String,
    b: &StartBody,
    tty: bool,
    hijack: Option<Request<()>>,
) -> ApiResult {
    crate::log::debug(format_args!("exec {id} in {}: {msg}", c.id));
    // No exec_die: it never ran (dockerd publishes none either).
    sessions::record(d, id, Some(sessions::START_FAILED));
    if b.detach {
        return Err(ApiError::new(start_error_status(&msg), msg));
    }
    let text = framed(tty, format!("{msg}\r\n").as_bytes());
    let Some(mut req) = hijack else {
        let (tx, reply) = http::stream(content_type(tty));
        let _ = tx.try_send(text.into());
        return Ok(reply);
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(up) = on_upgrade.await {
            let mut io = TokioIo::new(up);
            let _ = io.write_all(&text).await;
            let _ = io.shutdown().await;
        }
    });
    Ok(switching(tty))
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
    let not_found =
        m.contains("executable file not found") || m.contains("no such file or directory");
    if not_found || m.contains("permission denied") {
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
