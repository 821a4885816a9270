//! Network namespaces made ahead of need. A container with its own network stack ("none",
//! and "bridge" until bridge networking lands) joins one of these instead of having the
//! runtime clone a new one: creating a network namespace is the most expensive single step
//! of a container start (~0.7 ms of kernel work here), and a thread of berthd can do it
//! while nobody waits. Each namespace has its loopback up, as Docker gives every container.
//!
//! The pool thread `unshare`s a new namespace for itself (a thread may; the rest of berthd
//! stays in the host's), brings `lo` up from a socket made inside it, and keeps an fd of
//! `/proc/thread-self/ns/net`. The runtime joins it through `/proc/<berthd>/fd/<fd>`, which
//! stays valid while the [`Netns`] is alive; dropping it after the create leaves the
//! container's processes as the namespace's only holders.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How many namespaces wait ready: enough for a burst of `docker run`s while the thread
/// makes more.
const READY: usize = 2;

/// A network namespace of berthd's pool, handed to one container.
pub struct Netns {
    fd: OwnedFd,
}

impl Netns {
    /// A path the runtime can open while this value lives.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.fd.as_raw_fd()
        ))
    }
}

#[derive(Default)]
struct Shared {
    ready: Mutex<VecDeque<Result<OwnedFd, String>>>,
    changed: Condvar,
}

pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// Starts the pool's thread.
    pub fn start() -> io::Result<Pool> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::Builder::new()
            .name("netns-pool".into())
            .spawn(move || fill(&s))?;
        Ok(Pool { shared })
    }

    /// A ready namespace, waiting (bounded) for the thread when the pool ran dry.
    pub fn take(&self) -> Result<Netns, String> {
        let ready = self.shared.ready.lock().unwrap();
        let (mut ready, _) = self
            .shared
            .changed
            .wait_timeout_while(ready, Duration::from_secs(5), |r| r.is_empty())
            .unwrap();
        let item = ready
            .pop_front()
            .unwrap_or_else(|| Err("no network namespace became ready in 5 s".into()));
        drop(ready);
        self.shared.changed.notify_all();
        item.map(|fd| Netns { fd })
    }
}

/// A namespace taken from a pool that still has one is replaced a little later, not while
/// the start that took it runs: on two cores the unshare (~0.6 ms of kernel work) would
/// compete with it.
const REFILL_DELAY: Duration = Duration::from_millis(15);

fn fill(s: &Shared) {
    loop {
        let mut ready = s.ready.lock().unwrap();
        while ready.len() >= READY {
            ready = s.changed.wait(ready).unwrap();
        }
        let someone_waits = ready.is_empty();
        drop(ready);
        if !someone_waits {
            std::thread::sleep(REFILL_DELAY);
        }
        let made = make().map_err(|e| format!("making a network namespace: {e}"));
        let failed = made.is_err();
        s.ready.lock().unwrap().push_back(made);
        s.changed.notify_all();
        if failed {
            // Do not spin on a host that refuses: the error reaches each start, and the pool
            // tries again a little later.
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// A new network namespace with `lo` up; this thread is left inside it.
fn make() -> io::Result<OwnedFd> {
    use berth_runtime::sys;
    // unshare(CLONE_NEWNET) changes only the calling thread's network namespace.
    sys::unshare(libc::CLONE_NEWNET)?;
    let ns = sys::openat(None, c"/proc/thread-self/ns/net", libc::O_RDONLY, 0)?;
    loopback_up()?;
    Ok(ns)
}

fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2); the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw was just created and is owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass, which outlives
    // both calls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
