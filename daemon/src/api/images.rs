//! /images endpoints: list, inspect, history, tag, remove, prune, load, save, import.
//! Registry pull and push are not implemented: they answer so.

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use super::Ctx;
use crate::http::{self, ok_json, ApiError, ApiResult, BodyReader, ChannelWriter};
use crate::image::Removed;
use crate::image_api::user_of;

pub async fn list(ctx: &Ctx) -> ApiResult {
    let f = ctx.query.filters()?;
    f.only(&["dangling", "label", "reference", "before", "since", "until"])?;
    let d = ctx.d.clone();
    let created_of = |name: &str| -> ApiResult<i64> {
        let id = d.images.resolve(name)?;
        let created = d.images.inspect(id.as_ref())?.created;
        Ok(crate::util::parse_rfc3339(&created).map_or(0, crate::util::unix_secs))
    };
    let before = f
        .values("before")
        .first()
        .map(|b| created_of(b))
        .transpose()?;
    let since = f
        .values("since")
        .first()
        .map(|b| created_of(b))
        .transpose()?;
    let rows: Vec<_> = tokio::task::spawn_blocking(move || {
        d.images
            .list()
            .into_iter()
            .filter(|i| {
                f.any("dangling", |v| {
                    (v == "true" || v == "1") == i.repo_tags.is_empty()
                }) && f.any("reference", |pat| {
                    i.repo_tags.iter().any(|t| {
                        glob(pat, t) || glob(pat, t.rsplit_once(':').map_or(t.as_str(), |x| x.0))
                    })
                }) && before.is_none_or(|b| i.created < b)
                    && since.is_none_or(|s| i.created > s)
                    && f.values("label").iter().all(|l| match l.split_once('=') {
                        Some((k, v)) => i.labels.get(k).is_some_and(|x| x == v),
                        None => i.labels.contains_key(l.as_str()),
                    })
            })
            .collect()
    })
    .await
    .map_err(ApiError::internal)?;
    ok_json(&rows)
}

/// Docker's reference filter: shell-style `*` within a path component.
fn glob(pat: &str, s: &str) -> bool {
    fn m(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && m(p, &s[1..])),
            (Some(a), Some(b)) if a == b => m(&p[1..], &s[1..]),
            _ => false,
        }
    }
    m(pat.as_bytes(), s.as_bytes())
}

pub async fn load(ctx: &Ctx, req: Request<Incoming>) -> ApiResult {
    let mut reader = BodyReader::new(req.into_body());
    let d = ctx.d.clone();
    let loaded = tokio::task::spawn_blocking(move || d.images.load(&mut reader))
        .await
        .map_err(ApiError::internal)??;
    let mut out = String::new();
    for m in loaded.messages() {
        out.push_str(&format!("{}\n", json!({"stream": format!("{m}\n")})));
    }
    for i in &loaded.images {
        let name = i.tags.first().cloned().unwrap_or_else(|| i.id.to_string());
        ctx.d.events.publish("image", "load", &name, []);
    }
    let mut r = http::json(StatusCode::OK, &());
    *r.body_mut() = http::full(out);
    Ok(r)
}

/// `docker save`: the images named (tags keep their names; ids are saved untagged).
pub async fn save(ctx: &Ctx, one: Option<String>) -> ApiResult {
    let names: Vec<String> = match one {
        Some(n) => vec![n],
        None => ctx
            .query
            .all("names")
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    if names.is_empty() {
        return Err(ApiError::bad_request("no images named"));
    }
    for n in &names {
        ctx.d.images.resolve(n)?;
    }
    for n in &names {
        ctx.d.events.publish("image", "save", n, []);
    }
    let (tx, reply) = http::stream("application/x-tar");
    let d = ctx.d.clone();
    tokio::task::spawn_blocking(move || {
        let w = std::io::BufWriter::with_capacity(1 << 20, ChannelWriter(tx));
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        if let Err(e) = d.images.save(&refs, w) {
            crate::log::warn(format_args!("save: {e}"));
        }
    });
    Ok(reply)
}

/// POST /images/create: `fromSrc=-` imports the body; a registry pull is refused clearly.
pub async fn create(ctx: &Ctx, req: Request<Incoming>) -> ApiResult {
    let q = &ctx.query;
    if let Some(img) = q.get("fromImage").filter(|s| !s.is_empty()) {
        return Err(ApiError::not_found(format!(
            "pull access denied for {img}: berthd cannot pull from registries yet; make the image elsewhere and `docker load` or `docker import` it"
        )));
    }
    let src = q.get("fromSrc").unwrap_or("");
    if src != "-" {
        return Err(ApiError::bad_request(format!(
            "import from {src:?} is not supported: pass the tarball as the request body (fromSrc=-)"
        )));
    }
    let tag = q.get("repo").filter(|s| !s.is_empty()).map(|repo| {
        match q.get("tag").filter(|s| !s.is_empty()) {
            Some(t) => format!("{repo}:{t}"),
            None => repo.to_string(),
        }
    });
    let changes: Vec<String> = q.all("changes").iter().map(|s| s.to_string()).collect();
    let message = q.get("message").unwrap_or("").to_string();
    let mut reader = BodyReader::new(req.into_body());
    let d = ctx.d.clone();
    let id = tokio::task::spawn_blocking(move || {
        d.images
            .import(&mut reader, tag.as_deref(), &changes, &message)
    })
    .await
    .map_err(ApiError::internal)??;
    let id = id.to_string();
    ctx.d.events.publish("image", "import", &id, []);
    let body = format!("{}\n", json!({"status": id}));
    let (tx, reply) = http::stream("application/json");
    let _ = tx.send(Bytes::from(body)).await;
    Ok(reply)
}

pub async fn prune(ctx: &Ctx) -> ApiResult {
    let f = ctx.query.filters()?;
    f.only(&["dangling", "until", "label"])?;
    let all = f
        .values("dangling")
        .iter()
        .any(|v| v == "false" || v == "0");
    let d = ctx.d.clone();
    let report = tokio::task::spawn_blocking(move || {
        // No layer may go while a directory slot has it mounted.
        d.slots
            .without_mounts(|| d.images.prune(!all, &|id| user_of(&d, id)))
    })
    .await
    .map_err(ApiError::internal)??;
    ok_json(&report)
}

pub async fn by_name(ctx: &Ctx, method: &Method, rest: &[&str]) -> ApiResult {
    let joined = rest.join("/");
    if method == Method::DELETE {
        let d = ctx.d.clone();
        let force = ctx.query.flag("force");
        let noprune = ctx.query.flag("noprune");
        let name = joined.clone();
        let out = tokio::task::spawn_blocking(move || {
            // No layer may go while a directory slot has it mounted.
            d.slots.without_mounts(|| {
                d.images
                    .remove(&name, force, noprune, &|id| user_of(&d, id))
            })
        })
        .await
        .map_err(ApiError::internal)??;
        for o in &out {
            match o {
                Removed::Untagged(t) => ctx.d.events.publish("image", "untag", t, []),
                Removed::Deleted(id) => ctx.d.events.publish("image", "delete", id, []),
            }
        }
        return ok_json(&out);
    }
    let (name, action) = joined
        .rsplit_once('/')
        .ok_or_else(|| ApiError::not_found(format!("page not found: {method} /images/{joined}")))?;
    match (method, action) {
        (&Method::GET, "json") => ok_json(&ctx.d.images.inspect(name)?),
        (&Method::GET, "history") => ok_json(&ctx.d.images.history(name)?),
        (&Method::GET, "get") => save(ctx, Some(name.to_string())).await,
        (&Method::POST, "tag") => {
            let repo = ctx
                .query
                .get("repo")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    ApiError::bad_request("repository name must have at least one component")
                })?;
            let r = ctx
                .d
                .images
                .tag(name, repo, ctx.query.get("tag").unwrap_or(""))?;
            let id = ctx.d.images.resolve(name)?.to_string();
            ctx.d
                .events
                .publish("image", "tag", &id, [("name".to_string(), r.to_string())]);
            http::status(StatusCode::CREATED)
        }
        (&Method::POST, "push") => Err(ApiError::not_implemented(format!(
            "berthd cannot push {name} to a registry yet: use `docker save`"
        ))),
        _ => Err(ApiError::not_found(format!(
            "page not found: {method} /images/{joined}"
        ))),
    }
}
