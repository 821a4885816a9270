//! A container's root filesystem: an overlay of its image's layers under its own upper dir,
//! plus the /etc/hostname, /etc/hosts and /etc/resolv.conf files Docker bind-mounts.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::Paths;

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Mounts the overlay at `paths.merged()` unless it is already mounted there.
pub fn mount(paths: &Paths, lowerdirs: &[PathBuf]) -> io::Result<()> {
    let merged = paths.merged();
    if is_mountpoint(&merged)? {
        return Ok(());
    }
    let upper = paths.overlay.join("upper");
    let work = paths.overlay.join("work");
    for d in [&upper, &work, &merged] {
        fs::create_dir_all(d)?;
    }
    if lowerdirs.is_empty() {
        return Err(io::Error::other("image has no layers"));
    }
    let lower: Vec<String> = lowerdirs.iter().map(|p| p.display().to_string()).collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    let (src, target, fstype, data) = (
        CString::new("overlay").unwrap(),
        cstr(&merged)?,
        CString::new("overlay").unwrap(),
        CString::new(opts).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
    );
    // SAFETY: all four arguments are valid NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("mount overlay on {}: {e}", merged.display()),
        ));
    }
    Ok(())
}

pub fn unmount(paths: &Paths) -> io::Result<()> {
    let merged = paths.merged();
    if !is_mountpoint(&merged).unwrap_or(false) {
        return Ok(());
    }
    let t = cstr(&merged)?;
    // SAFETY: t is a valid NUL-terminated path.
    if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("unmount {}: {e}", merged.display()),
        ));
    }
    Ok(())
}

/// True when `p` is the root of a mount: one statx call (STATX_ATTR_MOUNT_ROOT, Linux 5.8),
/// not a scan of /proc/self/mountinfo, which grows with every running container.
pub fn is_mountpoint(p: &Path) -> io::Result<bool> {
    let path = cstr(p)?;
    // SAFETY: statx fills the zeroed struct it is given; path is NUL-terminated.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            0,
            &mut st,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::NotFound => Ok(false),
            _ => Err(e),
        };
    }
    let mask = libc::STATX_ATTR_MOUNT_ROOT as u64;
    Ok(st.stx_attributes_mask & mask != 0 && st.stx_attributes & mask != 0)
}

/// Opens `rel` inside `root` as the container would see it: symlinks and `..` cannot leave
/// the root (openat2 RESOLVE_IN_ROOT, through the runtime's syscall wrapper).
pub fn open_in_root(root: &Path, rel: &str, flags: i32) -> io::Result<OwnedFd> {
    use berth_runtime::sys::{openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};
    use std::os::fd::AsFd;
    let dir = fs::File::open(root)?;
    let path = CString::new(rel.trim_start_matches('/'))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    openat2(
        dir.as_fd(),
        &path,
        flags,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// Reads a small text file of the image (e.g. /etc/passwd); missing is empty.
pub fn read_in_root(root: &Path, rel: &str) -> io::Result<String> {
    match open_in_root(root, rel, libc::O_RDONLY) {
        Ok(fd) => {
            let mut s = String::new();
            fs::File::from(fd).take(4 << 20).read_to_string(&mut s)?;
            Ok(s)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// Writes hostname, hosts and resolv.conf for the container into its directory.
pub fn write_etc_files(
    dir: &Path,
    hostname: &str,
    host_network: bool,
    extra_hosts: &[String],
    dns: &[String],
) -> io::Result<()> {
    fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
    let hosts = if host_network {
        fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
        )
    };
    let mut hosts = hosts;
    for e in extra_hosts {
        if let Some((name, ip)) = e.split_once(':') {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    fs::write(dir.join("hosts"), hosts)?;
    let resolv = if dns.is_empty() {
        fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    } else {
        dns.iter().map(|d| format!("nameserver {d}\n")).collect()
    };
    fs::write(dir.join("resolv.conf"), resolv)?;
    Ok(())
}
