//! 10,000 concurrent connections through one proxy (bounded by RLIMIT_NOFILE: the proxy needs
//! two descriptors per connection and only the soft limit can be raised), no descriptor leak
//! after they close, and the per-connection memory cost.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_proxy::protocol::Proto;
use common::*;

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn hard_nofile() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: rl is a writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    rl.rlim_max
}

/// Open `n` connections through `front`, one round trip on each, then return them.
fn open_round_trip(front: SocketAddr, n: usize) -> Vec<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        assert!(
            Instant::now() < deadline,
            "opening connections took over 120 s"
        );
        v.push(TcpStream::connect(front).unwrap_or_else(|e| panic!("connect #{i}: {e}")));
    }
    for (i, s) in v.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"p").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b)
            .unwrap_or_else(|e| panic!("echo on #{i}: {e}"));
    }
    v
}

#[test]
fn ten_thousand_concurrent_connections_no_fd_leak() {
    berth_proxy::sys::raise_nofile_limit().unwrap();
    let hard = hard_nofile();
    // Two proxy descriptors per connection plus a few dozen of its own.
    let n = 10_000usize.min(((hard.saturating_sub(64)) / 2) as usize);
    if n < 10_000 {
        println!("RLIMIT_NOFILE hard limit {hard} (CAP_SYS_RESOURCE absent): testing {n} concurrent connections");
    }
    assert!(
        n >= 1000,
        "hard descriptor limit {hard} too low for a meaningful test"
    );
    let backend = Command::new(LOAD)
        .args(["serve", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut backend = ChildGuard(backend);
    let mut line = String::new();
    BufReader::new(backend.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let backend_addr: SocketAddr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap()
        .parse()
        .unwrap();

    let proxy = Proxy::start(&["--max-pipes", "8"]);
    let (_, front) = proxy.map(Proto::Tcp, "127.0.0.1:0", backend_addr);
    // Warm up the pipe pool so its (bounded) descriptors are in the baseline.
    drop(open_round_trip(front, 16));
    assert!(proxy.wait_idle(Duration::from_secs(5)));
    let base_fds = proxy.fd_count();
    let base_rss = rss_kb(proxy.pid());

    let mut after = Vec::new();
    for round in 0..2 {
        let conns = open_round_trip(front, n);
        let m = proxy.client().list().unwrap().remove(0);
        assert_eq!(m.counters.active, n as u64, "round {round}");
        let held_fds = proxy.fd_count();
        assert!(
            held_fds >= 2 * n,
            "round {round}: {held_fds} fds for {n} connections"
        );
        let rss = rss_kb(proxy.pid());
        let per_conn = (rss.saturating_sub(base_rss)) * 1024 / n as u64;
        println!("round {round}: {n} connections, proxy RSS {base_rss} kB -> {rss} kB ({per_conn} B/connection), {held_fds} fds");
        assert!(
            per_conn <= 20 * 1024,
            "{per_conn} bytes of RSS per idle connection"
        );
        drop(conns);
        assert!(
            eventually(Duration::from_secs(20), || proxy.client().list().unwrap()
                [0]
            .counters
            .active
                == 0),
            "round {round}: connections not closed"
        );
        assert!(
            eventually(Duration::from_secs(5), || proxy.fd_count() <= base_fds + 16),
            "round {round}: {} fds after close, baseline {base_fds}",
            proxy.fd_count()
        );
        after.push(proxy.fd_count());
    }
    // A leak grows by thousands per round; the bounded pipe pool may keep a pipe more or
    // less from one round to the next.
    assert!(
        after[1] <= after[0] + 4,
        "descriptors grew between rounds: {after:?}"
    );
}
