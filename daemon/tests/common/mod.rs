//! Shared helpers for berthd's integration tests: a berthd per test (own socket, data-root,
//! exec-root), the real docker CLI pointed at it, and a busybox image made from
//! busybox-static with `docker import`. The tests run real containers and need root.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");
pub const DOCKER: &str = "/usr/local/bin/docker";

/// The berth-shim binary beside berthd (scripts/test builds every binary first).
pub fn shim() -> PathBuf {
    let p = Path::new(BERTHD).with_file_name("berth-shim");
    assert!(
        p.exists(),
        "{} missing: run `cargo build --release --workspace --bins` first",
        p.display()
    );
    p
}

/// A rootfs tarball: busybox plus one symlink per applet, /etc/passwd and /etc/group.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("berthd-bb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is needed");
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for a in String::from_utf8(list.stdout).unwrap().lines() {
            if a != "busybox" {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
            }
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        let tar = dir.join("busybox.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        tar
    })
}

pub struct Berthd {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
}

impl Berthd {
    /// A fresh berthd with the busybox image imported as `busybox:latest`.
    pub fn start() -> Berthd {
        let dir = tempfile::Builder::new()
            .prefix("berthd-test")
            .tempdir()
            .unwrap();
        let sock = dir.path().join("berth.sock");
        let mut d = Berthd {
            child: None,
            dir,
            sock,
        };
        d.spawn();
        let out = d.docker(&["import", busybox_tar().to_str().unwrap(), "busybox:latest"]);
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        d
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn exec_root(&self) -> PathBuf {
        self.dir.path().join("exec")
    }

    /// Starts berthd (again) on the same state and waits for its socket.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("berthd.log"))
            .unwrap();
        let child = Command::new(BERTHD)
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .arg("--data-root")
            .arg(self.data_root())
            .arg("--exec-root")
            .arg(self.exec_root())
            .arg("--shim")
            .arg(shim())
            .arg("--debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("berthd did not start: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    /// kill -9 of berthd (containers must survive it).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops berthd as a service manager would (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null());
        c
    }

    /// Runs the docker CLI to completion, killed after 60 s so a hang fails the test instead
    /// of stalling the suite.
    pub fn docker(&self, args: &[&str]) -> Output {
        let child = self
            .cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let watchdog = std::thread::spawn(move || {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(60) {
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // SAFETY: kill has no memory effects; a reused pid is not possible while the
            // child is unreaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            true
        });
        let out = child.wait_with_output().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let killed = watchdog.join().unwrap();
        assert!(
            !killed,
            "docker {args:?} hung for 60 s; berthd log tail:\n{}",
            tail(&self.log(), 30)
        );
        out
    }

    /// Runs the docker CLI, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed ({}):\nstdout: {}\nstderr: {}\nberthd log tail:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            tail(&self.log(), 30)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Polls `f` until true, at most `limit`.
    pub fn eventually(&self, limit: Duration, mut f: impl FnMut() -> bool) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Berthd {
    fn drop(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
        // Containers outlive berthd by design: remove them through it, then stop it.
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        // Stopped, not killed: what berthd made ahead (slots: directories, mounts, cgroups
        // outside the temp dir) goes with it.
        self.stop();
        // Overlay mounts left by a failed test would keep the temp dir busy.
        if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
            let base = self.dir.path().display().to_string();
            for l in m.lines() {
                if let Some(mp) = l.split(' ').nth(4) {
                    if mp.starts_with(&base) {
                        let _ = Command::new("umount").arg("-l").arg(mp).status();
                    }
                }
            }
        }
    }
}
