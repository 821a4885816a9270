//! The shim's own syscall wrappers (the container ones — pidfds, waitid, pipes, fd passing —
//! are berth-runtime's `sys`, reused). Descriptors come back as `OwnedFd`; errors as
//! `io::Error` with the errno.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Become the adopter of orphaned descendants (PR_SET_CHILD_SUBREAPER).
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: integer-only prctl.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })?;
    Ok(())
}

/// Start a new session (leaving the daemon's process group and terminal).
pub fn setsid() -> io::Result<()> {
    // SAFETY: no arguments; fails only if we already lead a process group.
    check(unsafe { libc::setsid() })?;
    Ok(())
}

/// The nice value speculative work runs at (a container parked ahead, a standby's
/// start-up, a `--rm` container's clean-up): it yields the CPU to the clients it works
/// ahead for. Not SCHED_IDLE, which can starve a task holding a kernel lock for seconds.
pub const BACKGROUND_NICE: libc::c_int = 19;

/// This thread's nice value.
pub fn nice() -> io::Result<libc::c_int> {
    // SAFETY: getpriority(2); -1 is also a valid nice value, told apart from an error by
    // errno, cleared first.
    unsafe {
        *libc::__errno_location() = 0;
        let n = libc::getpriority(libc::PRIO_PROCESS, 0);
        if n == -1 && *libc::__errno_location() != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n)
    }
}

/// This thread into the background ([`BACKGROUND_NICE`]); the nice it had, to go back to
/// (0 if it could not be read). Best effort.
pub fn enter_background() -> libc::c_int {
    let prev = nice().unwrap_or(0);
    let _ = set_nice(0, BACKGROUND_NICE);
    prev
}

/// Sets the nice value of process `pid` (0: this thread).
pub fn set_nice(pid: libc::pid_t, nice: libc::c_int) -> io::Result<()> {
    // SAFETY: plain setpriority(2).
    check(unsafe { libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, nice) })?;
    Ok(())
}

pub enum Forked {
    Child,
    Parent(libc::pid_t),
}

/// fork(2).
///
/// # Safety
/// The caller must be single-threaded (the child gets only the calling thread).
pub unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller guarantees single-threadedness.
    let pid = check(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid)
    })
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a valid descriptor.
    let fl = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) })?;
    Ok(())
}

/// F_SETPIPE_SZ; returns the size the kernel granted.
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> io::Result<usize> {
    // SAFETY: integer-only fcntl on a valid descriptor.
    let n = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) })?;
    Ok(n as usize)
}

/// read(2) that reports EAGAIN as `WouldBlock`; 0 is end of file.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// writev(2) on a socket or pipe, retrying EINTR; returns bytes written (possibly short).
pub fn writev(fd: RawFd, bufs: &[&[u8]]) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 4];
    let n = bufs.len().min(4);
    for (v, b) in iov.iter_mut().zip(bufs) {
        v.iov_base = b.as_ptr() as *mut libc::c_void;
        v.iov_len = b.len();
    }
    loop {
        // SAFETY: the first n iovecs describe live, readable slices.
        let r = unsafe { libc::writev(fd, iov.as_ptr(), n as libc::c_int) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// send(2) with MSG_NOSIGNAL and MSG_DONTWAIT (a closed peer is EPIPE, never SIGPIPE).
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for reads of its length.
        let r = unsafe {
            libc::send(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers are allowed.
    let fd = check(unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// shutdown(SHUT_WR) on a socket: the peer reads end of file.
pub fn shutdown_write(fd: BorrowedFd<'_>) {
    // SAFETY: integer-only; failure (peer gone) needs no handling.
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) };
}

/// Block `sigs` and return a non-blocking signalfd for them.
pub fn signalfd(sigs: &[libc::c_int]) -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t; we are single-threaded when blocking.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in sigs {
            libc::sigaddset(&mut set, *s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    // SAFETY: set is valid; -1 asks for a new descriptor.
    let fd = check(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Empty a signalfd (the shim only needs to know that a signal came).
pub fn drain_signalfd(fd: RawFd) {
    let mut buf = [0u8; 128 * 4];
    // Bounded: each read takes up to four queued signals; 64 reads are far more than pending.
    for _ in 0..64 {
        match read(fd, &mut buf) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

/// Undo the shim's signal mask in a child that will exec.
pub fn unblock_all_signals() {
    // SAFETY: set is filled by sigemptyset; SIG_SETMASK with an empty set unblocks all.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// A child that has exited (without reaping it): its pid, or None when none has.
pub fn peek_exited_child() -> io::Result<Option<libc::pid_t>> {
    // SAFETY: siginfo_t is plain data; zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: info is a valid siginfo_t for the kernel to fill.
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return Ok(None),
            _ => return Err(e),
        }
    }
    // SAFETY: waitid filled si_pid (0 when no child has exited).
    let pid = unsafe { info.si_pid() };
    Ok((pid != 0).then_some(pid))
}

/// Reap one exited child by pid.
pub fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: status is a valid int; the child has exited (seen by peek_exited_child).
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

/// Set a pty's window size.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) })?;
    Ok(())
}

/// Give freed heap back to the kernel (after container set-up, which allocates and frees).
pub fn trim_heap() {
    // SAFETY: glibc's malloc_trim is safe to call at any time in a single-threaded process.
    unsafe { libc::malloc_trim(0) };
}

/// Give back the stack pages below the caller's frame (less `keep` bytes): container set-up
/// runs deep and leaves ~60 kB of stack resident that the idle loop never touches again. A
/// later deeper call faults fresh zero pages in, as a new stack would.
#[inline(never)]
pub fn trim_stack(keep: usize) {
    let marker = 0u8;
    let sp = std::ptr::addr_of!(marker) as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some(start) = maps.lines().find_map(|l| {
        let (range, rest) = l.split_once(' ')?;
        rest.ends_with("[stack]")
            .then(|| usize::from_str_radix(range.split_once('-')?.0, 16).ok())
            .flatten()
    }) else {
        return;
    };
    let page = 4096;
    let end = sp.saturating_sub(keep) & !(page - 1);
    if end > start {
        // SAFETY: [start, end) is the unused part of our own stack, below every live frame
        // (the current one minus `keep` bytes of margin); MADV_DONTNEED only drops its pages.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

pub fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: path is a valid C string.
    let fd = check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Replace fd `target` (0, 1 or 2) with `with`.
pub fn dup_onto(with: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    // SAFETY: integer-only; the caller gives up what `target` was.
    check(unsafe { libc::dup2(with.as_raw_fd(), target) })?;
    Ok(())
}

/// CLOCK_REALTIME now, as (seconds, nanoseconds) since the epoch (vDSO, no syscall).
pub fn realtime() -> (i64, u32) {
    // SAFETY: timespec is plain data filled by clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: ts is valid for writes.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec, ts.tv_nsec as u32)
}

/// exit_group without running destructors or atexit handlers (the fork parent's exit).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: ends the process; nothing after it runs.
    unsafe { libc::_exit(code) }
}

/// Ask for a socket send buffer of `bytes` (SO_SNDBUFFORCE, which root may set past
/// net.core.wmem_max; SO_SNDBUF capped at it otherwise). The kernel doubles the figure for its
/// bookkeeping, as socket(7) says.
pub fn set_send_buffer(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    let set = |opt| {
        // SAFETY: v is a live c_int and its size is passed with it.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
    };
    set(libc::SO_SNDBUFFORCE).or_else(|_| set(libc::SO_SNDBUF))?;
    Ok(())
}
