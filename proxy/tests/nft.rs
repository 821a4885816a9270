//! nftables rules in network namespaces this test creates: DNAT from outside (prerouting) and
//! from the host itself (output), masquerade of the container subnet, hairpin, idempotence,
//! reconciliation, removal — and another table left untouched. Traffic only flows between
//! the namespaces created here.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use berth_proxy::nft::{Nft, PublishedPort, Ruleset};
use berth_proxy::protocol::Proto;

struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(args: &str) {
    let st = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .expect("run ip");
    assert!(st.success(), "ip {args}");
}

/// Run `f` on a thread that has joined network namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = File::open(&path).unwrap();
        // SAFETY: setns on this thread only, with a namespace fd we opened.
        assert_eq!(
            unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns {path}"
        );
        f()
    })
    .join()
    .unwrap()
}

fn tools_present() -> bool {
    let ip_ok = Command::new("ip").arg("-V").output().is_ok();
    let lib_ok = Nft::open().is_ok();
    if !ip_ok || !lib_ok {
        println!("SKIP: needs iproute2 and libnftables1 (ip: {ip_ok}, libnftables: {lib_ok})");
    }
    ip_ok && lib_ok
}

/// Connect from namespace `ns` to `to`, send a line, and return the peer address the server
/// saw (the server echoes it).
fn probe(ns: &str, to: SocketAddr) -> std::io::Result<String> {
    in_ns(ns, move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"who\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
}

/// A server in namespace `ns` that tells each client the address it came from.
fn whoami_server(ns: &str, at: &'static str) {
    let l: TcpListener = in_ns(ns, move || TcpListener::bind(at).unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let peer = s.peer_addr().unwrap();
            let mut b = [0u8; 4];
            let _ = s.read_exact(&mut b);
            let _ = s.write_all(peer.ip().to_string().as_bytes());
        }
    });
}

#[test]
fn dnat_masquerade_hairpin_in_namespaces() {
    if !tools_present() {
        return;
    }
    let id = std::process::id() % 100_000;
    let (a, b, c) = (format!("bpa{id}"), format!("bpb{id}"), format!("bpc{id}"));
    let _guard = Netns(vec![a.clone(), b.clone(), c.clone()]);
    for n in [&a, &b, &c] {
        ip(&format!("netns add {n}"));
        ip(&format!("-n {n} link set lo up"));
    }
    // host A <-> container B (10.231.1.0/24), host A <-> outside client C (10.231.2.0/24)
    ip(&format!(
        "link add va{id} netns {a} type veth peer name vb{id} netns {b}"
    ));
    ip(&format!(
        "link add vc{id} netns {a} type veth peer name vd{id} netns {c}"
    ));
    ip(&format!("-n {a} addr add 10.231.1.1/24 dev va{id}"));
    ip(&format!("-n {a} addr add 10.231.2.1/24 dev vc{id}"));
    ip(&format!("-n {b} addr add 10.231.1.2/24 dev vb{id}"));
    ip(&format!("-n {c} addr add 10.231.2.2/24 dev vd{id}"));
    for (n, d) in [
        (&a, format!("va{id}")),
        (&a, format!("vc{id}")),
        (&b, format!("vb{id}")),
        (&c, format!("vd{id}")),
    ] {
        ip(&format!("-n {n} link set {d} up"));
    }
    ip(&format!("-n {b} route add default via 10.231.1.1"));
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            &a,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])
        .status()
        .unwrap();
    assert!(st.success());

    whoami_server(&b, "10.231.1.2:80");
    whoami_server(&c, "10.231.2.2:9000");

    // Before any rule: C cannot reach the published port, B cannot reach C (no route back).
    assert!(probe(&c, "10.231.2.1:8080".parse().unwrap()).is_err());
    assert!(
        probe(&b, "10.231.2.2:9000".parse().unwrap()).is_err(),
        "C reachable without masquerade"
    );

    let other = "table inet other {\n\tchain c {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 9999 counter packets 0 bytes 0 accept\n\t}\n}\n";
    let rules = Ruleset {
        ports: vec![PublishedPort {
            proto: Proto::Tcp,
            host_ip: None,
            host_port: 8080,
            container: "10.231.1.2:80".parse().unwrap(),
        }],
        masquerade: vec!["10.231.1.0/24".parse().unwrap()],
    };
    let stale = Ruleset {
        ports: vec![PublishedPort {
            proto: Proto::Udp,
            host_ip: Some("10.231.2.1".parse().unwrap()),
            host_port: 7777,
            container: "10.231.1.9:7".parse().unwrap(),
        }],
        masquerade: vec![],
    };
    let (listing, other_before) = {
        let rules = rules.clone();
        in_ns(&a, move || {
            let mut nft = Nft::open().unwrap();
            nft.command(other).unwrap();
            let other_before = nft.command("list table inet other").unwrap();
            // A previous run left different rules: applying reconciles them away.
            nft.apply(&stale).unwrap();
            nft.apply(&rules).unwrap();
            let first = nft.list().unwrap().unwrap();
            nft.apply(&rules).unwrap();
            let second = nft.list().unwrap().unwrap();
            assert_eq!(first, second, "apply is not idempotent");
            (first, other_before)
        })
    };
    assert!(
        !listing.contains("7777"),
        "stale rule survived reconciliation:\n{listing}"
    );
    assert!(
        listing.contains("dport 8080") && listing.contains("10.231.1.2:80"),
        "{listing}"
    );

    // prerouting DNAT: the outside client reaches the container, which sees the client's address
    assert_eq!(
        probe(&c, "10.231.2.1:8080".parse().unwrap()).unwrap(),
        "10.231.2.2"
    );
    // output DNAT: the host itself, through its own non-loopback address
    assert_eq!(
        probe(&a, "10.231.1.1:8080".parse().unwrap()).unwrap(),
        "10.231.1.1"
    );
    // masquerade: the container reaches the outside, seen as the host
    assert_eq!(
        probe(&b, "10.231.2.2:9000".parse().unwrap()).unwrap(),
        "10.231.2.1"
    );
    // hairpin: the container reaches its own published port through the host
    assert_eq!(
        probe(&b, "10.231.1.1:8080".parse().unwrap()).unwrap(),
        "10.231.1.1"
    );

    let (gone, other_after) = in_ns(&a, || {
        let mut nft = Nft::open().unwrap();
        nft.remove().unwrap();
        nft.remove().unwrap(); // idempotent
        let gone = nft.list().unwrap().is_none();
        let other_after = nft.command("list table inet other").unwrap();
        nft.command("delete table inet other").unwrap();
        (gone, other_after)
    });
    assert!(gone, "berth table still present after remove");
    assert_eq!(other_before, other_after, "another table was touched");
    assert!(
        probe(&c, "10.231.2.1:8080".parse().unwrap()).is_err(),
        "DNAT still active after remove"
    );
}

/// `serve --nftables` inside a namespace: the table follows control-socket mappings and is
/// deleted on SIGTERM.
#[test]
fn serve_keeps_table_in_step_and_removes_it_on_sigterm() {
    if !tools_present() {
        return;
    }
    let ns = format!("bps{}", std::process::id() % 100_000);
    let _guard = Netns(vec![ns.clone()]);
    ip(&format!("netns add {ns}"));
    ip(&format!("-n {ns} link set lo up"));
    let dir = std::env::temp_dir().join(format!("berth-proxy-nft-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("ctl.sock");
    let mut child = KillOnDrop(Some(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                env!("CARGO_BIN_EXE_berth-proxy"),
                "serve",
                "--nftables",
                "--masquerade",
                "10.232.0.0/16",
                "--control",
            ])
            .arg(&sock)
            .spawn()
            .unwrap(),
    ));
    let list = |ns: &str| {
        let o = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "list", "table", "inet", "berth"])
            .output()
            .unwrap();
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let mut ok = false;
    for _ in 0..500 {
        if let Ok(mut c) = berth_proxy::Client::connect(&sock) {
            let id = c
                .add(berth_proxy::MappingSpec {
                    proto: Proto::Tcp,
                    host: "0.0.0.0:8088".parse().unwrap(),
                    container: "10.232.0.5:80".parse().unwrap(),
                })
                .unwrap();
            let t = list(&ns).expect("table missing after add");
            assert!(
                t.contains("tcp dport 8088 dnat ip to 10.232.0.5:80") && t.contains("masquerade"),
                "{t}"
            );
            c.remove(id).unwrap();
            let t = list(&ns).expect("table missing after remove");
            assert!(!t.contains("8088"), "{t}");
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut child = child.0.take().unwrap();
    // SAFETY: kill(2) on the pid of the child we started (ip netns exec execs the proxy).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "control socket never came up");
    assert!(st.success(), "{st}");
    assert!(list(&ns).is_none(), "table left after clean shutdown");
}

/// Kills (by its pid) a child still held when a test panics.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
