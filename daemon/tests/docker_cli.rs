//! The real docker CLI 28.2.2 against berthd: the everyday commands, end to end.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::Berthd;
use serde_json::json;

#[test]
fn version_and_info_negotiate() {
    let d = Berthd::start();
    let v = d.ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Client.APIVersion}}",
    ]);
    assert_eq!(v.trim(), "1.50 1.50");
    let info = d.ok(&["info", "--format", "{{.Driver}} {{.Images}} {{.OSType}}"]);
    assert_eq!(info.trim(), "overlay2 1 linux");
}

#[test]
fn run_rm_prints_output_and_passes_exit_codes() {
    let d = Berthd::start();
    let out = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; echo $HOSTNAME",
    ]);
    assert!(out.starts_with("out\n"), "{out:?}");
    let o = d.docker(&["run", "--rm", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = d.docker(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(
        o.status.code(),
        Some(127),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // --rm removed them all.
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn stderr_stays_separate() {
    let d = Berthd::start();
    let o = d.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "to-out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "to-err\n");
}

#[test]
fn run_detached_logs_ps_inspect_stop_rm() {
    let d = Berthd::start();
    let id = d.ok(&["run", "-d", "--name", "web", "-e", "GREETING=hi", "busybox", "sh", "-c", "echo $GREETING; echo oops >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let ps = d.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Up"), "{ps}");
    assert!(d.eventually(Duration::from_secs(5), || d.ok(&["logs", "web"]) == "hi\n"));
    let o = d.docker(&["logs", "web"]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "oops\n");
    let running = d.ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.Running}} {{.Name}} {{.Config.Image}}",
        "web",
    ]);
    assert_eq!(running.trim(), "running true /web busybox");
    // Names, id prefixes and full ids all find it.
    assert_eq!(
        d.ok(&["inspect", "--format", "{{.Id}}", &id[..8]]).trim(),
        id
    );
    let o = d.docker(&["rm", "web"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("container is running"));
    d.ok(&["stop", "web"]);
    assert_eq!(
        d.ok(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            "web"
        ])
        .trim(),
        "exited 0"
    );
    assert_eq!(d.ok(&["logs", "web"]), "hi\nbye\n");
    let ps = d.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Exited (0)"), "{ps}");
    d.ok(&["rm", "web"]);
    let o = d.docker(&["inspect", "web"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such"),
        "{o:?}"
    );
}

#[test]
fn logs_follow_tail_and_timestamps() {
    let d = Berthd::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "count",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done",
    ]);
    let out = d.ok(&["logs", "-f", "count"]);
    assert_eq!(out, "line1\nline2\nline3\nline4\nline5\n");
    assert_eq!(d.ok(&["logs", "--tail", "2", "count"]), "line4\nline5\n");
    let ts = d.ok(&["logs", "-t", "--tail", "1", "count"]);
    // Nine fixed fraction digits, as dockerd prints them.
    assert!(ts.starts_with("20") && ts.ends_with("Z line5\n"), "{ts:?}");
    assert_eq!(ts.find('Z'), Some(29), "{ts:?}");
}

#[test]
fn wait_kill_and_restart() {
    let d = Berthd::start();
    // As PID 1 the program only dies of signals it handles (or SIGKILL): a trap for TERM.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "sleeper",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 143' TERM; while true; do sleep 0.1; done",
    ]);
    let waiter = d
        .cmd()
        .args(["wait", "sleeper"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    d.ok(&["kill", "sleeper"]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "137");
    d.ok(&["start", "sleeper"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Running}}", "sleeper"])
            .trim(),
        "true"
    );
    d.ok(&["kill", "-s", "TERM", "sleeper"]);
    assert_eq!(d.ok(&["wait", "sleeper"]).trim(), "143");
    d.ok(&["restart", "-t", "1", "sleeper"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Running}}", "sleeper"])
            .trim(),
        "true"
    );
    d.ok(&["rm", "-f", "sleeper"]);
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn exec_runs_inside_with_exit_codes() {
    let d = Berthd::start();
    d.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]);
    assert_eq!(d.ok(&["exec", "box", "hostname"]).trim().len(), 12);
    let o = d.docker(&["exec", "box", "sh", "-c", "echo in; exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "in\n");
    // Without a tty, stdout and stderr stay apart (multiplexed frames).
    let o = d.docker(&["exec", "box", "sh", "-c", "echo o; echo e >&2; echo o2"]);
    assert_eq!(
        (o.stdout.as_slice(), o.stderr.as_slice(), o.status.code()),
        (&b"o\no2\n"[..], &b"e\n"[..], Some(0))
    );
    // stdin through exec -i
    let mut c = d
        .cmd()
        .args(["exec", "-i", "box", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through stdin\n");
    let top = d.ok(&["top", "box"]);
    assert!(top.contains("sleep 300"), "{top}");
}

/// A directory slot's record: spaces only (or empty), as berthd makes it before a create.
fn blank_record(path: &std::path::Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.iter().all(u8::is_ascii_whitespace))
}

/// A record a create wrote (not a slot's).
fn written_record(path: &std::path::Path) -> bool {
    std::fs::read(path).is_ok_and(|b| !b.iter().all(u8::is_ascii_whitespace))
}

/// One Engine API request over berthd's socket (curl): the status and the body.
fn api(d: &Berthd, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut c = std::process::Command::new("curl");
    c.arg("-s")
        .arg("--unix-socket")
        .arg(&d.sock)
        .args(["-X", method, "-w", "\n%{http_code}"]);
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = c.arg(format!("http://berth{path}")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn exec_user_workdir_env_and_missing_commands() {
    let d = Berthd::start();
    d.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]);
    let script = "id -u; id -g; pwd; echo $A $PATH";
    let out = d.ok(&[
        "exec", "-u", "nobody", "-w", "/tmp", "-e", "A=b", "box", "sh", "-c", script,
    ]);
    assert_eq!(
        out,
        "65534\n65534\n/tmp\nb /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    assert_eq!(
        d.ok(&["exec", "-u", "1000:1001", "box", "sh", "-c", "id -u; id -g"]),
        "1000\n1001\n"
    );
    // The container's own user and directory otherwise.
    assert_eq!(d.ok(&["exec", "box", "sh", "-c", "id -u; pwd"]), "0\n/\n");
    // A user the container does not know, a program it does not have: dockerd's code.
    let o = d.docker(&["exec", "-u", "nosuchuser", "box", "true"]);
    assert_eq!(o.status.code(), Some(126), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("unable to find user nosuchuser"),
        "{o:?}"
    );
    // dockerd records 126 for any exec that could not start (run's 127 is not used).
    let o = d.docker(&["exec", "box", "no-such-command"]);
    assert_eq!(o.status.code(), Some(126), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no-such-command"),
        "{o:?}"
    );
}

/// Exec output has no log to fall back on: a reader slower than the process gets every
/// byte (the process waits), and stdin carries large input whole.
#[test]
fn exec_streams_large_output_and_input_whole() {
    let d = Berthd::start();
    d.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]);
    let o = d.docker(&["exec", "box", "head", "-c", "30000000", "/dev/zero"]);
    assert_eq!((o.stdout.len(), o.status.code()), (30_000_000, Some(0)));
    let data: Vec<u8> = (0..6_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut c = d
        .cmd()
        .args(["exec", "-i", "box", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let feed = {
        let data = data.clone();
        std::thread::spawn(move || stdin.write_all(&data).unwrap())
    };
    let out = c.wait_with_output().unwrap();
    feed.join().unwrap();
    assert!(out.stdout == data, "{} bytes back", out.stdout.len());
}

#[test]
fn exec_detached_and_its_events() {
    let d = Berthd::start();
    let since = (unix_now() - 1).to_string();
    d.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]);
    d.ok(&[
        "exec",
        "-d",
        "box",
        "sh",
        "-c",
        "sleep 0.3; echo later > /tmp/d; exit 6",
    ]);
    assert!(d.eventually(Duration::from_secs(10), || {
        d.docker(&["exec", "box", "cat", "/tmp/d"]).stdout == b"later\n"
    }));
    let until = (unix_now() + 1).to_string();
    let ev = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=exec_die",
        "--format",
        "{{.Action}} {{index .Actor.Attributes \"exitCode\"}}",
    ]);
    assert!(ev.lines().any(|l| l == "exec_die 6"), "{ev}");
    let ev = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{.Action}}",
    ]);
    for want in [
        "exec_create: sh -c sleep 0.3; echo later > /tmp/d; exit 6",
        "exec_start: sh -c sleep 0.3; echo later > /tmp/d; exit 6",
    ] {
        assert!(ev.lines().any(|l| l == want), "{want} missing from {ev}");
    }
}

#[test]
fn exec_into_a_stopped_container_is_refused() {
    let d = Berthd::start();
    d.ok(&["create", "--name", "idle", "busybox", "true"]);
    let o = d.docker(&["exec", "idle", "true"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not running"), "{err}");
    let (code, body) = api(
        &d,
        "POST",
        "/containers/idle/exec",
        Some(r#"{"Cmd":["true"]}"#),
    );
    assert_eq!(code, 409, "{body}");
    // An exec created while it ran cannot start once it has stopped.
    d.ok(&["run", "-d", "--name", "brief", "busybox", "sleep", "300"]);
    let (code, body) = api(
        &d,
        "POST",
        "/containers/brief/exec",
        Some(r#"{"Cmd":["true"]}"#),
    );
    assert_eq!(code, 201, "{body}");
    let id: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = id["Id"].as_str().unwrap();
    d.ok(&["kill", "brief"]);
    let (code, body) = api(
        &d,
        "POST",
        &format!("/exec/{id}/start"),
        Some(r#"{"Detach":true}"#),
    );
    assert_eq!(code, 409, "{body}");
    let (code, _) = api(&d, "GET", "/exec/0123/json", None);
    assert_eq!(code, 404);
}

/// `docker exec -it` under a pty (`script`): a tty inside, the CLI's size, a resize sent
/// through the API seen by the process, and the exit code.
#[test]
fn exec_interactive_under_a_pty_with_resize() {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let d = Berthd::start();
    d.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]);
    let mut c = std::process::Command::new("script")
        .args([
            "-qec",
            "stty rows 33 cols 111; docker exec -it box sh",
            "/dev/null",
        ])
        .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        let mut out = c.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let text = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let mut stdin = c.stdin.take().unwrap();
    stdin
        .write_all(b"tty && echo is-a-tty; echo size-$(stty size)-\n")
        .unwrap();
    assert!(
        d.eventually(Duration::from_secs(20), || text().contains("size-33 111-")),
        "{}",
        text()
    );
    assert!(text().contains("/dev/pts/") && text().contains("is-a-tty"));
    let ids = d.ok(&["inspect", "-f", "{{range .ExecIDs}}{{.}} {{end}}", "box"]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let (code, body) = api(
        &d,
        "POST",
        &format!("/exec/{}/resize?h=40&w=120", ids[0]),
        None,
    );
    assert_eq!(code, 200, "{body}");
    stdin
        .write_all(b"echo now-$(stty size)-; exit 4\n")
        .unwrap();
    let status = c.wait().unwrap();
    reader.join().unwrap();
    assert!(text().contains("now-40 120-"), "{}", text());
    assert_eq!(status.code(), Some(4), "{}", text());
    let (code, body) = api(&d, "GET", &format!("/exec/{}/json", ids[0]), None);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((&v["Running"], &v["ExitCode"]), (&json!(false), &json!(4)));
    assert!(v["Pid"].as_i64().unwrap() > 0, "{v}");
}

#[test]
fn exec_survives_berthd_kill_9() {
    let mut d = Berthd::start();
    d.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]);
    d.ok(&[
        "exec",
        "-d",
        "box",
        "sh",
        "-c",
        "sleep 1.5; echo outlived > /tmp/s; exit 3",
    ]);
    let id = d.ok(&["inspect", "-f", "{{range .ExecIDs}}{{.}}{{end}}", "box"]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id:?}");
    d.kill9();
    d.spawn();
    // Reported by the shim after the restart; then its end is recorded.
    let (code, body) = api(&d, "GET", &format!("/exec/{id}/json"), None);
    assert_eq!(code, 200, "{body}");
    assert!(d.eventually(Duration::from_secs(10), || {
        let (_, body) = api(&d, "GET", &format!("/exec/{id}/json"), None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["Running"] == json!(false) && v["ExitCode"] == json!(3)
    }));
    assert_eq!(d.ok(&["exec", "box", "cat", "/tmp/s"]), "outlived\n");
}

#[test]
fn run_interactive_under_a_pty() {
    let d = Berthd::start();
    let mut c = std::process::Command::new("script")
        .args(["-qec", "docker run -it --rm busybox sh", "/dev/null"])
        .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    stdin.write_all(b"tty && echo is-a-tty; exit 3\n").unwrap();
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/dev/pts/") && text.contains("is-a-tty"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(3), "{text}");
}

#[test]
fn stdin_reaches_run_i() {
    let d = Berthd::start();
    let mut c = d
        .cmd()
        .args(["run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"a line\n").unwrap();
    let out = c.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a line\ndone\n");
}

#[test]
fn cp_both_ways_and_export() {
    let d = Berthd::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "files",
        "busybox",
        "sh",
        "-c",
        "echo inside > /tmp/f; sleep 300",
    ]);
    assert!(d.eventually(Duration::from_secs(5), || d
        .docker(&["exec", "files", "test", "-f", "/tmp/f"])
        .status
        .success()));
    let host = tempfile::tempdir().unwrap();
    let dst = host.path().join("got");
    d.ok(&["cp", "files:/tmp/f", dst.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&dst).unwrap(), "inside\n");
    let src = host.path().join("up");
    std::fs::write(&src, "from host\n").unwrap();
    d.ok(&["cp", src.to_str().unwrap(), "files:/tmp/up"]);
    assert_eq!(d.ok(&["exec", "files", "cat", "/tmp/up"]), "from host\n");
    // A symlink in the container never leads cp to the host.
    d.ok(&["exec", "files", "ln", "-s", "/", "/tmp/hostroot"]);
    let o = d.docker(&[
        "cp",
        "files:/tmp/hostroot/etc/hostname",
        host.path().join("x").to_str().unwrap(),
    ]);
    if o.status.success() {
        let got = std::fs::read_to_string(host.path().join("x")).unwrap();
        let hosts = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        assert!(
            got != hosts || got.trim().len() == 12,
            "copied the host's file: {got:?}"
        );
    }
    let tar = host.path().join("export.tar");
    d.ok(&["export", "-o", tar.to_str().unwrap(), "files"]);
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(
        names
            .lines()
            .any(|l| l.trim_start_matches("./") == "bin/busybox"),
        "{names}"
    );
    assert!(
        names
            .lines()
            .any(|l| l.trim_start_matches("./") == "tmp/up"),
        "{names}"
    );
}

#[test]
fn volumes_persist_across_containers() {
    let d = Berthd::start();
    d.ok(&["volume", "create", "data"]);
    assert!(d.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "data"));
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "data:/data:ro",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "kept\n"
    );
    let o = d.docker(&[
        "run",
        "--rm",
        "-v",
        "data:/data:ro",
        "busybox",
        "sh",
        "-c",
        "echo x > /data/g",
    ]);
    assert!(!o.status.success());
    d.ok(&[
        "run",
        "-d",
        "--name",
        "user",
        "-v",
        "data:/data",
        "busybox",
        "sleep",
        "300",
    ]);
    let o = d.docker(&["volume", "rm", "data"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("in use"),
        "{o:?}"
    );
    d.ok(&["rm", "-f", "user"]);
    d.ok(&["volume", "rm", "data"]);
    assert!(!d.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "data"));
}

#[test]
fn rename_pause_stats_and_events() {
    let d = Berthd::start();
    let since = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 1
    );
    d.ok(&["run", "-d", "--name", "one", "busybox", "sleep", "300"]);
    d.ok(&["rename", "one", "two"]);
    assert!(d.docker(&["inspect", "one"]).status.code() != Some(0));
    d.ok(&["pause", "two"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "two"]).trim(),
        "paused"
    );
    d.ok(&["unpause", "two"]);
    let stats = d.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "two",
    ]);
    assert_eq!(stats.trim(), "two 1");
    d.ok(&["rm", "-f", "two"]);
    let until = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1
    );
    let ev = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=container",
        "--format",
        "{{.Action}}",
    ]);
    let actions: Vec<&str> = ev.lines().collect();
    for want in [
        "create", "start", "rename", "pause", "unpause", "kill", "die", "destroy",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
}

#[test]
fn images_tag_save_load_rmi() {
    let d = Berthd::start();
    d.ok(&["tag", "busybox", "mine/bb:v1"]);
    let imgs = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        imgs.contains("busybox:latest") && imgs.contains("mine/bb:v1"),
        "{imgs}"
    );
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("save.tar");
    d.ok(&["save", "-o", tar.to_str().unwrap(), "mine/bb:v1"]);
    d.ok(&["rmi", "mine/bb:v1"]);
    assert!(!d
        .ok(&["images", "--format", "{{.Repository}}"])
        .contains("mine/bb"));
    let out = d.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert!(out.contains("mine/bb:v1"), "{out}");
    assert_eq!(
        d.ok(&["run", "--rm", "mine/bb:v1", "echo", "loaded"]),
        "loaded\n"
    );
    // An image in use by a container cannot be removed without force.
    d.ok(&["create", "--name", "holder", "mine/bb:v1", "true"]);
    d.ok(&["tag", "mine/bb:v1", "only:one"]);
    d.ok(&["rmi", "mine/bb:v1"]);
    d.ok(&["rmi", "busybox"]);
    let o = d.docker(&["rmi", "only:one"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("conflict")
            || String::from_utf8_lossy(&o.stderr).contains("in use")
            || String::from_utf8_lossy(&o.stderr).contains("being used"),
        "{o:?}"
    );
    d.ok(&["rm", "holder"]);
    d.ok(&["rmi", "only:one"]);
}

#[test]
fn bad_requests_get_clear_errors() {
    let d = Berthd::start();
    let o = d.docker(&["run", "--rm", "nosuchimage:v9", "true"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nosuchimage"), "{err}");
    let o = d.docker(&["run", "--rm", "-p", "8080:80", "busybox", "true"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bridge networking"),
        "{o:?}"
    );
    let o = d.docker(&["run", "--rm", "--cgroup-parent", "/mine", "busybox", "true"]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--cgroup-parent"),
        "{o:?}"
    );
    d.ok(&["create", "--name", "dup", "busybox", "true"]);
    let o = d.docker(&["create", "--name", "dup", "busybox", "true"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already in use"),
        "{o:?}"
    );
    let o = d.docker(&["load", "-i", "/etc/hostname"]);
    assert!(!o.status.success());
}

#[test]
fn containers_survive_berthd_kill_9() {
    let mut d = Berthd::start();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "survivor",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 40 ]; do echo tick$i; i=$((i+1)); sleep 0.05; done; sleep 300",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "short",
        "busybox",
        "sh",
        "-c",
        "sleep 0.5; exit 4",
    ]);
    d.kill9();
    std::thread::sleep(Duration::from_millis(2500));
    d.spawn();
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "survivor"])
            .trim(),
        "running"
    );
    let logs = d.ok(&["logs", "survivor"]);
    let want: String = (0..40).map(|i| format!("tick{i}\n")).collect();
    assert_eq!(logs, want);
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "short"
        ])
        .trim(),
        "exited 4"
    );
    d.ok(&["stop", "-t", "1", "survivor"]);
}

/// `docker create` prepares the container ahead of its start (a shim holds it before its
/// program): `rm` of a never-started container, a berthd restart in between, and a later
/// start must all behave as if nothing had run; `run --rm` leaves no files behind.
#[test]
fn created_containers_prepared_ahead_and_rm_leaves_nothing() {
    let mut d = Berthd::start();
    let shim_dir = d.exec_root().join("shims");
    let containers = d.data_root().join("containers");
    // Shims of containers; a directory slot's parked container has one too (its record is
    // empty: not a container).
    let shims = || -> usize {
        let Ok(dirs) = std::fs::read_dir(&shim_dir) else {
            return 0;
        };
        let ids: Vec<String> = std::fs::read_dir(&containers)
            .map(|r| {
                r.flatten()
                    .filter(|e| written_record(&e.path().join("config.v2.json")))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        dirs.flatten()
            .filter(|s| {
                let prefix = s.file_name().to_string_lossy().into_owned();
                ids.iter().any(|id| id.starts_with(&prefix))
            })
            .count()
    };
    // Created, never started, removed: the holding shim goes with it.
    d.ok(&["create", "--name", "never", "busybox", "true"]);
    assert!(
        d.eventually(Duration::from_secs(10), || shims() == 1),
        "the created container was not prepared ahead"
    );
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "never"])
            .trim(),
        "created"
    );
    d.ok(&["rm", "never"]);
    assert_eq!(shims(), 0, "rm left the holding shim");

    // Created, berthd killed and restarted, then started: it runs once, with its output.
    d.ok(&["create", "--name", "later", "busybox", "echo", "ran"]);
    assert!(d.eventually(Duration::from_secs(10), || shims() == 1));
    d.kill9();
    d.spawn();
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "later"])
            .trim(),
        "created"
    );
    assert_eq!(
        shims(),
        0,
        "restart kept a holding shim for a created container"
    );
    assert_eq!(d.ok(&["start", "-a", "later"]), "ran\n");
    assert_eq!(d.ok(&["logs", "later"]), "ran\n");
    d.ok(&["rm", "later"]);

    // run --rm: the name is free at once and every file goes.
    for _ in 0..3 {
        assert_eq!(
            d.ok(&["run", "--rm", "--name", "again", "busybox", "echo", "x"]),
            "x\n"
        );
    }
    // What is left are directory slots made ahead of the next creates: a record directory
    // with an empty record, and its overlay directory.
    let slot = |id: &std::ffi::OsStr| {
        let record = d
            .data_root()
            .join("containers")
            .join(id)
            .join("config.v2.json");
        blank_record(&record)
    };
    let empty = |sub: &str| {
        std::fs::read_dir(d.data_root().join(sub))
            .map(|r| r.flatten().all(|e| slot(&e.file_name())))
            .unwrap_or(true)
    };
    assert!(
        d.eventually(Duration::from_secs(10), || empty("containers")
            && empty("overlay")
            && shims() == 0),
        "run --rm left files behind"
    );
}

/// Every container with its own network stack gets a namespace of its own with loopback up
/// (127.0.0.1 and ::1, as Docker gives); `--network host` shares the host's.
#[test]
fn network_namespaces_have_loopback_up() {
    let d = Berthd::start();
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "addr",
        "show",
        "lo",
    ]);
    assert!(
        out.contains("UP") && out.contains("inet 127.0.0.1/8"),
        "{out}"
    );
    let ns = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "readlink", "/proc/self/ns/net"]);
        d.ok(&a).trim().to_string()
    };
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    let (a, b) = (ns(&[]), ns(&["--network", "none"]));
    assert_ne!(a, b);
    assert_ne!(a, host.display().to_string());
    assert_eq!(ns(&["--network", "host"]), host.display().to_string());
    // A server on the container's loopback answers a client in the same container.
    let out = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "nc -l -p 7000 > /tmp/got & i=0; until echo hello | nc -w 5 127.0.0.1 7000 2>/dev/null; do i=$((i+1)); [ $i -gt 100 ] && exit 9; sleep 0.05; done; wait; cat /tmp/got",
    ]);
    assert_eq!(out, "hello\n");
}

/// Containers run under berthd's default seccomp filter, which follows their capabilities;
/// `seccomp=unconfined`, `--privileged` and a profile file of the user's change it, and a
/// malformed profile is refused before anything runs.
#[test]
fn seccomp_default_unconfined_privileged_and_custom() {
    let d = Berthd::start();
    let status = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "grep", "^Seccomp:", "/proc/self/status"]);
        d.ok(&a)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(status(&[]), "2");
    assert_eq!(status(&["--security-opt", "seccomp=unconfined"]), "0");
    assert_eq!(status(&["--privileged"]), "0");

    // unshare is denied by the filter without CAP_SYS_ADMIN, allowed with it.
    let o = d.docker(&["run", "--rm", "busybox", "unshare", "-n", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"));
    d.ok(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "busybox",
        "unshare",
        "-n",
        "true",
    ]);
    // --privileged holds every capability berthd has, and nothing it lacks.
    d.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "unshare",
        "-n",
        "true",
    ]);

    let dir = tempfile::tempdir().unwrap();
    let prof = dir.path().join("deny-mkdir.json");
    std::fs::write(
        &prof,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", prof.display());
    let o = d.docker(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        "busybox",
        "mkdir",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Permission denied"));

    std::fs::write(&prof, r#"{"defaultAction": 7}"#).unwrap();
    let o = d.docker(&["create", "--security-opt", &opt, "busybox", "true"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("seccomp profile"),
        "{o:?}"
    );
    assert_eq!(d.ok(&["ps", "-aq"]), "");
}

/// Run-time files live on a tmpfs (berthd mounts one on an --exec-root that is on disk), the
/// container's /etc files among them; the image's init layer holds their mount points, so a
/// container that writes nothing leaves its upper dir empty.
#[test]
fn run_time_files_on_tmpfs_and_nothing_in_the_upper_dir() {
    let d = Berthd::start();
    let exec = std::ffi::CString::new(d.exec_root().to_str().unwrap()).unwrap();
    // SAFETY: statfs fills the zeroed struct; exec is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statfs(exec.as_ptr(), &mut st) }, 0);
    assert_eq!(st.f_type, libc::TMPFS_MAGIC, "exec-root is not a tmpfs");
    let id = d
        .ok(&["run", "-d", "--hostname", "h1", "busybox", "sleep", "100"])
        .trim()
        .to_string();
    assert_eq!(d.ok(&["exec", &id, "cat", "/etc/hostname"]).trim(), "h1");
    assert!(d
        .ok(&["exec", &id, "cat", "/etc/hosts"])
        .contains("127.0.0.1\tlocalhost"));
    let hosts = d.ok(&["inspect", "-f", "{{.HostsPath}}", &id]);
    assert!(
        hosts.trim().starts_with(d.exec_root().to_str().unwrap()),
        "{hosts}"
    );
    let upper = d.data_root().join("overlay").join(&id).join("upper");
    let entries: Vec<_> = std::fs::read_dir(&upper).unwrap().flatten().collect();
    assert!(entries.is_empty(), "upper dir holds {entries:?}");
    d.ok(&["rm", "-f", &id]);
}

/// Directory slots (record and overlay directories made ahead of creates, under the id the
/// container will have) are used by creates; one taken by a create that died before
/// answering (its record still empty) is removed by the next berthd, as are unused slots,
/// which it makes anew.
#[test]
fn directory_slots_are_used_and_a_dead_creates_slot_is_removed() {
    let mut d = Berthd::start();
    let id = d.ok(&["create", "busybox", "true"]).trim().to_string();
    let dir = d.data_root().join("containers").join(&id);
    // A slot's record twin and log came with it; the log is named after the container.
    assert!(dir.join(".config.v2.json.tmp").exists());
    assert!(dir.join(format!("{id}-json.log")).exists());
    let dead = "0".repeat(64);
    let dead_dir = d.data_root().join("containers").join(&dead);
    std::fs::create_dir(&dead_dir).unwrap();
    std::fs::write(dead_dir.join("config.v2.json"), "").unwrap();
    std::fs::create_dir_all(d.data_root().join("overlay").join(&dead).join("upper")).unwrap();
    d.kill9();
    d.spawn();
    // Answered once the restore is done (the socket listens from before it).
    let all = d.ok(&["ps", "-aq", "--no-trunc"]);
    assert!(!dead_dir.exists(), "the dead create's slot stayed");
    assert!(!d.data_root().join("overlay").join(&dead).exists());
    assert_eq!(all.trim(), id, "{all}");
    d.ok(&["rm", &id]);
}

/// The slots (see `directory_slots_are_used...`) with their overlay mounted: ids under
/// `<exec-root>/rootfs` whose record is still empty.
fn mounted_slots(d: &Berthd) -> Vec<String> {
    let rootfs = d.exec_root().join("rootfs").display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter_map(|mp| mp.strip_prefix(&rootfs)?.strip_prefix('/'))
        .filter(|id| {
            let rec = d
                .data_root()
                .join("containers")
                .join(id)
                .join("config.v2.json");
            blank_record(&rec)
        })
        .map(str::to_string)
        .collect()
}

/// Slots made after a create are mounted for its image: the next create of that image takes
/// a root already mounted, a create of another image gets its own root, removing an image
/// unmounts every slot, and a stopped berthd leaves no slot behind (directories, mounts,
/// cgroups).
#[test]
fn slots_are_mounted_ahead_for_the_last_image() {
    let mut d = Berthd::start();
    d.ok(&["run", "--rm", "busybox", "true"]);
    let wait_mounted = |d: &Berthd| {
        assert!(
            // Slots are made in the background: on a busy machine (tests in parallel), late.
            d.eventually(Duration::from_secs(30), || !mounted_slots(d).is_empty()),
            "no slot was mounted: {}",
            common::tail(&d.log(), 20)
        )
    };
    wait_mounted(&d);
    // A container like that run's is parked in one (in the background): the create takes
    // that slot, mounted ahead. (Slots keep coming meanwhile, in the background too.)
    assert!(d.eventually(Duration::from_secs(30), || !parked(&d).is_empty()));
    let ahead = mounted_slots(&d);
    let id = d.ok(&["create", "busybox", "true"]).trim().to_string();
    assert!(
        ahead.contains(&id),
        "{id} was not one of the mounted slots {ahead:?}"
    );

    // Another image: busybox plus /marker. A slot mounted for busybox must not serve it,
    // nor one mounted for it a busybox container.
    let other = d.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("marker"), "other\n").unwrap();
    let tar = d.dir.path().join("other.tar");
    std::fs::copy(common::busybox_tar(), &tar).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&other)
        .arg("-rf")
        .arg(&tar)
        .arg("./marker")
        .status()
        .unwrap();
    assert!(st.success());
    d.ok(&["import", tar.to_str().unwrap(), "other:1"]);
    wait_mounted(&d);
    assert_eq!(
        d.ok(&["run", "--rm", "other:1", "cat", "/marker"]),
        "other\n"
    );
    wait_mounted(&d);
    let o = d.docker(&["run", "--rm", "busybox", "cat", "/marker"]);
    assert_eq!(o.status.code(), Some(1), "busybox saw /marker: {o:?}");
    d.ok(&["rm", &id]);

    wait_mounted(&d);
    d.ok(&["rmi", "other:1"]);
    assert_eq!(mounted_slots(&d), Vec::<String>::new());

    // Mounted again for the next create's image.
    d.ok(&["run", "--rm", "busybox", "true"]);
    wait_mounted(&d);
    let slots: Vec<String> = std::fs::read_dir(d.data_root().join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!slots.is_empty());
    d.stop();
    let left: Vec<_> = std::fs::read_dir(d.data_root().join("containers"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "slots left: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&d.exec_root().join("rootfs").display().to_string()));
    // A container still being parked when berthd stopped is shut down by its own shim when
    // berthd's end of its pipe closes: its cgroups go a moment later.
    for id in &slots {
        for dir in ["/sys/fs/cgroup/memory/berth", "/sys/fs/cgroup/pids/berth"] {
            let cg = std::path::Path::new(dir).join(id);
            assert!(
                d.eventually(Duration::from_secs(10), || !cg.exists()),
                "{} stayed",
                cg.display()
            );
        }
    }
}

/// Slots holding a parked container, parked (berthd said so: parking runs in the
/// background, and a slot being parked is not taken).
fn parked(d: &Berthd) -> Vec<String> {
    let log = d.log();
    parking(d)
        .into_iter()
        .filter(|id| log.contains(&format!("parked a container in slot {}", &id[..12])))
        .collect()
}

/// Slots holding a parked container or one being parked: ids whose record is blank and that
/// have a shim.
fn parking(d: &Berthd) -> Vec<String> {
    let shims: Vec<String> = std::fs::read_dir(d.exec_root().join("shims"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    std::fs::read_dir(d.data_root().join("containers"))
        .unwrap()
        .flatten()
        .filter(|e| blank_record(&e.path().join("config.v2.json")))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|id| shims.iter().any(|s| id.starts_with(s.as_str())))
        .collect()
}

/// After a detached create, berthd parks a container like it in a slot; the next create
/// whose config differs only in the program (command, environment, working directory,
/// user) claims it and runs exactly that program, one that differs in more (a memory
/// limit) gets a container of its own, a missing program fails as it would anyway, and
/// neither a restart after kill -9 nor a stop leaves a parked container behind. A run with
/// stdin or a bind mount parks nothing.
#[test]
fn parked_containers_are_claimed_with_their_own_program() {
    let mut d = Berthd::start();
    let wait_parked = |d: &Berthd| {
        assert!(
            // Parking runs in the background: on a busy machine (tests in parallel), late.
            d.eventually(Duration::from_secs(30), || !parked(d).is_empty()),
            "nothing was parked: {}",
            common::tail(&d.log(), 20)
        )
    };
    let run_d = |d: &Berthd, args: &[&str]| -> (String, String) {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        let id = d.ok(&all).trim().to_string();
        let code = d.ok(&["wait", &id]).trim().to_string();
        (code, d.ok(&["logs", &id]))
    };
    // `docker run -i --rm busybox cat` with `input`: what it printed.
    let cat = |d: &Berthd, input: &[u8]| -> String {
        let mut child = d
            .cmd()
            .args(["run", "-i", "--rm", "busybox", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Not after a run with stdin (a parked shim has none to give).
    assert_eq!(cat(&d, b""), "");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        parking(&d).is_empty(),
        "a run with stdin parked a container"
    );
    // Nor a run with a bind mount (its source could change before the claim).
    let src = d.dir.path().join("bound");
    std::fs::create_dir(&src).unwrap();
    let bind = format!("{}:/bound", src.display());
    d.ok(&["run", "-d", "-v", &bind, "busybox", "true"]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        parking(&d).is_empty(),
        "a run with a bind mount parked a container"
    );

    d.ok(&["run", "-d", "busybox", "true"]);
    wait_parked(&d);
    let script = "echo $X $(pwd) $(id -u) $(hostname); exit 3";
    let (code, out) = run_d(
        &d,
        &[
            "-e",
            "X=claimed",
            "-w",
            "/tmp",
            "-u",
            "65534",
            "busybox",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(code, "3");
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields[..3], ["claimed", "/tmp", "65534"], "{out}");
    assert_eq!(fields[3].len(), 12, "hostname {out}");
    assert!(d.log().contains("parked container claimed"), "not claimed");

    // An attached run parks one too; the claimed init runs at normal priority (parking
    // ran in the background, at nice 19) in a session of its own.
    d.ok(&["run", "--rm", "busybox", "true"]);
    wait_parked(&d);
    let claims = || d.log().matches("parked container claimed").count();
    let before = claims();
    let id = d
        .ok(&["run", "-d", "busybox", "sleep", "60"])
        .trim()
        .to_string();
    assert!(
        d.eventually(Duration::from_secs(5), || claims() > before),
        "not claimed"
    );
    let pid = d
        .ok(&["inspect", "-f", "{{.State.Pid}}", &id])
        .trim()
        .to_string();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    // After "(comm) ": state is field 3, session 6, nice 19, policy 41.
    assert_eq!(fields[6 - 3], pid, "session of {pid}: {stat}");
    assert_eq!(fields[19 - 3], "0", "nice of {pid}: {stat}");
    assert_eq!(fields[41 - 3], "0", "scheduling policy of {pid}: {stat}");
    d.ok(&["rm", "-f", &id]);

    // A run with stdin does not claim it (the parked shim has none to give).
    wait_parked(&d);
    assert_eq!(cat(&d, b"through stdin\n"), "through stdin\n");
    d.ok(&["run", "-d", "busybox", "true"]);

    // Parked like that run, without its arguments and environment.
    wait_parked(&d);
    for id in parked(&d) {
        let bundle = d.exec_root().join("containers").join(&id);
        let config = std::fs::read_to_string(bundle.join("config.json")).unwrap();
        assert!(!config.contains("X=claimed"), "{config}");
        assert!(!config.contains("$(pwd)"), "{config}");
    }
    let (_, limit) = run_d(
        &d,
        &[
            "-m",
            "64m",
            "busybox",
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ],
    );
    assert_eq!(limit.trim(), "67108864");
    assert!(d
        .log()
        .contains("differs from the parked container's: linux.resources"));

    // Parked like the last one (with the limit), claimed, and the program is missing.
    wait_parked(&d);
    let o = d.docker(&["run", "-d", "-m", "64m", "busybox", "no-such-program"]);
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("executable file not found"));
    assert!(d.log().contains("claiming the parked container"));

    // kill -9 with a container parked: its shim sees berthd's end of its pipe close and
    // shuts it down by itself; the restarted berthd removes the slot.
    d.ok(&["run", "-d", "busybox", "true"]);
    wait_parked(&d);
    let before = parked(&d);
    d.kill9();
    for id in &before {
        let sock = d
            .exec_root()
            .join("shims")
            .join(&id[..16])
            .join("shim.sock");
        assert!(
            d.eventually(Duration::from_secs(10), || !sock.exists()),
            "the parked shim of {id} outlived berthd"
        );
    }
    d.spawn();
    d.ok(&["ps"]);
    for id in &before {
        assert!(
            !d.data_root().join("containers").join(id).exists(),
            "slot {id} stayed"
        );
        let shim = d.exec_root().join("shims").join(&id[..16]);
        assert!(!shim.exists(), "parked shim {id} stayed");
    }
    // A stop, too.
    d.ok(&["run", "-d", "busybox", "true"]);
    wait_parked(&d);
    let before = parked(&d);
    d.stop();
    for id in &before {
        assert!(
            !d.data_root().join("containers").join(id).exists(),
            "slot {id} stayed"
        );
        let cg = std::path::Path::new("/sys/fs/cgroup/pids/berth").join(id);
        assert!(!cg.exists(), "{} stayed", cg.display());
    }
}

/// A removed container that wrote nothing to its filesystem leaves its directories as a
/// slot for the next create, emptied; one that wrote leaves nothing.
#[test]
fn removed_containers_directories_become_empty_slots() {
    use std::os::unix::fs::MetadataExt;
    let d = Berthd::start();
    let containers = d.data_root().join("containers");
    let log_of = |id: &str| containers.join(id).join(format!("{id}-json.log"));
    // `docker run --name NAME busybox ARGS...`, then `docker rm NAME`: its id and the inode
    // of its log, which a slot made from its directories keeps.
    let run_rm = |name: &str, args: &[&str]| -> (String, u64) {
        let mut all = vec!["run", "--name", name, "busybox"];
        all.extend_from_slice(args);
        d.ok(&all);
        let id = d.ok(&["inspect", "-f", "{{.Id}}", name]).trim().to_string();
        let ino = std::fs::metadata(log_of(&id)).unwrap().ino();
        d.ok(&["rm", name]);
        (id, ino)
    };
    let (id, ino) = run_rm("quiet", &["echo", "secret-output"]);
    assert!(!containers.join(&id).exists());
    let slots: Vec<String> = std::fs::read_dir(&containers)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let reused = slots
        .iter()
        .find(|s| std::fs::metadata(log_of(s)).is_ok_and(|m| m.ino() == ino))
        .unwrap_or_else(|| panic!("no slot took the directories of {id}: {slots:?}"));
    // Emptied; the record blank (spaces, as a slot's is made).
    for f in std::fs::read_dir(containers.join(reused)).unwrap() {
        let path = f.unwrap().path();
        if path.ends_with("config.v2.json") {
            assert!(blank_record(&path), "{path:?} kept data");
        } else {
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                0,
                "{path:?} kept data"
            );
        }
    }
    assert!(d
        .data_root()
        .join("overlay")
        .join(reused)
        .join("upper")
        .is_dir());

    // A container that changed its root's mode leaves no slot: the next root is 0755.
    d.ok(&["run", "--name", "chmod", "busybox", "chmod", "777", "/"]);
    d.ok(&["rm", "chmod"]);
    for _ in 0..3 {
        let mode = d.ok(&["run", "--rm", "busybox", "stat", "-c", "%a", "/"]);
        assert_eq!(mode.trim(), "755");
    }

    let (_, ino) = run_rm("wrote", &["sh", "-c", "echo x > /f"]);
    for e in std::fs::read_dir(&containers).unwrap() {
        let s = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            std::fs::metadata(log_of(&s)).map_or(true, |m| m.ino() != ino),
            "the directories of a container that wrote became slot {s}"
        );
    }
}

/// As under Docker, a container sees its own cgroups at /sys/fs/cgroup, read-only, with its
/// limits (v1 and hybrid hosts: one directory per hierarchy; pure v2: the unified files).
#[test]
fn cgroups_are_visible_inside_read_only() {
    let d = Berthd::start();
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
                  mkdir /sys/fs/cgroup/x 2>/dev/null && echo writable || echo read-only";
    let out = d.ok(&["run", "--rm", "-m", "64m", "busybox", "sh", "-c", script]);
    assert_eq!(out, "67108864\nread-only\n");
}
