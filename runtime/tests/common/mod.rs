//! Shared helpers for berth-runtime's integration tests: a busybox rootfs built once from
//! busybox-static, bundles with a runc-style default config, and a runtime with its own state
//! root. The tests run real containers and need root.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");

/// A busybox rootfs (bin/busybox plus one symlink per applet), made once per test binary.
pub fn rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "these tests need busybox-static (apt-get install busybox-static)"
        );
        let dir = std::env::temp_dir().join(format!("berth-rootfs-{}", std::process::id()));
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
        dir
    })
}

pub fn unique_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A bundle directory holding config.json; the rootfs is the shared one (absolute path).
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    /// The default spec (as `berth-runtime spec` writes it) with no terminal and `args`.
    pub fn new(args: &[&str]) -> Bundle {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "spec: {out:?}");
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        config["root"]["path"] = json!(rootfs());
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        let b = Bundle { dir, config };
        b.save();
        b
    }

    pub fn sh(script: &str) -> Bundle {
        Bundle::new(&["sh", "-c", script])
    }

    pub fn save(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.save();
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// berth-runtime with its own state root.
pub struct Runtime {
    pub root: tempfile::TempDir,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

impl Runtime {
    pub fn new() -> Runtime {
        Runtime {
            root: tempfile::tempdir().unwrap(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(self.root.path());
        c
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.cmd().args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Run a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.output(args);
        assert!(
            o.status.success(),
            "berth-runtime {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Run a command that must fail; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.output(args);
        assert!(
            !o.status.success(),
            "berth-runtime {args:?} unexpectedly succeeded"
        );
        String::from_utf8(o.stderr).unwrap()
    }

    /// `run` in the foreground: (exit code, stdout, stderr).
    pub fn run(&self, bundle: &Bundle, id: &str) -> (i32, String, String) {
        let o = self
            .cmd()
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Run a command whose container may outlive it (create, run --detach): the container
    /// inherits stdio, so it gets /dev/null and a file, never a pipe we would wait on.
    pub fn detached(&self, args: &[&std::ffi::OsStr]) -> (bool, String) {
        let err = tempfile::NamedTempFile::new().unwrap();
        let status = self
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err.reopen().unwrap())
            .status()
            .unwrap();
        (
            status.success(),
            std::fs::read_to_string(err.path()).unwrap(),
        )
    }

    pub fn create(&self, bundle: &Bundle, id: &str) {
        let (ok, err) = self.detached(&[
            "create".as_ref(),
            "--bundle".as_ref(),
            bundle.path().as_os_str(),
            id.as_ref(),
        ]);
        assert!(ok, "create {id}: {err}");
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_string()
    }

    /// Poll `state` until it reports `want` (bounded: 5 s).
    pub fn wait_status(&self, id: &str, want: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let s = self.status(id);
            if s == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id} is {s}, wanted {want}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.path().join(id)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Leave nothing running behind a failed test.
        if let Ok(rd) = std::fs::read_dir(self.root.path()) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.output(&["delete", "--force", &id]);
            }
        }
    }
}

/// This test process's path in a v1 hierarchy (or the unified one for "").
pub fn own_cgroup(controller: &str) -> PathBuf {
    let s = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    for line in s.lines() {
        let mut p = line.splitn(3, ':');
        let (_, c, path) = (p.next(), p.next().unwrap(), p.next().unwrap());
        if c.split(',').any(|x| x == controller) || (controller.is_empty() && c.is_empty()) {
            return PathBuf::from(path);
        }
    }
    panic!("no cgroup line for {controller:?}");
}

/// Where the host mounts a hierarchy: /sys/fs/cgroup/<name> on v1/hybrid hosts.
pub fn cgroup_mount(controller: &str) -> Option<PathBuf> {
    let p = if controller.is_empty() {
        ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("cgroup.controllers").exists())?
    } else {
        PathBuf::from("/sys/fs/cgroup").join(controller)
    };
    p.exists().then_some(p)
}
