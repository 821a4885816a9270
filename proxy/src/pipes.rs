//! A bounded pool of kernel pipes for splice.
//!
//! A connection only holds a pipe while bytes are in flight through it: an idle connection
//! holds none, so 10,000 idle connections cost no pipes and stay clear of the per-user pipe
//! limit. When the pool is exhausted (or pipe creation fails) the caller falls back to a
//! buffered copy through its scratch buffer; that decision is the caller's, the pool only says
//! "none available".
//!
//! Each splice moves at most one pipe's worth, so the size sets how much a relay step carries.
//! The default, 128 KiB, is what moved a bulk stream at the least CPU for the whole path here
//! (client, proxy and server confined to one core: 128 KiB 13.5 Gbit/s, 256 KiB 12-13,
//! 64 KiB 12.8, 1 MiB 11.3-11.7): larger steps spend fewer syscalls in the proxy but let the
//! bytes leave the cache (1 MiB of L2 per core here) before the receiver copies them. A pipe
//! costs nothing while idle (its pages are the sockets' own, lent for one relay step); when the
//! kernel refuses the size (EPERM above /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE, or
//! past the per-user pipe quota), the pipe keeps the size it has.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// One pipe: bytes spliced into `w` come out of `r`.
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Bytes it holds when full: the most one splice into it can move.
    cap: usize,
}

impl Pipe {
    pub fn read_end(&self) -> RawFd {
        self.r.as_raw_fd()
    }
    pub fn write_end(&self) -> RawFd {
        self.w.as_raw_fd()
    }
    pub fn capacity(&self) -> usize {
        self.cap
    }
}

pub struct PipePool {
    free: Vec<Pipe>,
    /// Pipes in existence (free + lent out).
    live: usize,
    max: usize,
    size: usize,
    /// Creation failures, reported once.
    failed_once: bool,
    /// A pipe kept a smaller size than asked for; reported once.
    small_once: bool,
}

impl PipePool {
    /// `max` pipes of `size` bytes each (rounded up by the kernel to a power-of-two of pages;
    /// 0 keeps the kernel's default).
    pub fn new(max: usize, size: usize) -> Self {
        PipePool {
            free: Vec::with_capacity(max.min(1024)),
            live: 0,
            max,
            size,
            failed_once: false,
            small_once: false,
        }
    }

    /// Pipes currently lent out.
    pub fn in_use(&self) -> usize {
        self.live - self.free.len()
    }

    /// Borrow an empty pipe, or `None` when the pool is at its bound or the kernel refuses.
    pub fn get(&mut self) -> Option<Pipe> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        if self.live >= self.max {
            return None;
        }
        let (r, w) = match crate::sys::pipe() {
            Ok(p) => p,
            Err(e) => {
                if !self.failed_once {
                    self.failed_once = true;
                    eprintln!(
                        "berth-proxy: pipe: {e}; using buffered copies while pipes are short"
                    );
                }
                return None;
            }
        };
        let sized = match self.size {
            0 => crate::sys::pipe_size(w.as_fd()),
            want => crate::sys::set_pipe_size(w.as_fd(), want).or_else(|e| {
                if !self.small_once {
                    self.small_once = true;
                    eprintln!("berth-proxy: F_SETPIPE_SZ {want}: {e}; such pipes keep their size");
                }
                crate::sys::pipe_size(w.as_fd())
            }),
        };
        // F_GETPIPE_SZ cannot fail on a pipe; a page is the least a pipe holds.
        let cap = sized.unwrap_or(4096);
        self.live += 1;
        Some(Pipe { r, w, cap })
    }

    /// Return a pipe that is empty. A pipe that still holds bytes must be dropped instead.
    pub fn put(&mut self, p: Pipe) {
        self.free.push(p);
    }

    /// Forget a pipe that was dropped (e.g. it still held bytes of an aborted connection).
    pub fn discard(&mut self, p: Pipe) {
        drop(p);
        self.live -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_bounded_and_reuses() {
        let mut pool = PipePool::new(2, 16 * 1024);
        let a = pool.get().unwrap();
        let b = pool.get().unwrap();
        assert!(pool.get().is_none(), "bound of 2 exceeded");
        assert_eq!(pool.in_use(), 2);
        let ra = a.read_end();
        pool.put(a);
        let again = pool.get().unwrap();
        assert_eq!(again.read_end(), ra, "free pipe not reused");
        pool.discard(b);
        assert!(pool.get().is_some(), "discard did not free a slot");
    }

    #[test]
    fn pipe_size_is_applied() {
        let mut pool = PipePool::new(1, 16 * 1024);
        let p = pool.get().unwrap();
        // SAFETY: F_GETPIPE_SZ on a pipe we own.
        let sz = unsafe { libc::fcntl(p.write_end(), libc::F_GETPIPE_SZ) };
        assert_eq!(sz, 16 * 1024);
        assert_eq!(p.capacity(), 16 * 1024);
    }

    #[test]
    fn refused_size_keeps_the_pipe() {
        // Far above pipe-max-size: refused without CAP_SYS_RESOURCE, ENOMEM-ish with it; either
        // way a working pipe comes back, with the capacity it really has.
        let mut pool = PipePool::new(1, 1 << 30);
        let p = pool.get().expect("a pipe even when the size is refused");
        // SAFETY: F_GETPIPE_SZ on a pipe we own.
        let sz = unsafe { libc::fcntl(p.write_end(), libc::F_GETPIPE_SZ) };
        assert_eq!(p.capacity(), sz as usize);
    }
}
