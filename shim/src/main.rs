//! berth-shim: started by berthd (or a test) for one container. It creates the container
//! through the runtime library, detaches (new session, its parent exits once the container
//! is created and the control socket listens), and then serves until `shutdown`.
//!
//! Exit status of the process that was started: 0 once the shim is ready, 1 with the reason
//! on stderr if the container could not be created, 2 for bad arguments.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use berth_shim::{Config, Shim};

const USAGE: &str = "usage: berth-shim --id ID --bundle DIR --state-dir DIR [--runtime-root DIR] \
[--log FILE] [--log-max-size BYTES] [--log-max-files N] [--stdin] [--stdin-once] [--hold] [--park] [--epoll]
       berth-shim --standby   (detach at once, then read the arguments above from stdin, each ended by
                               NUL, the list by an empty one; answer \"ok\" or the error on stdout, NUL-ended)
       berth-shim --read-log FILE   (the log's text, rotated files first, as `docker logs` shows it)";

fn parse(args: &[String]) -> Result<Config, String> {
    let mut cfg = Config {
        id: String::new(),
        bundle: PathBuf::new(),
        state_dir: PathBuf::new(),
        runtime_root: PathBuf::from(berth_runtime::container::DEFAULT_ROOT),
        log_path: PathBuf::new(),
        log_max_size: 0,
        log_max_files: 1,
        stdin: false,
        stdin_once: false,
        force_epoll: false,
        hold: false,
        park: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--id" => cfg.id = val()?,
            "--bundle" => cfg.bundle = val()?.into(),
            "--state-dir" => cfg.state_dir = val()?.into(),
            "--runtime-root" => cfg.runtime_root = val()?.into(),
            "--log" => cfg.log_path = val()?.into(),
            "--log-max-size" => {
                cfg.log_max_size = val()?
                    .parse()
                    .map_err(|_| "--log-max-size: a byte count".to_string())?
            }
            "--log-max-files" => {
                cfg.log_max_files = val()?
                    .parse()
                    .map_err(|_| "--log-max-files: a number".to_string())?
            }
            "--stdin" => cfg.stdin = true,
            "--stdin-once" => cfg.stdin_once = true,
            "--hold" => cfg.hold = true,
            // Parked: created without its program until a `claim` request, then held.
            "--park" => {
                cfg.park = true;
                cfg.hold = true;
            }
            "--epoll" => cfg.force_epoll = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if cfg.id.is_empty()
        || cfg.bundle.as_os_str().is_empty()
        || cfg.state_dir.as_os_str().is_empty()
    {
        return Err(format!(
            "--id, --bundle and --state-dir are required\n{USAGE}"
        ));
    }
    if cfg.log_path.as_os_str().is_empty() {
        cfg.log_path = cfg.state_dir.join(format!("{}-json.log", cfg.id));
    }
    Ok(cfg)
}

fn main() {
    let t0 = std::time::Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 2 && args[0] == "--read-log" {
        std::process::exit(read_log(&args[1]));
    }
    match args.as_slice() {
        [a] if a == "--standby" => std::process::exit(standby(false)),
        [a, b] if a == "--standby" && b == "--announce" => std::process::exit(standby(true)),
        _ => {}
    }
    let cfg = match parse(&args) {
        Ok(c) => c,
        Err(m) => {
            eprintln!("berth-shim: {m}");
            std::process::exit(2);
        }
    };
    let mut fds = [0; 2];
    // SAFETY: fds is a writable array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        eprintln!("berth-shim: pipe: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    // SAFETY: pipe2 returned two new descriptors.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process is single-threaded here; both sides only use their own state.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("berth-shim: fork: {}", std::io::Error::last_os_error());
            std::process::exit(1);
        }
        0 => {
            drop(r);
            std::process::exit(serve(cfg, w, t0));
        }
        _ => {
            drop(w);
            // Read up to the NUL that ends the message: a held container's init still has a
            // copy of the write end, so EOF would not come.
            let mut f = std::fs::File::from(r);
            let mut msg = Vec::new();
            let mut buf = [0u8; 512];
            loop {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        msg.extend_from_slice(&buf[..n]);
                        if msg.contains(&0) {
                            break;
                        }
                    }
                }
            }
            let msg = String::from_utf8_lossy(&msg);
            let msg = msg.trim_end_matches('\0');
            if msg == berth_shim::protocol::READY_OK {
                std::process::exit(0);
            }
            eprintln!(
                "berth-shim: {}",
                if msg.is_empty() {
                    "the shim died while starting"
                } else {
                    msg.trim_end()
                }
            );
            std::process::exit(1);
        }
    }
}

/// A shim started ahead of need: it detaches at once (the launching process exits, so whoever
/// started it reaps that and never waits on the container), then waits on stdin for its
/// arguments. Exec, dynamic loading and the fork are paid before anyone asks for a
/// container; the launcher's end of the pipe closing (EOF before any argument) ends it.
/// Its command line keeps saying `--standby`; the container it serves is in its state dir.
fn standby(announce: bool) -> i32 {
    // `--announce` (berthd's pool): started ahead of need, so the start-up in the
    // background; waiting at the nice it was started at, which it then says on stdout.
    let normal_nice = if announce {
        berth_shim::sys::enter_background()
    } else {
        0
    };
    // SAFETY: single-threaded here; the parent only exits.
    match unsafe { berth_shim::sys::fork() } {
        Err(e) => {
            eprintln!("berth-shim: fork: {e}");
            return 1;
        }
        Ok(berth_shim::sys::Forked::Child) => {}
        Ok(berth_shim::sys::Forked::Parent(_)) => return 0,
    }
    if announce {
        // berthd pools only standbys that got this far.
        let _ = berth_shim::sys::set_nice(0, normal_nice);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&[berth_shim::protocol::STANDBY_WAITS]);
        let _ = out.flush();
    }
    let mut input = Vec::new();
    let mut buf = [0u8; 4096];
    let mut stdin = std::io::stdin().lock();
    let args = loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => return 0,
            Ok(n) => {
                input.extend_from_slice(&buf[..n]);
                if let Some(args) = berth_shim::protocol::decode_launch_args(&input) {
                    break args;
                }
            }
        }
    };
    drop(stdin);
    let t0 = std::time::Instant::now();
    // SAFETY: dup(2) of our stdout; checked before the copy is owned here.
    let fd = unsafe { libc::dup(1) };
    if fd < 0 {
        return 1;
    }
    // SAFETY: fd was just made by dup and is owned by nothing else.
    let ready = unsafe { OwnedFd::from_raw_fd(fd) };
    match parse(&args) {
        Ok(cfg) => serve(cfg, ready, t0),
        Err(m) => {
            let mut f = std::fs::File::from(ready);
            let _ = f.write_all(m.as_bytes());
            let _ = f.write_all(b"\0");
            2
        }
    }
}

/// The detached shim: becomes a session leader and child subreaper, creates the container,
/// says "ok" (or why not) on `ready`, then serves.
fn serve(cfg: Config, ready: OwnedFd, t0: std::time::Instant) -> i32 {
    let mut ready = std::fs::File::from(ready);
    let fail = |ready: &mut std::fs::File, m: String| {
        let _ = ready.write_all(m.as_bytes());
        let _ = ready.write_all(b"\0");
        1
    };
    // A container parked ahead of need is speculative work: it is made in the background
    // (nice 19, inherited by the container's init), in the launcher's session, whose
    // scheduling group holds the clients whose requests it would otherwise slow down (a
    // session of our own would be an autogroup of its own, competing as an equal). A create
    // never waits for a container still being parked: it takes another slot. The shim
    // leaves for its own session, at normal priority, once the container is parked.
    let mut normal_nice = 0;
    if cfg.park {
        normal_nice = berth_shim::sys::enter_background();
    } else if let Err(e) = berth_shim::sys::setsid() {
        return fail(&mut ready, format!("setsid: {e}"));
    }
    if let Err(e) = berth_shim::sys::set_child_subreaper() {
        return fail(&mut ready, format!("PR_SET_CHILD_SUBREAPER: {e}"));
    }
    if let Err(e) = std::fs::create_dir_all(&cfg.state_dir) {
        return fail(
            &mut ready,
            format!("create {}: {e}", cfg.state_dir.display()),
        );
    }
    let sock = cfg.state_dir.join(berth_shim::protocol::SOCKET);
    let _ = std::fs::remove_file(&sock);
    let listener = match UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) => return fail(&mut ready, format!("listen on {}: {e}", sock.display())),
    };
    let mut shim = match Shim::start(cfg.clone(), listener) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&sock);
            return fail(&mut ready, e.to_string());
        }
    };
    if cfg.park {
        // Best effort: a parked container left in the background still works.
        if let Err(e) = shim.leave_background(normal_nice) {
            eprintln!("berth-shim: {e}");
        }
        // Our stdin is the launcher's pipe (see `Shim::watch_launcher`); a copy, before
        // the standard descriptors go to /dev/null below.
        if let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() {
            shim.watch_launcher(fd);
        }
    }
    // Our stdio belonged to whoever started us: from now on, a log file in the state dir.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cfg.state_dir.join("shim.log"));
    if let (Ok(log), Ok(null)) = (log, std::fs::File::open("/dev/null")) {
        // SAFETY: dup2 onto the standard descriptors, which nothing else holds as owned fds.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(log.as_raw_fd(), 2);
        }
    }
    shim.ready_us = t0.elapsed().as_micros().max(1) as u64;
    let ok = [berth_shim::protocol::READY_OK.as_bytes(), b"\0"].concat();
    if ready.write_all(&ok).is_err() {
        // Whoever started us is gone: serve anyway, the daemon finds us by the socket.
    }
    drop(ready);
    match shim.run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            1
        }
    }
}

/// `--read-log FILE`: both streams' text to stdout, in order.
fn read_log(path: &str) -> i32 {
    use berth_shim::logfile::Stream;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match berth_shim::logread::copy_log(
        std::path::Path::new(path),
        &[Stream::Stdout, Stream::Stderr],
        &mut out,
    ) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            1
        }
    }
}
