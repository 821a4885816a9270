//! /containers endpoints.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};

use super::Ctx;
use crate::container::lifecycle;
use crate::container::model::{CreateRequest, Status};
use crate::container::shim::{self, Request as ShimReq, Response as ShimResp};
use crate::container::Ctr;
use crate::http::{self, ok_json, read_json, status, ApiError, ApiResult};
use crate::util;

pub async fn create(ctx: &Ctx, req: Request<Incoming>) -> ApiResult {
    let body: CreateRequest = read_json(req.into_body()).await?;
    let name = ctx.query.get("name").map(str::to_string);
    if ctx
        .query
        .get("platform")
        .is_some_and(|p| !p.is_empty() && !p.starts_with("linux"))
    {
        return Err(ApiError::bad_request("only linux containers are supported"));
    }
    let (id, warnings) = crate::container::create::create(&ctx.d, body, name.as_deref()).await?;
    Ok(http::json(
        StatusCode::CREATED,
        &json!({"Id": id, "Warnings": warnings}),
    ))
}

fn status_text(c: &Ctr) -> String {
    let r = c.rec();
    let since = |t: &str| {
        util::parse_rfc3339(t)
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default()
    };
    match r.state.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", util::human_duration(since(&r.state.started_at))),
        Status::Paused => format!(
            "Up {} (Paused)",
            util::human_duration(since(&r.state.started_at))
        ),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            r.state.exit_code,
            util::human_duration(since(&r.state.finished_at))
        ),
        Status::Removing => "Removal In Progress".into(),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            util::human_duration(since(&r.state.finished_at))
        ),
        Status::Dead => "Dead".into(),
    }
}

fn command_line(path: &str, args: &[String]) -> String {
    let mut s = path.to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

fn mounts_json(c: &Ctr) -> Vec<Value> {
    c.rec()
        .mounts
        .iter()
        .map(|m| {
            let mut v = json!({
                "Type": m.kind,
                "Source": if m.kind == "tmpfs" { String::new() } else { m.source.display().to_string() },
                "Destination": m.destination,
                "Mode": "",
                "RW": m.rw,
                "Propagation": if m.kind == "bind" { "rprivate" } else { "" },
            });
            if m.kind == "volume" {
                v["Name"] = json!(m.name);
                v["Driver"] = json!("local");
                v["Mode"] = json!("z");
            }
            v
        })
        .collect()
}

fn network_json(mode: &str) -> Value {
    json!({mode: {
        "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "", "NetworkID": mode,
        "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": null, "DNSNames": null
    }})
}

pub fn list(ctx: &Ctx) -> ApiResult {
    let all = ctx.query.flag("all");
    let size = ctx.query.flag("size");
    let limit = ctx.query.int("limit")?.filter(|&l| l > 0);
    let f = ctx.query.filters()?;
    f.only(&[
        "id",
        "name",
        "status",
        "label",
        "exited",
        "ancestor",
        "before",
        "since",
        "volume",
        "network",
        "health",
        "isolation",
        "is-task",
        "expose",
        "publish",
    ])?;
    let mut ctrs: Vec<Arc<Ctr>> = ctx.d.containers.lock().unwrap().all().cloned().collect();
    ctrs.sort_by(|a, b| b.rec().created.cmp(&a.rec().created));
    let mut out = Vec::new();
    for c in ctrs {
        let r = c.rec().clone();
        let st = r.state.status;
        let explicit_status = !f.values("status").is_empty() || !f.values("exited").is_empty();
        if !all && !explicit_status && !st.is_running() {
            continue;
        }
        if !f.any("id", |v| r.id.starts_with(v))
            || !f.any("name", |v| r.name.contains(v.trim_start_matches('/')))
            || !f.any("status", |v| v == st.as_str())
            || !f.any("exited", |v| {
                st == Status::Exited && v.parse() == Ok(r.state.exit_code)
            })
            || !f.any("ancestor", |v| {
                v == r.config.image
                    || r.image_id.starts_with(v)
                    || r.image_id
                        .strip_prefix("sha256:")
                        .is_some_and(|i| i.starts_with(v))
            })
            || !f.any("volume", |v| {
                r.mounts.iter().any(|m| m.name == v || m.destination == v)
            })
            || !f.any("network", |v| v == r.host_config.network_mode)
            || !f.values("label").iter().all(|l| match l.split_once('=') {
                Some((k, val)) => r.config.labels.get(k).is_some_and(|x| x == val),
                None => r.config.labels.contains_key(l.as_str()),
            })
        {
            continue;
        }
        let created = util::parse_rfc3339(&r.created).map_or(0, util::unix_secs);
        let mut v = json!({
            "Id": r.id,
            "Names": [format!("/{}", r.name)],
            "Image": r.config.image,
            "ImageID": r.image_id,
            "Command": command_line(&r.path, &r.args),
            "Created": created,
            "Ports": [],
            "Labels": r.config.labels,
            "State": st.as_str(),
            "Status": status_text(&c),
            "HostConfig": {"NetworkMode": r.host_config.network_mode},
            "NetworkSettings": {"Networks": network_json(&r.host_config.network_mode)},
            "Mounts": mounts_json(&c),
        });
        if size {
            let upper = ctx.d.paths(&r.id).overlay.join("upper");
            v["SizeRw"] = json!(crate::volume::dir_size(&upper));
            v["SizeRootFs"] = json!(
                crate::image_api::size(&ctx.d, &r.image_id) + crate::volume::dir_size(&upper)
            );
        }
        out.push(v);
        if limit.is_some_and(|l| out.len() as i64 >= l) {
            break;
        }
    }
    ok_json(&out)
}

pub fn inspect_json(ctx: &Ctx, c: &Ctr, size: bool) -> Value {
    let r = c.rec().clone();
    let paths = ctx.d.paths(&r.id);
    let st = r.state.status;
    let mut config = serde_json::to_value(&r.config).unwrap();
    config["Env"] = json!(r.config.env);
    let mut v = json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.path,
        "Args": r.args,
        "State": {
            "Status": st.as_str(),
            "Running": st.is_running(),
            "Paused": st == Status::Paused,
            "Restarting": st == Status::Restarting,
            "OOMKilled": r.state.oom_killed,
            "Dead": st == Status::Dead,
            "Pid": r.state.pid,
            "ExitCode": r.state.exit_code,
            "Error": r.state.error,
            "StartedAt": r.state.started_at,
            "FinishedAt": r.state.finished_at,
        },
        "Image": r.image_id,
        "ResolvConfPath": paths.bundle.join("resolv.conf"),
        "HostnamePath": paths.bundle.join("hostname"),
        "HostsPath": paths.bundle.join("hosts"),
        "LogPath": paths.log(&r.id),
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": ctx.d.exec.lock().unwrap().ids_for(&r.id),
        "HostConfig": r.host_config,
        "GraphDriver": {"Name": "overlay2", "Data": {
            "MergedDir": paths.merged(),
            "UpperDir": paths.overlay.join("upper"),
            "WorkDir": paths.overlay.join("work"),
        }},
        "Mounts": mounts_json(c),
        "Config": config,
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {},
            "HairpinMode": false, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Networks": network_json(&r.host_config.network_mode),
        },
    });
    if v["HostConfig"]["LogConfig"]["Type"] == "" {
        v["HostConfig"]["LogConfig"]["Type"] = json!("json-file");
    }
    if size {
        let upper = paths.overlay.join("upper");
        v["SizeRw"] = json!(crate::volume::dir_size(&upper));
        v["SizeRootFs"] =
            json!(crate::image_api::size(&ctx.d, &r.image_id) + crate::volume::dir_size(&upper));
    }
    v
}

pub fn inspect(ctx: &Ctx, id: &str) -> ApiResult {
    let c = ctx.d.find(id)?;
    ok_json(&inspect_json(ctx, &c, ctx.query.flag("size")))
}

pub async fn start(ctx: &Ctx, id: &str) -> ApiResult {
    let c = ctx.d.find(id)?;
    match lifecycle::start(&ctx.d, &c).await {
        Ok(()) => status(StatusCode::NO_CONTENT),
        Err(e) if e.status == StatusCode::NOT_MODIFIED => status(StatusCode::NOT_MODIFIED),
        Err(e) => Err(e),
    }
}

fn stop_params(ctx: &Ctx) -> ApiResult<(Option<i64>, Option<String>)> {
    let t = match ctx.query.int("t")? {
        Some(t) => Some(t),
        None => ctx.query.int("timeout")?,
    };
    Ok((
        t,
        ctx.query
            .get("signal")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    ))
}

pub async fn stop(ctx: &Ctx, id: &str) -> ApiResult {
    let c = ctx.d.find(id)?;
    let (t, sig) = stop_params(ctx)?;
    match lifecycle::stop(&ctx.d, &c, t, sig.as_deref()).await {
        Ok(()) => status(StatusCode::NO_CONTENT),
        Err(e) if e.status == StatusCode::NOT_MODIFIED => status(StatusCode::NOT_MODIFIED),
        Err(e) => Err(e),
    }
}

pub async fn restart(ctx: &Ctx, id: &str) -> ApiResult {
    let c = ctx.d.find(id)?;
    let (t, sig) = stop_params(ctx)?;
    match lifecycle::stop(&ctx.d, &c, t, sig.as_deref()).await {
        Ok(()) => {}
        Err(e) if e.status == StatusCode::NOT_MODIFIED => {}
        Err(e) => return Err(e),
    }
    c.rec().manually_stopped = false;
    match lifecycle::start(&ctx.d, &c).await {
        Ok(())
        | Err(ApiError {
            status: StatusCode::NOT_MODIFIED,
            ..
        }) => {}
        Err(e) => return Err(e),
    }
    ctx.d.container_event(&c, "restart", &[]);
    status(StatusCode::NO_CONTENT)
}

pub async fn kill(ctx: &Ctx, id: &str) -> ApiResult {
    let c = ctx.d.find(id)?;
    let sig = ctx
        .query
        .get("signal")
        .filter(|s| !s.is_empty())
        .unwrap_or("SIGKILL");
    lifecycle::kill(&ctx.d, &c, sig).await?;
    status(StatusCode::NO_CONTENT)
}

pub async fn pause(ctx: &Ctx, id: &str, on: bool) -> ApiResult {
    let c = ctx.d.find(id)?;
    let _op = c.op.lock().await;
    match (c.status(), on) {
        (Status::Running, true) | (Status::Paused, false) => {}
        (Status::Paused, true) => {
            return Err(ApiError::conflict(format!(
                "container {} is already paused",
                c.id
            )))
        }
        (_, true) => {
            return Err(ApiError::conflict(format!(
                "container {} is not running",
                c.id
            )))
        }
        (_, false) => {
            return Err(ApiError::conflict(format!(
                "container {} is not paused",
                c.id
            )))
        }
    }
    lifecycle::set_paused(&ctx.d, &c, on)?;
    status(StatusCode::NO_CONTENT)
}

/// POST /containers/{id}/wait: the status line goes out at once (the CLI needs the headers
/// before it starts the container), the body when the condition is met.
pub async fn wait(ctx: &Ctx, id: &str) -> ApiResult {
    let c = ctx.d.find(id)?;
    let cond = ctx
        .query
        .get("condition")
        .unwrap_or("not-running")
        .to_string();
    if !matches!(cond.as_str(), "" | "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad_request(format!(
            "invalid condition: {cond:?}"
        )));
    }
    let mut rx = c.life.subscribe();
    let start = rx.borrow_and_update().clone();
    let (tx, reply) = http::stream("application/json");
    tokio::spawn(async move {
        let done = rx
            .wait_for(|l| match cond.as_str() {
                "next-exit" => l.exits > start.exits || l.removed,
                "removed" => l.removed,
                _ => !l.running,
            })
            .await
            .map(|l| l.exit_code);
        let code = match done {
            Ok(code) => code,
            // The container (and its watch) went away: it was removed.
            Err(_) => c.life.borrow().exit_code,
        };
        let body = json!({"StatusCode": code, "Error": null});
        let _ = tx.send(Bytes::from(format!("{body}\n"))).await;
    });
    Ok(reply)
}

pub async fn remove(ctx: &Ctx, id: &str) -> ApiResult {
    let c = ctx.d.find(id)?;
    if ctx.query.flag("link") {
        return Err(ApiError::bad_request("links are not supported by berthd"));
    }
    lifecycle::remove(&ctx.d, &c, ctx.query.flag("force"), ctx.query.flag("v")).await?;
    status(StatusCode::NO_CONTENT)
}

pub async fn prune(ctx: &Ctx) -> ApiResult {
    let f = ctx.query.filters()?;
    f.only(&["until", "label"])?;
    let ctrs: Vec<Arc<Ctr>> = ctx.d.containers.lock().unwrap().all().cloned().collect();
    let mut deleted = Vec::new();
    let mut space = 0u64;
    for c in ctrs {
        if c.status().is_running() {
            continue;
        }
        let labels = c.rec().config.labels.clone();
        if !f.values("label").iter().all(|l| match l.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(l.as_str()),
        }) {
            continue;
        }
        if let Some(until) = f
            .values("until")
            .first()
            .and_then(|u| util::parse_api_time(u))
        {
            if util::parse_rfc3339(&c.rec().created).is_some_and(|t| t > until) {
                continue;
            }
        }
        space += crate::volume::dir_size(&ctx.d.paths(&c.id).overlay.join("upper"));
        if lifecycle::remove(&ctx.d, &c, false, false).await.is_ok() {
            deleted.push(c.id.clone());
        }
    }
    ok_json(&json!({"ContainersDeleted": deleted, "SpaceReclaimed": space}))
}

pub fn rename(ctx: &Ctx, id: &str) -> ApiResult {
    let c = ctx.d.find(id)?;
    let new = ctx
        .query
        .get("name")
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    if !crate::container::valid_name(&new) {
        return Err(ApiError::bad_request(format!(
            "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    let old = c.name();
    if old == new {
        return Err(ApiError::conflict(
            "Renaming a container with the same name as its current name",
        ));
    }
    ctx.d.containers.lock().unwrap().rename(&c.id, &old, &new)?;
    c.rec().name = new.clone();
    ctx.d.save(&c)?;
    ctx.d
        .container_event(&c, "rename", &[("oldName", format!("/{old}"))]);
    status(StatusCode::NO_CONTENT)
}

pub async fn resize(ctx: &Ctx, id: &str) -> ApiResult {
    let c = ctx.d.find(id)?;
    let h = ctx.query.int("h")?.unwrap_or(0);
    let w = ctx.query.int("w")?.unwrap_or(0);
    if !c.status().is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.id
        )));
    }
    let req = ShimReq::Resize {
        rows: h.clamp(0, 65535) as u16,
        cols: w.clamp(0, 65535) as u16,
        exec_id: None,
    };
    match shim::call(&ctx.d.paths(&c.id).shim, &req).await {
        Ok(ShimResp::Ok) => status(StatusCode::OK),
        Ok(ShimResp::Error { message }) => Err(ApiError::bad_request(message)),
        Ok(_) => status(StatusCode::OK),
        Err(e) => Err(ApiError::internal(e)),
    }
}

pub async fn top(ctx: &Ctx, id: &str) -> ApiResult {
    let c = ctx.d.find(id)?;
    if !c.status().is_running() {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.id
        )));
    }
    let root = ctx.d.cfg.exec_root.join("runtime");
    let pids = berth_runtime::container::ps_pids(&root, &c.id).map_err(ApiError::internal)?;
    let args = ctx
        .query
        .get("ps_args")
        .filter(|s| !s.is_empty())
        .unwrap_or("-ef")
        .to_string();
    let out = tokio::process::Command::new("ps")
        .args(args.split_whitespace())
        .output()
        .await
        .map_err(|e| ApiError::internal(format!("running ps: {e}")))?;
    if !out.status.success() {
        return Err(ApiError::internal(format!(
            "ps {args}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let titles: Vec<&str> = header.split_whitespace().collect();
    let pid_col = titles
        .iter()
        .position(|t| *t == "PID")
        .ok_or_else(|| ApiError::bad_request("Couldn't find PID field in ps output"))?;
    let mut procs = Vec::new();
    for l in lines {
        let fields: Vec<&str> = l.split_whitespace().collect();
        if fields.len() < titles.len() {
            continue;
        }
        let Ok(pid) = fields[pid_col].parse::<i32>() else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        let mut row: Vec<String> = fields[..titles.len() - 1]
            .iter()
            .map(|s| s.to_string())
            .collect();
        row.push(fields[titles.len() - 1..].join(" "));
        procs.push(row);
    }
    ok_json(&json!({"Titles": titles, "Processes": procs}))
}

async fn stats_once(
    ctx_d: &crate::daemon::Daemon,
    c: &Ctr,
    prev: &Option<Value>,
) -> ApiResult<Value> {
    let (name, id, running) = (c.name(), c.id.clone(), c.status().is_running());
    let now = util::rfc3339(SystemTime::now());
    let s = if running {
        match shim::call(&ctx_d.paths(&id).shim, &ShimReq::Stats).await {
            Ok(ShimResp::Stats(s)) => Some(s),
            _ => None,
        }
    } else {
        None
    };
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let system = system_cpu_ns();
    let mut v = json!({
        "name": format!("/{name}"),
        "id": id,
        "read": now,
        "preread": prev.as_ref().map_or(json!(util::ZERO_TIME), |p| p["read"].clone()),
        "num_procs": 0,
        "pids_stats": {"current": s.as_ref().map_or(0, |s| s.pids)},
        "blkio_stats": {"io_service_bytes_recursive": null},
        "cpu_stats": {
            "cpu_usage": {"total_usage": s.as_ref().map_or(0, |s| s.cpu_usage_ns), "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": system,
            "online_cpus": ncpu,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "precpu_stats": prev.as_ref().map_or(json!({"cpu_usage": {"total_usage": 0}, "throttling_data": {}}), |p| p["cpu_stats"].clone()),
        "memory_stats": {
            "usage": s.as_ref().map_or(0, |s| s.memory_usage_bytes),
            "limit": s.as_ref().and_then(|s| s.memory_limit_bytes).unwrap_or_else(mem_total),
            "stats": {},
        },
    });
    if !running {
        v["memory_stats"] = json!({});
    }
    Ok(v)
}

fn system_cpu_ns() -> u64 {
    // Docker's system_cpu_usage: the sum of /proc/stat's cpu line, in nanoseconds.
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(7)
        .filter_map(|x| x.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * (1_000_000_000 / hz)
}

fn mem_total() -> u64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(0, |k| k * 1024)
}

pub async fn stats(ctx: &Ctx, id: &str) -> ApiResult {
    let c = ctx.d.find(id)?;
    let stream = ctx
        .query
        .get("stream")
        .is_none_or(|s| s == "1" || s == "true");
    let one_shot = ctx.query.flag("one-shot");
    if !stream {
        let first = if one_shot {
            None
        } else {
            let f = stats_once(&ctx.d, &c, &None).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some(f)
        };
        return ok_json(&stats_once(&ctx.d, &c, &first).await?);
    }
    let (tx, reply) = http::stream("application/json");
    let d = ctx.d.clone();
    tokio::spawn(async move {
        let mut prev = None;
        loop {
            let Ok(v) = stats_once(&d, &c, &prev).await else {
                break;
            };
            if tx.send(Bytes::from(format!("{v}\n"))).await.is_err() {
                break;
            }
            prev = Some(v);
            if c.life.borrow().removed {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(reply)
}

pub async fn logs(ctx: &Ctx, id: &str) -> ApiResult {
    let c = ctx.d.find(id)?;
    crate::logs::serve(ctx, c).await
}

pub async fn attach(ctx: &Ctx, id: &str, req: Request<Incoming>) -> ApiResult {
    let c = ctx.d.find(id)?;
    crate::attach::container(ctx, c, req).await
}
