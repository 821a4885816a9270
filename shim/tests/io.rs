//! The container's stdio through the shim: the json-file log byte for byte (order, escaping,
//! 16 KiB pieces, rotation), attach/detach/re-attach, stdin with StdinOnce, a slow client
//! dropped while the log keeps every line, a tty with resize.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use berth_shim::protocol::{self, Request, Response};
use common::{entries, read_frames, start, Bundle};

fn pair(log: &str, stream: &str) -> (String, String) {
    (log.to_string(), stream.to_string())
}

#[test]
fn log_has_exact_bytes_in_order_per_stream() {
    let b = Bundle::sh(
        r#"echo out1; sleep 0.05; echo err1 >&2; sleep 0.05
printf 'tab\tq"b\\ <&> caf\303\251 bad\377\n'; sleep 0.05
printf '' ; echo; printf 'tail without newline'"#,
    );
    let s = start(&b, &[]);
    assert_eq!(s.wait().exit_code, 0);
    assert_eq!(
        s.entries(),
        vec![
            pair("out1\n", "stdout"),
            pair("err1\n", "stderr"),
            pair("tab\tq\"b\\ <&> caf\u{e9} bad\u{fffd}\n", "stdout"),
            pair("\n", "stdout"),
            pair("tail without newline", "stdout"),
        ]
    );
    // The raw lines are dockerd's: field order, escapes, RFC 3339 nano UTC time.
    let raw = std::fs::read_to_string(&s.log).unwrap();
    let lines: Vec<&str> = raw.lines().collect();
    assert!(lines[0].starts_with(r#"{"log":"out1\n","stream":"stdout","time":"20"#));
    assert!(lines[2].starts_with(
        r#"{"log":"tab\u0009q\"b\\ \u003c\u0026\u003e café bad\ufffd\n","stream":"stdout","time":""#
    ));
    for l in &lines {
        let t = l.split_once(r#""time":""#).unwrap().1;
        assert!(t.ends_with("Z\"}") && t.len() <= 33, "{l}");
    }
    // Read back through the shim's reader, per stream.
    let mut out = Vec::new();
    berth_shim::logread::copy_log(&s.log, &[berth_shim::logfile::Stream::Stdout], &mut out)
        .unwrap();
    assert_eq!(
        out,
        b"out1\ntab\tq\"b\\ <&> caf\xc3\xa9 bad\xef\xbf\xbd\n\ntail without newline"
    );
}

#[test]
fn long_lines_are_split_at_16k_as_docker_does() {
    let b = Bundle::sh(
        "head -c 40000 /dev/zero | tr '\\0' a; echo; head -c 16384 /dev/zero | tr '\\0' b; echo; \
         head -c 16383 /dev/zero | tr '\\0' c; echo",
    );
    let s = start(&b, &[]);
    assert_eq!(s.wait().exit_code, 0);
    let a = "a".repeat(16384);
    assert_eq!(
        s.entries(),
        vec![
            pair(&a, "stdout"),
            pair(&a, "stdout"),
            pair(&("a".repeat(40000 - 2 * 16384) + "\n"), "stdout"),
            pair(&"b".repeat(16384), "stdout"),
            pair("\n", "stdout"),
            pair(&("c".repeat(16383) + "\n"), "stdout"),
        ]
    );
}

#[test]
fn the_log_rotates_by_size_and_count() {
    let b = Bundle::sh("i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done");
    let s = start(&b, &["--log-max-size", "2000", "--log-max-files", "3"]);
    assert_eq!(s.wait().exit_code, 0);
    let dir = s.dir();
    let name = s.log.file_name().unwrap().to_string_lossy().into_owned();
    assert!(dir.join(format!("{name}.1")).exists());
    assert!(dir.join(format!("{name}.2")).exists());
    assert!(!dir.join(format!("{name}.3")).exists());
    let mut all = Vec::new();
    for f in [format!("{name}.2"), format!("{name}.1"), name.clone()] {
        let p = dir.join(&f);
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len < 2000 + 100, "{f} is {len} bytes");
        all.extend(entries(&p).into_iter().map(|(l, _)| l));
    }
    // The newest lines are kept, contiguous and in order, ending with the last.
    let n = all.len();
    assert!(n > 20, "{n}");
    for (k, l) in all.iter().enumerate() {
        assert_eq!(l, &format!("line {}\n", 300 - n + k));
    }
}

#[test]
fn attach_detach_and_reattach() {
    let b = Bundle::sh(
        "i=0; while [ $i -lt 40 ]; do echo $i; echo e$i >&2; i=$((i+1)); sleep 0.03; done; exit 4",
    );
    let s = start(&b, &["--hold"]);
    // Stdout only: no stderr frames.
    let Ok((mut first, _)) = s.client().attach(false, true, false).unwrap() else {
        panic!()
    };
    s.start_held();
    let mut p = Vec::new();
    assert_eq!(protocol::read_frame(&mut first, &mut p).unwrap(), Some(1));
    assert_eq!(p, b"0\n");
    assert_eq!(protocol::read_frame(&mut first, &mut p).unwrap(), Some(1));
    assert_eq!(p, b"1\n");
    // Detach: the container does not notice.
    drop(first);
    std::thread::sleep(Duration::from_millis(200));
    let Ok((mut second, _)) = s.client().attach(false, true, true).unwrap() else {
        panic!()
    };
    let (out, err) = read_frames(&mut second);
    let out = String::from_utf8(out).unwrap();
    let err = String::from_utf8(err).unwrap();
    // The re-attached client gets what came after it attached, to the end.
    assert!(
        out.ends_with("38\n39\n") && !out.starts_with("0\n"),
        "{out}"
    );
    assert!(err.ends_with("e38\ne39\n"), "{err}");
    assert_eq!(s.wait().exit_code, 4);
    // The log has all of it.
    let want: String = (0..40).map(|i| format!("{i}\n")).collect();
    assert_eq!(s.text("stdout"), want);
    // Attaching to a stopped container is refused.
    let r = s.client().attach(false, true, true).unwrap();
    assert!(matches!(r, Err(Response::Error { .. })));
}

#[test]
fn stdin_once_closes_the_containers_stdin() {
    let b = Bundle::sh("cat; echo eof >&2");
    let s = start(&b, &["--hold", "--stdin", "--stdin-once"]);
    let Ok((mut a, _)) = s.client().attach(true, true, true).unwrap() else {
        panic!()
    };
    s.start_held();
    a.write_all(b"hello\nworld").unwrap();
    a.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let (out, err) = read_frames(&mut a);
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"hello\nworld"[..], &b"eof\n"[..])
    );
    assert_eq!(s.wait().exit_code, 0);
    // The unfinished line is written when the stream ends.
    assert_eq!(s.text("stderr"), "eof\n");
    assert_eq!(s.text("stdout"), "hello\nworld");
}

#[test]
fn stdin_stays_open_across_clients_without_stdin_once() {
    let b = Bundle::sh("while read l; do echo got $l; done");
    let s = start(&b, &["--stdin"]);
    for word in ["one", "two"] {
        let Ok((mut a, _)) = s.client().attach(true, true, false).unwrap() else {
            panic!()
        };
        a.write_all(format!("{word}\n").as_bytes()).unwrap();
        let mut p = Vec::new();
        assert_eq!(protocol::read_frame(&mut a, &mut p).unwrap(), Some(1));
        assert_eq!(p, format!("got {word}\n").as_bytes());
        a.stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    common::eventually(2, "two lines in the log", || s.entries().len() == 2);
    assert_eq!(s.state().status, protocol::Status::Running);
}

#[test]
fn a_slow_client_is_dropped_and_the_log_keeps_every_line() {
    // 16 MB of 80-byte lines, far beyond what a client may fall behind by (ATTACH_BUFFER_LIMIT
    // queued in the shim, plus the socket's buffer).
    let b = Bundle::sh(
        "yes 0123456789012345678901234567890123456789012345678901234567890123456789012345678 \
         | head -n 200000",
    );
    let s = start(&b, &["--hold"]);
    let Ok((mut slow, _)) = s.client().attach(false, true, true).unwrap() else {
        panic!()
    };
    s.start_held();
    let e = s.wait();
    assert_eq!(e.exit_code, 0);
    // The slow client was cut off: it gets less than everything, then the end.
    let mut got = Vec::new();
    slow.read_to_end(&mut got).unwrap();
    assert!(got.len() < 16_000_000, "{}", got.len());
    let entries = s.entries();
    assert_eq!(entries.len(), 200_000);
    assert!(entries.iter().all(|(l, _)| l.len() == 80));
}

#[test]
fn a_tty_is_relayed_raw_and_resized() {
    let b = Bundle::sh("stty size; echo done").tty();
    let s = start(&b, &["--hold"]);
    assert!(s.state().tty);
    assert_eq!(
        s.call(&Request::Resize {
            rows: 40,
            cols: 100,
            exec_id: None
        }),
        Response::Ok
    );
    let Ok((mut a, tty)) = s.client().attach(false, true, true).unwrap() else {
        panic!()
    };
    assert!(tty);
    s.start_held();
    let mut raw = Vec::new();
    a.read_to_end(&mut raw).unwrap();
    assert_eq!(raw, b"40 100\r\ndone\r\n");
    assert_eq!(s.wait().exit_code, 0);
    assert_eq!(s.text("stdout"), "40 100\r\ndone\r\n");
    assert_eq!(s.text("stderr"), "");

    let b = Bundle::new(&["true"]);
    let s = start(&b, &["--hold"]);
    let r = s.call(&Request::Resize {
        rows: 1,
        cols: 1,
        exec_id: None,
    });
    assert!(matches!(r, Response::Error { .. }), "{r:?}");
}
