//! Thin wrappers around the raw syscalls the proxy uses. Each one is wrapped once here and
//! returns an `OwnedFd` (or borrows one), so no caller ever holds a bare descriptor to close.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A socket-level failure, naming the operation and the address it concerned.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("{op} {addr}: {source}")]
    Addr {
        op: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{op}: {source}")]
    Op {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl SysError {
    pub fn addr(op: &'static str, addr: SocketAddr, source: io::Error) -> Self {
        SysError::Addr { op, addr, source }
    }
    pub fn op(op: &'static str, source: io::Error) -> Self {
        SysError::Op { op, source }
    }
    /// The underlying OS error number, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            SysError::Addr { source, .. } | SysError::Op { source, .. } => source.raw_os_error(),
        }
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// A socket address in the kernel's layout, kept alive while the kernel may read it.
#[derive(Clone, Copy)]
pub struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl SockAddr {
    pub fn from_std(addr: SocketAddr) -> Self {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
                size_of::<libc::sockaddr_in6>()
            }
        };
        SockAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }

    pub fn to_std(&self) -> Option<SocketAddr> {
        match self.storage.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*(&self.storage as *const _ as *const libc::sockaddr_in6) };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    pub fn as_ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }

    pub fn len(&self) -> libc::socklen_t {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn family(addr: &SocketAddr) -> libc::c_int {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

/// socket(2) with SOCK_NONBLOCK | SOCK_CLOEXEC.
pub fn socket(family: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd =
        cvt(unsafe { libc::socket(family, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: the kernel just returned this descriptor and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A socket matching the family of `addr`.
pub fn socket_for(addr: &SocketAddr, ty: libc::c_int) -> io::Result<OwnedFd> {
    socket(family(addr), ty)
}

pub fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value points at a live c_int of the stated size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &val as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

pub fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// Make the next close(2) of this TCP socket send RST instead of FIN.
pub fn set_linger_zero(fd: BorrowedFd<'_>) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the option value points at a live linger struct of the stated size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            size_of::<libc::linger>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

pub fn bind(fd: BorrowedFd<'_>, addr: &SocketAddr) -> io::Result<()> {
    let sa = SockAddr::from_std(*addr);
    // SAFETY: sa is a valid sockaddr of the stated length.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), sa.as_ptr(), sa.len()) })?;
    Ok(())
}

pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

pub fn connect(fd: BorrowedFd<'_>, addr: &SocketAddr) -> io::Result<()> {
    let sa = SockAddr::from_std(*addr);
    // SAFETY: sa is a valid sockaddr of the stated length.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), sa.as_ptr(), sa.len()) })?;
    Ok(())
}

fn prepare_bind(fd: BorrowedFd<'_>, addr: &SocketAddr, reuse: bool) -> io::Result<()> {
    // SO_REUSEADDR lets a TCP listener rebind past TIME_WAIT; on UDP it would let two sockets
    // share the port, hiding "port already in use", so UDP does without.
    if reuse {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    if addr.is_ipv6() {
        // A "::" listener must not also claim the IPv4 port: docker publishes 0.0.0.0 and ::
        // as two mappings.
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    Ok(())
}

/// A non-blocking TCP listening socket bound to `addr`.
pub fn tcp_listener(addr: &SocketAddr) -> Result<OwnedFd, SysError> {
    let fd = socket_for(addr, libc::SOCK_STREAM).map_err(|e| SysError::addr("socket", *addr, e))?;
    prepare_bind(fd.as_fd_ref(), addr, true).map_err(|e| SysError::addr("setsockopt", *addr, e))?;
    bind(fd.as_fd_ref(), addr).map_err(|e| SysError::addr("bind tcp", *addr, e))?;
    listen(fd.as_fd_ref(), 4096).map_err(|e| SysError::addr("listen tcp", *addr, e))?;
    Ok(fd)
}

/// A non-blocking UDP socket bound to `addr`.
pub fn udp_bound(addr: &SocketAddr) -> Result<OwnedFd, SysError> {
    let fd = socket_for(addr, libc::SOCK_DGRAM).map_err(|e| SysError::addr("socket", *addr, e))?;
    prepare_bind(fd.as_fd_ref(), addr, false)
        .map_err(|e| SysError::addr("setsockopt", *addr, e))?;
    bind(fd.as_fd_ref(), addr).map_err(|e| SysError::addr("bind udp", *addr, e))?;
    Ok(fd)
}

/// A non-blocking UDP socket connected to `addr`.
pub fn udp_connected(addr: &SocketAddr) -> Result<OwnedFd, SysError> {
    let fd = socket_for(addr, libc::SOCK_DGRAM).map_err(|e| SysError::addr("socket", *addr, e))?;
    connect(fd.as_fd_ref(), addr).map_err(|e| SysError::addr("connect udp", *addr, e))?;
    Ok(fd)
}

/// Small extension so `&OwnedFd` reads as a borrowed descriptor at call sites.
pub trait AsFdRef {
    fn as_fd_ref(&self) -> BorrowedFd<'_>;
}

impl AsFdRef for OwnedFd {
    fn as_fd_ref(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.as_fd()
    }
}

/// Turn on O_NONBLOCK (for descriptors inherited from a parent, e.g. docker's listen fd).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFL/F_SETFL on a descriptor we borrow.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

pub fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl F_SETFD on a descriptor we borrow.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(())
}

/// The address a socket is bound to.
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    // SAFETY: all-zero sockaddr_storage is valid.
    let mut sa: SockAddr = SockAddr {
        storage: unsafe { zeroed() },
        len: size_of::<libc::sockaddr_storage>() as libc::socklen_t,
    };
    // SAFETY: storage and len describe a writable buffer of the stated size.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            &mut sa.storage as *mut _ as *mut libc::sockaddr,
            &mut sa.len,
        )
    })?;
    sa.to_std()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an inet socket"))
}

/// getsockopt(SO_TYPE) and SO_ACCEPTCONN, to validate an inherited descriptor.
pub fn socket_type(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len describe a writable c_int.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            &mut v as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(v)
}

pub fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor we borrow.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) })?;
    Ok(())
}

/// splice(2) without blocking, moving pages rather than copying where the kernel can.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: null offsets are valid for pipes and sockets; descriptors are borrowed by the caller.
    cvt_size(unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
        )
    })
}

/// A non-blocking pipe (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a writable array of two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: the kernel just returned these descriptors; we are their only owner.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// F_SETPIPE_SZ: returns the capacity the kernel gave (`size` rounded up to a power of two
/// of pages). Above /proc/sys/fs/pipe-max-size it needs CAP_SYS_RESOURCE (EPERM).
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> io::Result<usize> {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: fcntl F_SETPIPE_SZ on a descriptor the caller borrows.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) }).map(|n| n as usize)
}

/// F_GETPIPE_SZ: the pipe's capacity in bytes.
pub fn pipe_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: fcntl F_GETPIPE_SZ on a descriptor the caller borrows.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) }).map(|n| n as usize)
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a writable buffer of the stated length.
    cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) })
}

pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a readable buffer of the stated length.
    cvt_size(unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) })
}

/// send(2) on a connected socket; MSG_NOSIGNAL so a closed peer is an error, not SIGPIPE.
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a readable buffer of the stated length.
    cvt_size(unsafe {
        libc::send(
            fd,
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    })
}

pub fn recv_from(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
    // SAFETY: all-zero sockaddr_storage is valid.
    let mut sa = SockAddr {
        storage: unsafe { zeroed() },
        len: size_of::<libc::sockaddr_storage>() as libc::socklen_t,
    };
    // SAFETY: buf and the address storage are writable buffers of the stated lengths.
    let n = cvt_size(unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
            &mut sa.storage as *mut _ as *mut libc::sockaddr,
            &mut sa.len,
        )
    })?;
    Ok((n, sa))
}

pub fn send_to(fd: RawFd, buf: &[u8], to: &SockAddr) -> io::Result<usize> {
    // SAFETY: buf and the address are readable buffers of the stated lengths.
    cvt_size(unsafe {
        libc::sendto(
            fd,
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            libc::MSG_NOSIGNAL,
            to.as_ptr(),
            to.len(),
        )
    })
}

/// accept4(2) without blocking, for the control socket.
pub fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers are allowed by accept4.
    let nfd = cvt(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: the kernel just returned this descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(nfd) })
}

/// Block SIGTERM, SIGINT and SIGHUP for this thread and return a signalfd that reports them.
pub fn termination_signalfd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it.
    let mut set: libc::sigset_t = unsafe { zeroed() };
    // SAFETY: set is a valid sigset_t; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
    }
    // SAFETY: set is initialised; the old mask pointer may be null.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: -1 asks for a new signalfd; set is initialised.
    let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: the kernel just returned this descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Drain one pending signal from a signalfd; returns its number.
pub fn read_signal(fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    // SAFETY: signalfd_siginfo is plain data.
    let mut info: libc::signalfd_siginfo = unsafe { zeroed() };
    // SAFETY: info is a writable buffer of exactly one siginfo record.
    let buf = unsafe {
        std::slice::from_raw_parts_mut(
            &mut info as *mut _ as *mut u8,
            size_of::<libc::signalfd_siginfo>(),
        )
    };
    match read(fd.as_raw_fd(), buf) {
        Ok(_) => Ok(Some(info.ssi_signo)),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Raise the RLIMIT_NOFILE soft limit to the hard limit (raising the hard limit needs
/// CAP_SYS_RESOURCE, which we do not assume). Returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    // SAFETY: rlimit is plain data; getrlimit fills it.
    let mut rl: libc::rlimit = unsafe { zeroed() };
    // SAFETY: rl is a writable rlimit.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) })?;
    if rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: rl is a valid rlimit with soft <= hard.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) })?;
    }
    Ok(rl.rlim_cur as u64)
}

/// Drop start-up code from the resident set: for every executable file mapping (our text,
/// libc's), advise MADV_RANDOM (no fault-around: a later fault maps one page, not 16) and
/// MADV_DONTNEED (unmap what start-up touched). Text mappings are never written, so the pages
/// come back unchanged from the page cache when the loop needs them. Returns bytes advised.
pub fn trim_startup_text() -> io::Result<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut total = 0;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        // Only private, executable, never-writable file mappings: "r-xp" with a path.
        if perms != "r-xp" || !line.contains('/') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        else {
            continue;
        };
        // SAFETY: the range is a whole mapping of this process's read-only executable text;
        // MADV_RANDOM changes only read-ahead, and MADV_DONTNEED on an unmodified private file
        // mapping only drops pages that fault back identical from the file.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM);
            if libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) == 0 {
                total += end - start;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trips_both_families() {
        for s in ["127.0.0.1:8080", "[::1]:443", "[fe80::1%2]:53", "0.0.0.0:0"] {
            let a: SocketAddr = s.parse().unwrap();
            assert_eq!(SockAddr::from_std(a).to_std(), Some(a), "{s}");
        }
    }

    #[test]
    fn trimming_text_keeps_the_process_running() {
        assert!(
            trim_startup_text().unwrap() > 0,
            "no executable mapping advised"
        );
        // Code runs again after its pages were dropped: they fault back from the file.
        sockaddr_round_trips_both_families();
    }

    #[test]
    fn listener_reports_address_in_use() {
        let a = tcp_listener(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let bound = local_addr(a.as_fd_ref()).unwrap();
        let err = tcp_listener(&bound).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EADDRINUSE));
        assert!(err.to_string().contains(&bound.to_string()), "{err}");
    }
}
