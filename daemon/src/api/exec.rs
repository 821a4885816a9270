//! /containers/{id}/exec and /exec/{id}/… endpoints.

use std::process::Stdio;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Ctx;
use crate::attach::{switching, wants_upgrade};
use crate::exec::{ExecConfig, Session};
use crate::http::{self, ok_json, read_json, status, ApiError, ApiResult};

pub async fn create(ctx: &Ctx, id: &str, req: Request<Incoming>) -> ApiResult {
    let c = ctx.d.find(id)?;
    let cfg: ExecConfig = read_json(req.into_body()).await?;
    if cfg.cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    if c.status() != crate::container::model::Status::Running {
        return Err(ApiError::conflict(format!(
            "container {} is not running",
            c.id
        )));
    }
    if cfg.privileged {
        return Err(ApiError::bad_request(
            "exec --privileged is not supported by berthd yet",
        ));
    }
    let exec_id = crate::util::random_id();
    ctx.d.exec.lock().unwrap().insert(Session {
        id: exec_id.clone(),
        container: c.id.clone(),
        config: cfg,
        running: false,
        started: false,
        exit_code: None,
        pid: 0,
    });
    Ok(http::json(StatusCode::CREATED, &json!({"Id": exec_id})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: bool,
    tty: bool,
    console_size: Option<[u16; 2]>,
}

fn session(ctx: &Ctx, id: &str) -> ApiResult<Session> {
    ctx.d
        .exec
        .lock()
        .unwrap()
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
}

pub async fn start(ctx: &Ctx, id: &str, req: Request<Incoming>) -> ApiResult {
    let s = session(ctx, id)?;
    let upgrade = wants_upgrade(&req);
    let (parts, body) = req.into_parts();
    let b: StartBody = read_json(body).await?;
    let mut req = Request::from_parts(parts, ());
    if s.started {
        return Err(ApiError::conflict(format!(
            "Error: Exec command {id} has already run"
        )));
    }
    let c = ctx.d.find(&s.container)?;
    if !c.status().is_running() {
        return Err(ApiError::conflict(format!(
            "container {} is not running",
            c.id
        )));
    }
    let tty = b.tty || s.config.tty;
    let user = if s.config.user.is_empty() {
        None
    } else {
        let root = ctx.d.paths(&c.id).merged();
        let passwd =
            crate::container::rootfs::read_in_root(&root, "etc/passwd").unwrap_or_default();
        let group = crate::container::rootfs::read_in_root(&root, "etc/group").unwrap_or_default();
        Some(crate::container::spec::resolve_user(
            &s.config.user,
            &passwd,
            &group,
            &[],
        )?)
    };
    // `berth-runtime exec` runs the process in every namespace and cgroup of the container,
    // with the container's process (env, cwd, user, capabilities) as the base, as runc does.
    let mut cmd = tokio::process::Command::new(&ctx.d.cfg.runtime);
    cmd.arg("--root")
        .arg(ctx.d.cfg.exec_root.join("runtime"))
        .arg("exec");
    if tty {
        cmd.arg("--tty");
    }
    for e in s.config.env.iter().flatten() {
        cmd.arg("--env").arg(e);
    }
    if !s.config.working_dir.is_empty() {
        cmd.arg("--cwd").arg(&s.config.working_dir);
    }
    if let Some(u) = &user {
        cmd.arg("--user").arg(format!("{}:{}", u.uid, u.gid));
        for g in &u.additional_gids {
            cmd.arg("--additional-gids").arg(g.to_string());
        }
    }
    cmd.arg(&c.id).arg("--").args(&s.config.cmd);
    let stdin = s.config.attach_stdin && !b.detach;
    cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(if b.detach {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stderr(if b.detach {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .kill_on_drop(false);
    let mut child = cmd.spawn().map_err(|e| {
        ApiError::internal(format!("starting {}: {e}", ctx.d.cfg.runtime.display()))
    })?;
    if let Some(x) = ctx.d.exec.lock().unwrap().get_mut(id) {
        x.started = true;
        x.running = true;
        x.pid = child.id().map_or(0, |p| p as i32);
    }
    ctx.d.container_event(
        &c,
        &format!("exec_start: {}", s.config.cmd.join(" ")),
        &[("execID", s.id.clone())],
    );
    let d = ctx.d.clone();
    let exec_id = s.id.clone();
    let record = move |d: &crate::daemon::Daemon, code: i64| {
        if let Some(x) = d.exec.lock().unwrap().get_mut(&exec_id) {
            x.running = false;
            x.exit_code = Some(code);
        }
    };
    if b.detach {
        tokio::spawn(async move {
            let code = child.wait().await.map_or(-1, exit_code);
            record(&d, code);
        });
        return status(StatusCode::OK);
    }
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let input = child.stdin.take();
    if !upgrade {
        let (tx, reply) = http::stream("application/vnd.docker.multiplexed-stream");
        tokio::spawn(async move {
            let (mut w, mut r) = tokio::io::duplex(64 * 1024);
            // The exit code is recorded before the stream ends: the docker CLI asks for it
            // as soon as the output is over.
            let relay = tokio::spawn(async move {
                relay_output(out, err, tty, &mut w).await;
                let code = child.wait().await.map_or(-1, exit_code);
                record(&d, code);
                let _ = w.shutdown().await;
            });
            http::pump(&mut r, &tx).await;
            let _ = relay.await;
        });
        return Ok(reply);
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(up) = on_upgrade.await {
            let (mut cr, cw) = tokio::io::split(TokioIo::new(up));
            let feeder = tokio::spawn(async move {
                if let Some(mut i) = input {
                    let _ = tokio::io::copy(&mut cr, &mut i).await;
                    let _ = i.shutdown().await;
                } else {
                    let mut sink = [0u8; 1024];
                    while matches!(cr.read(&mut sink).await, Ok(n) if n > 0) {}
                }
            });
            let mut cw = cw;
            relay_output(out, err, tty, &mut cw).await;
            feeder.abort();
            // The exit code is recorded before the stream ends: the docker CLI asks for it
            // as soon as the output is over.
            let code = child.wait().await.map_or(-1, exit_code);
            record(&d, code);
            let _ = cw.shutdown().await;
            return;
        }
        let code = child.wait().await.map_or(-1, exit_code);
        record(&d, code);
    });
    Ok(switching(tty))
}

fn exit_code(st: std::process::ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    st.code()
        .map_or_else(|| 128 + i64::from(st.signal().unwrap_or(0)), i64::from)
}

/// Copies the process's stdout and stderr to `w`: Docker's 8-byte frames without a tty, the
/// bytes as they are with one; returns when both are done (the caller ends `w`).
async fn relay_output<W>(
    mut out: tokio::process::ChildStdout,
    mut err: tokio::process::ChildStderr,
    tty: bool,
    w: &mut W,
) where
    W: tokio::io::AsyncWrite + Unpin,
{
    let (mut ob, mut eb) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let (n, stream) = tokio::select! {
            r = out.read(&mut ob), if out_open => (r.unwrap_or(0), 1u8),
            r = err.read(&mut eb), if err_open => (r.unwrap_or(0), 2u8),
        };
        if n == 0 {
            if stream == 1 {
                out_open = false
            } else {
                err_open = false
            }
            continue;
        }
        let data = if stream == 1 { &ob[..n] } else { &eb[..n] };
        let ok = if tty {
            w.write_all(data).await
        } else {
            match w
                .write_all(&berth_shim::protocol::frame_header(stream, n))
                .await
            {
                Ok(()) => w.write_all(data).await,
                Err(e) => Err(e),
            }
        };
        if ok.is_err() {
            break;
        }
    }
}

/// The exec's pty belongs to its `berth-runtime exec` relay, which has no resize channel
/// yet: refused clearly (the docker CLI goes on with the default size).
pub async fn resize(ctx: &Ctx, id: &str) -> ApiResult {
    session(ctx, id)?;
    Err(ApiError::not_implemented(
        "resizing an exec's terminal is not supported by berthd yet (it keeps 80x24)",
    ))
}

pub async fn inspect(ctx: &Ctx, id: &str) -> ApiResult {
    let s = session(ctx, id)?;
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
