//! TCP relay through the real binary on loopback: bytes, half-close, refused and reset
//! backends, vanished clients, IPv6, the buffered path, and SIGTERM draining.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use berth_proxy::protocol::Proto;
use common::*;

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A backend that reads to EOF, then answers with its own payload followed by the byte count,
/// and closes: proves half-close both ways.
fn half_close_backend(l: TcpListener, reply: Vec<u8>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(&reply).unwrap();
        s.write_all(format!("|{}", got.len()).as_bytes()).unwrap();
        got
    })
}

fn round_trip_half_close(extra: &[&str], host: &str, backend_ip: &str) {
    let proxy = Proxy::start(extra);
    let l = TcpListener::bind(format!("{backend_ip}:0")).unwrap();
    let (_, front) = proxy.map(Proto::Tcp, host, l.local_addr().unwrap());
    let up = pattern(3 << 20, 7);
    let down = pattern(2 << 20, 9);
    let backend = half_close_backend(l, down.clone());
    let mut c = TcpStream::connect(front).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let writer = {
        let mut c = c.try_clone().unwrap();
        let up = up.clone();
        thread::spawn(move || {
            c.write_all(&up).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(
        backend.join().unwrap(),
        up,
        "backend received different bytes"
    );
    let mut want = down.clone();
    want.extend_from_slice(format!("|{}", up.len()).as_bytes());
    assert_eq!(got.len(), want.len());
    assert!(got == want, "client received different bytes");
    let list = proxy.client().list().unwrap();
    assert!(proxy.wait_idle(Duration::from_secs(2)));
    assert_eq!(list[0].counters.bytes_in, up.len() as u64);
}

#[test]
fn bytes_and_half_close_through_splice() {
    round_trip_half_close(&[], "127.0.0.1:0", "127.0.0.1");
}

#[test]
fn bytes_and_half_close_through_buffered_fallback() {
    // No pipes at all: every byte takes the copy path.
    round_trip_half_close(&["--max-pipes", "0"], "127.0.0.1:0", "127.0.0.1");
}

#[test]
fn ipv6_listener_and_backend() {
    round_trip_half_close(&[], "[::1]:0", "[::1]");
}

#[test]
fn refused_backend_resets_the_client_promptly() {
    let proxy = Proxy::start(&[]);
    let (_, front) = proxy.map(Proto::Tcp, "127.0.0.1:0", dead_port("127.0.0.1"));
    let t = Instant::now();
    let mut c = TcpStream::connect(front).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 16];
    let err = c
        .read(&mut b)
        .expect_err("read succeeded through a refused backend");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert!(eventually(Duration::from_secs(2), || proxy
        .client()
        .list()
        .unwrap()[0]
        .counters
        .errors
        == 1));
}

#[test]
fn backend_reset_mid_stream_reaches_the_client() {
    let proxy = Proxy::start(&[]);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (_, front) = proxy.map(Proto::Tcp, "127.0.0.1:0", l.local_addr().unwrap());
    let backend = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"partial").unwrap();
        thread::sleep(Duration::from_millis(200));
        socket_reset(s);
    });
    let mut c = TcpStream::connect(front).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 7];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"partial");
    backend.join().unwrap();
    let mut b = [0u8; 16];
    let err = c.read(&mut b).expect_err("reset not propagated");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

/// Close with SO_LINGER 0: the peer gets RST.
fn socket_reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a valid linger struct on a socket we own.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    drop(s);
}

#[test]
fn vanished_client_resets_backend_and_other_mappings_keep_serving() {
    let proxy = Proxy::start(&[]);
    let l1 = TcpListener::bind("127.0.0.1:0").unwrap();
    let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
    let (_, f1) = proxy.map(Proto::Tcp, "127.0.0.1:0", l1.local_addr().unwrap());
    let (_, f2) = proxy.map(Proto::Tcp, "127.0.0.1:0", l2.local_addr().unwrap());
    let c = TcpStream::connect(f1).unwrap();
    let (mut b, _) = l1.accept().unwrap();
    socket_reset(c);
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 8];
    match b.read(&mut buf) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("backend read {n} bytes instead of a reset"),
    }
    // the other mapping is untouched
    let echo = thread::spawn(move || {
        let (mut s, _) = l2.accept().unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
    });
    let mut c2 = TcpStream::connect(f2).unwrap();
    c2.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    c2.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    echo.join().unwrap();
    assert!(proxy.wait_idle(Duration::from_secs(2)));
}

#[test]
fn sigterm_closes_listeners_and_drains() {
    let mut proxy = Proxy::start(&["--drain-timeout", "10"]);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (_, front) = proxy.map(Proto::Tcp, "127.0.0.1:0", l.local_addr().unwrap());
    let mut c = TcpStream::connect(front).unwrap();
    let (mut b, _) = l.accept().unwrap();
    proxy.signal(libc::SIGTERM);
    assert!(
        eventually(Duration::from_secs(2), || TcpStream::connect(front)
            .is_err()),
        "listener still accepting after SIGTERM"
    );
    // the open connection still relays while draining
    c.write_all(b"after-term").unwrap();
    let mut got = [0u8; 10];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"after-term");
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "exited before the drain finished"
    );
    drop(c);
    drop(b);
    let t = Instant::now();
    let st = proxy.wait_exit(Duration::from_secs(5));
    assert!(st.success(), "{st}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "drain waited {:?} after the last connection",
        t.elapsed()
    );
    assert!(!proxy.control.exists(), "control socket left behind");
}

#[test]
fn many_parallel_echo_connections_move_exact_bytes() {
    let proxy = Proxy::start(&["--max-pipes", "4"]);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (_, front) = proxy.map(Proto::Tcp, "127.0.0.1:0", l.local_addr().unwrap());
    let n = 32;
    let server = thread::spawn(move || {
        let mut hs = Vec::new();
        for _ in 0..n {
            let (mut s, _) = l.accept().unwrap();
            hs.push(thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                std::io::copy(&mut r, &mut s).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
            }));
        }
        hs.into_iter().for_each(|h| h.join().unwrap());
    });
    let clients: Vec<_> = (0..n)
        .map(|i| {
            thread::spawn(move || {
                let data = pattern(256 * 1024, i as u8);
                let mut c = TcpStream::connect::<SocketAddr>(front).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut w = c.try_clone().unwrap();
                let d2 = data.clone();
                let wt = thread::spawn(move || {
                    w.write_all(&d2).unwrap();
                    w.shutdown(Shutdown::Write).unwrap();
                });
                let mut got = Vec::new();
                c.read_to_end(&mut got).unwrap();
                wt.join().unwrap();
                assert!(got == data, "connection {i} corrupted");
            })
        })
        .collect();
    clients.into_iter().for_each(|h| h.join().unwrap());
    server.join().unwrap();
}
