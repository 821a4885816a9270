//! `docker cp` (GET/HEAD/PUT /containers/{id}/archive) and `docker export`. Paths are
//! resolved inside the container's root (openat2 RESOLVE_IN_ROOT): a symlink in the container
//! can never point these operations at the host. They see the container's own filesystem
//! (image layers and its upper dir), not volumes or bind mounts mounted over it.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde_json::json;

use super::Ctx;
use crate::container::{lifecycle, rootfs};
use crate::http::{self, status, ApiError, ApiResult, BodyReader, ChannelWriter};

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for ch in data.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= ch.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Go's os.FileMode bits, which the docker CLI decodes from the stat header.
fn go_mode(m: &std::fs::Metadata) -> u32 {
    let perm = m.permissions().mode() & 0o777;
    let ft = m.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_dir() {
        1 << 31
    } else if ft.is_symlink() {
        1 << 27
    } else if ft.is_block_device() {
        1 << 26
    } else if ft.is_char_device() {
        (1 << 26) | (1 << 21)
    } else if ft.is_fifo() {
        1 << 25
    } else if ft.is_socket() {
        1 << 24
    } else {
        0
    };
    kind | perm
}

struct Resolved {
    fd: std::os::fd::OwnedFd,
    meta: std::fs::Metadata,
    name: String,
}

impl Resolved {
    /// The resolved file as a path the host can walk (the fd's magic link).
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

fn resolve(ctx: &Ctx, id: &str, follow: bool) -> ApiResult<(Resolved, String)> {
    let c = ctx.d.find(id)?;
    let root = lifecycle::ensure_rootfs(&ctx.d, &c)?;
    let p = ctx
        .query
        .get("path")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("path is required"))?
        .to_string();
    let flags = libc::O_PATH | if follow { 0 } else { libc::O_NOFOLLOW };
    let fd = rootfs::open_in_root(&root, &p, flags).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ApiError::not_found(format!("Could not find the file {p} in container {id}"))
        } else {
            ApiError::internal(format!("{p}: {e}"))
        }
    })?;
    // Through the descriptor's magic link: the object it holds (a symlink itself when
    // opened without following).
    let meta = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    let name = std::path::Path::new(p.trim_end_matches('/'))
        .file_name()
        .map_or("/".to_string(), |n| n.to_string_lossy().into_owned());
    Ok((Resolved { fd, meta, name }, p))
}

fn stat_header(r: &Resolved) -> HeaderValue {
    let link = if r.meta.file_type().is_symlink() {
        std::fs::read_link(r.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mtime = crate::util::rfc3339(r.meta.modified().unwrap_or(std::time::UNIX_EPOCH));
    let st = json!({"name": r.name, "size": r.meta.size(), "mode": go_mode(&r.meta), "mtime": mtime, "linkTarget": link});
    HeaderValue::from_str(&base64(st.to_string().as_bytes())).expect("base64 is a valid header")
}

pub async fn get(ctx: &Ctx, id: &str, head: bool) -> ApiResult {
    let (r, _) = resolve(ctx, id, false)?;
    let hdr = stat_header(&r);
    if head {
        let mut reply = status(StatusCode::OK)?;
        reply
            .headers_mut()
            .insert("X-Docker-Container-Path-Stat", hdr);
        return Ok(reply);
    }
    // Re-open the resolved object readable (O_PATH fds cannot be read).
    let (tx, mut reply) = http::stream("application/x-tar");
    reply
        .headers_mut()
        .insert("X-Docker-Container-Path-Stat", hdr);
    tokio::task::spawn_blocking(move || {
        let mut b = tar::Builder::new(ChannelWriter(tx));
        b.follow_symlinks(false);
        let path = r.path();
        let res = if r.meta.is_dir() {
            b.append_dir_all(&r.name, &path)
        } else {
            b.append_path_with_name(&path, &r.name)
        };
        if res.is_ok() {
            let _ = b.finish();
        }
    });
    Ok(reply)
}

pub async fn put(ctx: &Ctx, id: &str, req: Request<Incoming>) -> ApiResult {
    let (r, p) = resolve(ctx, id, true)?;
    if !r.meta.is_dir() {
        return Err(ApiError::bad_request(format!(
            "extraction point is not a directory: {p}"
        )));
    }
    if ctx.d.find(id)?.rec().host_config.readonly_rootfs {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "container rootfs is marked read-only",
        ));
    }
    let reader = BodyReader::new(req.into_body());
    let dest = r.path();
    tokio::task::spawn_blocking(move || -> ApiResult<()> {
        let _keep = r;
        let mut a = tar::Archive::new(reader);
        a.set_preserve_permissions(true);
        a.set_overwrite(true);
        // tar's unpack_in refuses `..` and absolute paths and checks that each parent stays
        // under the destination (after symlinks), skipping entries that would escape.
        for e in a
            .entries()
            .map_err(|e| ApiError::bad_request(format!("reading tar: {e}")))?
        {
            let mut e = e.map_err(|e| ApiError::bad_request(format!("reading tar: {e}")))?;
            let ok = e.unpack_in(&dest).map_err(|err| {
                ApiError::bad_request(format!(
                    "extracting {}: {err}",
                    e.path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ))
            })?;
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "refusing tar entry {} outside the destination",
                    e.path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                )));
            }
        }
        // Read what follows the end-of-archive blocks (a writer's padding): answering before
        // the client has sent its whole body closes the connection under its write, and the
        // CLI reports "broken pipe" for a copy that succeeded.
        std::io::copy(&mut a.into_inner(), &mut std::io::sink())
            .map_err(|e| ApiError::bad_request(format!("reading tar: {e}")))?;
        Ok(())
    })
    .await
    .map_err(ApiError::internal)??;
    status(StatusCode::OK)
}

pub async fn export(ctx: &Ctx, id: &str) -> ApiResult {
    let c = ctx.d.find(id)?;
    let root = lifecycle::ensure_rootfs(&ctx.d, &c)?;
    let (tx, reply) = http::stream("application/x-tar");
    let d = ctx.d.clone();
    tokio::task::spawn_blocking(move || {
        let mut b = tar::Builder::new(ChannelWriter(tx));
        b.follow_symlinks(false);
        if b.append_dir_all(".", &root).is_ok() {
            let _ = b.finish();
        }
        d.container_event(&c, "export", &[]);
    });
    Ok(reply)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
