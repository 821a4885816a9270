//! The shim as a container's parent: exit codes and signals recorded (also in exit.json),
//! orphans reaped, survival when whoever started it is killed, --hold/start, shutdown.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_shim::protocol::{self, Client, Request, Response, Status};
use common::{alive, eventually, start, try_start, Bundle};

#[test]
fn exit_code_is_recorded_atomically() {
    let b = Bundle::sh("echo bye; exit 3");
    let s = start(&b, &[]);
    let e = s.wait();
    assert_eq!((e.exit_code, e.signal, e.oom_killed), (3, None, false));
    assert!(
        e.exited_at.ends_with('Z') && e.exited_at.len() == 30,
        "{e:?}"
    );
    assert_eq!(protocol::read_exit(s.dir()).unwrap(), Some(e.clone()));
    assert!(!s.dir().join(".exit.json.tmp").exists());
    let st = s.state();
    assert_eq!((st.status, st.exit), (Status::Stopped, Some(e)));
    // The output is in the log before wait answers.
    assert_eq!(s.text("stdout"), "bye\n");
}

#[test]
fn a_signal_is_128_plus_its_number() {
    let b = Bundle::new(&["sleep", "100"]);
    let s = start(&b, &[]);
    assert_eq!(s.state().status, Status::Running);
    s.kill(libc::SIGKILL);
    let e = s.wait();
    assert_eq!((e.exit_code, e.signal), (137, Some(9)));
    // A stopped container cannot be signalled.
    let r = s.call(&Request::Kill {
        signal: 9,
        all: false,
        exec_id: None,
    });
    assert!(matches!(r, Response::Error { .. }), "{r:?}");
}

#[test]
fn signals_reach_a_handler_and_all_reaches_every_process() {
    let b = Bundle::sh("trap 'echo term; exit 7' TERM; while :; do sleep 0.05; done");
    let s = start(&b, &[]);
    // The trap is set once the shell runs its loop.
    std::thread::sleep(Duration::from_millis(200));
    s.kill(libc::SIGTERM);
    let e = s.wait();
    assert_eq!((e.exit_code, e.signal), (7, None));
    assert_eq!(s.text("stdout"), "term\n");

    let b = Bundle::sh("sleep 100 & sleep 100");
    let s = start(&b, &[]);
    let r = s.call(&Request::Kill {
        signal: 9,
        all: true,
        exec_id: None,
    });
    assert_eq!(r, Response::Ok);
    assert_eq!(s.wait().exit_code, 137);
    let r = s.call(&Request::Kill {
        signal: 99,
        all: false,
        exec_id: None,
    });
    assert!(matches!(r, Response::Error { .. }));
}

#[test]
fn orphans_are_reaped() {
    // Without a pid namespace, a process whose parent exits is the shim's (a subreaper).
    let mut b = Bundle::sh("sleep 0.5 >/dev/null 2>&1 & echo $!; exit 0");
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "pid");
    b.save();
    let s = start(&b, &[]);
    assert_eq!(s.wait().exit_code, 0);
    let pid: i32 = s.text("stdout").trim().parse().unwrap();
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|st| {
            st.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        });
    if let Some(ppid) = ppid {
        assert_eq!(Some(ppid), s.shim_pid, "the orphan was adopted by the shim");
    }
    // Once it exits it is reaped: not left as a zombie.
    eventually(5, "the orphan to be reaped", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(s.shim_pid.is_some_and(alive));
}

#[test]
fn survives_its_starter_being_killed() {
    let b = Bundle::sh(
        "i=0; while [ $i -lt 20 ]; do echo line $i; i=$((i+1)); sleep 0.05; done; exit 5",
    );
    let state = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let id = common::unique_id("survive");
    // A stand-in daemon: its own process group, starts the shim, then lingers.
    let script = format!(
        "{} --id {id} --bundle {} --state-dir {} --runtime-root {} --hold && sleep 100",
        common::SHIM,
        b.path().display(),
        state.path().display(),
        root.path().display()
    );
    let mut daemon = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let sock = state.path().join(protocol::SOCKET);
    eventually(10, "the shim's socket", || sock.exists());
    let mut c = Client::connect(state.path()).unwrap();
    c.set_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(c.call(&Request::Start).unwrap(), Response::Ok);
    let Response::State(st) = c.call(&Request::State).unwrap() else {
        panic!()
    };
    // A client parked on wait, then gone.
    let mut waiter = Client::connect(state.path()).unwrap();
    waiter
        .set_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(waiter.call(&Request::Wait { exec_id: None }).is_err());
    drop(waiter);
    // SAFETY: kill -9 of the stand-in daemon's whole process group.
    unsafe { libc::kill(-(daemon.id() as i32), libc::SIGKILL) };
    daemon.wait().unwrap();
    drop(c);
    assert!(alive(st.shim_pid as i32) && alive(st.pid));
    // A new client finds it by its socket and reads the exit code.
    let mut c = Client::connect(state.path()).unwrap();
    c.set_timeout(Some(Duration::from_secs(10))).unwrap();
    let Response::Exited(e) = c.call(&Request::Wait { exec_id: None }).unwrap() else {
        panic!()
    };
    assert_eq!(e.exit_code, 5);
    let log = state.path().join(format!("{id}-json.log"));
    let lines: Vec<String> = common::entries(&log).into_iter().map(|(l, _)| l).collect();
    let want: Vec<String> = (0..20).map(|i| format!("line {i}\n")).collect();
    assert_eq!(lines, want);
    assert_eq!(
        c.call(&Request::Shutdown { background: false }).unwrap(),
        Response::Ok
    );
    eventually(5, "the shim to exit", || !alive(st.shim_pid as i32));
    assert!(!sock.exists());
    assert_eq!(
        protocol::read_exit(state.path())
            .unwrap()
            .unwrap()
            .exit_code,
        5
    );
}

#[test]
fn hold_starts_on_request_and_shutdown_cleans_up() {
    let b = Bundle::sh("echo first; sleep 100");
    let s = start(&b, &["--hold"]);
    assert_eq!(s.state().status, Status::Running);
    let Ok((mut stream, tty)) = s.client().attach(false, true, true).unwrap() else {
        panic!()
    };
    assert!(!tty);
    s.start_held();
    let r = s.call(&Request::Start);
    assert!(matches!(r, Response::Error { .. }), "second start: {r:?}");
    let mut p = Vec::new();
    assert_eq!(protocol::read_frame(&mut stream, &mut p).unwrap(), Some(1));
    assert_eq!(p, b"first\n");
    let shim_pid = s.shim_pid.unwrap();
    let init = s.state().pid;
    assert_eq!(
        s.call(&Request::Shutdown { background: false }),
        Response::Ok
    );
    eventually(5, "the shim to exit", || !alive(shim_pid));
    assert!(!alive(init));
    // The attached client sees the end of the stream.
    assert_eq!(common::read_frames(&mut stream), (vec![], vec![]));
    assert!(!s.runtime_root.path().join(&s.id).exists(), "deleted");
    assert_eq!(
        protocol::read_exit(s.dir()).unwrap().unwrap().exit_code,
        137
    );
}

#[test]
fn a_container_that_cannot_start_is_reported() {
    let b = Bundle::new(&["/no/such/program"]);
    let (s, r) = try_start(&b, &[]);
    let msg = r.unwrap_err();
    assert!(msg.contains("/no/such/program"), "{msg}");
    assert!(!s.dir().join(protocol::SOCKET).exists());
    assert!(!s.runtime_root.path().join(&s.id).exists());
}

#[test]
fn stats_come_from_the_cgroup() {
    let b = Bundle::new(&["sleep", "100"]);
    let s = start(&b, &[]);
    let Response::Stats(st) = s.call(&Request::Stats) else {
        panic!()
    };
    assert!(st.memory_usage_bytes > 0, "{st:?}");
    assert!(st.pids >= 1, "{st:?}");
}

#[test]
fn the_program_starts_with_default_signal_dispositions() {
    // The shim ignores SIGPIPE (and blocks SIGCHLD); its container must not inherit either,
    // or `yes | head` would spin on EPIPE forever.
    let b = Bundle::sh("grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -n 2");
    let s = start(&b, &[]);
    assert_eq!(s.wait().exit_code, 0);
    let out = s.text("stdout");
    let mask = |name: &str| {
        let l = out.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{out}");
    // Whatever else the test's own environment ignores is inherited as usual.
    assert_eq!(mask("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
    assert!(out.ends_with("y\ny\n"), "{out}");
}

#[test]
fn a_half_closed_waiter_still_gets_its_reply() {
    use std::io::{BufRead, BufReader, Write};
    let b = Bundle::sh("sleep 0.3; exit 2");
    let s = start(&b, &[]);
    let mut c = std::os::unix::net::UnixStream::connect(s.dir().join(protocol::SOCKET)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"{\"op\":\"wait\"}\n").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut r = BufReader::new(c);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let Response::Exited(e) = serde_json::from_str(&line).unwrap() else {
        panic!("{line}")
    };
    assert_eq!(e.exit_code, 2);
    // Then the shim closes the connection.
    line.clear();
    assert_eq!(r.read_line(&mut line).unwrap(), 0);
}
