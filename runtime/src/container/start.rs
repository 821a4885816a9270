//! `start`: release a created container's init by reading its exec FIFO, then wait until the
//! init has run the startContainer hooks and exec'd the program (the FIFO closes, it is
//! close-on-exec) or reports what failed instead.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::{Container, Status};
use crate::error::{Error, IoContext, Result};
use crate::hooks::in_container::{self, Outcome};
use crate::hooks::Kind;
use crate::init::{Failure, Report, Step};
use crate::sys;

pub fn start(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if status != Status::Created {
        return Err(Error::BadState {
            id: id.to_string(),
            status: status.as_str(),
            what: "only a created container can be started",
        });
    }
    let pidfd = c.init_pidfd().ok_or(Error::BadState {
        id: id.to_string(),
        status: "stopped",
        what: "its init exited before start",
    })?;
    start_held(&c, pidfd.as_fd())
}

/// `start` for a caller that holds the created container and its init's pidfd (berth-shim,
/// which made it): the same release, without loading the state and proving the pid again.
pub fn start_held(c: &Container, pidfd: BorrowedFd<'_>) -> Result<()> {
    let id = c.record.id.as_str();
    let fifo_path = c.fifo_path();
    let fifo = sys::openat(
        None,
        &crate::cgroups::cstr(&fifo_path)?,
        libc::O_RDONLY | libc::O_NONBLOCK,
        0,
    )
    .ctx("open", &fifo_path)?;
    // Wait for the init's byte, or for the init to die while we wait.
    let mut fds = [
        libc::pollfd {
            fd: fifo.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    sys::poll(&mut fds, -1).map_err(|e| Error::sys("poll exec.fifo", e))?;
    let mut b = [0u8; 1];
    let n = if fds[0].revents & libc::POLLIN != 0 {
        sys::read(fifo.as_fd(), &mut b).map_err(|e| Error::sys("read exec.fifo", e))?
    } else {
        0
    };
    if n != 1 {
        return Err(Error::BadState {
            id: id.to_string(),
            status: "stopped",
            what: "its init exited before start",
        });
    }
    fs::remove_file(&fifo_path).ctx("remove", &fifo_path)?;
    if let Some(failed) = await_exec(&fifo)? {
        // The init has exited: the container is stopped; `delete` removes it and runs the
        // poststop hooks (OCI lifecycle: a failed startContainer hook stops the container).
        return Err(Error::Init(describe(c, &failed)));
    }
    if c.record.hooks {
        let b = crate::spec::load_created(&c.record.bundle)?;
        let state = crate::hooks::state_json(&b.spec, id, c.record.pid, "running", &b.dir);
        crate::hooks::run_warn(&b.spec, crate::hooks::Kind::Poststart, &state);
    }
    Ok(())
}

/// After the start byte: nothing more before the FIFO closes means the program was exec'd;
/// a report means the init failed first (a startContainer hook, or execve itself).
fn await_exec(fifo: &OwnedFd) -> Result<Option<(Report, Vec<u8>)>> {
    // The FIFO was opened non-blocking for the first poll; wait for each read.
    let mut buf = [0u8; Report::SIZE];
    let got = read_all_polled(fifo, &mut buf)?;
    if got < Report::SIZE {
        return Ok(None);
    }
    let r = Report::from_bytes(&buf);
    let mut detail = vec![0u8; (r.detail_len as usize).min(Report::MAX_DETAIL)];
    let n = read_all_polled(fifo, &mut detail)?;
    detail.truncate(n);
    Ok(Some((r, detail)))
}

fn read_all_polled(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let mut p = [libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        sys::poll(&mut p, -1).map_err(|e| Error::sys("poll exec.fifo", e))?;
        match sys::read(fd.as_fd(), &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::sys("read exec.fifo", e)),
        }
    }
    Ok(got)
}

/// The message for a failure the init reported after `start` released it.
fn describe(c: &Container, (r, detail): &(Report, Vec<u8>)) -> String {
    let Some(f) = Failure::from_report(r) else {
        return "container init sent an unexpected report after start".into();
    };
    let spec = crate::spec::load_created(&c.record.bundle).map(|b| b.spec);
    let i = f.index as usize;
    match f.step {
        Step::StartContainerHook => {
            let hook = spec
                .as_ref()
                .ok()
                .and_then(|s| crate::hooks::of(s, Kind::StartContainer).get(i).cloned());
            in_container::describe(
                Kind::StartContainer,
                i,
                &hook
                    .as_ref()
                    .map_or("?".into(), |h| h.path().display().to_string()),
                hook.as_ref().and_then(|h| h.timeout()),
                Outcome::decode(f.errno, f.status),
                detail,
            )
        }
        step => {
            let arg0 = spec
                .ok()
                .and_then(|s| s.process().as_ref()?.args().as_ref()?.first().cloned())
                .unwrap_or_else(|| "?".into());
            format!(
                "container init, after start ({step:?}, exec {arg0}): {}",
                std::io::Error::from_raw_os_error(f.errno)
            )
        }
    }
}
