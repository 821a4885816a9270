//! Unpacking one layer tarball into a directory, safely: every entry is created relative to
//! directory descriptors opened with O_NOFOLLOW, so no `..`, absolute path, symlink or
//! hardlink in the layer can make a write land outside it. Whiteouts become overlayfs
//! whiteouts (0/0 character devices) and opaque markers (`trusted.overlay.opaque=y`).
//! Ownership, modes, mtimes, xattrs, devices and hardlinks are kept.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use tar::EntryType;

use super::Error;

fn cstr(b: &[u8]) -> Result<CString, Error> {
    CString::new(b).map_err(|_| Error::InvalidInput("layer entry name contains NUL".into()))
}

fn check(r: libc::c_int, what: &str, name: &[u8]) -> Result<(), Error> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(Error::InvalidInput(format!(
            "layer entry {}: {what}: {e}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

/// The entry's path as plain components; refuses absolute paths and `..`.
fn components(p: &Path) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.as_bytes().to_vec()),
            Component::CurDir => {}
            Component::RootDir => {
                // Some tools write "/x": Docker refuses such layers too.
                return Err(Error::InvalidInput(format!(
                    "layer entry {} has an absolute path",
                    p.display()
                )));
            }
            Component::ParentDir => {
                return Err(Error::InvalidInput(format!(
                    "layer entry {} escapes the layer (..)",
                    p.display()
                )))
            }
            Component::Prefix(_) => unreachable!("no prefixes on unix"),
        }
    }
    Ok(out)
}

fn open_dir_at(dir: RawFd, name: &[u8]) -> Result<OwnedFd, Error> {
    let c = cstr(name)?;
    // SAFETY: valid NUL-terminated name; dir is an open directory descriptor.
    let fd = unsafe {
        libc::openat(
            dir,
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        let why = if e.raw_os_error() == Some(libc::ELOOP)
            || e.raw_os_error() == Some(libc::ENOTDIR)
        {
            "a path component is a symlink or not a directory (refused: it could lead outside the layer)".to_string()
        } else {
            e.to_string()
        };
        return Err(Error::InvalidInput(format!(
            "layer entry through {}: {why}",
            String::from_utf8_lossy(name)
        )));
    }
    // SAFETY: openat returned a new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens (creating as needed) the directory holding `comps`' last element.
fn parent_dir(root: &OwnedFd, comps: &[Vec<u8>]) -> Result<OwnedFd, Error> {
    // SAFETY: dup of a valid descriptor.
    let mut cur =
        unsafe { OwnedFd::from_raw_fd(libc::fcntl(root.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0)) };
    for c in &comps[..comps.len().saturating_sub(1)] {
        let name = cstr(c)?;
        // SAFETY: valid name and directory descriptor.
        let r = unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) };
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            check(r, "mkdir", c)?;
        }
        cur = open_dir_at(cur.as_raw_fd(), c)?;
    }
    Ok(cur)
}

/// Removes whatever is at `name` in `dir` (file, link, or a whole directory tree).
fn remove_at(dir: RawFd, name: &CString) -> Result<(), Error> {
    // SAFETY: valid name and directory descriptor.
    if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::ENOENT) => Ok(()),
        Some(libc::EISDIR) => {
            let sub = open_dir_at(dir, name.as_bytes())?;
            let p = format!("/proc/self/fd/{}", sub.as_raw_fd());
            for e in std::fs::read_dir(&p).map_err(Error::Io)? {
                let e = e.map_err(Error::Io)?;
                remove_at(sub.as_raw_fd(), &cstr(e.file_name().as_bytes())?)?;
            }
            // SAFETY: as above.
            let r = unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) };
            check(r, "rmdir", name.as_bytes())
        }
        _ => check(-1, "unlink", name.as_bytes()),
    }
}

fn set_xattr_at(dir: &OwnedFd, name: &[u8], key: &str, value: &[u8]) -> Result<(), Error> {
    // The directory is ours alone while unpacking; the path through /proc/self/fd does not
    // follow anything in the layer (lsetxattr does not follow the last symlink).
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    let path = cstr(&p)?;
    let k = CString::new(key).map_err(|_| Error::InvalidInput("bad xattr name".into()))?;
    // SAFETY: valid C strings and a value buffer of the given length.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(r, &format!("setxattr {key}"), name)
}

/// What was unpacked: the uncompressed tar's digest is computed by the caller's reader.
pub struct Unpacked {
    pub bytes: u64,
}

/// Unpacks the (uncompressed) tar stream `r` into `dest`, an empty directory.
pub fn unpack(r: impl Read, dest: &Path) -> Result<Unpacked, Error> {
    let root = {
        let c = cstr(dest.as_os_str().as_bytes())?;
        // SAFETY: valid path.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        // SAFETY: new descriptor.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let mut archive = tar::Archive::new(r);
    let mut bytes = 0u64;
    let mut dir_times: Vec<(Vec<Vec<u8>>, i64)> = Vec::new();
    for entry in archive
        .entries()
        .map_err(|e| Error::InvalidInput(format!("reading layer tar: {e}")))?
    {
        let mut e = entry.map_err(|e| Error::InvalidInput(format!("reading layer tar: {e}")))?;
        let path = e
            .path()
            .map_err(|err| Error::InvalidInput(format!("layer entry name: {err}")))?
            .into_owned();
        let comps = components(&path)?;
        let Some(last) = comps.last().cloned() else {
            continue; // "./" itself
        };
        let dir = parent_dir(&root, &comps)?;
        let name = cstr(&last)?;
        // Whiteouts (AUFS style, as Docker and OCI layers carry them).
        if last == b".wh..wh..opq" {
            let (parent, pname) = match comps.len() {
                1 => (None, Vec::new()),
                _ => (Some(()), comps[comps.len() - 2].clone()),
            };
            if parent.is_some() {
                let grand = parent_dir(&root, &comps[..comps.len() - 1])?;
                set_xattr_at(&grand, &pname, "trusted.overlay.opaque", b"y")?;
            }
            continue;
        }
        if let Some(hidden) = last.strip_prefix(b".wh.") {
            let h = cstr(hidden)?;
            remove_at(dir.as_raw_fd(), &h)?;
            // SAFETY: valid name and directory descriptor.
            let r = unsafe { libc::mknodat(dir.as_raw_fd(), h.as_ptr(), libc::S_IFCHR, 0) };
            check(r, "whiteout", hidden)?;
            continue;
        }
        let h = e.header();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = h.uid().unwrap_or(0) as libc::uid_t;
        let gid = h.gid().unwrap_or(0) as libc::gid_t;
        let mtime = h.mtime().unwrap_or(0) as i64;
        let kind = h.entry_type();
        let existing_is_dir = {
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: valid name, descriptor and out pointer.
            let r = unsafe {
                libc::fstatat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    &mut st,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR
        };
        if !(kind == EntryType::Directory && existing_is_dir) {
            remove_at(dir.as_raw_fd(), &name)?;
        }
        match kind {
            EntryType::Directory => {
                if !existing_is_dir {
                    // SAFETY: valid name and directory descriptor.
                    let r = unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) };
                    check(r, "mkdir", &last)?;
                }
                dir_times.push((comps.clone(), mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                // SAFETY: valid name and directory descriptor.
                let fd = unsafe {
                    libc::openat(
                        dir.as_raw_fd(),
                        name.as_ptr(),
                        libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_WRONLY
                            | libc::O_NOFOLLOW
                            | libc::O_CLOEXEC,
                        0o600,
                    )
                };
                check(fd, "create", &last)?;
                // SAFETY: new descriptor.
                let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                bytes += io::copy(&mut e, &mut f).map_err(|err| {
                    Error::InvalidInput(format!("layer entry {}: {err}", path.display()))
                })?;
            }
            EntryType::Symlink => {
                let target = e.link_name_bytes().ok_or_else(|| {
                    Error::InvalidInput(format!("symlink {} has no target", path.display()))
                })?;
                let t = cstr(&target)?;
                // SAFETY: valid names and directory descriptor. The target is stored, never
                // followed while unpacking.
                let r = unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), name.as_ptr()) };
                check(r, "symlink", &last)?;
            }
            EntryType::Link => {
                let target = e
                    .link_name()
                    .map_err(|err| {
                        Error::InvalidInput(format!("hardlink {}: {err}", path.display()))
                    })?
                    .ok_or_else(|| {
                        Error::InvalidInput(format!("hardlink {} has no target", path.display()))
                    })?
                    .into_owned();
                let tcomps = components(&target)?;
                let Some(tlast) = tcomps.last() else {
                    return Err(Error::InvalidInput(format!(
                        "hardlink {} to the layer root",
                        path.display()
                    )));
                };
                // Resolved inside the layer through the same no-symlink walk.
                let tdir = parent_dir(&root, &tcomps)?;
                let tname = cstr(tlast)?;
                // SAFETY: valid names and directory descriptors; flags 0 (no following).
                let r = unsafe {
                    libc::linkat(
                        tdir.as_raw_fd(),
                        tname.as_ptr(),
                        dir.as_raw_fd(),
                        name.as_ptr(),
                        0,
                    )
                };
                check(r, "hardlink", &last)?;
                continue;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let t = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = libc::makedev(
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                );
                // SAFETY: valid name and directory descriptor.
                let r = unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), t | 0o600, dev) };
                check(r, "mknod", &last)?;
            }
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => continue,
            other => {
                return Err(Error::InvalidInput(format!(
                    "layer entry {}: unsupported type {other:?}",
                    path.display()
                )))
            }
        }
        // Ownership, then mode (chown clears setuid bits), xattrs, mtime.
        // SAFETY: valid name and directory descriptor.
        let r = unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                name.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        check(r, "chown", &last)?;
        if kind != EntryType::Symlink {
            // SAFETY: as above (fchmodat on a non-symlink never follows anything here).
            let r =
                unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t, 0) };
            check(r, "chmod", &last)?;
        }
        if let Ok(Some(exts)) = e.pax_extensions() {
            for ext in exts.flatten() {
                if let (Ok(k), v) = (ext.key(), ext.value_bytes()) {
                    if let Some(xk) = k.strip_prefix("SCHILY.xattr.") {
                        set_xattr_at(&dir, &last, xk, v)?;
                    }
                }
            }
        }
        if kind != EntryType::Directory {
            set_mtime(&dir, &name, mtime);
        }
    }
    // Directory mtimes last: creating their children changed them.
    for (comps, mtime) in dir_times {
        let d = parent_dir(&root, &comps)?;
        set_mtime(&d, &cstr(comps.last().expect("non-empty"))?, mtime);
    }
    Ok(Unpacked { bytes })
}

fn set_mtime(dir: &OwnedFd, name: &CString, mtime: i64) {
    let ts = [
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid name, descriptor and two timespecs.
    unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
}
