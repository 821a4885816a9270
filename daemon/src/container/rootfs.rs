//! A container's root filesystem: an overlay of its image's layers under its own upper dir,
//! plus the /etc/hostname, /etc/hosts and /etc/resolv.conf files Docker bind-mounts.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::Paths;

pub(super) fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Mounts the overlay at `paths.merged()`; the caller (`lifecycle::ensure_rootfs`) has seen
/// that nothing is mounted there yet.
pub fn mount(paths: &Paths, lowerdirs: &[PathBuf]) -> io::Result<()> {
    let merged = paths.merged();
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

/// Mount points the runtime needs in every container: directories for /dev, /proc and /sys,
/// files for the bind-mounted /etc/hostname, /etc/hosts and /etc/resolv.conf.
const INIT_DIRS: &[&str] = &["dev", "proc", "sys", "etc"];
const INIT_FILES: &[&str] = &["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// The image's init layer: the mount points of [`INIT_DIRS`] and [`INIT_FILES`] the image
/// lacks, as empty directories and files, shared by every container of the image as its
/// topmost lower layer (Docker makes one such "-init" layer per container). Without it each
/// container's first start makes them in its own upper dir through overlayfs: /etc copied up
/// and three files created, inodes on the data-root's disk, ~0.3 ms each on this project's
/// ext4. Made once per layer stack under `<data-root>/init/`, in a temporary directory
/// renamed into place, so concurrent creates of the same image agree.
pub fn init_layer(data_root: &Path, lowerdirs: &[PathBuf]) -> io::Result<PathBuf> {
    let key: Vec<String> = lowerdirs.iter().map(|p| p.display().to_string()).collect();
    let dir = data_root
        .join("init")
        .join(crate::image::sha256_hex(key.join(":").as_bytes()));
    if dir.is_dir() {
        return Ok(dir);
    }
    fs::create_dir_all(data_root.join("init"))?;
    let tmp = data_root
        .join("init")
        .join(format!(".tmp-{}", crate::util::random_id()));
    let made = (|| {
        fs::create_dir(&tmp)?;
        for d in INIT_DIRS {
            if image_entry(lowerdirs, d)?.is_none() {
                fs::create_dir(tmp.join(d))?;
            }
        }
        for f in INIT_FILES {
            if image_entry(lowerdirs, f)?.is_some() {
                continue;
            }
            let parent = Path::new(f).parent().expect("a path under a directory");
            if !tmp.join(parent).is_dir() {
                // Under a /etc that is a symlink or a file nothing is added: the runtime
                // resolves that itself, inside the container's root.
                let Some(m) =
                    image_entry(lowerdirs, parent.to_str().expect("ASCII"))?.filter(|m| m.is_dir())
                else {
                    continue;
                };
                // The topmost layer's directory gives the merged one its owner and mode.
                use std::os::unix::fs::{MetadataExt, PermissionsExt};
                fs::create_dir(tmp.join(parent))?;
                std::os::unix::fs::chown(tmp.join(parent), Some(m.uid()), Some(m.gid()))?;
                fs::set_permissions(
                    tmp.join(parent),
                    fs::Permissions::from_mode(m.mode() & 0o7777),
                )?;
            }
            fs::File::create(tmp.join(f))?;
        }
        Ok(())
    })();
    let placed = made.and_then(|()| fs::rename(&tmp, &dir));
    match placed {
        Ok(()) => Ok(dir),
        // Another create of the same image placed it first.
        Err(_) if dir.is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// What `rel` (relative, no `..`) is in the overlay of `lowerdirs` (topmost first), as
/// overlayfs resolves it: the first layer holding it decides, unless a layer above hides it
/// with a whiteout, an opaque directory or a non-directory on its path. Every component is
/// looked at with lstat, so a symlink in a layer is never followed out of it.
fn image_entry(lowerdirs: &[PathBuf], rel: &str) -> io::Result<Option<fs::Metadata>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    'layers: for layer in lowerdirs {
        let mut cur = layer.clone();
        for (i, part) in parts.iter().enumerate() {
            cur.push(part);
            let m = match fs::symlink_metadata(&cur) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue 'layers,
                Err(e) => return Err(e),
            };
            let whiteout = m.file_type().is_char_device() && m.rdev() == 0;
            if whiteout {
                return Ok(None);
            }
            if i + 1 == parts.len() {
                return Ok(Some(m));
            }
            if !m.is_dir() {
                // A file or symlink in the way: nothing below it in any layer shows.
                return Ok(None);
            }
            if is_opaque(&cur) {
                // Lower layers are hidden below this directory: only this layer counts.
                let rest = parts[i + 1..].join("/");
                return image_entry(std::slice::from_ref(&cur), &rest);
            }
        }
    }
    Ok(None)
}

/// An overlay or OCI opaque directory: the trusted.overlay.opaque xattr (the image store
/// converts OCI .wh..wh..opq markers to it when it unpacks a layer).
fn is_opaque(dir: &Path) -> bool {
    let Ok(p) = cstr(dir) else { return false };
    let mut v = [0u8; 1];
    // SAFETY: p is NUL-terminated; the value buffer is 1 byte and its length says so.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            1,
        )
    };
    n == 1 && v[0] == b'y'
}

pub fn unmount(paths: &Paths) -> io::Result<()> {
    unmount_reporting_busy(paths).map(|_| ())
}

/// As `unmount`; true when the overlay was still in use (an open file under it) and was
/// only detached: it stays alive, writing to its upper dir, until the last user goes.
pub fn unmount_reporting_busy(paths: &Paths) -> io::Result<bool> {
    let merged = paths.merged();
    if !is_mountpoint(&merged).unwrap_or(false) {
        return Ok(false);
    }
    let t = cstr(&merged)?;
    use berth_runtime::sys::umount2;
    if umount2(&t, 0).is_ok() {
        return Ok(false);
    }
    if let Err(e) = umount2(&t, libc::MNT_DETACH) {
        return Err(io::Error::new(
            e.kind(),
            format!("unmount {}: {e}", merged.display()),
        ));
    }
    Ok(true)
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

/// Writes hostname, hosts and resolv.conf for the container into `dir`, its bundle directory
/// under the exec-root: run-time files, on a tmpfs (three inodes fewer on the data-root's
/// disk per container), made again by the next start when a reboot took them.
pub fn write_etc_files(dir: &Path, rec: &super::model::Record) -> io::Result<()> {
    let (hostname, extra_hosts, dns) = (
        &rec.config.hostname,
        &rec.host_config.extra_hosts,
        &rec.host_config.dns,
    );
    let host_network = rec.host_config.network_mode == "host";
    fs::create_dir_all(dir)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mknod_whiteout(p: &Path) {
        let c = cstr(p).unwrap();
        // SAFETY: c is NUL-terminated; a 0/0 character device is overlayfs's whiteout.
        assert_eq!(
            unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) },
            0
        );
    }

    /// Overlay resolution across layers: the topmost entry decides; a whiteout, a file or a
    /// symlink on the path hides what lies below it (and no symlink is followed out of the
    /// layer); an opaque directory hides lower layers below it.
    #[test]
    fn image_entries_resolve_as_overlayfs_does() {
        let t = tempfile::tempdir().unwrap();
        let (top, mid, bottom) = (
            t.path().join("top"),
            t.path().join("mid"),
            t.path().join("bottom"),
        );
        for l in [&top, &mid, &bottom] {
            fs::create_dir(l).unwrap();
        }
        fs::create_dir_all(bottom.join("etc")).unwrap();
        fs::write(bottom.join("etc/hosts"), "").unwrap();
        fs::write(bottom.join("etc/hostname"), "").unwrap();
        fs::create_dir_all(bottom.join("opt/x")).unwrap();
        fs::create_dir(bottom.join("proc")).unwrap();
        // mid: etc/hostname whited out, opt opaque (its x gone), proc replaced by a symlink.
        fs::create_dir(mid.join("etc")).unwrap();
        mknod_whiteout(&mid.join("etc/hostname"));
        fs::create_dir(mid.join("opt")).unwrap();
        let opt = cstr(&mid.join("opt")).unwrap();
        // SAFETY: NUL-terminated path and name; a 1-byte value.
        let r = unsafe {
            libc::setxattr(
                opt.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        std::os::unix::fs::symlink("/etc", mid.join("proc")).unwrap();
        // top: a symlink named sys pointing at the host's /etc.
        std::os::unix::fs::symlink("/etc", top.join("sys")).unwrap();
        let layers = [top.clone(), mid.clone(), bottom.clone()];
        let is = |rel: &str| image_entry(&layers, rel).unwrap().map(|m| m.file_type());
        assert!(is("etc").unwrap().is_dir());
        assert!(is("etc/hosts").unwrap().is_file());
        assert!(is("etc/hostname").is_none(), "whited out");
        assert!(is("opt").unwrap().is_dir());
        assert!(is("opt/x").is_none(), "below an opaque directory");
        assert!(is("proc").unwrap().is_symlink());
        assert!(
            is("sys/hosts").is_none(),
            "not followed out of the layer to /etc/hosts"
        );
        assert!(is("dev").is_none());

        // The init layer adds what is missing: dev, sys under no symlink... and etc/hostname.
        let data = t.path().join("data");
        let init = init_layer(&data, &layers).unwrap();
        assert!(init.join("dev").is_dir());
        assert!(
            !init.join("proc").exists() && !init.join("sys").exists(),
            "present in the image"
        );
        assert!(init.join("etc/hostname").is_file());
        assert!(init.join("etc/resolv.conf").is_file());
        assert!(!init.join("etc/hosts").exists(), "the image has it");
        // Made once: the same stack gets the same directory.
        assert_eq!(init_layer(&data, &layers).unwrap(), init);
    }
}
