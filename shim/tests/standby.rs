//! `berth-shim --standby`: started ahead of need, it detaches at once and waits on stdin for
//! its arguments; it answers on stdout, and goes away when its launcher does.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SHIM: &str = env!("CARGO_BIN_EXE_berth-shim");

/// Reads the child's stdout to EOF on a thread; EOF comes only when the detached shim has
/// let go of it (answered and moved on, or exited).
fn reply_of(mut out: std::process::ChildStdout) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        let _ = tx.send(v);
    });
    rx
}

/// A standby shim: its stdin, and its stdout's content once the detached shim lets go of it.
/// The launching process must return at once, leaving the detached one waiting.
fn standby(announce: bool) -> (std::process::ChildStdin, mpsc::Receiver<Vec<u8>>) {
    let mut c = Command::new(SHIM)
        .arg("--standby")
        .args(announce.then_some("--announce"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Taken first: wait() would close it.
    let stdin = c.stdin.take().unwrap();
    assert!(c.wait().unwrap().success());
    (stdin, reply_of(c.stdout.take().unwrap()))
}

#[test]
fn standby_exits_when_its_launcher_goes_away() {
    // Without --announce (as an older berthd starts it), it writes nothing.
    let (stdin, rx) = standby(false);
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    drop(stdin);
    let out = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(out.is_empty(), "{out:?}");

    let (stdin, rx) = standby(true);
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the standby shim did not wait for its arguments"
    );
    drop(stdin);
    let out = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the standby shim outlived its launcher");
    // With --announce it said it waits (at normal priority), and nothing more.
    assert_eq!(out, [berth_shim::protocol::STANDBY_WAITS], "{out:?}");
}

#[test]
fn standby_answers_bad_arguments_with_the_error() {
    let (mut stdin, rx) = standby(true);
    stdin.write_all(b"--id\0x\0--bogus\0\0").unwrap();
    let out = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with('+'), "{text:?}");
    assert!(text.contains("unknown argument \"--bogus\""), "{text}");
    assert!(text.ends_with('\0'), "{text:?}");
}
