//! /volumes endpoints (local driver).

use std::collections::BTreeMap;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::Ctx;
use crate::http::{self, ok_json, read_json, status, ApiError, ApiResult};

/// Names of containers that mount the volume.
fn users(ctx: &Ctx, name: &str) -> Option<String> {
    let v: Vec<String> = ctx
        .d
        .containers
        .lock()
        .unwrap()
        .all()
        .filter(|c| {
            c.rec()
                .mounts
                .iter()
                .any(|m| m.kind == "volume" && m.name == name)
        })
        .map(|c| c.id.clone())
        .collect();
    (!v.is_empty()).then(|| v.join(", "))
}

pub fn list(ctx: &Ctx) -> ApiResult {
    let f = ctx.query.filters()?;
    f.only(&["name", "label", "dangling", "driver"])?;
    let vols: Vec<_> = ctx
        .d
        .volumes
        .list()
        .into_iter()
        .filter(|v| f.any("name", |n| v.name.contains(n)))
        .filter(|_| f.any("driver", |d| d == "local"))
        .filter(|v| {
            f.any("dangling", |d| {
                (d == "true" || d == "1") == users(ctx, &v.name).is_none()
            })
        })
        .filter(|v| {
            f.values("label").iter().all(|l| match l.split_once('=') {
                Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
                None => v.labels.contains_key(l.as_str()),
            })
        })
        .map(|v| ctx.d.volumes.to_json(&v))
        .collect();
    ok_json(&json!({"Volumes": vols, "Warnings": []}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

pub async fn create(ctx: &Ctx, req: Request<Incoming>) -> ApiResult {
    let b: CreateBody = read_json(req.into_body()).await?;
    if !matches!(b.driver.as_str(), "" | "local") {
        return Err(ApiError::not_found(format!(
            "error looking up volume plugin {}: plugin \"{}\" not found",
            b.driver, b.driver
        )));
    }
    let v = ctx.d.volumes.create(
        Some(b.name.as_str()).filter(|n| !n.is_empty()),
        b.labels.unwrap_or_default(),
        b.driver_opts.unwrap_or_default(),
    )?;
    ctx.d.events.publish(
        "volume",
        "create",
        &v.name,
        [("driver".to_string(), "local".to_string())],
    );
    Ok(http::json(StatusCode::CREATED, &ctx.d.volumes.to_json(&v)))
}

pub fn inspect(ctx: &Ctx, name: &str) -> ApiResult {
    let v = ctx.d.volumes.get(name)?;
    ok_json(&ctx.d.volumes.to_json(&v))
}

pub fn remove(ctx: &Ctx, name: &str) -> ApiResult {
    ctx.d
        .volumes
        .remove(name, ctx.query.flag("force"), &|n| users(ctx, n))?;
    ctx.d.events.publish(
        "volume",
        "destroy",
        name,
        [("driver".to_string(), "local".to_string())],
    );
    status(StatusCode::NO_CONTENT)
}

pub fn prune(ctx: &Ctx) -> ApiResult {
    let f = ctx.query.filters()?;
    f.only(&["label", "all"])?;
    let all = f.values("all").iter().any(|v| v == "true" || v == "1");
    let mut deleted = Vec::new();
    let mut space = 0;
    for v in ctx.d.volumes.list() {
        if !all && !v.anonymous {
            continue;
        }
        if users(ctx, &v.name).is_some() {
            continue;
        }
        let size = ctx.d.volumes.size(&v.name);
        if ctx.d.volumes.remove(&v.name, false, &|_| None).is_ok() {
            space += size;
            deleted.push(v.name.clone());
            ctx.d.events.publish("volume", "destroy", &v.name, []);
        }
    }
    ok_json(&json!({"VolumesDeleted": deleted, "SpaceReclaimed": space}))
}
