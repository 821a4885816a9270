//! The Docker Engine API: version negotiation, routing, and one module per resource.
//! Paths may carry a `/vX.Y` prefix between the minimum and the advertised version.

mod archive;
mod containers;
mod exec;
mod images;
mod networks;
mod system;
mod volumes;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request};

use crate::daemon::Daemon;
use crate::http::{ApiError, ApiResult, Query, Reply};

/// The API version berthd speaks (Docker 28.2's), and the oldest prefix it accepts.
pub const API_VERSION: (u32, u32) = (1, 50);
pub const MIN_API_VERSION: (u32, u32) = (1, 24);

pub fn version_str(v: (u32, u32)) -> String {
    format!("{}.{}", v.0, v.1)
}

/// What every handler gets besides the request: the daemon, the negotiated version, the query.
pub struct Ctx {
    pub d: Arc<Daemon>,
    pub version: (u32, u32),
    pub query: Query,
}

pub async fn handle(d: Arc<Daemon>, req: Request<Incoming>) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    crate::log::debug(format_args!("{method} {}", req.uri()));
    let t0 = std::time::Instant::now();
    let mut reply = match dispatch(d, req, &method, &path).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                crate::log::warn(format_args!("{method} {path}: {}", e.message));
            } else {
                crate::log::debug(format_args!("{method} {path}: {} {}", e.status, e.message));
            }
            e.into_reply()
        }
    };
    crate::log::debug(format_args!(
        "{method} {path} -> {} in {:.2} ms",
        reply.status().as_u16(),
        t0.elapsed().as_secs_f64() * 1000.0
    ));
    let h = reply.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static("1.50"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("berthd/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    reply
}

fn split_version(path: &str) -> ApiResult<((u32, u32), &str)> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((API_VERSION, path));
    };
    let (ver, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let parsed = ver
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    let Some(v) = parsed else {
        // Not a version prefix (e.g. `/volumes`): an ordinary path.
        return Ok((API_VERSION, path));
    };
    if v > API_VERSION {
        return Err(ApiError::bad_request(format!(
            "client version {} is too new. Maximum supported API version is {}",
            version_str(v),
            version_str(API_VERSION)
        )));
    }
    if v < MIN_API_VERSION {
        return Err(ApiError::bad_request(format!(
            "client version {} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
            version_str(v),
            version_str(MIN_API_VERSION)
        )));
    }
    Ok((v, tail))
}

async fn dispatch(
    d: Arc<Daemon>,
    req: Request<Incoming>,
    method: &Method,
    path: &str,
) -> ApiResult {
    let (version, path) = split_version(path)?;
    let ctx = Ctx {
        d,
        version,
        query: Query::parse(req.uri().query()),
    };
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    use Method as M;
    match (method, segs.as_slice()) {
        (&M::GET | &M::HEAD, ["_ping"]) => system::ping(method),
        (&M::GET, ["version"]) => system::version(&ctx),
        (&M::GET, ["info"]) => system::info(&ctx),
        (&M::GET, ["events"]) => system::events(&ctx),
        (&M::GET, ["system", "df"]) => system::df(&ctx).await,

        (&M::POST, ["containers", "create"]) => containers::create(&ctx, req).await,
        (&M::GET, ["containers", "json"]) => containers::list(&ctx),
        (&M::POST, ["containers", "prune"]) => containers::prune(&ctx).await,
        (&M::GET, ["containers", id, "json"]) => containers::inspect(&ctx, id),
        (&M::POST, ["containers", id, "start"]) => containers::start(&ctx, id).await,
        (&M::POST, ["containers", id, "stop"]) => containers::stop(&ctx, id).await,
        (&M::POST, ["containers", id, "restart"]) => containers::restart(&ctx, id).await,
        (&M::POST, ["containers", id, "kill"]) => containers::kill(&ctx, id).await,
        (&M::POST, ["containers", id, "wait"]) => containers::wait(&ctx, id).await,
        (&M::POST, ["containers", id, "attach"]) => containers::attach(&ctx, id, req).await,
        (&M::GET, ["containers", id, "logs"]) => containers::logs(&ctx, id).await,
        (&M::DELETE, ["containers", id]) => containers::remove(&ctx, id).await,
        (&M::POST, ["containers", id, "resize"]) => containers::resize(&ctx, id).await,
        (&M::GET, ["containers", id, "top"]) => containers::top(&ctx, id).await,
        (&M::GET, ["containers", id, "stats"]) => containers::stats(&ctx, id).await,
        (&M::POST, ["containers", id, "rename"]) => containers::rename(&ctx, id),
        (&M::POST, ["containers", id, "pause"]) => containers::pause(&ctx, id, true).await,
        (&M::POST, ["containers", id, "unpause"]) => containers::pause(&ctx, id, false).await,
        (&M::GET, ["containers", id, "export"]) => archive::export(&ctx, id).await,
        (&M::GET | &M::HEAD, ["containers", id, "archive"]) => {
            archive::get(&ctx, id, method == M::HEAD).await
        }
        (&M::PUT, ["containers", id, "archive"]) => archive::put(&ctx, id, req).await,
        (&M::POST, ["containers", id, "exec"]) => exec::create(&ctx, id, req).await,
        (&M::POST, ["exec", id, "start"]) => exec::start(&ctx, id, req).await,
        (&M::POST, ["exec", id, "resize"]) => exec::resize(&ctx, id).await,
        (&M::GET, ["exec", id, "json"]) => exec::inspect(&ctx, id).await,

        (&M::GET, ["images", "json"]) => images::list(&ctx).await,
        (&M::POST, ["images", "load"]) => images::load(&ctx, req).await,
        (&M::GET, ["images", "get"]) => images::save(&ctx, None).await,
        (&M::POST, ["images", "create"]) => images::create(&ctx, req).await,
        (&M::POST, ["images", "prune"]) => images::prune(&ctx).await,
        (&M::POST, ["build"]) => Err(ApiError::not_implemented(
            "berthd does not build images yet: build elsewhere and `docker load` the result",
        )),
        (_, ["images", rest @ ..]) if !rest.is_empty() => images::by_name(&ctx, method, rest).await,

        (&M::GET, ["volumes"]) => volumes::list(&ctx),
        (&M::POST, ["volumes", "create"]) => volumes::create(&ctx, req).await,
        (&M::POST, ["volumes", "prune"]) => volumes::prune(&ctx),
        (&M::GET, ["volumes", name]) => volumes::inspect(&ctx, name),
        (&M::DELETE, ["volumes", name]) => volumes::remove(&ctx, name),

        (&M::GET, ["networks"]) => networks::list(&ctx),
        (&M::GET, ["networks", id]) => networks::inspect(&ctx, id),
        (&M::POST, ["networks", "prune"]) => crate::http::ok_json(&serde_json::json!({"NetworksDeleted": []})),
        (_, ["networks", ..]) => Err(ApiError::not_implemented(
            "berthd has only the built-in networks `none` and `host`: bridge and user-defined networks are not implemented yet",
        )),
        (_, ["swarm", ..] | ["nodes", ..] | ["services", ..] | ["tasks", ..] | ["secrets", ..] | ["configs", ..]) => {
            Err(ApiError::new(
                hyper::StatusCode::SERVICE_UNAVAILABLE,
                "This node is not a swarm manager. berthd does not implement swarm mode.",
            ))
        }
        _ => Err(ApiError::not_found(format!("page not found: {method} {path}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefixes() {
        assert_eq!(split_version("/v1.50/info").unwrap(), ((1, 50), "/info"));
        assert_eq!(split_version("/v1.24/info").unwrap(), ((1, 24), "/info"));
        assert_eq!(split_version("/info").unwrap(), ((1, 50), "/info"));
        assert_eq!(split_version("/volumes").unwrap(), ((1, 50), "/volumes"));
        let e = split_version("/v1.99/info").unwrap_err();
        assert!(e.message.contains("too new"), "{}", e.message);
        assert!(split_version("/v1.12/info")
            .unwrap_err()
            .message
            .contains("too old"));
    }
}
