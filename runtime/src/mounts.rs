//! The mount plan: config.json mounts turned, before clone, into a flat list of operations whose
//! paths are already split and NUL-terminated, so the container child only makes syscalls.
//! Targets are resolved inside the rootfs with openat2(RESOLVE_IN_ROOT): a symlink in the image
//! cannot make a mount land outside it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

use crate::cgroups::{Cgroup, Host};
use crate::error::{Error, Result};

/// Flags and filesystem data parsed from a mount's options.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Options {
    pub flags: libc::c_ulong,
    /// Flags that `flags` clears explicitly (e.g. "rw", "suid"), kept for bind remounts.
    pub cleared: libc::c_ulong,
    pub propagation: Vec<libc::c_ulong>,
    pub data: Vec<String>,
    pub bind: bool,
}

pub fn propagation_flag(opt: &str) -> Option<libc::c_ulong> {
    Some(match opt {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

/// Parse mount options as mount(8) and runc do; unknown words become filesystem data.
pub fn parse_options(opts: &[String]) -> Options {
    let mut o = Options::default();
    for opt in opts {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match opt.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                (libc::MS_BIND, 0)
            }
            "rbind" => {
                o.bind = true;
                (libc::MS_BIND | libc::MS_REC, 0)
            }
            "defaults" => (0, 0),
            other => {
                if let Some(p) = propagation_flag(other) {
                    o.propagation.push(p);
                } else {
                    o.data.push(other.to_string());
                }
                (0, 0)
            }
        };
        o.flags = (o.flags | set) & !clear;
        o.cleared |= clear;
    }
    o
}

/// One step of rootfs preparation, done by the child before pivot_root.
#[derive(Debug)]
pub enum Op {
    Mount(MountOp),
    /// Create a symlink `name` (path inside the rootfs) pointing at `target`.
    Symlink {
        target: CString,
        at: Target,
    },
}

/// Where something lands inside the rootfs: the path, and each of its prefixes relative to the
/// rootfs, for mkdir -p one level at a time under RESOLVE_IN_ROOT.
#[derive(Debug)]
pub struct Target {
    pub path: PathBuf,
    pub prefixes: Vec<CString>,
    /// The last component of each prefix.
    pub names: Vec<CString>,
}

impl Target {
    pub fn new(path: &Path) -> Result<Target> {
        let mut prefixes = Vec::new();
        let mut names = Vec::new();
        let mut cur = PathBuf::new();
        for c in path.components() {
            match c {
                Component::Normal(n) => {
                    cur.push(n);
                    prefixes.push(cstring(cur.as_os_str().as_bytes(), path)?);
                    names.push(cstring(n.as_bytes(), path)?);
                }
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir => {
                    // Resolved under RESOLVE_IN_ROOT, ".." cannot leave the rootfs either,
                    // but a path that needs it is a malformed config.
                    return Err(Error::InvalidConfig {
                        path: path.to_path_buf(),
                        msg: "mount destination must not contain '..'".into(),
                    });
                }
                Component::Prefix(_) => unreachable!("no prefixes on Linux"),
            }
        }
        Ok(Target {
            path: path.to_path_buf(),
            prefixes,
            names,
        })
    }

    /// The path relative to the rootfs ("." for the rootfs itself).
    pub fn relative(&self) -> &std::ffi::CStr {
        self.prefixes.last().map_or(c".", |c| c.as_c_str())
    }
}

#[derive(Debug)]
pub struct MountOp {
    pub target: Target,
    /// Create the mountpoint as an empty file instead of a directory (bind of a file).
    pub file: bool,
    pub source: Option<CString>,
    pub fstype: Option<CString>,
    pub flags: libc::c_ulong,
    pub data: Option<CString>,
    /// For bind mounts with flags, the MS_REMOUNT|MS_BIND flags applied afterwards.
    pub remount: Option<libc::c_ulong>,
    pub propagation: Vec<libc::c_ulong>,
}

/// argv/envp for execve: pointers into `v`, then NULL. `v` must outlive the result.
pub fn null_terminated(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

pub fn cstring(bytes: &[u8], for_path: &Path) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::InvalidConfig {
        path: for_path.to_path_buf(),
        msg: "path contains a NUL byte".into(),
    })
}

fn opt_cstring(s: Option<&str>, for_path: &Path) -> Result<Option<CString>> {
    s.map(|s| cstring(s.as_bytes(), for_path)).transpose()
}

/// Everything the cgroup mount expansion needs to know about the container.
pub struct CgroupMountCtx<'a> {
    pub host: &'a Host,
    pub cgroup: &'a Cgroup,
    pub new_cgroupns: bool,
}

/// The operations for a config's mounts, and the index of the first one that needs the
/// container's cgroups to exist (ops.len() when none does).
#[derive(Debug)]
pub struct Planned {
    pub ops: Vec<Op>,
    pub cgroup_from: usize,
}

/// Build the operations for `mounts`. Bind sources are resolved against `bundle`.
pub fn plan(mounts: &[Mount], bundle: &Path, cg: &CgroupMountCtx<'_>) -> Result<Planned> {
    let mut ops = Vec::with_capacity(mounts.len() + 8);
    let mut cgroup_from = None;
    for m in mounts {
        let o = parse_options(m.options().as_deref().unwrap_or(&[]));
        let typ = m.typ().as_deref().unwrap_or("");
        if typ == "cgroup" || typ == "cgroup2" && !o.bind {
            cgroup_from.get_or_insert(ops.len());
            plan_cgroup(m.destination(), &o, cg, typ == "cgroup2", &mut ops)?;
            continue;
        }
        let bind = o.bind || typ == "bind";
        let mut source = m.source().clone();
        let mut file = false;
        if bind {
            let src = source.clone().ok_or_else(|| Error::InvalidConfig {
                path: m.destination().clone(),
                msg: "bind mount without a source".into(),
            })?;
            let src = if src.is_absolute() {
                src
            } else {
                bundle.join(src)
            };
            let meta = std::fs::metadata(&src).map_err(|e| Error::io("bind source", &src, e))?;
            file = !meta.is_dir();
            source = Some(src);
        }
        let data = (!o.data.is_empty()).then(|| o.data.join(","));
        let dest = m.destination();
        let flags = if bind {
            libc::MS_BIND | (o.flags & libc::MS_REC)
        } else {
            o.flags
        };
        let extra = o.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
        let remount = (bind && (extra != 0 || o.cleared != 0))
            .then_some(libc::MS_BIND | libc::MS_REMOUNT | extra);
        ops.push(Op::Mount(MountOp {
            target: Target::new(dest)?,
            file,
            source: source
                .map(|s| cstring(s.as_os_str().as_bytes(), dest))
                .transpose()?,
            fstype: if bind {
                None
            } else {
                opt_cstring(Some(typ).filter(|t| !t.is_empty()), dest)?
            },
            flags,
            data: opt_cstring(data.as_deref(), dest)?,
            remount,
            propagation: o.propagation,
        }));
    }
    let cgroup_from = cgroup_from.unwrap_or(ops.len());
    Ok(Planned { ops, cgroup_from })
}

/// A "cgroup" mount: with a cgroup namespace, the hierarchies are mounted fresh (their root is
/// the container's cgroup); without one, the container's directories are bind-mounted. On v1
/// and hybrid hosts a tmpfs holds one directory per hierarchy, as runc lays it out.
fn plan_cgroup(
    dest: &Path,
    o: &Options,
    cg: &CgroupMountCtx<'_>,
    force_v2: bool,
    ops: &mut Vec<Op>,
) -> Result<()> {
    let ro = o.flags & libc::MS_RDONLY;
    let base = o.flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME);
    let unified_only = cg.host.v1.is_empty() || force_v2;
    let mount_one =
        |target: &Path, v1_ctrls: Option<&str>, host_dir: Option<&Path>| -> Result<MountOp> {
            let (source, fstype, flags, data) = match (cg.new_cgroupns, host_dir) {
                (false, Some(dir)) => (
                    Some(cstring(dir.as_os_str().as_bytes(), target)?),
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                ),
                _ => (
                    Some(c"cgroup".to_owned()),
                    Some(if v1_ctrls.is_some() {
                        c"cgroup".to_owned()
                    } else {
                        c"cgroup2".to_owned()
                    }),
                    base | ro,
                    v1_ctrls
                        .map(|c| cstring(c.as_bytes(), target))
                        .transpose()?,
                ),
            };
            let bind = flags & libc::MS_BIND != 0;
            Ok(MountOp {
                target: Target::new(target)?,
                file: false,
                source,
                fstype,
                flags,
                data,
                remount: bind.then_some(libc::MS_BIND | libc::MS_REMOUNT | base | ro),
                propagation: Vec::new(),
            })
        };
    if unified_only {
        let dir = cg.cgroup.unified.as_deref();
        ops.push(Op::Mount(mount_one(dest, None, dir)?));
        return Ok(());
    }
    ops.push(Op::Mount(MountOp {
        target: Target::new(dest)?,
        file: false,
        source: Some(c"tmpfs".to_owned()),
        fstype: Some(c"tmpfs".to_owned()),
        flags: base,
        data: Some(c"mode=755".to_owned()),
        remount: None,
        propagation: Vec::new(),
    }));
    // Only the hierarchies the container is in: a fresh mount of another would show the
    // caller's cgroup and everything below it, other containers included.
    for (ctrls, dir) in &cg.cgroup.v1 {
        let Some(h) = cg.host.v1.iter().find(|h| &h.controllers == ctrls) else {
            continue;
        };
        let name = h
            .mount
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| h.controllers.clone());
        let target = dest.join(&name);
        ops.push(Op::Mount(mount_one(
            &target,
            Some(&h.controllers),
            Some(dir),
        )?));
        // "cpu,cpuacct" is also reachable as "cpu" and "cpuacct".
        if h.controllers.contains(',') {
            for c in h.controllers.split(',') {
                if c != name && !c.starts_with("name=") {
                    ops.push(Op::Symlink {
                        target: cstring(name.as_bytes(), dest)?,
                        at: Target::new(&dest.join(c))?,
                    });
                }
            }
        }
    }
    if let Some(dir) = cg.cgroup.unified.as_deref() {
        ops.push(Op::Mount(mount_one(
            &dest.join("unified"),
            None,
            Some(dir),
        )?));
    }
    if ro != 0 {
        // The tmpfs goes read-only last, after its mountpoints exist.
        ops.push(Op::Mount(MountOp {
            target: Target::new(dest)?,
            file: false,
            source: None,
            fstype: None,
            flags: libc::MS_REMOUNT | base | ro,
            data: None,
            remount: None,
            propagation: Vec::new(),
        }));
    }
    Ok(())
}

/// The mount that contains `path` (the last mounted of those with the longest mount point that
/// is a prefix of it) and whether it is shared, from a mountinfo table. pivot_root refuses a new
/// root whose parent mount is shared, and a bind mount under a shared parent would propagate
/// back to the host: runc makes that parent private first, and so does the container child.
pub fn parent_mount(mountinfo: &str, path: &Path) -> Option<(PathBuf, bool)> {
    let mut best: Option<(PathBuf, bool)> = None;
    for line in mountinfo.lines() {
        let Some((left, _)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        if fields.len() < 6 {
            continue;
        }
        let point = PathBuf::from(crate::cgroups::unescape_mountinfo(fields[4]));
        if !path.starts_with(&point) {
            continue;
        }
        let longer = best
            .as_ref()
            .is_none_or(|(b, _)| point.as_os_str().len() >= b.as_os_str().len());
        if longer {
            let shared = fields[6..].iter().any(|f| f.starts_with("shared:"));
            best = Some((point, shared));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Options {
        parse_options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_flags_and_data() {
        let o = opts(&["nosuid", "noexec", "mode=755", "size=65536k", "ro"]);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_RDONLY);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert!(!o.bind);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let o = opts(&["ro", "rw"]);
        assert_eq!(o.flags & libc::MS_RDONLY, 0);
        assert_eq!(o.cleared, libc::MS_RDONLY);
    }

    #[test]
    fn the_parent_mount_is_the_longest_prefix_mounted_last() {
        let mi = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:5 / /tmp rw shared:7 - tmpfs tmpfs rw
31 22 0:6 / /tmpx rw - tmpfs tmpfs rw
40 30 0:7 / /tmp/a\\040b rw master:3 - tmpfs tmpfs rw
41 30 0:8 / /tmp/a\\040b rw - tmpfs tmpfs rw
";
        let p = |s: &str| parent_mount(mi, Path::new(s));
        assert_eq!(p("/tmp/x/rootfs"), Some(("/tmp".into(), true)));
        assert_eq!(p("/tmpx/rootfs"), Some(("/tmpx".into(), false)));
        assert_eq!(p("/var/lib/c"), Some(("/".into(), true)));
        // Stacked on one point: the top (last) mount is the one a path resolves to.
        assert_eq!(p("/tmp/a b/rootfs"), Some(("/tmp/a b".into(), false)));
    }

    #[test]
    fn parses_bind_and_propagation() {
        let o = opts(&["rbind", "rprivate", "ro"]);
        assert!(o.bind);
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(o.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
    }

    #[test]
    fn targets_split_into_prefixes() {
        let t = Target::new(Path::new("/dev/pts")).unwrap();
        let p: Vec<_> = t.prefixes.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(p, vec!["dev", "dev/pts"]);
        assert_eq!(t.relative().to_str().unwrap(), "dev/pts");
        assert!(Target::new(Path::new("/a/../etc")).is_err());
        assert_eq!(
            Target::new(Path::new("/"))
                .unwrap()
                .relative()
                .to_str()
                .unwrap(),
            "."
        );
    }

    #[test]
    fn bind_mount_with_ro_gets_a_remount() {
        let dir = std::env::temp_dir();
        let m: Mount = serde_json::from_value(serde_json::json!({
            "destination": "/data", "type": "bind", "source": dir, "options": ["rbind", "ro", "nosuid"]
        }))
        .unwrap();
        let host = Host::parse("", "");
        let cg = Cgroup::default();
        let ctx = CgroupMountCtx {
            host: &host,
            cgroup: &cg,
            new_cgroupns: true,
        };
        let ops = plan(&[m], Path::new("/bundle"), &ctx).unwrap().ops;
        let Op::Mount(op) = &ops[0] else { panic!() };
        assert_eq!(op.flags, libc::MS_BIND | libc::MS_REC);
        assert_eq!(
            op.remount,
            Some(libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID)
        );
        assert!(op.fstype.is_none());
    }

    #[test]
    fn hybrid_cgroup_mount_expands_per_hierarchy() {
        let mi = "\
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
";
        let host = Host::parse(mi, "5:cpuset:/\n4:memory:/\n3:cpu,cpuacct:/\n0::/\n");
        // No cpuset limit: the container is not in that hierarchy, nor is it mounted.
        let cg = Cgroup::plan(&host, None, "x", None);
        let ctx = CgroupMountCtx {
            host: &host,
            cgroup: &cg,
            new_cgroupns: true,
        };
        let m: Mount = serde_json::from_value(serde_json::json!({
            "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid"]
        }))
        .unwrap();
        let planned = plan(&[m], Path::new("/b"), &ctx).unwrap();
        assert_eq!(planned.cgroup_from, 0);
        let ops = planned.ops;
        let names: Vec<String> = ops
            .iter()
            .map(|op| match op {
                Op::Mount(m) => format!("mount {}", m.target.path.display()),
                Op::Symlink { at, .. } => format!("link {}", at.path.display()),
            })
            .collect();
        assert_eq!(
            names,
            vec![
                "mount /sys/fs/cgroup",
                "mount /sys/fs/cgroup/memory",
                "mount /sys/fs/cgroup/cpu,cpuacct",
                "link /sys/fs/cgroup/cpu",
                "link /sys/fs/cgroup/cpuacct",
                "mount /sys/fs/cgroup/unified",
                "mount /sys/fs/cgroup",
            ]
        );
    }
}
