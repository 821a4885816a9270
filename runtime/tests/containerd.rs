//! The drop-in proof: Debian's containerd 1.6, started by this test on its own socket and state
//! directories, runs containers through its runc shim with berth-runtime as the runc binary
//! (`ctr run --runc-binary`): output, exit codes, exec, ps, kill, delete.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");

struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    namespace: String,
}

impl Containerd {
    fn start() -> Containerd {
        assert!(
            Path::new("/usr/bin/containerd").exists() && Path::new("/usr/bin/ctr").exists(),
            "this test needs Debian's containerd (apt-get install docker.io or containerd)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{ttrpc}\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_apparmor = true\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
            ttrpc = d.join("ttrpc.sock").display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("/usr/bin/containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd {
            dir,
            child,
            namespace: format!("berth-test-{}", std::process::id()),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("/usr/bin/ctr");
        cmd.arg("-a")
            .arg(self.dir.path().join("containerd.sock"))
            .args(["-n", &self.namespace])
            .args(args)
            .stdin(Stdio::null());
        run_bounded(cmd, Duration::from_secs(30))
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in ["bt-run", "bt-detached"] {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["task", "delete", "-f", id]);
            let _ = self.ctr(&["container", "delete", id]);
        }
        // SAFETY: plain kill(2) of the containerd we started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Shims outlive containerd by design; ours have exited with their tasks above.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("state"))
            .stderr(Stdio::null())
            .status();
        // The namespace's parent cgroup (/<namespace>/<id> for each task) stays after the
        // tasks, as with runc: remove it in every hierarchy, or the test leaves cgroups behind
        // (which also keep hugetlb from moving off cgroup2 for perf/runtime.sh's crun).
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in rd.flatten() {
                let _ = std::fs::remove_dir(h.path().join(&self.namespace));
            }
        }
    }
}

/// Run a command with a deadline, killing it past the deadline.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("{cmd:?} took longer than {limit:?}: {o:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn image(dir: &Path) -> PathBuf {
    let out = dir.join("busybox-oci.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image");
    let st = Command::new("python3")
        .arg(script)
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    out
}

#[test]
fn containerd_runs_containers_with_berth_runtime_as_runc() {
    let c = Containerd::start();
    let img = image(c.dir.path());
    c.ok(&["image", "import", img.to_str().unwrap()]);
    let image = "docker.io/library/busybox:local";

    // Foreground: output and exit code through containerd-shim-runc-v2 → berth-runtime.
    let o = c.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        BIN,
        image,
        "bt-run",
        "sh",
        "-c",
        "echo hello through containerd; exit 3",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello through containerd\n",
        "{o:?}\n{}",
        c.log()
    );
    assert_eq!(o.status.code(), Some(3));

    // Detached, then exec, ps, kill, delete.
    c.ok(&[
        "run",
        "-d",
        "--runc-binary",
        BIN,
        image,
        "bt-detached",
        "sleep",
        "100",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.ok(&["task", "ls"]).contains("RUNNING") {
        assert!(Instant::now() < deadline, "{}", c.ok(&["task", "ls"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "bt-detached",
        "sh",
        "-c",
        "echo exec-out; exit 4",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "exec-out\n", "{o:?}");
    assert_eq!(o.status.code(), Some(4));
    let ps = c.ok(&["task", "ps", "bt-detached"]);
    assert_eq!(ps.lines().count(), 2, "{ps}");
    c.ok(&["task", "kill", "-s", "SIGKILL", "bt-detached"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.ok(&["task", "ls"]).contains("STOPPED") {
        assert!(Instant::now() < deadline, "{}", c.ok(&["task", "ls"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    c.ok(&["task", "delete", "bt-detached"]);
    c.ok(&["container", "delete", "bt-detached"]);
    assert!(!c.ok(&["task", "ls"]).contains("bt-detached"));
}
