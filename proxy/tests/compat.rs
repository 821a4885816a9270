//! docker-proxy compatibility mode: the exact command line dockerd uses, readiness on fd 3,
//! errors on fd 3 with exit 1, and Docker 28's listening socket on fd 4.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// Spawn berth-proxy with `fds` placed at the given descriptor numbers in the child.
fn spawn_with_fds(args: &[String], fds: Vec<(RawFd, RawFd)>) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    // SAFETY: between fork and exec only dup2 runs, which is async-signal-safe and allocates
    // nothing; the source descriptors stay open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            // Move every source above the targets first: a source that happens to sit on a
            // target number (fd 3 in a busy test process) would otherwise be overwritten
            // before it is copied.
            let mut high = [-1; 8];
            assert!(fds.len() <= high.len());
            for (slot, &(src, _)) in high.iter_mut().zip(&fds) {
                *slot = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 64);
                if *slot < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (&tmp, &(_, dst)) in high.iter().zip(&fds) {
                if libc::dup2(tmp, dst) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

fn pipe() -> (std::fs::File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a writable array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just returned both descriptors; we own them.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

fn docker_args(proto: &str, host: &str, port: u16, cip: &str, cport: u16) -> Vec<String> {
    [
        "-proto",
        proto,
        "-host-ip",
        host,
        "-host-port",
        &port.to_string(),
        "-container-ip",
        cip,
        "-container-port",
        &cport.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn reports_ready_on_fd3_and_relays_tcp() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead_port("127.0.0.1").port();
    let (mut r, w) = pipe();
    let child = Killed(spawn_with_fds(
        &docker_args(
            "tcp",
            "127.0.0.1",
            port,
            "127.0.0.1",
            backend.local_addr().unwrap().port(),
        ),
        vec![(w.as_raw_fd(), 3)],
    ));
    drop(w);
    let mut sig = String::new();
    r.read_to_string(&mut sig).unwrap();
    assert_eq!(sig, "0\n");
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut b, _) = backend.accept().unwrap();
    c.write_all(b"compat").unwrap();
    let mut got = [0u8; 6];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"compat");
    drop(child);
}

#[test]
fn reports_error_on_fd3_and_exits_1_when_port_is_taken() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut r, w) = pipe();
    let mut child = spawn_with_fds(
        &docker_args(
            "tcp",
            "127.0.0.1",
            taken.local_addr().unwrap().port(),
            "127.0.0.1",
            80,
        ),
        vec![(w.as_raw_fd(), 3)],
    );
    drop(w);
    let mut sig = String::new();
    r.read_to_string(&mut sig).unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(1));
    assert!(
        sig.starts_with("1\n") && sig.contains("bind tcp") && sig.contains("in use"),
        "{sig:?}"
    );
}

#[test]
fn bad_flags_are_reported_on_fd3() {
    let (mut r, w) = pipe();
    let mut child = spawn_with_fds(
        &[
            "-proto".into(),
            "sctp".into(),
            "-host-ip".into(),
            "127.0.0.1".into(),
        ],
        vec![(w.as_raw_fd(), 3)],
    );
    drop(w);
    let mut sig = String::new();
    r.read_to_string(&mut sig).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(1));
    assert!(sig.starts_with("1\n") && sig.contains("sctp"), "{sig:?}");
}

#[test]
fn uses_docker28_listen_fd() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    // Docker 28 binds the host port and passes the socket as fd 4.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let front = host.local_addr().unwrap();
    let (mut r, w) = pipe();
    let mut args = docker_args(
        "tcp",
        "127.0.0.1",
        front.port(),
        "127.0.0.1",
        backend.local_addr().unwrap().port(),
    );
    args.push("-use-listen-fd".into());
    let child = Killed(spawn_with_fds(
        &args,
        vec![(w.as_raw_fd(), 3), (host.as_raw_fd(), 4)],
    ));
    drop(w);
    drop(host);
    let mut sig = String::new();
    r.read_to_string(&mut sig).unwrap();
    assert_eq!(sig, "0\n");
    let mut c = TcpStream::connect(front).unwrap();
    let (mut b, _) = backend.accept().unwrap();
    b.write_all(b"via fd 4").unwrap();
    let mut got = [0u8; 8];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"via fd 4");
    drop(child);
}

#[test]
fn relays_udp_in_compat_mode() {
    let backend = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut r, w) = pipe();
    let child = Killed(spawn_with_fds(
        &docker_args(
            "udp",
            "127.0.0.1",
            port,
            "127.0.0.1",
            backend.local_addr().unwrap().port(),
        ),
        vec![(w.as_raw_fd(), 3)],
    ));
    drop(w);
    let mut sig = String::new();
    r.read_to_string(&mut sig).unwrap();
    assert_eq!(sig, "0\n");
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    backend
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    c.send_to(b"dgram", ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = backend.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"dgram");
    backend.send_to(b"reply", from).unwrap();
    let (n, src) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"reply");
    assert_eq!(
        src.port(),
        port,
        "reply did not come from the published port"
    );
    drop(child);
}
