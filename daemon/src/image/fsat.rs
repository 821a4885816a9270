//! The directory-relative syscalls the unpacker needs. Every call names one path component
//! relative to a directory descriptor and never follows a symlink in it, so no path join
//! decides where a write lands. Those the runtime already wraps (`berth_runtime::sys`) are
//! used from there; the others are wrapped here, once.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use berth_runtime::sys;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

/// Opens the directory `path` itself, refusing a symlink as its last component.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstring(path.as_os_str().as_bytes())?;
    sys::openat(
        None,
        &c,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// Opens the directory `name` in `dir`; a symlink there fails with ELOOP, a non-directory
/// with ENOTDIR.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    sys::openat(Some(dir), name, flags, 0)
}

/// Creates a new regular file `name` in `dir` for writing; fails if anything is there.
pub fn create_file_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<OwnedFd> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
    sys::openat(Some(dir), name, flags, mode)
}

pub fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    sys::mkdirat(dir, name, mode)
}

pub fn symlink_at(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    sys::symlinkat(target, dir, name)
}

/// A hard link; a symlink as `old` is linked itself, never followed.
pub fn link_at(
    old_dir: BorrowedFd<'_>,
    old: &CStr,
    dir: BorrowedFd<'_>,
    name: &CStr,
) -> io::Result<()> {
    // SAFETY: both descriptors are open and both names NUL-terminated; flags 0 does not
    // follow a symlink at `old`.
    cvt(unsafe {
        libc::linkat(
            old_dir.as_raw_fd(),
            old.as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            0,
        )
    })
    .map(drop)
}

pub fn mknod_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    mode: u32,
    major: u32,
    minor: u32,
) -> io::Result<()> {
    sys::mknodat(dir, name, mode, libc::makedev(major, minor))
}

pub fn unlink_at(dir: BorrowedFd<'_>, name: &CStr, is_dir: bool) -> io::Result<()> {
    let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: dir is an open descriptor and name is NUL-terminated.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

/// lstat of `name` in `dir`; `None` when nothing is there.
pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<libc::stat>> {
    // SAFETY: an all-zero stat is a valid value for fstatat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: dir is open, name NUL-terminated, st a valid out pointer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match cvt(r) {
        Ok(_) => Ok(Some(st)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// chown of `name` itself (a symlink is not followed).
pub fn chown_at(dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    sys::fchownat(dir, name, uid, gid)
}

/// chmod of `name`, which the caller knows is not a symlink (it just created it).
pub fn chmod_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    sys::fchmodat(dir, name, mode)
}

pub fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: fd is an open descriptor.
    cvt(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: fd is an open descriptor.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

/// Sets access and modification times of `name` itself to `secs` since the epoch.
pub fn set_mtime_at(dir: BorrowedFd<'_>, name: &CStr, secs: i64) -> io::Result<()> {
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: dir is open, name NUL-terminated, times points to two timespecs.
    cvt(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// Sets an extended attribute on `name` in `dir` (itself, not a symlink's target). The path
/// goes through the directory descriptor's /proc link, so only the last component is looked
/// up, without following it.
pub fn set_xattr_at(dir: BorrowedFd<'_>, name: &[u8], key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    let (p, k) = (cstring(&p)?, cstring(key)?);
    // SAFETY: both strings are NUL-terminated; value points to value.len() readable bytes.
    cvt(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

/// Flushes the whole filesystem holding `fd` (one call instead of an fsync per file).
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fd is an open descriptor.
    cvt(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(drop)
}

/// fsyncs a directory, making a rename or unlink in it durable.
pub fn fsync_dir(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}
