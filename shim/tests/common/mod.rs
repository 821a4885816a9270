//! Shared helpers for berth-shim's integration tests: a busybox rootfs made once per test
//! binary from busybox-static, bundles from the runtime's default spec, and a started shim with
//! its own state dir and runtime root that is shut down (container killed and deleted) when
//! dropped. The tests run real containers and need root.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_shim::protocol::{Client, ExitInfo, Request, Response, State};
use serde_json::{json, Value};

pub const SHIM: &str = env!("CARGO_BIN_EXE_berth-shim");

/// A busybox rootfs (bin/busybox plus one symlink per applet), made once per test binary.
pub fn rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "these tests need busybox-static (apt-get install busybox-static)"
        );
        let dir = std::env::temp_dir().join(format!("berth-shim-rootfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "root"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::copy(busybox, dir.join("bin/busybox")).unwrap();
        let list = Command::new(busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8(list.stdout).unwrap().lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
            }
        }
        std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
        // SAFETY: registers a plain function for exit(); the test harness ends with exit().
        unsafe { libc::atexit(remove_rootfs) };
        dir
    })
}

extern "C" fn remove_rootfs() {
    let dir = std::env::temp_dir().join(format!("berth-shim-rootfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(dir);
}

pub fn unique_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A bundle directory holding config.json (the runtime's default spec) on the shared rootfs.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    pub fn new(args: &[&str]) -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        let mut config: Value = serde_json::from_str(berth_runtime::spec::DEFAULT_SPEC).unwrap();
        config["root"]["path"] = json!(rootfs());
        config["root"]["readonly"] = json!(false);
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        let b = Bundle { dir, config };
        b.save();
        b
    }

    pub fn sh(script: &str) -> Bundle {
        Bundle::new(&["sh", "-c", script])
    }

    /// With a terminal: the shim relays the pty master.
    pub fn tty(mut self) -> Bundle {
        self.config["process"]["terminal"] = json!(true);
        self.save();
        self
    }

    pub fn save(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// One berth-shim and its container. Dropping it shuts the shim down and makes sure neither
/// the shim nor the container is left behind.
pub struct Shim {
    pub id: String,
    pub state: tempfile::TempDir,
    pub runtime_root: tempfile::TempDir,
    pub log: PathBuf,
    pub shim_pid: Option<i32>,
}

/// Options beyond the bundle, as berth-shim's flags.
pub fn start(bundle: &Bundle, flags: &[&str]) -> Shim {
    let (shim, r) = try_start(bundle, flags);
    r.unwrap_or_else(|e| panic!("berth-shim failed to start: {e}"));
    shim
}

/// Start a shim; Err carries its stderr when the launching process exits non-zero.
pub fn try_start(bundle: &Bundle, flags: &[&str]) -> (Shim, Result<(), String>) {
    let id = unique_id("shim");
    let state = tempfile::tempdir().unwrap();
    let runtime_root = tempfile::tempdir().unwrap();
    let log = state.path().join("container.log");
    let err = tempfile::NamedTempFile::new().unwrap();
    let status = Command::new(SHIM)
        .arg("--id")
        .arg(&id)
        .arg("--bundle")
        .arg(bundle.path())
        .arg("--state-dir")
        .arg(state.path())
        .arg("--runtime-root")
        .arg(runtime_root.path())
        .arg("--log")
        .arg(&log)
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err.reopen().unwrap())
        .status()
        .unwrap();
    let mut shim = Shim {
        id,
        state,
        runtime_root,
        log,
        shim_pid: None,
    };
    if !status.success() {
        let msg = std::fs::read_to_string(err.path()).unwrap();
        return (shim, Err(format!("{status}: {msg}")));
    }
    shim.shim_pid = Some(shim.state().shim_pid as i32);
    (shim, Ok(()))
}

impl Shim {
    pub fn dir(&self) -> &Path {
        self.state.path()
    }

    pub fn client(&self) -> Client {
        let c = Client::connect(self.dir()).unwrap();
        c.set_timeout(Some(Duration::from_secs(20))).unwrap();
        c
    }

    pub fn call(&self, req: &Request) -> Response {
        self.client().call(req).unwrap()
    }

    pub fn state(&self) -> State {
        match self.call(&Request::State) {
            Response::State(s) => s,
            other => panic!("state: {other:?}"),
        }
    }

    /// The container's exit, once its output is in the log.
    pub fn wait(&self) -> ExitInfo {
        match self.call(&Request::Wait { exec_id: None }) {
            Response::Exited(e) => e,
            other => panic!("wait: {other:?}"),
        }
    }

    pub fn start_held(&self) {
        assert_eq!(self.call(&Request::Start), Response::Ok);
    }

    pub fn kill(&self, signal: i32) {
        let r = self.call(&Request::Kill {
            signal,
            all: false,
            exec_id: None,
        });
        assert_eq!(r, Response::Ok, "kill {signal}");
    }

    /// The log's entries as (log text, stream).
    pub fn entries(&self) -> Vec<(String, String)> {
        entries(&self.log)
    }

    /// The raw log bytes of one stream, entries concatenated.
    pub fn text(&self, stream: &str) -> String {
        self.entries()
            .into_iter()
            .filter(|(_, s)| s == stream)
            .map(|(l, _)| l)
            .collect()
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(self.dir()) {
            let _ = c.set_timeout(Some(Duration::from_secs(10)));
            let _ = c.call(&Request::Shutdown { background: false });
        }
        if let Some(pid) = self.shim_pid {
            // Bounded: the shim exits right after answering shutdown.
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if alive(pid) {
                // SAFETY: signalling a pid we started; at worst it is already gone.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = berth_runtime::container::delete(self.runtime_root.path(), &self.id, true);
    }
}

/// The process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub fn entries(path: &Path) -> Vec<(String, String)> {
    let Ok(data) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    data.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (
                v["log"].as_str().unwrap_or("").to_string(),
                v["stream"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Poll `f` until it holds (bounded by `secs`).
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Read an attach stream (multiplexed frames) to its end: (stdout, stderr).
pub fn read_frames(r: &mut impl Read) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut p = Vec::new();
    while let Some(s) = berth_shim::protocol::read_frame(r, &mut p).unwrap() {
        match s {
            1 => out.extend_from_slice(&p),
            2 => err.extend_from_slice(&p),
            n => panic!("unknown stream {n}"),
        }
    }
    (out, err)
}
