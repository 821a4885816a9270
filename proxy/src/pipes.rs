//! A bounded pool of kernel pipes for splice.
//!
//! A connection only holds a pipe while bytes are in flight through it: an idle connection
//! holds none, so 10,000 idle connections cost no pipes and stay clear of the per-user pipe
//! limit. When the pool is exhausted (or pipe creation fails) the caller falls back to a
//! buffered copy through its scratch buffer; that decision is the caller's, the pool only says
//! "none available".

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// One pipe: bytes spliced into `w` come out of `r`.
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Pipe {
    pub fn read_end(&self) -> RawFd {
        self.r.as_raw_fd()
    }
    pub fn write_end(&self) -> RawFd {
        self.w.as_raw_fd()
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
}

impl PipePool {
    /// `max` pipes of `size` bytes each (rounded up by the kernel to a power-of-two of pages).
    pub fn new(max: usize, size: usize) -> Self {
        PipePool {
            free: Vec::with_capacity(max.min(1024)),
            live: 0,
            max,
            size,
            failed_once: false,
        }
    }

    /// Capacity of each pipe: the most bytes one splice into it can move.
    pub fn pipe_size(&self) -> usize {
        self.size
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
        match crate::sys::pipe(self.size) {
            Ok((r, w)) => {
                self.live += 1;
                Some(Pipe { r, w })
            }
            Err(e) => {
                if !self.failed_once {
                    self.failed_once = true;
                    eprintln!(
                        "berth-proxy: pipe({} bytes) failed: {e}; using buffered copies while pipes are short",
                        self.size
                    );
                }
                None
            }
        }
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
    }
}
