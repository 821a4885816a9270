//! `delete`: remove a stopped (or, with force, any) container.

use std::os::fd::AsFd;
use std::path::Path;

use super::{wait_exit, Container, Status};
use crate::error::{Error, Result};
use crate::sys;

pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let c = match Container::load(root, id) {
        Ok(c) => c,
        // A directory without a record is a create that died half-way: force clears it.
        Err(Error::NotFound(_)) if force => {
            let dir = Container::dir_of(root, id);
            if dir.exists() {
                let _ = std::fs::remove_dir_all(&dir);
                return Ok(());
            }
            return Err(Error::NotFound(id.to_string()));
        }
        Err(e) => return Err(e),
    };
    match c.status() {
        Status::Stopped => {}
        Status::Created => kill_and_wait(&c)?,
        s @ (Status::Running | Status::Paused | Status::Creating) => {
            if !force {
                return Err(Error::BadState {
                    id: id.to_string(),
                    status: s.as_str(),
                    what: "cannot delete a running container without --force",
                });
            }
            kill_and_wait(&c)?;
        }
    }
    c.destroy()?;
    if c.record.hooks {
        match crate::spec::load_created(&c.record.bundle) {
            Ok(b) => {
                let state = crate::hooks::state_json(&b.spec, id, 0, "stopped", &b.dir);
                crate::hooks::run_warn(&b.spec, crate::hooks::Kind::Poststop, &state);
            }
            Err(e) => crate::log::warn(&format!("poststop hooks not run: {e}")),
        }
    }
    Ok(())
}

fn kill_and_wait(c: &Container) -> Result<()> {
    let Some(pidfd) = c.init_pidfd() else {
        return Ok(());
    };
    // A frozen container cannot die until thawed.
    let _ = c.record.cgroup.signal_all(libc::SIGKILL);
    let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
    if c.is_frozen() {
        let _ = c.record.cgroup.freeze(false);
    }
    if !wait_exit(&pidfd, 10_000)? {
        return Err(Error::BadState {
            id: c.record.id.clone(),
            status: "running",
            what: "init did not exit within 10 s of SIGKILL",
        });
    }
    Ok(())
}
