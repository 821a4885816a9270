//! /images endpoints: list, inspect, history, tag, remove, prune, load, save, import.
//! Registry pull and push are not implemented: they answer so.

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use super::Ctx;
use crate::http::{self, ok_json, ApiError, ApiResult, BodyReader, ChannelWriter};
use crate::image_api::user_of;
use crate::images::reference;

pub async fn list(ctx: &Ctx) -> ApiResult {
    let f = ctx.query.filters()?;
    f.only(&["dangling", "label", "reference", "before", "since", "until"])?;
    let d = ctx.d.clone();
    let before = f
        .values("before")
        .first()
        .map(|b| d.images.resolve(b))
        .transpose()?;
    let since = f
        .values("since")
        .first()
        .map(|b| d.images.resolve(b))
        .transpose()?;
    let rows = tokio::task::spawn_blocking(move || {
        let cut = |id: &Option<String>| id.as_ref().map(|i| d.images.created_unix(i));
        let (before_t, since_t) = (cut(&before), cut(&since));
        d.images.list_json(&|id, tags| {
            let created = d.images.created_unix(id);
            f.any("dangling", |v| (v == "true" || v == "1") == tags.is_empty())
                && f.any("reference", |pat| {
                    tags.iter().any(|t| {
                        glob(pat, t) || glob(pat, t.rsplit_once(':').map_or(t.as_str(), |x| x.0))
                    })
                })
                && before_t.is_none_or(|b| created < b)
                && since_t.is_none_or(|s| created > s)
                && f.values("label").iter().all(|l| {
                    let labels = d
                        .images
                        .run_config(id)
                        .ok()
                        .and_then(|r| r.labels)
                        .unwrap_or_default();
                    match l.split_once('=') {
                        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                        None => labels.contains_key(l.as_str()),
                    }
                })
        })
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
    for t in &loaded.tags {
        out.push_str(&format!(
            "{}\n",
            json!({"stream": format!("Loaded image: {t}\n")})
        ));
        ctx.d.events.publish("image", "load", t, []);
    }
    if loaded.tags.is_empty() {
        for id in &loaded.ids {
            out.push_str(&format!(
                "{}\n",
                json!({"stream": format!("Loaded image ID: {id}\n")})
            ));
            ctx.d.events.publish("image", "load", id, []);
        }
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
    let mut images: Vec<(String, Vec<String>)> = Vec::new();
    for n in &names {
        let id = ctx.d.images.resolve(n)?;
        let tag = reference::parse(n)
            .ok()
            .map(|r| r.to_string())
            .filter(|t| ctx.d.images.tags_of(&id).contains(t));
        match images.iter_mut().find(|(i, _)| *i == id) {
            Some((_, tags)) => tags.extend(tag),
            None => images.push((id, tag.into_iter().collect())),
        }
    }
    let (tx, reply) = http::stream("application/x-tar");
    let d = ctx.d.clone();
    tokio::task::spawn_blocking(move || {
        let w = std::io::BufWriter::with_capacity(1 << 20, ChannelWriter(tx));
        if let Err(e) = d.images.save(&images, w) {
            crate::log::warn(format_args!("save: {e}"));
        }
    });
    for n in names {
        ctx.d.events.publish("image", "save", &n, []);
    }
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
    let tag = match q.get("repo").filter(|s| !s.is_empty()) {
        Some(repo) => {
            let t = q.get("tag").filter(|s| !s.is_empty());
            let r = match t {
                Some(t) => reference::parse(&format!("{repo}:{t}"))?,
                None => reference::parse(repo)?,
            };
            Some(r)
        }
        None => None,
    };
    let changes: Vec<String> = q.all("changes").iter().map(|s| s.to_string()).collect();
    let message = q.get("message").unwrap_or("").to_string();
    let mut reader = BodyReader::new(req.into_body());
    let d = ctx.d.clone();
    let t2 = tag.clone();
    let id = tokio::task::spawn_blocking(move || {
        d.images
            .import(&mut reader, t2.as_ref(), &changes, &message)
    })
    .await
    .map_err(ApiError::internal)??;
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
    let (deleted, space) =
        tokio::task::spawn_blocking(move || d.images.prune(all, &|id| user_of(&d, id)))
            .await
            .map_err(ApiError::internal)??;
    ok_json(&json!({"ImagesDeleted": deleted, "SpaceReclaimed": space}))
}

pub async fn by_name(ctx: &Ctx, method: &Method, rest: &[&str]) -> ApiResult {
    let joined = rest.join("/");
    if method == Method::DELETE {
        let d = ctx.d.clone();
        let force = ctx.query.flag("force");
        let name = joined.clone();
        let out = tokio::task::spawn_blocking(move || {
            d.images.remove(&name, force, &|id| user_of(&d, id))
        })
        .await
        .map_err(ApiError::internal)??;
        for o in &out {
            if let Some(t) = o["Untagged"].as_str() {
                ctx.d.events.publish("image", "untag", t, []);
            }
            if let Some(id) = o["Deleted"].as_str() {
                ctx.d.events.publish("image", "delete", id, []);
            }
        }
        return ok_json(&out);
    }
    let (name, action) = joined
        .rsplit_once('/')
        .ok_or_else(|| ApiError::not_found(format!("page not found: {method} /images/{joined}")))?;
    match (method, action) {
        (&Method::GET, "json") => {
            let id = ctx.d.images.resolve(name)?;
            ok_json(&ctx.d.images.inspect_json(&id)?)
        }
        (&Method::GET, "history") => {
            let id = ctx.d.images.resolve(name)?;
            ok_json(&ctx.d.images.history_json(&id)?)
        }
        (&Method::GET, "get") => save(ctx, Some(name.to_string())).await,
        (&Method::POST, "tag") => {
            let id = ctx.d.images.resolve(name)?;
            let repo = ctx
                .query
                .get("repo")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    ApiError::bad_request("repository name must have at least one component")
                })?;
            let r = match ctx.query.get("tag").filter(|s| !s.is_empty()) {
                Some(t) => reference::parse(&format!("{repo}:{t}"))?,
                None => reference::parse(repo)?,
            };
            ctx.d.images.tag(&id, &r)?;
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
