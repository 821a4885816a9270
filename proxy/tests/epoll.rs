//! The epoll fallback (used when io_uring cannot be set up), forced with `--event-loop epoll`:
//! the same relay, refused backends, UDP, control, connection churn and SIGTERM drain.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use berth_proxy::protocol::Proto;
use common::*;

const EPOLL: &[&str] = &["--event-loop", "epoll"];

#[test]
fn relays_with_half_close() {
    let proxy = Proxy::start(EPOLL);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (_, front) = proxy.map(Proto::Tcp, "127.0.0.1:0", l.local_addr().unwrap());
    let up: Vec<u8> = (0..2_000_000u32).map(|i| (i % 249) as u8).collect();
    let backend = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(format!("{}", got.len()).as_bytes()).unwrap();
        got
    });
    let mut c = TcpStream::connect(front).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&up).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, up.len().to_string());
    assert!(backend.join().unwrap() == up);
}

#[test]
fn refused_backend_resets_client() {
    let proxy = Proxy::start(EPOLL);
    let (_, front) = proxy.map(Proto::Tcp, "127.0.0.1:0", dead_port("127.0.0.1"));
    let mut c = TcpStream::connect(front).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let err = c
        .read(&mut [0u8; 8])
        .expect_err("read through a refused backend");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[test]
fn udp_round_trip() {
    let proxy = Proxy::start(EPOLL);
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (_, front) = proxy.map(Proto::Udp, "127.0.0.1:0", b.local_addr().unwrap());
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.send_to(b"q", front).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"q");
    b.send_to(b"answer", from).unwrap();
    let (n, src) = c.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], src), (&b"answer"[..], front));
}

#[test]
fn churn_leaves_no_descriptors_and_sigterm_drains() {
    let mut proxy = Proxy::start(&["--event-loop", "epoll", "--max-pipes", "4"]);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (_, front) = proxy.map(Proto::Tcp, "127.0.0.1:0", l.local_addr().unwrap());
    let echo = thread::spawn(move || {
        for _ in 0..2001 {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 4];
            if s.read_exact(&mut b).is_ok() {
                let _ = s.write_all(&b);
            }
        }
    });
    let one = || {
        let mut c = TcpStream::connect(front).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
    };
    one();
    assert!(proxy.wait_idle(Duration::from_secs(5)));
    let base = proxy.fd_count();
    for _ in 0..2000 {
        one();
    }
    assert!(proxy.wait_idle(Duration::from_secs(10)));
    assert!(
        eventually(Duration::from_secs(5), || proxy.fd_count() <= base + 8),
        "fds {} vs {base}",
        proxy.fd_count()
    );
    echo.join().unwrap();
    proxy.signal(libc::SIGTERM);
    assert!(proxy.wait_exit(Duration::from_secs(5)).success());
}
