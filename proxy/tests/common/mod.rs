//! Shared helpers: start the real berth-proxy binary with a control socket in a temp dir.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_proxy::protocol::{Client, MappingSpec, Proto};

pub const BIN: &str = env!("CARGO_BIN_EXE_berth-proxy");
pub const LOAD: &str = env!("CARGO_BIN_EXE_berth-proxy-load");

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("berth-proxy-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Proxy {
    pub child: Child,
    pub control: PathBuf,
    _dir: TempDir,
}

impl Proxy {
    pub fn start(extra: &[&str]) -> Proxy {
        let dir = TempDir::new("ctl");
        let control = dir.0.join("proxy.sock");
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--control")
            .arg(&control)
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn berth-proxy");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Client::connect(&control).is_err() {
            assert!(Instant::now() < deadline, "control socket never appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        Proxy {
            child,
            control,
            _dir: dir,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.control).expect("control connect")
    }

    /// Add a mapping and return (id, the host address actually bound).
    pub fn map(&self, proto: Proto, host: &str, container: SocketAddr) -> (u64, SocketAddr) {
        let mut c = self.client();
        let id = c
            .add(MappingSpec {
                proto,
                host: host.parse().unwrap(),
                container,
            })
            .expect("add mapping");
        let bound = c
            .list()
            .unwrap()
            .into_iter()
            .find(|m| m.id == id)
            .unwrap()
            .spec
            .host;
        (id, bound)
    }

    /// True once the first mapping relays no connection, within `limit`.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        eventually(limit, || {
            self.client().list().unwrap()[0].counters.active == 0
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of the child this test started.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, sig) }, 0);
    }

    /// Wait for exit within `limit`; returns the exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "proxy did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port with nothing listening on it.
pub fn dead_port(ip: &str) -> SocketAddr {
    let l = TcpListener::bind(format!("{ip}:0")).unwrap();
    l.local_addr().unwrap()
}

/// Poll `f` until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A helper child process killed (by its own pid) when the test ends, even on panic.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
