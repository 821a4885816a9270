//! Container cgroups on cgroup v1, v2 and hybrid hosts, detected at run time from
//! /proc/self/mountinfo. The v2 part is joined with CLONE_INTO_CGROUP; v1 hierarchies (which
//! cannot do that) are joined by the child writing "0" into descriptors opened before clone.

pub mod devices_bpf;
pub mod stats;
mod v1;
mod v2;

use std::fs;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::sys;

/// How the host mounts cgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    V1,
    V2,
    Hybrid,
}

/// One mounted v1 hierarchy and where this process sits in it.
#[derive(Debug, Clone)]
pub struct V1Hierarchy {
    /// As in /proc/self/cgroup: "cpu", "cpu,cpuacct", "name=systemd".
    pub controllers: String,
    pub mount: PathBuf,
    pub own: PathBuf,
}

/// The host's cgroup mounts.
#[derive(Debug, Clone)]
pub struct Host {
    pub v1: Vec<V1Hierarchy>,
    /// The cgroup2 mount and this process's cgroup in it.
    pub unified: Option<(PathBuf, PathBuf)>,
}

impl Host {
    pub fn detect() -> Result<Host> {
        let own = fs::read_to_string("/proc/self/cgroup").ctx("read", "/proc/self/cgroup")?;
        if let Some(h) = Host::probe_standard(&own) {
            return Ok(h);
        }
        let mountinfo =
            fs::read_to_string("/proc/self/mountinfo").ctx("read", "/proc/self/mountinfo")?;
        Ok(Host::parse(&mountinfo, &own))
    }

    /// The usual layout under /sys/fs/cgroup, confirmed with statfs: no mountinfo to read,
    /// whose size grows with every container on the host. None when anything differs.
    fn probe_standard(own: &str) -> Option<Host> {
        const CGROUP_SUPER_MAGIC: i64 = 0x27e0eb;
        const CGROUP2_SUPER_MAGIC: i64 = 0x63677270;
        let fs_type = |p: &str| -> Option<i64> {
            let c = std::ffi::CString::new(p).ok()?;
            // SAFETY: statfs is plain data; c is a valid C string.
            let mut s: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            (unsafe { libc::statfs(c.as_ptr(), &mut s) } == 0).then_some(s.f_type as i64)
        };
        let mut v1 = Vec::new();
        let mut unified = None;
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if ctrls.is_empty() {
                let mount = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
                    .into_iter()
                    .find(|m| fs_type(m) == Some(CGROUP2_SUPER_MAGIC))?;
                unified = Some((PathBuf::from(mount), PathBuf::from(path)));
                continue;
            }
            let name = ctrls.strip_prefix("name=").unwrap_or(ctrls);
            let mount = format!("/sys/fs/cgroup/{name}");
            if fs_type(&mount) != Some(CGROUP_SUPER_MAGIC) {
                return None;
            }
            v1.push(V1Hierarchy {
                controllers: ctrls.to_string(),
                mount: PathBuf::from(mount),
                own: PathBuf::from(path),
            });
        }
        // Pure v2 puts "0::" on /sys/fs/cgroup itself and has no v1 lines.
        if unified
            .as_ref()
            .is_some_and(|(m, _)| m == Path::new("/sys/fs/cgroup"))
            && !v1.is_empty()
        {
            return None;
        }
        Some(Host { v1, unified })
    }

    /// Pure parsing of mountinfo and /proc/self/cgroup, so it can be tested without a host.
    pub fn parse(mountinfo: &str, own: &str) -> Host {
        let mut v1 = Vec::new();
        let mut unified = None;
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let path = PathBuf::from(path);
            if ctrls.is_empty() {
                if let Some(m) = find_mount(mountinfo, |fstype, _| fstype == "cgroup2") {
                    unified = Some((m, path));
                }
                continue;
            }
            let wanted: Vec<&str> = ctrls.split(',').collect();
            let found = find_mount(mountinfo, |fstype, opts| {
                fstype == "cgroup" && wanted.iter().all(|w| opts.split(',').any(|o| o == *w))
            });
            if let Some(mount) = found {
                v1.push(V1Hierarchy {
                    controllers: ctrls.to_string(),
                    mount,
                    own: path,
                });
            }
        }
        Host { v1, unified }
    }

    pub fn layout(&self) -> Layout {
        match (self.v1.is_empty(), self.unified.is_some()) {
            (true, _) => Layout::V2,
            (false, false) => Layout::V1,
            (false, true) => Layout::Hybrid,
        }
    }

    /// The controllers the cgroup2 hierarchy offers.
    fn unified_controllers(&self) -> Vec<String> {
        let Some((mount, _)) = &self.unified else {
            return Vec::new();
        };
        fs::read_to_string(mount.join("cgroup.controllers"))
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

/// The mount point of the first mount of a hierarchy's root that `matches` (fstype, super
/// options).
fn find_mount(mountinfo: &str, matches: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let mut r = right.split(' ');
        let (Some(fstype), Some(_src), Some(opts)) = (r.next(), r.next(), r.next()) else {
            continue;
        };
        if fields.len() >= 5 && fields[3] == "/" && matches(fstype, opts) {
            return Some(PathBuf::from(unescape_mountinfo(fields[4])));
        }
    }
    None
}

pub(crate) fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// A container's cgroup directories; recorded in its state so later commands need no
/// detection.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Cgroup {
    /// (controllers, directory) per v1 hierarchy the container is in.
    pub v1: Vec<(String, PathBuf)>,
    /// The v1 hierarchies it is not in (yet): those whose controllers only enforce limits the
    /// config does not set. `update` joins one when it sets such a limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub v1_unjoined: Vec<(String, PathBuf)>,
    pub unified: Option<PathBuf>,
}

/// v1 controllers every container joins, limits or not: what `stats`, `ps`, `pause`, `kill
/// --all` and the device rules read or write.
const V1_ALWAYS: &[&str] = &["memory", "cpuacct", "pids", "blkio", "devices", "freezer"];

/// Whether a v1 hierarchy holding `controllers` ("cpu,cpuacct", "name=systemd") is joined,
/// given the controllers the resources need (cgroup v2 names, as `v2::controllers_needed`).
///
/// runc joins every hierarchy. Each costs a mkdir (creating every control file of its
/// controllers), a task move, a mount in the container and an rmdir: about 0.13 ms per
/// hierarchy per container here (perf/runtime.sh). Hierarchies that only enforce limits (cpu,
/// cpuset, hugetlb, net_cls, net_prio, rdma), or none (perf_event, misc, named ones such as
/// name=systemd), are joined when the config sets such a limit.
fn joins_v1(controllers: &str, needed: &[&str]) -> bool {
    controllers.split(',').any(|c| {
        let v2_name = if c == "blkio" { "io" } else { c };
        V1_ALWAYS.contains(&c) || needed.contains(&v2_name)
    })
}

fn join_path(base: &Path, own: &Path, cgroups_path: &Path) -> PathBuf {
    let rel = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    if cgroups_path.is_absolute() {
        base.join(rel)
    } else {
        base.join(own.strip_prefix("/").unwrap_or(own)).join(rel)
    }
}

impl Cgroup {
    /// Where the container's cgroups go: `cgroups_path` absolute from each hierarchy's root,
    /// relative to this process's own cgroup, or `<own>/<id>` when not given (as runc does).
    /// On v1, only the hierarchies [`joins_v1`] picks for `resources` are joined.
    pub fn plan(
        host: &Host,
        cgroups_path: Option<&Path>,
        id: &str,
        resources: Option<&LinuxResources>,
    ) -> Cgroup {
        let p = cgroups_path.map_or_else(|| PathBuf::from(id), Path::to_path_buf);
        let needed = resources.map(v2::controllers_needed).unwrap_or_default();
        let (v1, v1_unjoined) = host
            .v1
            .iter()
            .map(|h| (h.controllers.clone(), join_path(&h.mount, &h.own, &p)))
            .partition(|(c, _)| joins_v1(c, &needed));
        Cgroup {
            v1,
            v1_unjoined,
            unified: host.unified.as_ref().map(|(m, own)| join_path(m, own, &p)),
        }
    }

    /// Make the directories and apply `resources`. On failure, removes what it made.
    pub fn create(&self, host: &Host, resources: Option<&LinuxResources>) -> Result<()> {
        let r = self
            .create_unified(host, resources)
            .and_then(|()| self.create_rest(resources));
        if r.is_err() {
            let _ = self.destroy();
        }
        r
    }

    /// The cgroup v2 directory alone, with the controllers `resources` needs enabled above
    /// it: what must exist before clone3(CLONE_INTO_CGROUP).
    pub fn create_unified(&self, host: &Host, resources: Option<&LinuxResources>) -> Result<()> {
        let Some(dir) = &self.unified else {
            return Ok(());
        };
        let (mount, _) = host.unified.as_ref().expect("unified planned from host");
        let needed = resources.map(v2::controllers_needed).unwrap_or_default();
        let available = host.unified_controllers();
        let enable: Vec<&str> = needed
            .iter()
            .copied()
            .filter(|c| available.iter().any(|a| a == c) && !self.has_v1(c))
            .collect();
        v2::create_with_controllers(mount, dir, &enable)
    }

    /// The v1 directories and every resource limit; runs while the child prepares its rootfs.
    pub fn create_rest(&self, resources: Option<&LinuxResources>) -> Result<()> {
        for (ctrls, dir) in &self.v1 {
            fs::create_dir_all(dir).ctx("create cgroup", dir)?;
            if ctrls.split(',').any(|c| c == "cpuset") {
                v1::inherit_cpuset(dir)?;
            }
        }
        if let Some(res) = resources {
            self.apply(res)?;
            self.attach_device_program(res)?;
        }
        Ok(())
    }

    /// Without a v1 devices hierarchy, the device rules become an eBPF program on the v2
    /// directory (made once, at create: programs attached later would stack, not replace).
    fn attach_device_program(&self, res: &LinuxResources) -> Result<()> {
        let Some(devs) = res.devices().as_ref().filter(|d| !d.is_empty()) else {
            return Ok(());
        };
        if self.has_v1("devices") {
            return Ok(());
        }
        let Some(dir) = &self.unified else {
            return Err(Error::Unsupported(
                "linux.resources.devices needs the v1 devices controller or a cgroup v2 hierarchy (for an eBPF device program); this host has neither".into(),
            ));
        };
        let mut rules = Vec::new();
        for d in devs {
            let text = v1::device_rule(d);
            rules.push(devices_bpf::Rule::parse(d.allow(), &text).ok_or_else(|| {
                Error::Unsupported(format!(
                    "device rule {text:?}: a device cgroup rule is for type a, b or c"
                ))
            })?);
        }
        for text in v1::DEFAULT_ALLOW {
            rules.push(devices_bpf::Rule::parse(true, text).expect("built-in rules parse"));
        }
        devices_bpf::attach(dir, &rules)
    }

    /// The files through which a process joins the container's cgroups by writing "0": each
    /// v1 hierarchy's `tasks` (moving the writing thread alone skips the global threadgroup
    /// rwsem, whose write side waits for an RCU grace period: milliseconds per container), and
    /// the v2 cgroup.procs unless the process was born there by CLONE_INTO_CGROUP.
    pub fn join_files(&self, born_in_unified: bool) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.v1.iter().map(|(_, d)| d.join("tasks")).collect();
        if let (Some(u), false) = (&self.unified, born_in_unified) {
            out.push(u.join("cgroup.procs"));
        }
        out
    }

    fn has_v1(&self, controller: &str) -> bool {
        self.v1_dir(controller).is_some()
    }

    fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(c, _)| c.split(',').any(|x| x == controller))
            .map(|(_, d)| d.as_path())
    }

    /// Write `resources` to whichever hierarchy holds each controller; a limit for a
    /// controller the host does not have is an error, not a silent skip.
    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        let unified_ctrls = self
            .unified
            .as_ref()
            .map(|u| v2::enabled_controllers(u))
            .unwrap_or_default();
        for c in v2::controllers_needed(res) {
            let v1_name = if c == "io" { "blkio" } else { c };
            if !self.has_v1(v1_name) && !unified_ctrls.iter().any(|u| u == c) {
                return Err(Error::Unsupported(format!(
                    "linux.resources needs the {c} cgroup controller, which this host does not provide"
                )));
            }
        }
        v1::apply(&|c| self.v1_dir(c), res)?;
        if let Some(u) = &self.unified {
            v2::apply(u, res, &|c| self.has_v1(c))?;
        } else if res.unified().as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(Error::Unsupported(
                "linux.resources.unified needs a cgroup v2 hierarchy; this host has none".into(),
            ));
        }
        Ok(())
    }

    /// `update`: as [`Cgroup::apply`], but device rules can change only through a v1 devices
    /// hierarchy (the eBPF program is attached once, at create). A limit whose v1 hierarchy
    /// the container is not in joins it first; true when that changed `self` (to be saved).
    pub fn apply_update(&mut self, res: &LinuxResources) -> Result<bool> {
        if res.devices().as_ref().is_some_and(|d| !d.is_empty()) && !self.has_v1("devices") {
            return Err(Error::Unsupported(
                "update: device rules are an eBPF program on this cgroup v2 host, fixed at create; they cannot be updated".into(),
            ));
        }
        let needed = v2::controllers_needed(res);
        let mut joined = false;
        while let Some(i) = self
            .v1_unjoined
            .iter()
            .position(|(c, _)| joins_v1(c, &needed))
        {
            let (ctrls, dir) = self.v1_unjoined.remove(i);
            self.join_v1_late(&ctrls, &dir)?;
            self.v1.push((ctrls, dir));
            joined = true;
        }
        self.apply(res)?;
        Ok(joined)
    }

    /// Make the container's directory in one more v1 hierarchy and move every process of the
    /// container into it, again until no process is left behind: one forked between listing
    /// and moving starts where its parent was.
    fn join_v1_late(&self, controllers: &str, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).ctx("create cgroup", dir)?;
        if controllers.split(',').any(|c| c == "cpuset") {
            v1::inherit_cpuset(dir)?;
        }
        let procs = dir.join("cgroup.procs");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&procs)
            .ctx("open", &procs)?;
        for _ in 0..100 {
            let mut inside = Vec::new();
            collect_pids(dir, &mut inside)?;
            let left: Vec<_> = self
                .pids()?
                .into_iter()
                .filter(|p| !inside.contains(p))
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            for pid in left {
                use std::io::Write;
                match f.write_all(pid.to_string().as_bytes()) {
                    Ok(()) => {}
                    // Exited meanwhile.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => {
                        return Err(Error::io(
                            "write",
                            format!("{} ({pid})", procs.display()),
                            e,
                        ))
                    }
                }
            }
        }
        Err(Error::io(
            "join cgroup",
            dir,
            io::Error::other("the container's processes kept forking; not all moved"),
        ))
    }

    /// The v2 directory, opened for clone3(CLONE_INTO_CGROUP).
    pub fn open_unified(&self) -> Result<Option<OwnedFd>> {
        let Some(dir) = &self.unified else {
            return Ok(None);
        };
        let c = cstr(dir)?;
        sys::openat(None, &c, libc::O_PATH | libc::O_DIRECTORY, 0)
            .ctx("open cgroup", dir)
            .map(Some)
    }

    /// The directory whose cgroup.procs lists every process of the container.
    fn procs_dir(&self) -> Option<&Path> {
        self.unified
            .as_deref()
            .or_else(|| self.v1_dir("pids"))
            .or_else(|| self.v1.first().map(|(_, d)| d.as_path()))
    }

    /// Whether any process is left in the container's cgroup or below it. cgroup.events says
    /// so in one read on v2 (and hybrid); pure v1 has to list the tree.
    pub fn is_populated(&self) -> Result<bool> {
        if let Some(u) = &self.unified {
            let p = u.join("cgroup.events");
            match fs::read_to_string(&p) {
                Ok(s) => return Ok(s.lines().any(|l| l.trim() == "populated 1")),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(Error::io("read", p, e)),
            }
        }
        Ok(!self.pids()?.is_empty())
    }

    /// Every pid in the container's cgroup, sub-cgroups included.
    pub fn pids(&self) -> Result<Vec<libc::pid_t>> {
        let mut out = Vec::new();
        if let Some(dir) = self.procs_dir() {
            collect_pids(dir, &mut out)?;
        }
        Ok(out)
    }

    /// Signal every process in the container. SIGKILL uses cgroup.kill where the kernel has
    /// it; otherwise the cgroup is frozen, signalled and thawed so no fork escapes.
    pub fn signal_all(&self, sig: libc::c_int) -> Result<()> {
        if sig == libc::SIGKILL {
            if let Some(u) = &self.unified {
                match fs::write(u.join("cgroup.kill"), "1") {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("write", u.join("cgroup.kill"), e)),
                }
            }
        }
        let frozen = self.freeze(true).is_ok();
        let res = (|| {
            for pid in self.pids()? {
                let Ok(fd) = sys::pidfd_open(pid) else {
                    continue;
                };
                match sys::pidfd_send_signal(fd.as_fd(), sig) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => return Err(Error::sys("pidfd_send_signal", e)),
                }
            }
            Ok(())
        })();
        if frozen {
            self.freeze(false)?;
        }
        res
    }

    /// Freeze or thaw the container (v1 freezer or v2 cgroup.freeze).
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        if let Some(dir) = self.v1_dir("freezer") {
            return v1::freeze(dir, frozen);
        }
        if let Some(u) = &self.unified {
            return v2::freeze(u, frozen);
        }
        Err(Error::Unsupported("no freezer cgroup on this host".into()))
    }

    /// Remove the directories (children first), waiting briefly for exiting tasks.
    pub fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        let dirs = self.v1.iter().map(|(_, d)| d).chain(self.unified.iter());
        for dir in dirs {
            if let Err(e) = remove_tree(dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

pub(crate) fn cstr(p: &Path) -> Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        Error::io(
            "path",
            p,
            io::Error::new(ErrorKind::InvalidInput, "contains a NUL byte"),
        )
    })
}

fn collect_pids(dir: &Path, out: &mut Vec<libc::pid_t>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    match fs::read_to_string(&procs) {
        Ok(s) => out.extend(
            s.lines()
                .filter_map(|l| l.trim().parse::<libc::pid_t>().ok()),
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read", procs, e)),
    }
    for entry in fs::read_dir(dir).ctx("read cgroup", dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// rmdir a cgroup and any sub-cgroups the container made, retrying while tasks exit. The
/// common case (no sub-cgroups, no tasks) costs one rmdir.
fn remove_tree(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut pause = Duration::from_micros(200);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                // Sub-cgroups made inside the container go first; then wait for tasks.
                let mut had_children = false;
                if let Ok(rd) = fs::read_dir(dir) {
                    for entry in rd.flatten() {
                        if entry.file_type().is_ok_and(|t| t.is_dir()) {
                            had_children = true;
                            remove_tree(&entry.path())?;
                        }
                    }
                }
                if !had_children {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
            Err(e) => return Err(Error::io("remove cgroup", dir, e)),
        }
    }
}

/// Write several values to one cgroup file, one write(2) each, through a single open.
pub(crate) fn write_lines(dir: &Path, file: &str, values: &[&str]) -> Result<()> {
    use std::io::Write;
    let p = dir.join(file);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .ctx("open", &p)?;
    for v in values {
        f.write_all(v.as_bytes())
            .map_err(|e| Error::io("write cgroup file", format!("{} ({v})", p.display()), e))?;
    }
    Ok(())
}

/// Write one cgroup file, naming it in the error.
pub(crate) fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    fs::write(&p, value)
        .map_err(|e| Error::io("write cgroup file", format!("{} ({value})", p.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:6 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:7 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:8 - cgroup cgroup rw,memory
35 30 0:31 /sub /mnt/memsub rw,nosuid shared:8 - cgroup cgroup rw,memory
";
    const HYBRID_SELF: &str = "\
4:memory:/user.slice
3:cpu,cpuacct:/
1:name=systemd:/user.slice/session-1.scope
0::/user.slice/session-1.scope
";

    #[test]
    fn detects_hybrid_hierarchies() {
        let h = Host::parse(HYBRID_MOUNTINFO, HYBRID_SELF);
        assert_eq!(h.layout(), Layout::Hybrid);
        assert_eq!(h.v1.len(), 3);
        assert_eq!(h.v1[0].mount, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(h.v1[0].own, PathBuf::from("/user.slice"));
        assert_eq!(h.v1[1].mount, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(h.v1[2].mount, PathBuf::from("/sys/fs/cgroup/systemd"));
        let (m, own) = h.unified.unwrap();
        assert_eq!(m, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(own, PathBuf::from("/user.slice/session-1.scope"));
    }

    #[test]
    fn detects_pure_v2() {
        let mi = "25 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let h = Host::parse(mi, "0::/init.scope\n");
        assert_eq!(h.layout(), Layout::V2);
    }

    #[test]
    fn detects_pure_v1() {
        let mi = "34 30 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        let h = Host::parse(mi, "2:pids:/\n");
        assert_eq!(h.layout(), Layout::V1);
    }

    #[test]
    fn plans_paths_like_runc() {
        let h = Host::parse(HYBRID_MOUNTINFO, HYBRID_SELF);
        let c = Cgroup::plan(&h, None, "c1", None);
        assert_eq!(
            c.v1[0].1,
            PathBuf::from("/sys/fs/cgroup/memory/user.slice/c1")
        );
        let c = Cgroup::plan(&h, Some(Path::new("/berth/c1")), "c1", None);
        assert_eq!(c.v1[0].1, PathBuf::from("/sys/fs/cgroup/memory/berth/c1"));
        assert_eq!(
            c.unified.unwrap(),
            PathBuf::from("/sys/fs/cgroup/unified/berth/c1")
        );
        let c = Cgroup::plan(&h, Some(Path::new("rel/c1")), "c1", None);
        assert_eq!(
            c.v1[1].1,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/rel/c1")
        );
    }

    #[test]
    fn joins_limit_only_hierarchies_when_a_limit_needs_them() {
        let mi = "\
33 30 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
36 30 0:32 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio
37 30 0:33 / /sys/fs/cgroup/perf_event rw - cgroup cgroup rw,perf_event
38 30 0:34 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
";
        let own = "6:name=systemd:/\n5:perf_event:/\n4:blkio:/\n3:cpuset:/\n2:memory:/\n1:cpu:/\n";
        let h = Host::parse(mi, own);
        let names = |v: &[(String, PathBuf)]| {
            let mut n: Vec<_> = v.iter().map(|(n, _)| n.as_str()).collect();
            n.sort_unstable();
            n.join(" ")
        };
        let plain = Cgroup::plan(&h, None, "c", None);
        assert_eq!(names(&plain.v1), "blkio memory");
        assert_eq!(
            names(&plain.v1_unjoined),
            "cpu cpuset name=systemd perf_event"
        );
        let res: LinuxResources = serde_json::from_value(serde_json::json!({
            "cpu": {"shares": 512, "cpus": "0"}
        }))
        .unwrap();
        let limited = Cgroup::plan(&h, None, "c", Some(&res));
        assert_eq!(names(&limited.v1), "blkio cpu cpuset memory");
        assert_eq!(names(&limited.v1_unjoined), "name=systemd perf_event");
    }
}
