//! UDP relay through the real binary: per-client flows, replies from the listening socket,
//! idle expiry, the flow bound, and an unreachable container.

mod common;

use std::net::UdpSocket;
use std::thread;
use std::time::Duration;

use berth_proxy::protocol::Proto;
use common::*;

/// A UDP backend that answers each datagram with "echo:" + payload, for `n` datagrams.
fn echo_backend(ip: &str, n: usize) -> (std::net::SocketAddr, thread::JoinHandle<()>) {
    let s = UdpSocket::bind(format!("{ip}:0")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let addr = s.local_addr().unwrap();
    let h = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..n {
            let (k, from) = s.recv_from(&mut buf).unwrap();
            let mut out = b"echo:".to_vec();
            out.extend_from_slice(&buf[..k]);
            s.send_to(&out, from).unwrap();
        }
    });
    (addr, h)
}

fn ask(c: &UdpSocket, to: std::net::SocketAddr, msg: &[u8]) -> Vec<u8> {
    c.send_to(msg, to).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = c.recv_from(&mut buf).unwrap();
    assert_eq!(
        from, to,
        "reply came from {from}, not the published address"
    );
    buf[..n].to_vec()
}

#[test]
fn round_trips_per_client_flows_and_idle_expiry() {
    let proxy = Proxy::start(&["--udp-timeout", "1"]);
    let (backend, h) = echo_backend("127.0.0.1", 6);
    let (_, front) = proxy.map(Proto::Udp, "127.0.0.1:0", backend);
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    for i in 0..3 {
        assert_eq!(
            ask(&a, front, format!("a{i}").as_bytes()),
            format!("echo:a{i}").as_bytes()
        );
        assert_eq!(
            ask(&b, front, format!("b{i}").as_bytes()),
            format!("echo:b{i}").as_bytes()
        );
    }
    h.join().unwrap();
    let m = &proxy.client().list().unwrap()[0];
    assert_eq!(m.counters.active, 2, "one flow per client address");
    assert_eq!(m.counters.bytes_in, 12);
    assert_eq!(m.counters.bytes_out, 12 + 6 * 5);
    assert!(
        proxy.wait_idle(Duration::from_secs(5)),
        "idle flows not expired"
    );
}

#[test]
fn flow_table_is_bounded() {
    let proxy = Proxy::start(&["--udp-max-flows", "4"]);
    let (backend, h) = echo_backend("127.0.0.1", 10);
    let (_, front) = proxy.map(Proto::Udp, "127.0.0.1:0", backend);
    for i in 0..10 {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ask(&c, front, b"x"), b"echo:x", "client {i}");
    }
    h.join().unwrap();
    assert_eq!(proxy.client().list().unwrap()[0].counters.active, 4);
}

#[test]
fn ipv6_udp() {
    let proxy = Proxy::start(&[]);
    let (backend, h) = echo_backend("[::1]", 1);
    let (_, front) = proxy.map(Proto::Udp, "[::1]:0", backend);
    let c = UdpSocket::bind("[::1]:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ask(&c, front, b"six"), b"echo:six");
    h.join().unwrap();
}

#[test]
fn unreachable_container_does_not_stop_the_mapping() {
    let proxy = Proxy::start(&[]);
    let dead = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_, front) = proxy.map(Proto::Udp, "127.0.0.1:0", dead);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..5 {
        c.send_to(b"lost", front).unwrap();
        thread::sleep(Duration::from_millis(20));
    }
    // a working mapping beside it still answers, and the dead one is still listed
    let (backend, h) = echo_backend("127.0.0.1", 1);
    let (_, front2) = proxy.map(Proto::Udp, "127.0.0.1:0", backend);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ask(&c, front2, b"ok"), b"echo:ok");
    h.join().unwrap();
    assert_eq!(proxy.client().list().unwrap().len(), 2);
}
