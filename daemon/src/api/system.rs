//! /_ping, /version, /info, /events, /system/df.

use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::{version_str, Ctx, API_VERSION, MIN_API_VERSION};
use crate::container::model::Status;
use crate::http::{self, ok_json, ApiError, ApiResult};
use crate::util;

pub fn ping(method: &Method) -> ApiResult {
    let mut r = Response::new(if method == Method::HEAD {
        http::empty()
    } else {
        http::full("OK")
    });
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert("Builder-Version", HeaderValue::from_static(""));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    Ok(r)
}

fn os_name() -> String {
    let s = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

pub fn version(_ctx: &Ctx) -> ApiResult {
    let v = env!("CARGO_PKG_VERSION");
    ok_json(&json!({
        "Platform": {"Name": "berth"},
        "Components": [{
            "Name": "Engine",
            "Version": v,
            "Details": {
                "ApiVersion": version_str(API_VERSION),
                "MinAPIVersion": version_str(MIN_API_VERSION),
                "Os": "linux",
                "Arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "KernelVersion": crate::util::kernel_release(),
                "Experimental": "false",
            }
        }],
        "Version": v,
        "ApiVersion": version_str(API_VERSION),
        "MinAPIVersion": version_str(MIN_API_VERSION),
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "KernelVersion": crate::util::kernel_release(),
        "BuildTime": "",
    }))
}

fn cgroup_version() -> &'static str {
    // cgroup2 mounted at /sys/fs/cgroup itself: unified; otherwise v1 (or hybrid).
    let m = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if m.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.get(4) == Some(&"/sys/fs/cgroup") && l.contains(" - cgroup2 ")
    }) {
        "2"
    } else {
        "1"
    }
}

pub fn info(ctx: &Ctx) -> ApiResult {
    let d = &ctx.d;
    let (mut running, mut paused, mut stopped, total) =
        (0, 0, 0, d.containers.lock().unwrap().len());
    for c in d.containers.lock().unwrap().all() {
        match c.status() {
            Status::Running | Status::Restarting => running += 1,
            Status::Paused => paused += 1,
            _ => stopped += 1,
        }
    }
    let mem_total: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |k| k * 1024);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let shim = d.cfg.shim.display().to_string();
    ok_json(&json!({
        "ID": d.id,
        "Containers": total,
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": d.images.count(),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Authorization": null, "Log": ["json-file"]},
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "Debug": crate::log::debug_enabled(),
        "NFd": std::fs::read_dir("/proc/self/fd").map_or(0, |r| r.count()),
        "NGoroutines": 0,
        "SystemTime": util::rfc3339(std::time::SystemTime::now()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": crate::util::kernel_release(),
        "OperatingSystem": os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
        "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "MemTotal": mem_total,
        "DockerRootDir": d.cfg.data_root,
        "Name": hostname.trim(),
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {"berth": {"path": shim}},
        "DefaultRuntime": "berth",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "docker-init",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=cgroupns"],
        "Warnings": [
            "berthd: no bridge network yet (containers get --network none unless --network host)",
            "berthd: no default seccomp profile is applied to containers yet",
        ],
    }))
}

pub fn events(ctx: &Ctx) -> ApiResult {
    let f = ctx.query.filters()?;
    f.only(&[
        "container",
        "event",
        "image",
        "label",
        "type",
        "volume",
        "network",
        "daemon",
        "plugin",
        "node",
        "service",
        "secret",
        "config",
        "scope",
    ])?;
    let since = match ctx.query.get("since").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            util::parse_api_time(s)
                .ok_or_else(|| ApiError::bad_request(format!("invalid since {s:?}")))?,
        ),
        None => None,
    };
    let until = match ctx.query.get("until").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            util::parse_api_time(s)
                .ok_or_else(|| ApiError::bad_request(format!("invalid until {s:?}")))?,
        ),
        None => None,
    };
    let (past, mut rx) = ctx.d.events.subscribe(since);
    let (tx, reply) = http::stream("application/json");
    let matches = move |e: &crate::events::Event| -> bool {
        let name = e.attributes.get("name").map(String::as_str).unwrap_or("");
        let image = e.attributes.get("image").map(String::as_str).unwrap_or("");
        f.any("type", |v| v == e.kind)
            && f.any("event", |v| {
                v == e.action || e.action.split(':').next() == Some(v)
            })
            && (e.kind != "container" || f.any("container", |v| e.id.starts_with(v) || v == name))
            && f.values("container").iter().all(|_| e.kind == "container")
            && f.any("image", |v| {
                v == image || (e.kind == "image" && (v == e.id || e.id.contains(v)))
            })
            && f.any("volume", |v| e.kind == "volume" && v == e.id)
            && f.values("label").iter().all(|l| match l.split_once('=') {
                Some((k, v)) => e.attributes.get(k).is_some_and(|x| x == v),
                None => e.attributes.contains_key(l.as_str()),
            })
    };
    tokio::spawn(async move {
        let send = |e: &crate::events::Event| Bytes::from(format!("{}\n", e.to_json()));
        for e in past {
            if until.is_some_and(|u| e.time > u) {
                return;
            }
            if matches(&e) && tx.send(send(&e)).await.is_err() {
                return;
            }
        }
        loop {
            let deadline = until.map(|u| {
                u.duration_since(std::time::SystemTime::now())
                    .unwrap_or(Duration::ZERO)
            });
            let next = match deadline {
                Some(d) => match tokio::time::timeout(d, rx.recv()).await {
                    Ok(r) => r,
                    Err(_) => return,
                },
                None => tokio::select! {
                    r = rx.recv() => r,
                    _ = tx.closed() => return,
                },
            };
            match next {
                Ok(e) => {
                    if matches(&e) && tx.send(send(&e)).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    });
    Ok(reply)
}

pub async fn df(ctx: &Ctx) -> ApiResult {
    let d = ctx.d.clone();
    let v = tokio::task::spawn_blocking(move || {
        let du = d.images.disk_usage();
        let images = serde_json::to_value(&du.images).unwrap_or_default();
        let ctrs: Vec<_> = d.containers.lock().unwrap().all().cloned().collect();
        let containers: Vec<_> = ctrs
            .iter()
            .map(|c| {
                let r = c.rec();
                json!({
                    "Id": r.id, "Names": [format!("/{}", r.name)], "Image": r.config.image, "ImageID": r.image_id,
                    "Command": r.path, "Created": util::parse_rfc3339(&r.created).map_or(0, util::unix_secs),
                    "State": r.state.status.as_str(), "Status": r.state.status.as_str(),
                    "SizeRw": crate::volume::dir_size(&d.paths(&r.id).overlay.join("upper")),
                    "SizeRootFs": 0, "Labels": r.config.labels, "Mounts": [],
                })
            })
            .collect();
        let volumes: Vec<_> = d
            .volumes
            .list()
            .iter()
            .map(|v| {
                let refs = ctrs.iter().filter(|c| c.rec().mounts.iter().any(|m| m.name == v.name)).count();
                let mut j = d.volumes.to_json(v);
                j["UsageData"] = json!({"Size": d.volumes.size(&v.name), "RefCount": refs});
                j
            })
            .collect();
        json!({"LayersSize": du.layers_size, "Images": images, "Containers": containers, "Volumes": volumes, "BuildCache": []})
    })
    .await
    .map_err(ApiError::internal)?;
    let _ = StatusCode::OK;
    ok_json(&v)
}
