//! Listening sockets (`-H unix://PATH`, `-H fd://`) and the HTTP/1.1 connection loop.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::daemon::Daemon;

/// Binds every `-H` address before anything is served, so a bad address fails start-up.
pub fn bind(hosts: &[String], group: Option<&str>) -> anyhow::Result<Vec<UnixListener>> {
    let mut out = Vec::new();
    for h in hosts {
        if let Some(path) = h.strip_prefix("unix://") {
            out.push(bind_unix(Path::new(path), group)?);
        } else if h == "fd://" || h.starts_with("fd://") {
            out.extend(systemd_fds(h)?);
        } else {
            bail!("-H {h}: only unix:// and fd:// addresses are supported (no TCP: the API is root-equivalent)");
        }
    }
    Ok(out)
}

fn bind_unix(path: &Path, group: Option<&str>) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("removing stale socket {}", path.display()))
        }
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("listening on unix://{}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", path.display()))?;
    if let Some(gid) = group.and_then(lookup_group) {
        std::os::unix::fs::chown(path, Some(0), Some(gid))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    l.set_nonblocking(true)?;
    Ok(UnixListener::from_std(l)?)
}

fn lookup_group(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: getgrnam reads a NUL-terminated name; the result is read before any other call
    // could reuse its static buffer (the daemon binds its sockets from one thread).
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    // SAFETY: a non-null result points at a valid `group` struct.
    (!g.is_null()).then(|| unsafe { (*g).gr_gid })
}

/// systemd socket activation: LISTEN_PID/LISTEN_FDS, descriptors from 3 on.
fn systemd_fds(h: &str) -> anyhow::Result<Vec<UnixListener>> {
    let pid: u32 = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("-H {h}: no sockets passed (LISTEN_PID unset)"))?;
    if pid != std::process::id() {
        bail!("-H {h}: LISTEN_PID {pid} is not this process");
    }
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("-H {h}: LISTEN_FDS unset"))?;
    let mut out = Vec::new();
    for fd in 3..3 + n {
        // SAFETY: systemd hands these descriptors to this process; each is taken once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let l = std::os::unix::net::UnixListener::from(owned);
        l.set_nonblocking(true)?;
        out.push(
            UnixListener::from_std(l).with_context(|| format!("fd {fd} is not a unix socket"))?,
        );
    }
    if out.is_empty() {
        bail!("-H {h}: LISTEN_FDS=0");
    }
    Ok(out)
}

pub async fn serve(daemon: Arc<Daemon>, listener: UnixListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                crate::log::warn(format_args!("accept: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let d = daemon.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let d = d.clone();
                async move { Ok::<_, std::convert::Infallible>(crate::api::handle(d, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}
