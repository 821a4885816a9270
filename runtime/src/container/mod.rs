//! A container's persistent record under the state root, and its status, which is always
//! derived (from the init's pidfd, its start time and the exec FIFO), never stored.

mod create;
mod delete;
mod exec;
mod kill;
mod list;
mod pause;
mod process;
mod run;
mod start;
mod update;

pub use create::{claim, create, create_parked, CreateOptions, Parked, Spawned};
pub use delete::delete;
pub use exec::{exec, exec_and_wait, ExecOptions, Execed};
pub use kill::{kill, parse_signal};
pub use list::{list, ps_pids};
pub use pause::{pause, resume};
pub use process::{cap_names, cap_number};
pub use run::run;
pub use start::{start, start_held};
pub use update::{stats, update};

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::error::{Error, IoContext, Result};
use crate::sys;

pub const DEFAULT_ROOT: &str = "/run/berth-runtime";
const STATE_FILE: &str = "state.json";
const FIFO: &str = "exec.fifo";

/// The OCI lifecycle states (plus paused, as runc reports it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What berth-runtime keeps about a container in `<root>/<id>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub pid: libc::pid_t,
    /// Start time of the init (field 22 of /proc/PID/stat): tells our init from a reused pid.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub oci_version: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub cgroup: Cgroup,
    /// config.json has poststart or poststop hooks (start and delete re-read it only then).
    #[serde(default)]
    pub hooks: bool,
    /// For a container in our own mount namespace: the id of the mount its rootfs was on
    /// before create bound it onto itself; `delete` detaches whatever is stacked above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_rootfs_mount: Option<u64>,
}

/// The state JSON `state` prints (the OCI state, with runc's extra fields).
#[derive(Debug, Serialize)]
pub struct OciState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: libc::pid_t,
    pub status: Status,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    pub owner: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: &'a BTreeMap<String, String>,
}

pub struct Container {
    pub dir: PathBuf,
    pub record: Record,
}

/// The two ends for a terminal's master fd, checked and connected before any side effect: the
/// child's end (the `--console-socket` connection, or one end of a socketpair) and, with no
/// socket given, the end the caller keeps to receive the master itself.
pub(crate) fn console_ends(
    terminal: bool,
    console_socket: Option<&Path>,
) -> Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    match (terminal, console_socket) {
        (false, Some(_)) => Err(Error::Unsupported(
            "--console-socket given but process.terminal is false".into(),
        )),
        (false, None) => Ok((None, None)),
        (true, Some(path)) => {
            let s = std::os::unix::net::UnixStream::connect(path)
                .ctx("connect console socket", path)?;
            Ok((Some(OwnedFd::from(s)), None))
        }
        (true, None) => {
            let (a, b) = sys::socketpair().map_err(|e| Error::sys("socketpair", e))?;
            Ok((Some(a), Some(b)))
        }
    }
}

/// runc's rule: letters, digits, `_+-.`; not "." or "..".
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

/// (start time, state letter) from /proc/PID/stat.
pub fn proc_stat(pid: libc::pid_t) -> Option<(u64, u8)> {
    let s = fs::read(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: fields resume after the last ')'.
    let close = s.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&s[close + 2..]).ok()?;
    let mut f = rest.split(' ');
    let state = f.next()?.bytes().next()?;
    // state is field 3; starttime is field 22.
    let start = f.nth(18)?.parse().ok()?;
    Some((start, state))
}

impl Container {
    pub fn dir_of(root: &Path, id: &str) -> PathBuf {
        root.join(id)
    }

    pub fn load(root: &Path, id: &str) -> Result<Container> {
        validate_id(id)?;
        let dir = Self::dir_of(root, id);
        let path = dir.join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(Error::io("read", path, e)),
        };
        let record = serde_json::from_slice(&bytes).map_err(|e| {
            Error::io(
                "parse",
                &path,
                std::io::Error::new(ErrorKind::InvalidData, e),
            )
        })?;
        Ok(Container { dir, record })
    }

    /// Write the record atomically (temp file + rename).
    pub fn save(&self) -> Result<()> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(".state.json.tmp");
        let data = serde_json::to_vec(&self.record).expect("record serialises");
        let mut f = fs::File::create(&tmp).ctx("create", &tmp)?;
        f.write_all(&data).ctx("write", &tmp)?;
        fs::rename(&tmp, &path).ctx("rename", &path)
    }

    /// A pidfd for the init if it is still our init and has not exited.
    pub fn init_pidfd(&self) -> Option<OwnedFd> {
        let pidfd = sys::pidfd_open(self.record.pid).ok()?;
        // With the pidfd held, the pid cannot be reused: checking the start time now proves
        // the descriptor is our init.
        let (start, state) = proc_stat(self.record.pid)?;
        if start != self.record.pid_start || state == b'Z' || state == b'X' {
            return None;
        }
        Some(pidfd)
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.dir.join(FIFO)
    }

    pub fn status(&self) -> Status {
        if self.init_pidfd().is_none() {
            return Status::Stopped;
        }
        if self.fifo_path().exists() {
            return Status::Created;
        }
        if self.is_frozen() {
            return Status::Paused;
        }
        Status::Running
    }

    fn is_frozen(&self) -> bool {
        let cg = &self.record.cgroup;
        if let Some((_, dir)) = cg
            .v1
            .iter()
            .find(|(c, _)| c.split(',').any(|x| x == "freezer"))
        {
            return fs::read_to_string(dir.join("freezer.state"))
                .is_ok_and(|s| s.trim() == "FROZEN");
        }
        if let Some(u) = &cg.unified {
            return fs::read_to_string(u.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1");
        }
        false
    }

    pub fn oci_state(&self, status: Status) -> OciState<'_> {
        let r = &self.record;
        OciState {
            oci_version: &r.oci_version,
            id: &r.id,
            pid: if status == Status::Stopped { 0 } else { r.pid },
            status,
            bundle: &r.bundle,
            rootfs: &r.rootfs,
            created: &r.created,
            owner: "",
            annotations: &r.annotations,
        }
    }

    /// Remove the cgroups and the state directory.
    pub fn destroy(&self) -> Result<()> {
        // Processes that outlived the init (shared pid namespace) go with the container.
        if self.record.cgroup.is_populated()? {
            self.record.cgroup.signal_all(libc::SIGKILL)?;
        }
        self.record.cgroup.destroy()?;
        if let Some(under) = self.record.host_rootfs_mount {
            detach_host_rootfs(&self.record.rootfs, under)?;
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove state", &self.dir, e)),
        }
    }
}

/// Detach the rootfs bind (and every mount the container made under it) that create stacked
/// in our own mount namespace, if it is still there: the mount at `rootfs` is no longer the one
/// it was on before (`under`). The host's own mount of a rootfs is never touched.
pub(crate) fn detach_host_rootfs(rootfs: &Path, under: u64) -> Result<()> {
    let c = crate::cgroups::cstr(rootfs)?;
    match sys::mount_id(&c) {
        Ok(now) if now != under => sys::umount2(&c, libc::MNT_DETACH)
            .map_err(|e| Error::io("unmount the container's rootfs", rootfs, e)),
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(Error::io("statx", rootfs, e)),
    }
}

/// Wait up to `timeout_ms` for a process to exit, through its pidfd (it need not be our child).
pub fn wait_exit(pidfd: &OwnedFd, timeout_ms: i32) -> Result<bool> {
    let mut pfd = [libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&pidfd.as_fd()),
        events: libc::POLLIN,
        revents: 0,
    }];
    let n = sys::poll(&mut pfd, timeout_ms).map_err(|e| Error::sys("poll pidfd", e))?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_runc_rules() {
        for ok in ["a", "abc-1.2_3+x", "A9"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "../x", "ä"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_own_start_time() {
        let (start, state) = proc_stat(std::process::id() as i32).unwrap();
        assert!(start > 0);
        // The main thread may be running or waiting for the test threads.
        assert!(b"RS".contains(&state), "{}", state as char);
    }

    #[test]
    fn state_json_has_oci_fields() {
        let c = Container {
            dir: PathBuf::from("/nonexistent"),
            record: Record {
                id: "x".into(),
                pid: 42,
                pid_start: 1,
                bundle: "/b".into(),
                rootfs: "/b/rootfs".into(),
                created: "2026-01-01T00:00:00.000000000Z".into(),
                oci_version: "1.0.2".into(),
                annotations: BTreeMap::new(),
                cgroup: Cgroup::default(),
                hooks: false,
                host_rootfs_mount: None,
            },
        };
        let v = serde_json::to_value(c.oci_state(Status::Running)).unwrap();
        assert_eq!(v["ociVersion"], "1.0.2");
        assert_eq!(v["status"], "running");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["bundle"], "/b");
        let stopped = serde_json::to_value(c.oci_state(Status::Stopped)).unwrap();
        assert_eq!(stopped["pid"], 0);
    }
}
