//! Proof of docker-proxy compatibility: Debian's dockerd, started by hand on its own sockets
//! and directories with `"userland-proxy-path"` pointing at berth-proxy, publishes a container
//! port on 127.0.0.1 and bytes move through berth-proxy. Everything started here is stopped
//! and removed at the end (container, dockerd, containerd, the test's bridge, mounts).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NEEDED: [&str; 4] = [
    "/usr/sbin/dockerd",
    "/usr/bin/containerd",
    "/bin/busybox",
    "/usr/sbin/runc",
];

/// The docker CLI: a separately installed one, else Debian docker.io's own.
fn docker_cli() -> Option<&'static str> {
    ["/usr/local/bin/docker", "/usr/bin/docker"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

struct Stack {
    dir: PathBuf,
    bridge: String,
    containerd: Option<Child>,
    dockerd: Option<Child>,
}

impl Stack {
    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new(docker_cli().expect("checked at start"))
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.join("docker.sock").display()),
            )
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .args(args)
            .output()
            .expect("run docker CLI")
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

fn stop(child: &mut Option<Child>, limit: Duration) {
    if let Some(mut c) = child.take() {
        // SAFETY: kill(2) on the pid of a daemon this test started.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if c.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.docker(&["rm", "-f", "berth-proxy-test"]);
        stop(&mut self.dockerd, Duration::from_secs(20));
        stop(&mut self.containerd, Duration::from_secs(10));
        // Anything still mounted under our directory (netns files, overlay layers) goes too.
        let dir = self.dir.display().to_string();
        if let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut points: Vec<&str> = mi
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&dir))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = Command::new("umount").args(["-l", p]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    assert!(
        eventually(limit, &mut f),
        "{what} not ready within {limit:?}"
    );
}

/// A busybox rootfs: the static binary plus one symlink per applet (none named busybox).
fn busybox_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    for d in ["proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
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
}

fn ppid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
}

#[test]
fn dockerd_publishes_a_port_through_berth_proxy() {
    let mut missing: Vec<&str> = NEEDED
        .iter()
        .copied()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if docker_cli().is_none() {
        missing.push("docker CLI");
    }
    if !missing.is_empty() {
        println!(
            "SKIP: not installed: {missing:?} (apt-get install docker.io busybox-static runc)"
        );
        return;
    }
    let id = std::process::id() % 100_000;
    // Short path: unix socket paths are limited to 108 bytes.
    let dir = PathBuf::from(format!("/tmp/bpd{id}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut stack = Stack {
        dir: dir.clone(),
        bridge: format!("bpbr{id}"),
        containerd: None,
        dockerd: None,
    };
    // Our own bridge, so the test never touches a docker0 someone else uses.
    for args in [
        format!("link add {} type bridge", stack.bridge),
        format!("addr add 10.233.{}.1/24 dev {}", id % 250, stack.bridge),
        format!("link set {} up", stack.bridge),
    ] {
        let st = Command::new("ip")
            .args(args.split_whitespace())
            .status()
            .unwrap();
        assert!(st.success(), "ip {args}");
    }
    std::fs::write(dir.join("containerd.toml"), "version = 2\n").unwrap();
    let log = |name: &str| Stdio::from(std::fs::File::create(dir.join(name)).unwrap());
    stack.containerd = Some(
        Command::new("/usr/bin/containerd")
            .arg("--config")
            .arg(dir.join("containerd.toml"))
            .arg("--address")
            .arg(dir.join("containerd.sock"))
            .arg("--root")
            .arg(dir.join("containerd-root"))
            .arg("--state")
            .arg(dir.join("containerd-state"))
            .stdout(log("containerd.log"))
            .stderr(log("containerd.err"))
            .spawn()
            .unwrap(),
    );
    wait_for("containerd", Duration::from_secs(30), || {
        dir.join("containerd.sock").exists()
    });
    std::fs::write(
        dir.join("daemon.json"),
        format!("{{\"userland-proxy-path\": \"{BIN}\"}}\n"),
    )
    .unwrap();
    stack.dockerd = Some(
        Command::new("/usr/sbin/dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .arg("--containerd")
            .arg(dir.join("containerd.sock"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge",
                &stack.bridge,
            ])
            .stdout(log("dockerd.log"))
            .stderr(log("dockerd.err"))
            .spawn()
            .unwrap(),
    );
    let dockerd_pid = stack.dockerd.as_ref().unwrap().id();
    wait_for("dockerd", Duration::from_secs(60), || {
        stack.docker(&["version"]).status.success()
    });

    let tar = busybox_tar(&dir);
    stack.docker_ok(&["import", tar.to_str().unwrap(), "busybox:local"]);
    let port = dead_port("127.0.0.1").port();
    let publish = format!("127.0.0.1:{port}:5000");
    stack.docker_ok(&[
        "run",
        "-d",
        "--name",
        "berth-proxy-test",
        "-p",
        &publish,
        "busybox:local",
        "nc",
        "-ll",
        "-p",
        "5000",
        "-e",
        "cat",
    ]);

    // dockerd started berth-proxy (as docker-proxy) for the published port.
    let mut proxy_pid = None;
    wait_for("berth-proxy under dockerd", Duration::from_secs(20), || {
        proxy_pid = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|&pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                cmd.starts_with(BIN)
                    && cmd.contains(&format!("-host-port {port}"))
                    && ppid(pid) == Some(dockerd_pid)
            });
        proxy_pid.is_some()
    });
    println!(
        "dockerd {dockerd_pid} runs berth-proxy pid {} for 127.0.0.1:{port}",
        proxy_pid.unwrap()
    );

    // Bytes through: host 127.0.0.1:port -> berth-proxy -> container nc -e cat -> back.
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let mut echoed = Vec::new();
    wait_for(
        "echo through the published port",
        Duration::from_secs(30),
        || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut w = s.try_clone().unwrap();
            let p = payload.clone();
            let writer = std::thread::spawn(move || {
                let _ = w.write_all(&p);
                let _ = w.shutdown(Shutdown::Write);
            });
            echoed.clear();
            let _ = s.read_to_end(&mut echoed);
            let _ = writer.join();
            echoed.len() == payload.len()
        },
    );
    assert!(echoed == payload, "bytes changed on the way through");

    // Unpublishing stops berth-proxy: dockerd signals it when the container goes.
    stack.docker_ok(&["rm", "-f", "berth-proxy-test"]);
    let pid = proxy_pid.unwrap();
    wait_for(
        "berth-proxy exit after docker rm",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z "))
        },
    );
}
