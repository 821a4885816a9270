//! Bounded load tool for perf/proxy.sh and the scale test.
//!
//! `serve ADDR` — an epoll echo server that also holds idle connections open (no thread per
//! connection, so it can hold 10,000). `rate ADDR N SIZE` — N sequential connect, write SIZE
//! bytes, read them back, close; prints connections/s, latency percentiles and its own CPU time
//! per connection (getrusage, user + system). `hold ADDR N
//! SECONDS` — open N connections, print "held N", keep them until stdin closes or SECONDS pass.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: berth-proxy-load serve ADDR | rate ADDR COUNT SIZE | hold ADDR COUNT SECONDS";
    let addr: SocketAddr = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| die(usage));
    let num = |i: usize| -> u64 {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| die(usage))
    };
    let _ = berth_proxy::sys::raise_nofile_limit();
    match args[1].as_str() {
        "serve" => serve(addr),
        "rate" => rate(addr, num(3), num(4) as usize),
        "hold" => hold(addr, num(3), num(4)),
        _ => die(usage),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2)
}

fn serve(addr: SocketAddr) {
    let l = TcpListener::bind(addr).unwrap_or_else(|e| die(&format!("bind {addr}: {e}")));
    l.set_nonblocking(true).expect("nonblocking listener");
    println!("listening {}", l.local_addr().expect("bound"));
    std::io::stdout().flush().ok();
    // SAFETY: plain syscall creating a new epoll instance.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    let add = |fd: RawFd| {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: ev is a valid epoll_event; fd is open.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
    };
    add(l.as_raw_fd());
    let mut conns: std::collections::HashMap<RawFd, TcpStream> = Default::default();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: events is a writable array of the stated length.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        for ev in events.iter().take(n.max(0) as usize) {
            let fd = ev.u64 as RawFd;
            if fd == l.as_raw_fd() {
                while let Ok((s, _)) = l.accept() {
                    s.set_nodelay(true).ok();
                    add(s.as_raw_fd());
                    conns.insert(s.as_raw_fd(), s);
                }
                continue;
            }
            let Some(s) = conns.get_mut(&fd) else {
                continue;
            };
            match s.read(&mut buf) {
                Ok(0) | Err(_) => {
                    conns.remove(&fd);
                }
                Ok(k) => {
                    // Blocking write of a small echo is fine for a load generator.
                    if s.write_all(&buf[..k]).is_err() {
                        conns.remove(&fd);
                    }
                }
            }
        }
    }
}

fn rate(addr: SocketAddr, count: u64, size: usize) {
    let req = vec![b'x'; size];
    let mut resp = vec![0u8; size];
    let mut lat = Vec::with_capacity(count as usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    let cpu0 = cpu_time();
    let start = Instant::now();
    for _ in 0..count {
        if Instant::now() > deadline {
            die("rate: 120 s budget exceeded");
        }
        let t = Instant::now();
        let mut s =
            TcpStream::connect(addr).unwrap_or_else(|e| die(&format!("connect {addr}: {e}")));
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        s.write_all(&req).expect("write request");
        s.read_exact(&mut resp).expect("read response");
        drop(s);
        lat.push(t.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu0;
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_micros();
    println!(
        "conns_per_sec {:.0} p50_us {} p99_us {} cpu_us_per_conn {:.1}",
        count as f64 / secs,
        p(0.5),
        p(0.99),
        cpu.as_secs_f64() * 1e6 / count as f64
    );
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a writable rusage; RUSAGE_SELF cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn hold(addr: SocketAddr, count: u64, seconds: u64) {
    let mut v = Vec::with_capacity(count as usize);
    for i in 0..count {
        match TcpStream::connect(addr) {
            Ok(s) => v.push(s),
            Err(e) => die(&format!("connect #{i} to {addr}: {e}")),
        }
    }
    // One round trip on each proves every connection reached the backend.
    for s in &mut v {
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut b = [0u8; 1];
        s.write_all(b"h").expect("write");
        s.read_exact(&mut b).expect("echo");
    }
    println!("held {}", v.len());
    std::io::stdout().flush().ok();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(seconds));
    drop(v);
    println!("closed");
}
