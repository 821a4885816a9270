//! Hijacked attach streams (POST /containers/{id}/attach, POST /exec/{id}/start): the HTTP
//! connection is upgraded to a raw socket and joined to the shim's attach stream, which
//! already speaks Docker's framing (8-byte headers without a tty, raw bytes with one).

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::api::Ctx;
use crate::container::shim::{self, AttachStream, Request as ShimReq, Response as ShimResp};
use crate::container::Ctr;
use crate::http::{self, ApiError, ApiResult, Reply};

pub fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// The 101 that switches the connection, with the content type matching the framing.
pub fn switching(tty: bool) -> Reply {
    let mut r = Response::new(http::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }),
    );
    r
}

/// Joins a client connection and a shim attach stream until the output ends.
/// Client input goes to the shim; its end becomes a half-close (stdin EOF).
pub async fn splice<C>(client: C, shim_side: AttachStream, stdin: bool)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    splice_then(client, shim_side, stdin, async {}).await
}

/// [`splice`], running `before_end` once the output is over and before the client's stream
/// ends (an exec records its exit code there: the docker CLI asks for it right after).
pub async fn splice_then<C, F>(client: C, shim_side: AttachStream, stdin: bool, before_end: F)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: std::future::Future<Output = ()>,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let AttachStream { pending, stream } = shim_side;
    let (mut sr, mut sw) = stream.into_split();
    let input = tokio::spawn(async move {
        if stdin {
            let _ = tokio::io::copy(&mut cr, &mut sw).await;
        } else {
            // Keep reading so a closed client is noticed; drop what it sends.
            let mut sink = [0u8; 1024];
            while matches!(cr.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        let _ = sw.shutdown().await;
    });
    if cw.write_all(&pending).await.is_ok() {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    }
    before_end.await;
    let _ = cw.shutdown().await;
    // Output is over (the container exited or we were dropped): stop reading input.
    tokio::time::sleep(Duration::from_millis(10)).await;
    input.abort();
}

struct Flags {
    stdin: bool,
    stdout: bool,
    stderr: bool,
}

/// Attaches to the container's shim: at once when it runs or its shim already holds it
/// (`gate_gen` None), or when the next start has created it (the start holds the container
/// until waiting attachers are connected).
async fn connect(
    d: &crate::daemon::Daemon,
    c: &Ctr,
    f: &Flags,
    gate_gen: Option<u64>,
) -> ApiResult<(AttachStream, bool)> {
    if let Some(g) = gate_gen {
        let mut rx = c.gate.subscribe();
        let ok = rx
            .wait_for(|s| s.generation > g || s.closed)
            .await
            .map(|s| !s.closed);
        if !matches!(ok, Ok(true)) {
            return Err(ApiError::conflict("container was removed"));
        }
    }
    let sd = d.paths(&c.id).shim;
    let conn = shim::Conn::connect(&sd).await.map_err(ApiError::internal)?;
    let req = ShimReq::Attach {
        stdin: f.stdin,
        stdout: f.stdout,
        stderr: f.stderr,
        exec_id: None,
    };
    match conn.attach(&req).await.map_err(ApiError::internal)? {
        Ok(s) => Ok(s),
        Err(ShimResp::Error { message }) => Err(ApiError::conflict(message)),
        Err(other) => Err(ApiError::internal(format!(
            "unexpected shim reply {other:?}"
        ))),
    }
}

pub async fn container(ctx: &Ctx, c: Arc<Ctr>, req: Request<Incoming>) -> ApiResult {
    let q = &ctx.query;
    let f = Flags {
        stdin: q.flag("stdin"),
        stdout: q.flag("stdout"),
        stderr: q.flag("stderr"),
    };
    if !q.flag("stream") && !q.flag("logs") {
        return Err(ApiError::bad_request("either logs or stream must be set"));
    }
    let tty = c.rec().config.tty;
    // Not running yet (`docker run` attaches before it starts): register as a waiter so the
    // start holds the container until this client is connected. When its shim already holds
    // it (prepared ahead, or a parked one claimed) the client connects at once, without
    // waiting for the start's preparation: usually before the start comes, which then has
    // nobody left to wait for.
    let waiter = !c.status().is_running();
    let mut gate_gen = None;
    if waiter {
        c.gate.send_modify(|s| {
            s.waiting += 1;
            gate_gen = Some(s.generation);
        });
    }
    let gate_gen = gate_gen.filter(|_| !c.is_held());
    let release = {
        let c = c.clone();
        move || {
            c.gate
                .send_modify(|s| s.waiting = s.waiting.saturating_sub(1))
        }
    };
    if !wants_upgrade(&req) {
        // A plain (non-hijacked) attach: stream output as the body.
        let d = ctx.d.clone();
        let r = connect(&d, &c, &f, gate_gen).await;
        if waiter {
            release();
        }
        let (s, _) = r?;
        let (tx, reply) = http::stream("application/vnd.docker.multiplexed-stream");
        tokio::spawn(async move {
            let AttachStream {
                pending,
                mut stream,
            } = s;
            if !pending.is_empty() && tx.send(pending.into()).await.is_err() {
                return;
            }
            http::pump(&mut stream, &tx).await;
        });
        return Ok(reply);
    }
    let on_upgrade = hyper::upgrade::on(req);
    let d = ctx.d.clone();
    tokio::spawn(async move {
        let upgraded = on_upgrade.await;
        let r = connect(&d, &c, &f, gate_gen).await;
        if waiter {
            release();
        }
        match (upgraded, r) {
            (Ok(up), Ok((s, _))) => splice(TokioIo::new(up), s, f.stdin).await,
            (Ok(up), Err(e)) => {
                let mut io = TokioIo::new(up);
                let msg = format!("Error attaching: {}\n", e.message);
                let frame = berth_shim::protocol::frame_header(2, msg.len());
                if !tty {
                    let _ = io.write_all(&frame).await;
                }
                let _ = io.write_all(msg.as_bytes()).await;
                let _ = io.shutdown().await;
            }
            (Err(_), _) => {}
        }
    });
    Ok(switching(tty))
}
