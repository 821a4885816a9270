//! Unpacking one layer tarball into an (empty) directory, safely and completely.
//!
//! Every entry is created relative to directory descriptors opened with O_NOFOLLOW, walking
//! one component at a time: an entry with `..` or an absolute path, an entry whose path goes
//! through a symlink (even one the layer made itself), and a hard link to anything outside
//! the layer are refused before anything is written for them. The caller unpacks into a
//! private directory and discards it on error, so a refused layer leaves nothing behind.
//!
//! Docker/OCI whiteouts become overlayfs ones: `.wh.name` a 0/0 character device `name`,
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory. Ownership, modes
//! (with setuid/setgid/sticky), mtimes, xattrs, device nodes, fifos and hard links are kept.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use tar::EntryType;

use super::error::{io_err, Error, Result};
use super::fsat;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// What an unpack made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unpacked {
    /// Bytes of regular file content (the layer's size as `docker images` counts it).
    pub size: u64,
    pub entries: u64,
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// The entry's path as plain components; refuses absolute paths and `..`. `./` and empty
/// components are dropped.
fn components(path: &[u8]) -> Result<Vec<&[u8]>> {
    if path.first() == Some(&b'/') {
        return Err(Error::invalid(format!(
            "layer entry {:?} has an absolute path (refused)",
            show(path)
        )));
    }
    let mut out = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(Error::invalid(format!(
                    "layer entry {:?} escapes the layer with `..` (refused)",
                    show(path)
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Metadata of one entry, read from its header and PAX records before its data.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// overlayfs' own attributes found in the layer (dropped, see `meta_of`).
    dropped_overlay_xattrs: bool,
}

fn pax_u32(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn pax_mtime(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    s.split('.').next()?.parse().ok()
}

fn meta_of<R: Read>(e: &mut tar::Entry<'_, R>, path: &[u8]) -> Result<Meta> {
    let bad = |what: &str, err: io::Error| {
        Error::invalid(format!("layer entry {:?}: bad {what}: {err}", show(path)))
    };
    let h = e.header();
    let mut m = Meta {
        mode: h.mode().map_err(|x| bad("mode", x))? & 0o7777,
        uid: u32::try_from(h.uid().map_err(|x| bad("uid", x))?).unwrap_or(u32::MAX),
        gid: u32::try_from(h.gid().map_err(|x| bad("gid", x))?).unwrap_or(u32::MAX),
        mtime: h.mtime().map_or(0, |t| i64::try_from(t).unwrap_or(0)),
        xattrs: Vec::new(),
        dropped_overlay_xattrs: false,
    };
    if let Some(exts) = e.pax_extensions().map_err(|x| bad("PAX header", x))? {
        for ext in exts {
            let ext = ext.map_err(|x| bad("PAX record", x))?;
            let (k, v) = (ext.key_bytes(), ext.value_bytes());
            match k {
                b"uid" => m.uid = pax_u32(v).unwrap_or(m.uid),
                b"gid" => m.gid = pax_u32(v).unwrap_or(m.gid),
                b"mtime" => m.mtime = pax_mtime(v).unwrap_or(m.mtime),
                _ => {
                    if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                        // overlayfs' own attributes (redirect, metacopy, …) could make the
                        // mount show files of other layers under other names: only the
                        // store sets them (opaque, from `.wh..wh..opq`).
                        if name.starts_with(b"trusted.overlay.") {
                            m.dropped_overlay_xattrs = true;
                        } else {
                            m.xattrs.push((name.to_vec(), v.to_vec()));
                        }
                    }
                }
            }
        }
    }
    Ok(m)
}

/// Walks from `root` through `dirs`, one O_NOFOLLOW open per component. Missing directories
/// are created (0755, root-owned, as Docker does) when `create`. A symlink or non-directory
/// on the way is refused: it could lead outside the layer.
fn walk(root: BorrowedFd<'_>, dirs: &[&[u8]], create: bool, entry: &[u8]) -> Result<OwnedFd> {
    let mut cur = root
        .try_clone_to_owned()
        .map_err(|e| io_err("dup", "layer root", e))?;
    for (i, c) in dirs.iter().enumerate() {
        let name = cstr(c, entry)?;
        let next = match fsat::open_dir_at(cur.as_fd(), &name) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                match fsat::mkdir_at(cur.as_fd(), &name, 0o755) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(io_err("mkdir", show(&dirs[..=i].join(&b'/')), e)),
                }
                fsat::open_dir_at(cur.as_fd(), &name)
            }
            r => r,
        };
        cur = next.map_err(|e| {
            let prefix = show(&dirs[..=i].join(&b'/'));
            let is_link = || {
                fsat::stat_at(cur.as_fd(), &name)
                    .ok()
                    .flatten()
                    .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
            };
            match e.raw_os_error() {
                Some(libc::ELOOP | libc::ENOTDIR) if is_link() => Error::invalid(format!(
                    "layer entry {:?} goes through the symlink {prefix:?} (refused: it could lead outside the layer)",
                    show(entry)
                )),
                Some(libc::ENOTDIR) => Error::invalid(format!(
                    "layer entry {:?}: {prefix:?} is not a directory",
                    show(entry)
                )),
                Some(libc::ENOENT) => Error::invalid(format!(
                    "layer entry {:?}: {prefix:?} does not exist in the layer",
                    show(entry)
                )),
                _ => io_err("open", prefix, e),
            }
        })?;
    }
    Ok(cur)
}

fn cstr(b: &[u8], entry: &[u8]) -> Result<CString> {
    fsat::cstring(b)
        .map_err(|_| Error::invalid(format!("layer entry {:?} has a NUL byte", show(entry))))
}

/// Removes whatever is at `name` in `dir` (a directory with all it holds) unless it is a
/// directory and `keep_dir`. Returns whether a directory was kept.
fn clear(dir: BorrowedFd<'_>, name: &CString, keep_dir: bool, entry: &[u8]) -> Result<bool> {
    let st = fsat::stat_at(dir, name).map_err(|e| io_err("stat", show(entry), e))?;
    let Some(st) = st else { return Ok(false) };
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if is_dir && keep_dir {
        return Ok(true);
    }
    if is_dir {
        // std's remove_dir_all walks with openat and never follows symlinks; the /proc path
        // names our directory descriptor, so only `name` itself is looked up.
        let mut p =
            format!("/proc/self/fd/{}/", std::os::fd::AsRawFd::as_raw_fd(&dir)).into_bytes();
        p.extend_from_slice(name.as_bytes());
        let p = std::path::PathBuf::from(
            <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(p),
        );
        std::fs::remove_dir_all(&p).map_err(|e| io_err("remove", show(entry), e))?;
    } else {
        fsat::unlink_at(dir, name, false).map_err(|e| io_err("unlink", show(entry), e))?;
    }
    Ok(false)
}

/// Applies ownership, mode, xattrs and mtime to a non-symlink `name` just created in `dir`.
fn finish(dir: BorrowedFd<'_>, name: &CString, m: &Meta, entry: &[u8], mtime: bool) -> Result<()> {
    let ctx = |op: &str, e| io_err(op, show(entry), e);
    fsat::chown_at(dir, name, m.uid, m.gid).map_err(|e| ctx("chown", e))?;
    fsat::chmod_at(dir, name, m.mode).map_err(|e| ctx("chmod", e))?;
    xattrs(dir, name, m, entry)?;
    if mtime {
        fsat::set_mtime_at(dir, name, m.mtime).map_err(|e| ctx("set mtime of", e))?;
    }
    Ok(())
}

fn xattrs(dir: BorrowedFd<'_>, name: &CString, m: &Meta, entry: &[u8]) -> Result<()> {
    for (k, v) in &m.xattrs {
        fsat::set_xattr_at(dir, name.as_bytes(), k, v)
            .map_err(|e| io_err(&format!("set xattr {} on", show(k)), show(entry), e))?;
    }
    Ok(())
}

/// A one-entry cache of the last parent directory: layers list siblings together, so most
/// entries reuse it instead of walking from the root again. It cannot go stale: replacing the
/// directory at path P takes an entry named P, whose parent (the new cache) is not P.
struct Parents {
    path: Vec<u8>,
    fd: Option<OwnedFd>,
}

impl Parents {
    fn get(
        &mut self,
        root: BorrowedFd<'_>,
        dirs: &[&[u8]],
        entry: &[u8],
    ) -> Result<BorrowedFd<'_>> {
        let key = dirs.join(&b'/');
        if self.fd.is_none() || self.path != key {
            self.fd = Some(walk(root, dirs, true, entry)?);
            self.path = key;
        }
        Ok(self.fd.as_ref().expect("set above").as_fd())
    }
}

/// Unpacks the uncompressed layer tar `r` into `dest` (an existing, empty directory). The
/// reader is left just after the archive's end marker; the caller drains it for the digest.
pub fn unpack<R: Read>(r: R, dest: &Path) -> Result<Unpacked> {
    let root = fsat::open_dir(dest).map_err(|e| io_err("open", dest.display(), e))?;
    let mut ar = tar::Archive::new(r);
    let mut out = Unpacked::default();
    let mut parents = Parents {
        path: Vec::new(),
        fd: None,
    };
    // Directory mtimes are set last: creating their children changes them.
    let mut dir_times: Vec<(Vec<u8>, i64)> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut dropped_overlay_xattrs = false;
    let entries = ar
        .entries()
        .map_err(|e| super::error::input_err("layer tarball", e))?;
    for e in entries {
        let mut e = e.map_err(|e| super::error::input_err("layer tarball", e))?;
        let path = e.path_bytes().into_owned();
        let kind = e.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        out.entries += 1;
        let comps = components(&path)?;
        let meta = meta_of(&mut e, &path)?;
        dropped_overlay_xattrs |= meta.dropped_overlay_xattrs;
        let Some((last, dirs)) = comps.split_last() else {
            // `./`: the layer's root directory itself.
            if kind == EntryType::Directory {
                fsat::chown_fd(root.as_fd(), meta.uid, meta.gid)
                    .map_err(|x| io_err("chown", "/", x))?;
                fsat::chmod_fd(root.as_fd(), meta.mode).map_err(|x| io_err("chmod", "/", x))?;
                dir_times.push((Vec::new(), meta.mtime));
            }
            continue;
        };
        // Whiteouts.
        if let Some(hidden) = last.strip_prefix(WHITEOUT_PREFIX) {
            let parent = parents.get(root.as_fd(), dirs, &path)?;
            if *last == OPAQUE {
                fsat::set_xattr_at(parent, b".", b"trusted.overlay.opaque", b"y")
                    .map_err(|x| io_err("mark opaque", show(&path), x))?;
            } else if hidden.starts_with(WHITEOUT_PREFIX) {
                // Other `.wh..wh.` names are AUFS bookkeeping: nothing to make.
            } else if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(Error::invalid(format!(
                    "layer entry {:?}: malformed whiteout",
                    show(&path)
                )));
            } else {
                let name = cstr(hidden, &path)?;
                clear(parent, &name, false, &path)?;
                fsat::mknod_at(parent, &name, libc::S_IFCHR, 0, 0)
                    .map_err(|x| io_err("make whiteout", show(&path), x))?;
                fsat::chown_at(parent, &name, meta.uid, meta.gid)
                    .map_err(|x| io_err("chown", show(&path), x))?;
            }
            continue;
        }
        let name = cstr(last, &path)?;
        match kind {
            EntryType::Directory => {
                let parent = parents.get(root.as_fd(), dirs, &path)?;
                if !clear(parent, &name, true, &path)? {
                    fsat::mkdir_at(parent, &name, 0o700)
                        .map_err(|x| io_err("mkdir", show(&path), x))?;
                }
                finish(parent, &name, &meta, &path, false)?;
                dir_times.push((comps.join(&b'/'), meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let parent = parents.get(root.as_fd(), dirs, &path)?;
                clear(parent, &name, false, &path)?;
                let fd = fsat::create_file_at(parent, &name, 0o600)
                    .map_err(|x| io_err("create", show(&path), x))?;
                let mut f = std::fs::File::from(fd);
                loop {
                    let n = match e.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(x) if x.kind() == io::ErrorKind::Interrupted => continue,
                        Err(x) => {
                            return Err(super::error::input_err(
                                &format!("layer entry {:?}", show(&path)),
                                x,
                            ))
                        }
                    };
                    f.write_all(&buf[..n])
                        .map_err(|x| io_err("write", show(&path), x))?;
                    out.size += n as u64;
                }
                fsat::chown_fd(f.as_fd(), meta.uid, meta.gid)
                    .map_err(|x| io_err("chown", show(&path), x))?;
                fsat::chmod_fd(f.as_fd(), meta.mode)
                    .map_err(|x| io_err("chmod", show(&path), x))?;
                drop(f);
                xattrs(parent, &name, &meta, &path)?;
                fsat::set_mtime_at(parent, &name, meta.mtime)
                    .map_err(|x| io_err("set mtime of", show(&path), x))?;
            }
            EntryType::Symlink => {
                let target = e.link_name_bytes().ok_or_else(|| {
                    Error::invalid(format!(
                        "layer entry {:?}: symlink without a target",
                        show(&path)
                    ))
                })?;
                let target = cstr(&target, &path)?;
                let parent = parents.get(root.as_fd(), dirs, &path)?;
                clear(parent, &name, false, &path)?;
                // The target is stored, never followed here: a symlink may point anywhere;
                // what matters is that no later entry is written through it (see `walk`).
                fsat::symlink_at(&target, parent, &name)
                    .map_err(|x| io_err("symlink", show(&path), x))?;
                fsat::chown_at(parent, &name, meta.uid, meta.gid)
                    .map_err(|x| io_err("chown", show(&path), x))?;
                xattrs(parent, &name, &meta, &path)?;
                fsat::set_mtime_at(parent, &name, meta.mtime)
                    .map_err(|x| io_err("set mtime of", show(&path), x))?;
            }
            EntryType::Link => {
                let target = e.link_name_bytes().ok_or_else(|| {
                    Error::invalid(format!(
                        "layer entry {:?}: hard link without a target",
                        show(&path)
                    ))
                })?;
                let tcomps = components(&target).map_err(|_| {
                    Error::invalid(format!(
                        "layer entry {:?} is a hard link to {:?}, outside the layer (refused)",
                        show(&path),
                        show(&target)
                    ))
                })?;
                let Some((tlast, tdirs)) = tcomps.split_last() else {
                    return Err(Error::invalid(format!(
                        "layer entry {:?}: hard link to the layer root",
                        show(&path)
                    )));
                };
                let tparent = walk(root.as_fd(), tdirs, false, &target)?;
                let tname = cstr(tlast, &target)?;
                let tst = fsat::stat_at(tparent.as_fd(), &tname)
                    .map_err(|x| io_err("stat", show(&target), x))?;
                match tst {
                    None => {
                        return Err(Error::invalid(format!(
                            "layer entry {:?} is a hard link to {:?}, which is not in the layer",
                            show(&path),
                            show(&target)
                        )))
                    }
                    Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                        return Err(Error::invalid(format!(
                            "layer entry {:?} is a hard link to the directory {:?}",
                            show(&path),
                            show(&target)
                        )))
                    }
                    Some(_) => {}
                }
                let parent = parents.get(root.as_fd(), dirs, &path)?;
                if comps != tcomps {
                    clear(parent, &name, false, &path)?;
                    fsat::link_at(tparent.as_fd(), &tname, parent, &name)
                        .map_err(|x| io_err("link", show(&path), x))?;
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let h = e.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let fmt = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let parent = parents.get(root.as_fd(), dirs, &path)?;
                clear(parent, &name, false, &path)?;
                fsat::mknod_at(parent, &name, fmt | 0o600, major, minor)
                    .map_err(|x| io_err("mknod", show(&path), x))?;
                finish(parent, &name, &meta, &path, true)?;
            }
            other => {
                return Err(Error::invalid(format!(
                    "layer entry {:?} has an unsupported type {other:?}",
                    show(&path)
                )))
            }
        }
    }
    drop(parents);
    if dropped_overlay_xattrs {
        crate::log::warn(format_args!(
            "layer: dropped trusted.overlay.* attributes carried by the layer (only whiteouts and opaque markers are honoured)"
        ));
    }
    for (p, mtime) in dir_times.iter().rev() {
        let comps = components(p)?;
        match comps.split_last() {
            None => {
                let dot = cstr(b".", p)?;
                fsat::set_mtime_at(root.as_fd(), &dot, *mtime)
            }
            Some((last, dirs)) => {
                let parent = walk(root.as_fd(), dirs, false, p)?;
                fsat::set_mtime_at(parent.as_fd(), &cstr(last, p)?, *mtime)
            }
        }
        .map_err(|x| io_err("set mtime of", show(p), x))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_escapes() {
        assert_eq!(components(b"./a//b/").unwrap(), vec![&b"a"[..], b"b"]);
        assert!(components(b"").unwrap().is_empty());
        assert!(components(b"/etc/passwd").is_err());
        assert!(components(b"a/../../x").is_err());
        assert!(components(b"..").is_err());
        assert_eq!(
            components(b"a/..b/c..").unwrap(),
            vec![&b"a"[..], b"..b", b"c.."]
        );
    }
}
