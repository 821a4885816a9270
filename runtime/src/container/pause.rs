//! `pause` and `resume`: freeze and thaw the container's cgroup.

use std::path::Path;

use super::{Container, Status};
use crate::error::{Error, Result};

pub fn pause(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    match c.status() {
        Status::Running | Status::Created => c.record.cgroup.freeze(true),
        s => Err(Error::BadState {
            id: id.to_string(),
            status: s.as_str(),
            what: "only a running or created container can be paused",
        }),
    }
}

pub fn resume(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    match c.status() {
        Status::Paused => c.record.cgroup.freeze(false),
        s => Err(Error::BadState {
            id: id.to_string(),
            status: s.as_str(),
            what: "only a paused container can be resumed",
        }),
    }
}
