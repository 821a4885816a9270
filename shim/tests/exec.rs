//! Processes started in a running container through the shim: their own streams, stdin, tty
//! and resize, exit codes and signals; their output never in the container's log.

mod common;

use std::io::{Read, Write};

use berth_shim::protocol::{AttachStream, ExecProcess, Request, Response};
use common::{read_frames, start, Bundle, Shim};

fn sh(script: &str) -> ExecProcess {
    ExecProcess {
        args: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

fn exec_attached(s: &Shim, exec_id: &str, process: ExecProcess) -> (AttachStream, bool) {
    let r = s
        .client()
        .switch(&Request::Exec {
            exec_id: exec_id.into(),
            process,
            attach: true,
        })
        .unwrap();
    match r {
        Ok(x) => x,
        Err(other) => panic!("exec {exec_id}: {other:?}"),
    }
}

fn wait_exec(s: &Shim, exec_id: &str) -> (i32, Option<i32>) {
    match s.call(&Request::Wait {
        exec_id: Some(exec_id.into()),
    }) {
        Response::Exited(e) => (e.exit_code, e.signal),
        other => panic!("wait {exec_id}: {other:?}"),
    }
}

#[test]
fn exec_runs_inside_with_its_own_streams_and_exit_code() {
    let b = Bundle::new(&["sleep", "100"]);
    let s = start(&b, &[]);
    let (mut a, tty) = exec_attached(
        &s,
        "e1",
        sh("echo out; echo err >&2; tr '\\0' ' ' </proc/1/cmdline; echo; echo $PATH; exit 3"),
    );
    assert!(!tty);
    let (out, err) = read_frames(&mut a);
    let out = String::from_utf8(out).unwrap();
    // In the container's pid namespace (its pid 1 is the init), with its environment.
    let path = b.config["process"]["env"][0].as_str().unwrap();
    assert_eq!(
        out,
        format!("out\nsleep 100 \n{}\n", path.trim_start_matches("PATH="))
    );
    assert_eq!(err, b"err\n");
    assert_eq!(wait_exec(&s, "e1"), (3, None));
    let st = s.state();
    assert_eq!(st.execs.len(), 1);
    assert_eq!(st.execs[0].exec_id, "e1");
    assert_eq!(st.execs[0].exit.as_ref().unwrap().exit_code, 3);
    // Exec output is not the container's: the log stays empty.
    assert!(s.entries().is_empty(), "{:?}", s.entries());
}

#[test]
fn exec_stdin_is_closed_when_the_client_ends_its_input() {
    let b = Bundle::new(&["sleep", "100"]);
    let s = start(&b, &[]);
    let (mut a, _) = exec_attached(
        &s,
        "cat",
        ExecProcess {
            args: vec!["sh".into(), "-c".into(), "cat; echo done >&2".into()],
            stdin: true,
            ..Default::default()
        },
    );
    a.write_all(b"abc\ndef").unwrap();
    a.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let (out, err) = read_frames(&mut a);
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"abc\ndef"[..], &b"done\n"[..])
    );
    assert_eq!(wait_exec(&s, "cat"), (0, None));
}

#[test]
fn exec_with_a_tty_is_resized() {
    let b = Bundle::new(&["sleep", "100"]);
    let s = start(&b, &[]);
    let (mut a, tty) = exec_attached(
        &s,
        "tty",
        ExecProcess {
            args: vec![
                "sh".into(),
                "-c".into(),
                "stty size; read l; stty size; echo got $l".into(),
            ],
            tty: true,
            stdin: true,
            console_size: Some([30, 90]),
            ..Default::default()
        },
    );
    assert!(tty);
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !seen.ends_with(b"30 90\r\n") {
        let n = a.read(&mut buf).unwrap();
        assert!(n > 0, "{:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let r = s.call(&Request::Resize {
        rows: 50,
        cols: 120,
        exec_id: Some("tty".into()),
    });
    assert_eq!(r, Response::Ok);
    a.write_all(b"hi\n").unwrap();
    a.read_to_end(&mut seen).unwrap();
    // The pty echoes the input line, then the new size and the reply.
    assert_eq!(
        String::from_utf8_lossy(&seen),
        "30 90\r\nhi\r\n50 120\r\ngot hi\r\n"
    );
    assert_eq!(wait_exec(&s, "tty"), (0, None));
}

#[test]
fn detached_exec_is_killed_and_waited() {
    let b = Bundle::new(&["sleep", "100"]);
    let s = start(&b, &[]);
    let r = s.call(&Request::Exec {
        exec_id: "bg".into(),
        process: ExecProcess {
            args: vec!["sleep".into(), "100".into()],
            ..Default::default()
        },
        attach: false,
    });
    let Response::ExecStarted { pid } = r else {
        panic!("{r:?}")
    };
    assert!(common::alive(pid));
    let st = s.state();
    assert_eq!((st.execs[0].pid, st.execs[0].exit.is_none()), (pid, true));
    // The same id twice is refused; unknown ids are errors.
    let again = s.call(&Request::Exec {
        exec_id: "bg".into(),
        process: sh("true"),
        attach: false,
    });
    assert!(matches!(again, Response::Error { .. }), "{again:?}");
    let unknown = s.call(&Request::Wait {
        exec_id: Some("nope".into()),
    });
    assert!(matches!(unknown, Response::Error { .. }), "{unknown:?}");
    let r = s.call(&Request::Kill {
        signal: 9,
        all: false,
        exec_id: Some("bg".into()),
    });
    assert_eq!(r, Response::Ok);
    assert_eq!(wait_exec(&s, "bg"), (137, Some(9)));
    // A detached exec's output is drained, never blocking it.
    let r = s.call(&Request::Exec {
        exec_id: "loud".into(),
        process: sh("head -c 2000000 /dev/zero; exit 4"),
        attach: false,
    });
    assert!(matches!(r, Response::ExecStarted { .. }), "{r:?}");
    assert_eq!(wait_exec(&s, "loud"), (4, None));
    // The container itself was not touched.
    assert_eq!(s.state().status, berth_shim::protocol::Status::Running);
    assert!(s.entries().is_empty());
}

#[test]
fn exec_is_refused_when_the_container_is_not_running() {
    let b = Bundle::new(&["true"]);
    let s = start(&b, &[]);
    s.wait();
    let r = s.call(&Request::Exec {
        exec_id: "late".into(),
        process: sh("true"),
        attach: false,
    });
    assert!(matches!(r, Response::Error { .. }), "{r:?}");
    let b = Bundle::new(&["sleep", "100"]);
    let s = start(&b, &[]);
    let r = s.call(&Request::Exec {
        exec_id: "missing".into(),
        process: ExecProcess {
            args: vec!["/no/such/program".into()],
            ..Default::default()
        },
        attach: false,
    });
    let Response::Error { message } = r else {
        panic!("{r:?}")
    };
    assert!(message.contains("/no/such/program"), "{message}");
}

#[test]
fn a_slow_exec_client_gets_every_byte() {
    let b = Bundle::new(&["sleep", "100"]);
    let s = start(&b, &[]);
    // Far more than the socket and the shim's queue hold, to a client that starts reading
    // late: the exec waits for it instead of dropping it.
    let (mut a, _) = exec_attached(&s, "big", sh("head -c 8000000 /dev/zero; exit 2"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let st = s.state();
    assert!(st.execs[0].exit.is_none(), "the exec was not held back");
    let (out, err) = read_frames(&mut a);
    assert_eq!((out.len(), err.len()), (8_000_000, 0));
    assert_eq!(wait_exec(&s, "big"), (2, None));
}
