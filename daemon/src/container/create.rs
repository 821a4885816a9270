//! POST /containers/create: validate the request, apply the image's defaults, set up
//! volumes and mounts, the rootfs and /etc files, and persist the record.

use std::sync::Arc;
use std::time::SystemTime;

use super::model::{CreateRequest, MountPoint, Record, State};
use super::{names, rootfs, valid_name, Ctr};
use crate::daemon::Daemon;
use crate::http::{ApiError, ApiResult};
use crate::util;

/// What a container takes from its image when the request leaves it unset.
#[derive(Debug, Default, Clone)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub volumes: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub stop_signal: Option<String>,
}

fn check_host_config(req: &CreateRequest) -> ApiResult<()> {
    let h = &req.host_config;
    // A bad capability or seccomp profile is refused here, not at the first start.
    let caps = super::spec::capabilities(&h.cap_add, &h.cap_drop, h.privileged)?;
    super::seccomp::for_container(&h.security_opt, &caps, h.privileged)?;
    match h.network_mode.as_str() {
        "" | "default" | "bridge" | "none" | "host" => {}
        n => {
            return Err(ApiError::not_found(format!(
                "network {n} not found (berthd has the networks none and host; bridge networking is not implemented yet)"
            )))
        }
    }
    if h.network_mode != "host" && h.port_bindings.values().any(|v| !v.is_null()) {
        return Err(ApiError::bad_request(
            "publishing ports (-p) needs bridge networking, which berthd does not implement yet; use --network host",
        ));
    }
    for (what, v) in [
        ("pid", &h.pid_mode),
        ("ipc", &h.ipc_mode),
        ("uts", &h.uts_mode),
        ("userns", &h.userns_mode),
    ] {
        if !matches!(v.as_str(), "" | "private" | "shareable") {
            return Err(ApiError::bad_request(format!(
                "--{what} {v} is not supported by berthd yet"
            )));
        }
    }
    if !matches!(h.cgroupns_mode.as_str(), "" | "private") {
        return Err(ApiError::bad_request(format!(
            "--cgroupns {} is not supported by berthd yet",
            h.cgroupns_mode
        )));
    }
    if !h.cgroup_parent.is_empty() {
        return Err(ApiError::bad_request(format!(
            "--cgroup-parent {} is not supported by berthd yet: containers are under /berth",
            h.cgroup_parent
        )));
    }
    if !h.devices.is_empty() {
        return Err(ApiError::bad_request(
            "--device is not supported by berthd yet",
        ));
    }
    if !h.volumes_from.is_empty() || !h.links.is_empty() {
        return Err(ApiError::bad_request(
            "--volumes-from and --link are not supported by berthd",
        ));
    }
    match h.restart_policy.name.as_str() {
        "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
        n => {
            return Err(ApiError::bad_request(format!(
                "invalid restart policy '{n}'"
            )))
        }
    }
    if h.auto_remove && !matches!(h.restart_policy.name.as_str(), "" | "no") {
        return Err(ApiError::bad_request(
            "can't create 'AutoRemove' container with restart policy",
        ));
    }
    if !matches!(h.log_config.kind.as_str(), "" | "json-file") {
        return Err(ApiError::bad_request(format!(
            "logging driver {:?} is not supported by berthd (json-file only)",
            h.log_config.kind
        )));
    }
    if !matches!(h.runtime.as_str(), "" | "runc" | "berth") {
        return Err(ApiError::bad_request(format!(
            "unknown or invalid runtime name: {}",
            h.runtime
        )));
    }
    if h.memory != 0 && h.memory < 6 << 20 {
        return Err(ApiError::bad_request("Minimum memory limit allowed is 6MB"));
    }
    Ok(())
}

/// Resolves `-v`/`--mount`/`--tmpfs`/image VOLUMEs into mount points (creating volumes).
fn mounts(d: &Daemon, req: &CreateRequest, img: &ImageDefaults) -> ApiResult<Vec<MountPoint>> {
    let mut out: Vec<MountPoint> = Vec::new();
    let add = |m: MountPoint, out: &mut Vec<MountPoint>| -> ApiResult<()> {
        if !m.destination.starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "invalid mount config: mount path must be absolute: {:?}",
                m.destination
            )));
        }
        if out.iter().any(|o| o.destination == m.destination) {
            return Err(ApiError::bad_request(format!(
                "Duplicate mount point: {}",
                m.destination
            )));
        }
        out.push(m);
        Ok(())
    };
    let volume = |name: Option<&str>| -> ApiResult<(String, std::path::PathBuf)> {
        let v = d
            .volumes
            .create(name, Default::default(), Default::default())?;
        let dir = d.volumes.data_dir(&v.name);
        Ok((v.name, dir))
    };
    for b in &req.host_config.binds {
        let parts: Vec<&str> = b.split(':').collect();
        let (src, dst, opts) = match parts.as_slice() {
            [dst] => ("", *dst, ""),
            [src, dst] => (*src, *dst, ""),
            [src, dst, opts] => (*src, *dst, *opts),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid volume specification: '{b}'"
                )))
            }
        };
        let rw = !opts.split(',').any(|o| o == "ro");
        let m = if src.starts_with('/') {
            std::fs::create_dir_all(src).map_err(|e| {
                ApiError::bad_request(format!(
                    "error while creating mount source path '{src}': {e}"
                ))
            })?;
            MountPoint {
                kind: "bind".into(),
                name: String::new(),
                source: src.into(),
                destination: dst.into(),
                rw,
                options: vec![],
            }
        } else {
            let (name, dir) = volume((!src.is_empty()).then_some(src))?;
            MountPoint {
                kind: "volume".into(),
                name,
                source: dir,
                destination: dst.into(),
                rw,
                options: vec![],
            }
        };
        add(m, &mut out)?;
    }
    for m in &req.host_config.mounts {
        let mp = match m.kind.as_str() {
            "bind" => {
                if !std::path::Path::new(&m.source).exists() {
                    return Err(ApiError::bad_request(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        m.source
                    )));
                }
                MountPoint {
                    kind: "bind".into(),
                    name: String::new(),
                    source: m.source.clone().into(),
                    destination: m.target.clone(),
                    rw: !m.read_only,
                    options: vec![],
                }
            }
            "volume" => {
                let (name, dir) = volume((!m.source.is_empty()).then_some(m.source.as_str()))?;
                MountPoint {
                    kind: "volume".into(),
                    name,
                    source: dir,
                    destination: m.target.clone(),
                    rw: !m.read_only,
                    options: vec![],
                }
            }
            "tmpfs" => {
                let mut opts = Vec::new();
                if let Some(t) = &m.tmpfs_options {
                    if t.size_bytes > 0 {
                        opts.push(format!("size={}", t.size_bytes));
                    }
                    if t.mode != 0 {
                        opts.push(format!("mode={:o}", t.mode));
                    }
                }
                MountPoint {
                    kind: "tmpfs".into(),
                    name: String::new(),
                    source: "".into(),
                    destination: m.target.clone(),
                    rw: !m.read_only,
                    options: opts,
                }
            }
            k => {
                return Err(ApiError::bad_request(format!(
                    "mount type {k:?} is not supported by berthd"
                )))
            }
        };
        add(mp, &mut out)?;
    }
    for (dst, opts) in &req.host_config.tmpfs {
        let options = opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect();
        add(
            MountPoint {
                kind: "tmpfs".into(),
                name: String::new(),
                source: "".into(),
                destination: dst.clone(),
                rw: true,
                options,
            },
            &mut out,
        )?;
    }
    for dst in &img.volumes {
        if !out.iter().any(|m| &m.destination == dst) {
            let (name, dir) = volume(None)?;
            out.push(MountPoint {
                kind: "volume".into(),
                name,
                source: dir,
                destination: dst.clone(),
                rw: true,
                options: vec![],
            });
        }
    }
    Ok(out)
}

fn merge_env(image: &[String], mine: &[String]) -> Vec<String> {
    let key = |e: &str| e.split('=').next().unwrap_or("").to_string();
    let mut out: Vec<String> = image.to_vec();
    for e in mine {
        let k = key(e);
        if !e.contains('=') {
            // `-e NAME` with NAME unset on the client: Docker drops it.
            continue;
        }
        match out.iter_mut().find(|x| key(x) == k) {
            Some(x) => *x = e.clone(),
            None => out.push(e.clone()),
        }
    }
    out
}

pub async fn create(
    d: &Arc<Daemon>,
    mut req: CreateRequest,
    name: Option<&str>,
) -> ApiResult<(String, Vec<String>)> {
    let warnings = Vec::new();
    check_host_config(&req)?;
    if req.config.image.is_empty() {
        return Err(ApiError::bad_request(
            "config cannot be empty in order to create a container",
        ));
    }
    let name = match name.filter(|n| !n.is_empty()) {
        Some(n) => {
            let n = n.strip_prefix('/').unwrap_or(n);
            if !valid_name(n) {
                return Err(ApiError::bad_request(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
            n.to_string()
        }
        None => {
            let reg = d.containers.lock().unwrap();
            names::generate(|n| reg.name_taken(n))
        }
    };
    if d.containers.lock().unwrap().name_taken(&name) {
        let other = d.find(&name)?.id.clone();
        return Err(ApiError::conflict(format!(
            "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
        )));
    }
    let (image_id, img) = crate::image_api::defaults(d, &req.config.image).await?;
    let c = &mut req.config;
    let entry_overridden = !c.entrypoint.is_empty();
    if c.entrypoint.is_empty() {
        c.entrypoint = img.entrypoint.clone();
    } else if c.entrypoint == [""] {
        c.entrypoint.clear();
    }
    if c.cmd.is_empty() && !entry_overridden {
        c.cmd = img.cmd.clone();
    }
    let mut argv: Vec<String> = c.entrypoint.iter().chain(&c.cmd).cloned().collect();
    if argv.is_empty() {
        return Err(ApiError::bad_request("no command specified"));
    }
    c.env = merge_env(&img.env, &c.env);
    if c.working_dir.is_empty() {
        c.working_dir = img.working_dir.clone();
    } else if !c.working_dir.starts_with('/') {
        return Err(ApiError::bad_request(format!(
            "the working directory '{}' is invalid, it needs to be an absolute path",
            c.working_dir
        )));
    }
    if c.user.is_empty() {
        c.user = img.user.clone();
    }
    if c.stop_signal.is_none() {
        c.stop_signal = img.stop_signal.clone();
    }
    for (k, v) in &img.labels {
        c.labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if req.host_config.network_mode.is_empty() || req.host_config.network_mode == "default" {
        req.host_config.network_mode = "bridge".into();
    }
    // "bridge" is for now a private network namespace with loopback only (`docker info`
    // and the README say so); a warning on every create would drown the output.
    let mounts = mounts(d, &req, &img)?;
    let (max_size, max_file) = {
        let cfg = &req.host_config.log_config.config;
        let size = match cfg.get("max-size") {
            Some(s) => {
                crate::config::parse_size(s).map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            None => d.cfg.log_max_size,
        };
        let files = match cfg.get("max-file") {
            Some(s) => s
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid max-file {s:?}")))?,
            None => d.cfg.log_max_file,
        };
        (size, files)
    };
    // A directory slot's id when one is ready: its directories and cgroups are made. Taken
    // once nothing can fail before the record is written.
    let slot = d.slots.take();
    let from_slot = slot.is_some();
    let (id, premounted, mut warm) = match slot {
        Some(s) => (s.id, s.mounted, s.warm),
        None => (util::random_id(), None, None),
    };
    if warm.is_some() && premounted.as_ref() != Some(&image_id) {
        // Parked for another image: gone, with its runtime state, before its overlay goes.
        super::lifecycle::shut_down_shim_of(d, &id).await;
        warm = None;
    }
    let had_warm = warm.is_some();
    if req.config.hostname.is_empty() {
        req.config.hostname = if req.host_config.network_mode == "host" {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .to_string()
        } else {
            id[..12].to_string()
        };
    }
    let path = argv.remove(0);
    let rec = Record {
        id: id.clone(),
        name: name.clone(),
        created: util::rfc3339(SystemTime::now()),
        image_id,
        path,
        args: argv,
        config: req.config,
        host_config: req.host_config,
        state: State::default(),
        mounts,
        restart_count: 0,
        manually_stopped: false,
        log_max_size: max_size,
        log_max_file: max_file,
    };
    let paths = d.paths(&id);
    if !from_slot {
        std::fs::create_dir_all(&paths.dir)?;
    }
    let undo = |e: ApiError| {
        if had_warm {
            // Its parked container goes first, then the slot.
            let (d, id) = (d.clone(), id.clone());
            tokio::spawn(async move { super::lifecycle::discard_slot(&d, &id).await });
            return e;
        }
        // Its rootfs mount, bundle, record and overlay directories and the cgroups made
        // ahead (slot or not).
        d.slots.remove(&id);
        e
    };
    if premounted.as_ref().is_some_and(|m| *m != rec.image_id) {
        // The slot was mounted for another image.
        rootfs::unmount(&paths).map_err(|e| undo(ApiError::internal(e)))?;
    }
    rootfs::write_etc_files(&paths.bundle, &rec).map_err(|e| undo(e.into()))?;
    let ctr = Ctr::new(rec);
    ctr.set_warm(warm);
    // The overlay is mounted by the start's preparation (below, ahead of the start), while
    // the record goes to disk: a mount costs ~0.8 ms here, mostly overlayfs probing its work
    // dir with four inodes made on the data-root's disk. dockerd also mounts at start.
    d.containers
        .lock()
        .unwrap()
        .insert(ctr.clone())
        .map_err(undo)?;
    // Most creates are `docker run`s: the start request follows within milliseconds. The
    // start is prepared while the record goes to disk, and after the reply; claiming a
    // parked container (~1 ms, mostly CPU) only once the reply is out: on two cores it
    // would delay the reply the client waits for, where the 1.5 ms the client takes to
    // send the start leave it time.
    if !had_warm {
        tokio::spawn(super::lifecycle::prepare_ahead(d.clone(), ctr.clone()));
    }
    let saved = {
        let (d, c) = (d.clone(), ctr.clone());
        tokio::task::spawn_blocking(move || d.save_new(&c, from_slot)).await
    };
    let failed = match saved {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(ApiError::from(e)),
        Err(e) => Some(ApiError::internal(format!("writing the record: {e}"))),
    };
    if let Some(e) = failed {
        // Not acknowledged: nothing of it may stay, the prepared shim included.
        ctr.life.send_modify(|l| l.removed = true);
        let _op = ctr.op.lock().await;
        if ctr.is_held() || ctr.take_warm().is_some() {
            super::lifecycle::shut_down_shim(d, &ctr).await;
        }
        d.containers.lock().unwrap().remove(&ctr.id);
        return Err(undo(e));
    }
    d.container_event(&ctr, "create", &[]);
    if had_warm {
        // Runs once this task has written the reply.
        tokio::spawn(super::lifecycle::prepare_ahead(d.clone(), ctr.clone()));
    }
    // The next create's directories, mounted for this create's image, once this one has
    // answered and its start (in a `docker run`) has gone by: on two cores they would
    // compete with it.
    // Then a container like this one parked in one of them (unless it has stdin, a
    // terminal, bind or volume mounts or --init; see `lifecycle::warm`), for the next
    // create: both once this container's client is done with it — a `docker run -d`'s at
    // the start, a `docker run --rm`'s at the removal it waits for — or 15 ms after the
    // create, and both in the background (nice 19). In a loop of `docker run`s the next
    // create comes 12-15 ms after.
    let (d, template) = (d.clone(), ctr.rec().clone());
    let auto_remove = template.host_config.auto_remove;
    let mut life = ctr.life.subscribe();
    tokio::spawn(async move {
        let started = life.wait_for(|l| l.removed || (!auto_remove && (l.running || l.exits > 0)));
        let _ = tokio::time::timeout(std::time::Duration::from_millis(15), started).await;
        drop(life);
        // Parked first, in a slot already mounted for the image when there is one.
        let parked = super::lifecycle::warm(d.clone(), template.clone()).await;
        let (d2, image_id) = (d.clone(), template.image_id.clone());
        let _ = tokio::task::spawn_blocking(move || {
            // Ahead of need: in the background (see `util::BackgroundThread`); a create that
            // finds no slot makes its directories itself.
            let _bg = crate::util::BackgroundThread::enter();
            if let Ok(dirs) = super::lifecycle::image_lowers(&d2, &image_id) {
                d2.slots.mount_for(super::slots::Lower { image_id, dirs });
            }
            d2.slots.refill()
        })
        .await;
        if !parked {
            super::lifecycle::warm(d, template).await;
        }
    });
    Ok((id, warnings))
}
