//! /networks: the built-in `host` and `none` networks (bridge networking comes later;
//! `bridge` is listed because the docker CLI and inspect name it by default, and it says
//! what it is: a private network namespace with loopback only).

use serde_json::{json, Value};

use super::Ctx;
use crate::http::{ok_json, ApiError, ApiResult};

fn network(name: &str, driver: &str) -> Value {
    json!({
        "Name": name,
        "Id": name,
        "Created": crate::util::ZERO_TIME,
        "Scope": "local",
        "Driver": driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": []},
        "Internal": driver == "null" || driver == "bridge",
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": {},
        "Options": if driver == "bridge" { json!({"berth.note": "no bridge yet: loopback-only network namespace"}) } else { json!({}) },
        "Labels": {},
    })
}

fn all() -> Vec<Value> {
    vec![
        network("bridge", "bridge"),
        network("host", "host"),
        network("none", "null"),
    ]
}

pub fn list(ctx: &Ctx) -> ApiResult {
    let f = ctx.query.filters()?;
    let v: Vec<Value> = all()
        .into_iter()
        .filter(|n| {
            f.any("name", |x| {
                n["Name"].as_str().is_some_and(|s| s.contains(x))
            })
        })
        .filter(|n| f.any("driver", |x| n["Driver"] == x))
        .collect();
    ok_json(&v)
}

pub fn inspect(_ctx: &Ctx, id: &str) -> ApiResult {
    all().into_iter().find(|n| n["Name"] == id).map_or_else(
        || Err(ApiError::not_found(format!("network {id} not found"))),
        |n| ok_json(&n),
    )
}
