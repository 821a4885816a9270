//! `start`: release a created container's init by reading its exec FIFO.

use std::fs;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use super::{Container, Status};
use crate::error::{Error, IoContext, Result};
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
    if c.record.hooks {
        let b = crate::spec::load_created(&c.record.bundle)?;
        let state = crate::hooks::state_json(&b.spec, id, c.record.pid, "running", &b.dir);
        crate::hooks::run_warn(&b.spec, crate::hooks::Kind::Poststart, &state);
    }
    Ok(())
}
