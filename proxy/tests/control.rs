//! The control protocol against the real binary: add, list with counters, remove, port in use,
//! malformed and oversized requests — and that none of it disturbs a live mapping.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use berth_proxy::protocol::{ClientError, MappingSpec, Proto, Response, MAX_REQUEST_LINE};
use common::*;

fn echo_once(l: &TcpListener, front: std::net::SocketAddr, msg: &[u8]) {
    let mut c = TcpStream::connect(front).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (mut b, _) = l.accept().unwrap();
    c.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    b.read_exact(&mut got).unwrap();
    b.write_all(&got).unwrap();
    let mut back = vec![0u8; msg.len()];
    c.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

#[test]
fn add_list_remove_with_counters() {
    let proxy = Proxy::start(&[]);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = proxy.client();
    let id = c
        .add(MappingSpec {
            proto: Proto::Tcp,
            host: "127.0.0.1:0".parse().unwrap(),
            container: l.local_addr().unwrap(),
        })
        .unwrap();
    let list = c.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id);
    let front = list[0].spec.host;
    assert_ne!(front.port(), 0, "bound port not reported");
    echo_once(&l, front, b"count me");
    assert!(eventually(Duration::from_secs(2), || {
        let m = &c.list().unwrap()[0];
        m.counters.connections == 1 && m.counters.bytes_in == 8 && m.counters.bytes_out == 8
    }));
    c.remove(id).unwrap();
    assert!(c.list().unwrap().is_empty());
    assert!(
        TcpStream::connect(front).is_err(),
        "port still open after remove"
    );
    match c.remove(id) {
        Err(ClientError::Refused(m)) => assert!(m.contains("no mapping"), "{m}"),
        other => panic!("second remove: {other:?}"),
    }
}

#[test]
fn port_in_use_is_a_clear_error_and_changes_nothing() {
    let proxy = Proxy::start(&[]);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = proxy.client();
    let err = c
        .add(MappingSpec {
            proto: Proto::Tcp,
            host: taken.local_addr().unwrap(),
            container: "127.0.0.1:9".parse().unwrap(),
        })
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("bind tcp")
            && msg.contains(&taken.local_addr().unwrap().to_string())
            && msg.contains("in use"),
        "{msg}"
    );
    let udp_taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = c
        .add(MappingSpec {
            proto: Proto::Udp,
            host: udp_taken.local_addr().unwrap(),
            container: "127.0.0.1:9".parse().unwrap(),
        })
        .unwrap_err();
    assert!(err.to_string().contains("bind udp"), "{err}");
    assert!(c.list().unwrap().is_empty());
}

#[test]
fn malformed_messages_get_errors_and_traffic_continues() {
    let proxy = Proxy::start(&[]);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (_, front) = proxy.map(Proto::Tcp, "127.0.0.1:0", l.local_addr().unwrap());
    let mut c = proxy.client();
    for bad in [
        "this is not json",
        r#"{"op":"add","proto":"sctp","host":"127.0.0.1:1","container":"127.0.0.1:2"}"#,
        r#"{"op":"add","proto":"tcp","host":"127.0.0.1:0","container":"0.0.0.0:80"}"#,
        r#"{"op":"add","proto":"tcp","host":"127.0.0.1:0","container":"127.0.0.1:0"}"#,
        r#"{"op":"remove","id":"seven"}"#,
        r#"{"op":"launch"}"#,
        "\u{0}\u{1}\u{2}",
    ] {
        c.raw_writer().write_all(bad.as_bytes()).unwrap();
        c.raw_writer().write_all(b"\n").unwrap();
        match c.read_response().unwrap() {
            Response::Error { message } => assert!(!message.is_empty()),
            other => panic!("{bad:?} answered {other:?}"),
        }
    }
    // the same connection still serves good requests, and the mapping still relays
    assert_eq!(c.list().unwrap().len(), 1);
    echo_once(&l, front, b"still here");
}

#[test]
fn oversized_request_closes_only_that_control_connection() {
    let proxy = Proxy::start(&[]);
    let mut c = proxy.client();
    let junk = vec![b'x'; MAX_REQUEST_LINE + 10];
    // The proxy may close before reading everything; a write error is acceptable.
    let _ = c.raw_writer().write_all(&junk);
    match c.read_response() {
        Ok(Response::Error { message }) => assert!(message.contains("longer than"), "{message}"),
        Err(ClientError::Closed) | Err(ClientError::Io(_)) => {}
        other => panic!("oversized line answered {other:?}"),
    }
    assert!(matches!(
        c.read_response(),
        Err(ClientError::Closed) | Err(ClientError::Io(_))
    ));
    // a fresh control connection works
    assert!(proxy.client().list().unwrap().is_empty());
}

#[test]
fn second_proxy_refuses_a_live_control_socket() {
    let proxy = Proxy::start(&[]);
    let out = std::process::Command::new(BIN)
        .arg("serve")
        .arg("--control")
        .arg(&proxy.control)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("control socket") && err.contains("in use"),
        "{err}"
    );
    assert!(
        proxy.client().list().is_ok(),
        "first proxy's socket was disturbed"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let proxy = Proxy::start(&[]);
    let mut c = proxy.client();
    // 3,000 requests in one burst (well over the 64 KiB read bound): every one gets its answer.
    let mut burst = String::new();
    for i in 0..3000 {
        if i % 2 == 0 {
            burst.push_str("{\"op\":\"list\"}\n");
        } else {
            burst.push_str(&format!("{{\"op\":\"remove\",\"id\":{}}}\n", 1000 + i));
        }
    }
    let mut w = c.raw_writer().try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(burst.as_bytes()).unwrap());
    for i in 0..3000 {
        match (i % 2, c.read_response().unwrap()) {
            (0, Response::Mappings { mappings }) => assert!(mappings.is_empty()),
            (1, Response::Error { message }) => {
                assert!(message.contains(&format!("{}", 1000 + i)), "{message}")
            }
            (_, other) => panic!("response {i} out of order: {other:?}"),
        }
    }
    writer.join().unwrap();
}
