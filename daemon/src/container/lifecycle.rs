//! Container lifecycle: start through a new berth-shim, watch for the exit, stop/kill,
//! remove; restart policies; re-attaching to shims after a daemon restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::StatusCode;

use super::model::{Record, Status};
use super::shim::{self, ExitInfo, Launch, Request, Response};
use super::{rootfs, spec, Ctr, Life};
use crate::daemon::Daemon;
use crate::http::{ApiError, ApiResult};
use crate::util;

/// The overlay lower layers a container of image `image_id` is mounted with: the image's
/// layers under its shared init layer, topmost first.
pub fn image_lowers(d: &Daemon, image_id: &str) -> ApiResult<Vec<PathBuf>> {
    let mut lower = crate::image::ImageId::parse(image_id)
        .and_then(|id| d.images.lowerdirs(&id))
        .map_err(|e| ApiError::internal(format!("layers of image {image_id}: {e}")))?;
    let init = rootfs::init_layer(&d.cfg.data_root, &lower)
        .map_err(|e| ApiError::internal(format!("init layer of image {image_id}: {e}")))?;
    lower.insert(0, init);
    Ok(lower)
}

/// Mounts the container's overlay (idempotent: a create from a slot may find it mounted)
/// and returns the merged root.
pub fn ensure_rootfs(d: &Daemon, c: &Ctr) -> ApiResult<PathBuf> {
    let paths = d.paths(&c.id);
    if rootfs::is_mountpoint(&paths.merged()).unwrap_or(false) {
        return Ok(paths.merged());
    }
    let lower = image_lowers(d, &c.rec().image_id)?;
    rootfs::mount(&paths, &lower).map_err(ApiError::internal)?;
    Ok(paths.merged())
}

fn not_modified() -> ApiError {
    ApiError::new(StatusCode::NOT_MODIFIED, "")
}

/// Starts a created or exited container.
pub async fn start(d: &Arc<Daemon>, c: &Arc<Ctr>) -> ApiResult<()> {
    let _op = c.op.lock().await;
    match c.status() {
        Status::Running | Status::Restarting => return Err(not_modified()),
        Status::Paused => {
            return Err(ApiError::conflict(
                "cannot start a paused container, try unpause instead",
            ))
        }
        Status::Removing | Status::Dead => {
            return Err(ApiError::conflict(format!(
                "container {} is marked for removal and cannot be started",
                c.id
            )))
        }
        _ => {}
    }
    start_locked(d, c).await
}

/// Boxed: a restart policy starts the container again from the exit handler, a cycle the
/// compiler can only see through as a boxed `Send` future.
fn start_locked<'a>(
    d: &'a Arc<Daemon>,
    c: &'a Arc<Ctr>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ApiResult<()>> + Send + 'a>> {
    Box::pin(start_inner(d, c))
}

/// Right after `docker create` answers, while the client is still busy (attaching, or just
/// turning the reply into a start request): everything a start does before the program
/// runs — overlay, config.json, berth-shim with the container created and held. The start
/// that follows only releases it. A failure here is not reported; the start tries again and
/// reports it.
pub async fn prepare_ahead(d: Arc<Daemon>, c: Arc<Ctr>) {
    let _op = c.op.lock().await;
    if c.status() != Status::Created || c.is_held() || c.life.borrow().removed {
        return;
    }
    let msg = match prepare(&d, &c, std::time::Instant::now()).await {
        Ok(Ok(())) => return,
        Ok(Err(msg)) => msg,
        Err(e) => e.message,
    };
    crate::log::debug(format_args!(
        "prepare {} ahead of start: {msg}",
        &c.id[..12]
    ));
}

fn lap(c: &Ctr, t0: std::time::Instant, what: &str) {
    crate::log::debug(format_args!(
        "start {}: {what} at {:.2} ms",
        &c.id[..12],
        t0.elapsed().as_secs_f64() * 1000.0
    ))
}

/// Overlay, config.json and a shim that has created the container and holds it before its
/// program: the slot's parked container when this config differs from its own only in the
/// program, a new one otherwise. Called with the container's op lock held. The inner error
/// is the shim's: the start failed, as a failed task create does in dockerd.
async fn prepare(
    d: &Arc<Daemon>,
    c: &Arc<Ctr>,
    t0: std::time::Instant,
) -> ApiResult<Result<(), String>> {
    let paths = d.paths(&c.id);
    let root = ensure_rootfs(d, c)?;
    let rec = c.rec().clone();
    if let Some(warm) = c.take_warm() {
        // stdin is the shim's, not the config's: a parked shim has none.
        let claimed = if rec.config.open_stdin {
            Ok(false)
        } else {
            claim(&rec, &paths, &root, &warm).await
        };
        if let Ok(true) = claimed {
            c.set_held(true);
            lap(c, t0, "parked container claimed");
            return Ok(Ok(()));
        }
        // Not this config's (or its config could not be written): gone, and its runtime
        // state with it, before one of our own.
        shut_down_shim_of(d, &c.id).await;
        claimed?;
    }
    let netns = take_netns(d, &rec)?;
    let cfg = write_config(&rec, &paths, &root, netns.as_ref().map(|n| n.path()))?;
    drop(cfg);
    // A previous run's shim state (socket, exit record) must not answer for this one.
    let _ = std::fs::remove_dir_all(&paths.shim);
    lap(c, t0, "bundle written");
    let log = paths.log(&rec.id);
    let launched = shim::launch(&d.cfg, &d.shims, &launch_of(&rec, &paths, &log, false)).await;
    drop(netns);
    if let Err(msg) = launched {
        let _ = std::fs::remove_dir_all(&paths.shim);
        return Ok(Err(format!(
            "failed to create task for container: {msg}: unknown"
        )));
    }
    c.set_held(true);
    lap(c, t0, "shim up, container created");
    Ok(Ok(()))
}

fn launch_of<'a>(
    rec: &'a Record,
    paths: &'a super::Paths,
    log: &'a std::path::Path,
    park: bool,
) -> Launch<'a> {
    Launch {
        id: &rec.id,
        bundle: &paths.bundle,
        state_dir: &paths.shim,
        log,
        log_max_size: rec.log_max_size,
        log_max_file: rec.log_max_file,
        stdin: rec.config.open_stdin,
        stdin_once: rec.config.stdin_once,
        park,
    }
}

/// The container's OCI config, written to its bundle (with its /etc files if missing).
fn write_config(
    rec: &Record,
    paths: &super::Paths,
    root: &std::path::Path,
    netns: Option<PathBuf>,
) -> ApiResult<serde_json::Value> {
    let passwd = rootfs::read_in_root(root, "etc/passwd").unwrap_or_default();
    let group = rootfs::read_in_root(root, "etc/group").unwrap_or_default();
    let user = spec::resolve_user(
        &rec.config.user,
        &passwd,
        &group,
        &rec.host_config.group_add,
    )?;
    let init = if rec.host_config.init.unwrap_or(false) {
        Some(find_init()?)
    } else {
        None
    };
    if !paths.bundle.join("hosts").exists() {
        rootfs::write_etc_files(&paths.bundle, rec)?;
    }
    let cfg = spec::build(
        rec,
        &spec::Inputs {
            rootfs: root,
            user,
            etc_dir: &paths.bundle,
            cgroups_path: super::slots::cgroups_path(&rec.id),
            init: init.as_deref(),
            netns: netns.as_deref(),
        },
    )?;
    std::fs::create_dir_all(&paths.bundle)?;
    util::replace_file(
        &paths.bundle.join("config.json"),
        &serde_json::to_vec(&cfg).expect("spec serialises"),
    )?;
    Ok(cfg)
}

/// `config` without what a parked container is given late (as berth-runtime's claim
/// compares them).
fn without_program(mut config: serde_json::Value) -> serde_json::Value {
    if let Some(p) = config.get_mut("process").and_then(|p| p.as_object_mut()) {
        for k in ["args", "env", "cwd", "user", "rlimits"] {
            p.remove(k);
        }
    }
    config
}

/// Where two JSON values first differ, as a path (for the debug log).
fn first_difference(a: &serde_json::Value, b: &serde_json::Value) -> String {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) if p == q => {}
                    (Some(p), Some(q)) => return format!("{k}.{}", first_difference(p, q)),
                    _ => return k.clone(),
                }
            }
            String::new()
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if p != q {
                    return format!("{i}.{}", first_difference(p, q));
                }
            }
            String::new()
        }
        _ => format!("{a} vs {b}"),
    }
}

/// Claims the slot's parked container for `rec` if their configs differ only in the
/// program; false (nothing claimed, the parked one still there or gone) otherwise.
async fn claim(
    rec: &Record,
    paths: &super::Paths,
    root: &std::path::Path,
    warm: &super::slots::Warm,
) -> ApiResult<bool> {
    let cfg = write_config(rec, paths, root, warm.netns.as_ref().map(|n| n.path()))?;
    let (a, b) = (without_program(cfg), &warm.config);
    if a != *b {
        if crate::log::debug_enabled() {
            crate::log::debug(format_args!(
                "{}: config differs from the parked container's: {}",
                &rec.id[..12],
                first_difference(&a, b)
            ));
        }
        return Ok(false);
    }
    let claimed = shim::call(
        &paths.shim,
        &Request::Claim {
            log_max_size: rec.log_max_size,
            log_max_files: rec.log_max_file,
        },
    )
    .await;
    match claimed {
        Ok(Response::Ok) => Ok(true),
        other => {
            crate::log::debug(format_args!(
                "claiming the parked container {}: {other:?}",
                &rec.id[..12]
            ));
            Ok(false)
        }
    }
}

/// Parks a container in a ready slot mounted for `template`'s image: the container a create
/// like `template` would make, created by a berth-shim without its program (see `slots`).
/// Run after a create has answered; a failure only costs the slot. False when no slot is
/// mounted for the image (yet).
///
/// Parking runs in the background (nice 19, see berth-shim's `--park`): after an attached
/// create too (`docker run`, `--rm` or not), once its client is done with it (see
/// `create`), it yields the CPU to that container's exit and its client. Not for containers
/// with stdin or a terminal (their shim sets them up at the create), nor with the mounts
/// below.
pub async fn warm(d: Arc<Daemon>, template: Record) -> bool {
    let c = &template.config;
    // Bind and volume mounts (and --init's docker-init) are made when parking: a file
    // replaced (an editor's save, a checkout, an upgrade) or a volume recreated by the
    // claim would go unseen behind the same path.
    let binds = template
        .mounts
        .iter()
        .any(|m| m.kind == "bind" || m.kind == "volume");
    let init = template.host_config.init.unwrap_or(false);
    if binds || init || c.tty || c.open_stdin || c.attach_stdin || !d.cfg.park {
        return true;
    }
    let id = match d.slots.take_to_warm(&template.image_id) {
        Ok(Some(id)) => id,
        Ok(None) => return true,
        Err(()) => return false,
    };
    let mut rec = template;
    if rec.config.hostname == rec.id[..12] {
        rec.config.hostname = id[..12].to_string();
    }
    rec.id = id.clone();
    rec.name = String::new();
    rec.state = Default::default();
    // Arguments and environment are the claim's (and may hold secrets): none kept here.
    rec.args.clear();
    rec.config.env.clear();
    let paths = d.paths(&id);
    let made = async {
        // The bundle, like the shim, in the background (see `util::BackgroundThread`).
        let bundle = {
            let (d, rec, paths) = (d.clone(), rec.clone(), paths.clone());
            tokio::task::spawn_blocking(move || {
                let _bg = crate::util::BackgroundThread::enter();
                rootfs::write_etc_files(&paths.bundle, &rec)?;
                let netns = take_netns(&d, &rec)?;
                let netns_path = netns.as_ref().map(|n| n.path());
                let config = write_config(&rec, &paths, &paths.merged(), netns_path)?;
                let _ = std::fs::remove_dir_all(&paths.shim);
                Ok::<_, ApiError>((config, netns))
            })
        };
        let (config, netns) = bundle.await.map_err(ApiError::internal)??;
        let log = paths.log(&rec.id);
        let pipe = shim::launch(&d.cfg, &d.shims, &launch_of(&rec, &paths, &log, true))
            .await
            .map_err(ApiError::internal)?;
        Ok::<_, ApiError>(super::slots::Warm {
            config: without_program(config),
            netns,
            pipe,
        })
    }
    .await;
    match made {
        Ok(w) => {
            crate::log::debug(format_args!("parked a container in slot {}", &id[..12]));
            if !d.slots.put_warm(&id, w) {
                // Its slot went meanwhile.
                shut_down_shim_of(&d, &id).await;
            }
        }
        Err(e) => {
            crate::log::debug(format_args!(
                "parking a container in slot {id}: {}",
                e.message
            ));
            discard_slot(&d, &id).await;
        }
    }
    true
}

/// Shuts down a slot's parked container, if any, and removes the slot.
pub async fn discard_slot(d: &Arc<Daemon>, id: &str) {
    shut_down_shim_of(d, id).await;
    let (d, id) = (d.clone(), id.to_string());
    let _ = tokio::task::spawn_blocking(move || {
        d.slots.forget(&id);
        d.slots.remove(&id)
    })
    .await;
}

async fn start_inner(d: &Arc<Daemon>, c: &Arc<Ctr>) -> ApiResult<()> {
    let t0 = std::time::Instant::now();
    let paths = d.paths(&c.id);
    if !c.is_held() {
        if let Err(msg) = prepare(d, c, t0).await? {
            return Err(start_failed(d, c, msg).await);
        }
    }
    // Attach clients that came before the start connect now, then the program runs.
    c.gate.send_modify(|g| g.generation += 1);
    let mut gate = c.gate.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(5), gate.wait_for(|g| g.waiting == 0)).await;
    // The start and the state (for the pid) in one round trip: the shim answers a
    // connection's requests in order.
    let started = async {
        let mut conn = shim::Conn::connect(&paths.shim).await?;
        conn.send(&Request::Start).await?;
        conn.send(&Request::State).await?;
        let start = conn.reply().await?;
        let pid = match conn.reply().await {
            Ok(Response::State(s)) => s.pid,
            _ => 0,
        };
        Ok::<_, shim::CallError>((start, pid))
    };
    let started = tokio::time::timeout(Duration::from_secs(10), started)
        .await
        .unwrap_or(Err(shim::CallError::Timeout));
    let pid = match started {
        Ok((Response::Ok, pid)) => pid,
        other => {
            let msg = match other {
                Ok((Response::Error { message }, _)) => message,
                Ok((r, _)) => format!("unexpected shim reply {r:?}"),
                Err(e) => e.to_string(),
            };
            shut_down_shim(d, c).await;
            return Err(start_failed(
                d,
                c,
                format!("failed to start task for container: {msg}: unknown"),
            )
            .await);
        }
    };
    c.set_held(false);
    lap(c, t0, "started");
    // The next container's standby shim (its start-up in the background, see `shim::Pool`).
    d.shims.refill(&d.cfg.shim);
    {
        let mut r = c.rec();
        r.state.status = Status::Running;
        r.state.pid = pid;
        r.state.error.clear();
        r.state.exit_code = 0;
        r.state.oom_killed = false;
        r.state.started_at = util::rfc3339(SystemTime::now());
        r.state.finished_at = util::ZERO_TIME.into();
    }
    // Before the reply: a restart after kill -9 shuts down the shims of containers whose
    // record says created (held ones), and this one is started.
    d.save_state(c)?;
    c.life.send_modify(|l| l.running = true);
    d.container_event(c, "start", &[]);
    tokio::spawn(monitor(d.clone(), c.clone()));
    Ok(())
}

/// A start that failed: the error is recorded, waiters and attach clients are released
/// (with Docker's exit codes: 127 not found, 126 not executable, 128 otherwise), and a
/// `--rm` container is removed, as dockerd does.
async fn start_failed(d: &Arc<Daemon>, c: &Arc<Ctr>, msg: String) -> ApiError {
    let code = if msg.contains("executable file not found") || msg.contains("no such file") {
        127
    } else if msg.contains("permission denied") || msg.contains("Permission denied") {
        126
    } else {
        128
    };
    let auto_remove = {
        let mut r = c.rec();
        r.state.error = msg.clone();
        r.state.exit_code = code;
        if r.state.status != Status::Created {
            r.state.status = Status::Exited;
        }
        r.host_config.auto_remove
    };
    let _ = d.save_state(c);
    c.life.send_modify(|l| {
        l.exits += 1;
        l.exit_code = code;
    });
    // Attach clients waiting for this start find no shim and end.
    c.gate.send_modify(|g| g.generation += 1);
    if auto_remove {
        let d = d.clone();
        let c = c.clone();
        // After this start's lock is released.
        tokio::spawn(async move {
            let _ = remove(&d, &c, true, true).await;
        });
    }
    ApiError::bad_request(msg)
}

/// docker-init (tini) from the host, bind-mounted into the container for `--init`.
fn find_init() -> ApiResult<PathBuf> {
    [
        "/usr/sbin/docker-init",
        "/usr/bin/docker-init",
        "/usr/bin/tini-static",
        "/usr/bin/tini",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .ok_or_else(|| {
        ApiError::bad_request(
            "--init needs docker-init or tini on the host (Debian: docker.io or tini); none found",
        )
    })
}

/// Watches one running container until it exits (through its shim's `wait`).
async fn monitor(d: Arc<Daemon>, c: Arc<Ctr>) {
    let sd = d.paths(&c.id).shim;
    let info = match shim::Conn::connect(&sd).await {
        Ok(mut conn) => match conn.call(&Request::Wait { exec_id: None }).await {
            Ok(Response::Exited(info)) => Some(info),
            _ => berth_shim::protocol::read_exit(&sd).ok().flatten(),
        },
        Err(_) => berth_shim::protocol::read_exit(&sd).ok().flatten(),
    };
    exited(&d, &c, info).await;
}

/// Records an exit, lets waiters go, and applies `--rm` or the restart policy.
async fn exited(d: &Arc<Daemon>, c: &Arc<Ctr>, info: Option<ExitInfo>) {
    crate::log::debug(format_args!("container {} exited", &c.id[..12]));
    // `--rm`: the shim is shut down with the rest of the files, after the waiters are
    // released.
    if !c.rec().host_config.auto_remove {
        shut_down_shim(d, c).await;
        // The /etc files stay for the next start, edits included, as in Docker.
        let _ = std::fs::remove_file(d.paths(&c.id).bundle.join("config.json"));
    }
    let (code, oom) = match &info {
        Some(i) => (i64::from(i.exit_code), i.oom_killed),
        None => (137, false),
    };
    let (auto_remove, policy, max_retry, manually_stopped, restarts) = {
        let mut r = c.rec();
        r.state.status = Status::Exited;
        r.state.pid = 0;
        r.state.exit_code = code;
        r.state.oom_killed = oom;
        r.state.finished_at = info
            .as_ref()
            .map(|i| i.exited_at.clone())
            .unwrap_or_else(|| util::rfc3339(SystemTime::now()));
        if info.is_none() {
            r.state.error = "berth-shim went away without recording the exit".into();
        }
        (
            r.host_config.auto_remove,
            r.host_config.restart_policy.name.clone(),
            r.host_config.restart_policy.maximum_retry_count,
            r.manually_stopped,
            r.restart_count,
        )
    };
    if !auto_remove {
        let _ = d.save_state(c);
    }
    if oom {
        d.container_event(c, "oom", &[]);
    }
    d.container_event(c, "die", &[("exitCode", code.to_string())]);
    c.life.send_modify(|l| {
        l.running = false;
        l.exits += 1;
        l.exit_code = code;
    });
    if auto_remove {
        remove_after_exit(d, c).await;
        return;
    }
    let restart = !manually_stopped
        && match policy.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => code != 0 && (max_retry <= 0 || (restarts as i64) < max_retry),
            _ => false,
        };
    if restart {
        let d = d.clone();
        let c = c.clone();
        tokio::spawn(async move {
            // Docker's back-off starts at 100 ms and doubles.
            let delay = Duration::from_millis(100u64 << restarts.min(10));
            tokio::time::sleep(delay).await;
            let _op = c.op.lock().await;
            if c.status() != Status::Exited || c.rec().manually_stopped {
                return;
            }
            c.rec().restart_count += 1;
            if start_locked(&d, &c).await.is_ok() {
                d.container_event(&c, "restart", &[]);
            }
        });
    }
}

/// After a daemon restart: find the container's shim again.
pub async fn reattach(d: Arc<Daemon>, c: Arc<Ctr>) {
    let sd = d.paths(&c.id).shim;
    match shim::call(&sd, &Request::State).await {
        Ok(Response::State(s)) if s.exit.is_none() => {
            {
                let mut r = c.rec();
                r.state.pid = s.pid;
                // A start whose record did not reach the disk before a power loss.
                if !r.state.status.is_running() {
                    r.state.status = Status::Running;
                }
            }
            c.life.send_modify(|l| l.running = true);
            let _ = ensure_rootfs(&d, &c);
            tokio::spawn(monitor(d, c));
        }
        Ok(Response::State(s)) => exited(&d, &c, s.exit).await,
        _ => {
            let info = berth_shim::protocol::read_exit(&sd).ok().flatten();
            exited(&d, &c, info).await;
        }
    }
}

/// Waits until the container is not running, at most `limit`; true if it stopped.
pub async fn wait_stopped(c: &Ctr, limit: Duration) -> bool {
    let mut rx = c.life.subscribe();
    let r = tokio::time::timeout(limit, rx.wait_for(|l: &Life| !l.running))
        .await
        .is_ok();
    r
}

pub async fn signal(d: &Daemon, c: &Ctr, sig: i32) -> ApiResult<()> {
    let sd = d.paths(&c.id).shim;
    match shim::call(
        &sd,
        &Request::Kill {
            signal: sig,
            all: false,
            exec_id: None,
        },
    )
    .await
    {
        Ok(Response::Ok) => Ok(()),
        Ok(Response::Error { message }) => Err(ApiError::internal(message)),
        Ok(other) => Err(ApiError::internal(format!(
            "unexpected shim reply {other:?}"
        ))),
        Err(e) => Err(ApiError::internal(e)),
    }
}

pub fn parse_signal(s: &str) -> ApiResult<i32> {
    berth_runtime::container::parse_signal(s.trim())
        .ok_or_else(|| ApiError::bad_request(format!("Invalid signal: {s}")))
}

/// `docker stop`: the stop signal, then SIGKILL after the timeout.
pub async fn stop(
    d: &Arc<Daemon>,
    c: &Arc<Ctr>,
    timeout: Option<i64>,
    sig: Option<&str>,
) -> ApiResult<()> {
    let _op = c.op.lock().await;
    if !c.status().is_running() {
        return Err(not_modified());
    }
    let (stop_signal, stop_timeout) = {
        let mut r = c.rec();
        r.manually_stopped = true;
        (r.config.stop_signal.clone(), r.config.stop_timeout)
    };
    let _ = d.save_state(c);
    if c.status() == Status::Paused {
        set_paused(d, c, false)?;
    }
    let sig = parse_signal(sig.or(stop_signal.as_deref()).unwrap_or("SIGTERM"))?;
    let secs = timeout.or(stop_timeout).unwrap_or(10);
    let _ = signal(d, c, sig).await;
    if secs < 0 {
        wait_stopped(c, Duration::MAX).await;
    } else if !wait_stopped(c, Duration::from_secs(secs as u64)).await {
        let _ = signal(d, c, libc::SIGKILL).await;
        if !wait_stopped(c, Duration::from_secs(10)).await {
            return Err(ApiError::internal(format!(
                "container {} did not stop after SIGKILL",
                c.id
            )));
        }
    }
    d.container_event(c, "stop", &[]);
    Ok(())
}

pub async fn kill(d: &Arc<Daemon>, c: &Arc<Ctr>, sig: &str) -> ApiResult<()> {
    let sig_no = parse_signal(sig)?;
    if !c.status().is_running() {
        return Err(ApiError::conflict(format!(
            "Cannot kill container: {}: container {} is not running",
            c.name(),
            c.id
        )));
    }
    if sig_no == libc::SIGKILL {
        c.rec().manually_stopped = true;
        let _ = d.save_state(c);
    }
    signal(d, c, sig_no).await?;
    d.container_event(c, "kill", &[("signal", sig_no.to_string())]);
    Ok(())
}

pub fn set_paused(d: &Daemon, c: &Ctr, pause: bool) -> ApiResult<()> {
    let root = d.cfg.exec_root.join("runtime");
    let r = if pause {
        berth_runtime::container::pause(&root, &c.id)
    } else {
        berth_runtime::container::resume(&root, &c.id)
    };
    r.map_err(ApiError::internal)?;
    c.rec().state.status = if pause {
        Status::Paused
    } else {
        Status::Running
    };
    d.save_state(c)?;
    d.container_event(c, if pause { "pause" } else { "unpause" }, &[]);
    Ok(())
}

/// `docker rm`: refuses a running container unless forced; removes rootfs, files, and
/// (with `volumes`) its anonymous volumes.
pub async fn remove(d: &Arc<Daemon>, c: &Arc<Ctr>, force: bool, volumes: bool) -> ApiResult<()> {
    if c.status().is_running() {
        if !force {
            return Err(ApiError::conflict(format!(
                "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                c.name()
            )));
        }
        c.rec().manually_stopped = true;
        if c.status() == Status::Paused {
            let _ = set_paused(d, c, false);
        }
        let _ = signal(d, c, libc::SIGKILL).await;
        d.container_event(c, "kill", &[("signal", libc::SIGKILL.to_string())]);
        wait_stopped(c, Duration::from_secs(10)).await;
    }
    let _op = c.op.lock().await;
    if c.life.borrow().removed {
        return Ok(());
    }
    c.rec().state.status = Status::Removing;
    let _ = d.save_state(c);
    remove_files(d, c, volumes, false).await?;
    unregister(d, c);
    Ok(())
}

/// `--rm` after the exit: the container leaves the registry first — waiters on
/// `condition=removed` and the name are released at once — and its files go after. The
/// record says "removing" on disk until then, so a restart finishes the job; it is written
/// once the waiters have answered (a restart before that finds a `--rm` container whose
/// shim recorded the exit, or is gone, and removes it all the same).
async fn remove_after_exit(d: &Arc<Daemon>, c: &Arc<Ctr>) {
    let op = c.op.lock().await;
    if c.life.borrow().removed {
        return;
    }
    c.rec().state.status = Status::Removing;
    unregister(d, c);
    crate::log::debug(format_args!("container {} removed", &c.id[..12]));
    drop(op);
    // The released `wait`s write their replies first (one thread runs every task).
    tokio::task::yield_now().await;
    let _ = d.save_state(c);
    if let Err(e) = remove_files(d, c, true, true).await {
        crate::log::warn(format_args!("removing {}: {}", &c.id[..12], e.message));
    }
}

/// The container's shim (a held one, or one a crash left), overlay, bundle, record and log,
/// and with `volumes` its anonymous volumes. `background`: nobody waits for it (a `--rm`
/// container's removal, once its waiters have their answer), so the shim's shutdown and the
/// file work run in the background (see `util::BackgroundThread`).
async fn remove_files(
    d: &Arc<Daemon>,
    c: &Arc<Ctr>,
    volumes: bool,
    background: bool,
) -> ApiResult<()> {
    let paths = d.paths(&c.id);
    if paths.shim.join(berth_shim::protocol::SOCKET).exists() {
        shut_down_shim_in(d, c, background).await;
    }
    // A shim that did not finish may still hold the container's mount namespace, and with
    // it the overlay's upper dir: not recycled then.
    let shim_done = !c.shim_lingering();
    // Unmounting an overlay syncs its upper filesystem: off the async thread.
    let (d2, c2) = (d.clone(), c.clone());
    tokio::task::spawn_blocking(move || {
        let _bg = background.then(crate::util::BackgroundThread::enter);
        remove_dirs_of(&d2, &c2, shim_done)
    })
    .await
    .map_err(|e| ApiError::internal(format!("removing {}: {e}", paths.dir.display())))??;
    // Not in the background: a create's mounts take the volumes' lock this holds.
    remove_volumes(d, c, volumes)
}

/// [`remove_files`]' work on disk, after the shim (`shim_done`: it finished its shutdown,
/// releasing the container's mount namespace). Blocking.
fn remove_dirs_of(d: &Daemon, c: &Ctr, shim_done: bool) -> ApiResult<()> {
    let paths = d.paths(&c.id);
    let busy = rootfs::unmount_reporting_busy(&paths).map_err(ApiError::internal)?;
    // Not recursive: were the overlay somehow still mounted there, this fails instead of
    // deleting the container's files through it.
    match std::fs::remove_dir(&paths.rootfs) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ApiError::internal(format!(
                "removing {}: {e}",
                paths.rootfs.display()
            )))
        }
    }
    d.slots.remove_cgroups(&c.id);
    remove_dirs(&[&paths.bundle, &paths.shim])?;
    // An overlay only detached (a file still open under it), or still mounted in the
    // namespace of a shim that did not finish, still writes to its upper dir: never handed
    // to another container.
    if busy || !shim_done || !d.slots.recycle(&c.id) {
        remove_dirs(&[&paths.overlay, &paths.dir])?;
    }
    Ok(())
}

/// Removes each directory with what it holds; one already gone is not an error.
fn remove_dirs(dirs: &[&std::path::Path]) -> ApiResult<()> {
    for dir in dirs {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ApiError::internal(format!(
                    "removing {}: {e}",
                    dir.display()
                )))
            }
        }
    }
    Ok(())
}

/// With `volumes`, the container's anonymous volumes.
fn remove_volumes(d: &Daemon, c: &Ctr, volumes: bool) -> ApiResult<()> {
    if volumes {
        let rec: Record = c.rec().clone();
        for m in rec.mounts.iter().filter(|m| m.kind == "volume") {
            if d.volumes.is_anonymous(&m.name) {
                let _ = d.volumes.remove(&m.name, false, &|_| None);
            }
        }
    }
    Ok(())
}

/// Shuts down the container's shim — one holding a created container (prepared ahead of a
/// start) or one whose container has exited: it deletes the container from the runtime and
/// exits; its state dir goes with it.
pub async fn shut_down_shim(d: &Daemon, c: &Ctr) {
    shut_down_shim_in(d, c, false).await
}

/// [`shut_down_shim`]; `background`: the shim does it in the background (nobody waits). A
/// shim that did not finish in time is marked on the container (see `remove_files`).
async fn shut_down_shim_in(d: &Daemon, c: &Ctr, background: bool) {
    if !shut_down_shim_bg(d, &c.id, background).await {
        c.set_shim_lingering();
    }
    c.set_held(false);
}

/// Shuts down the shim of container (or slot) `id`, if one answers, and removes its state
/// dir.
pub async fn shut_down_shim_of(d: &Daemon, id: &str) {
    shut_down_shim_bg(d, id, false).await;
}

/// [`shut_down_shim_of`]; `background`: the shim does it in the background (nobody
/// waits). False when the shim did not finish in time (it may still hold the container's
/// mounts).
async fn shut_down_shim_bg(d: &Daemon, id: &str, background: bool) -> bool {
    let sd = d.paths(id).shim;
    let req = Request::Shutdown { background };
    // The shim's own `call` gives up after 10 s.
    let done = !matches!(
        shim::call(&sd, &req).await,
        Err(shim::CallError::Timeout | shim::CallError::Io(_) | shim::CallError::Decode(_))
    );
    let _ = std::fs::remove_dir_all(&sd);
    done
}

/// A network namespace from the pool for `rec`, None with the host's network. Held until
/// the shim has created the container in it.
fn take_netns(d: &Daemon, rec: &Record) -> ApiResult<Option<crate::netns::Netns>> {
    if rec.host_config.network_mode == "host" {
        return Ok(None);
    }
    d.netns.take().map(Some).map_err(ApiError::internal)
}

/// Out of the registry: name and id free, waiters and attach clients released.
fn unregister(d: &Daemon, c: &Ctr) {
    d.containers.lock().unwrap().remove(&c.id);
    d.exec.lock().unwrap().forget_container(&c.id);
    c.life.send_modify(|l| l.removed = true);
    c.gate.send_modify(|g| g.closed = true);
    d.container_event(c, "destroy", &[]);
}
