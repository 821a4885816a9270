//! `update`: change a live container's resource limits, and `events`: its resource figures.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::{Container, Status};
use crate::cgroups::stats::Stats;
use crate::error::{Error, Result};

pub fn update(root: &Path, id: &str, res: &LinuxResources) -> Result<()> {
    let mut c = Container::load(root, id)?;
    if c.status() == Status::Stopped {
        return Err(Error::BadState {
            id: id.to_string(),
            status: "stopped",
            what: "only a live container can be updated",
        });
    }
    if c.record.cgroup.apply_update(res)? {
        c.save()?;
    }
    Ok(())
}

pub fn stats(root: &Path, id: &str) -> Result<Stats> {
    let c = Container::load(root, id)?;
    if c.status() == Status::Stopped {
        return Err(Error::BadState {
            id: id.to_string(),
            status: "stopped",
            what: "a stopped container has no stats",
        });
    }
    Ok(c.record.cgroup.stats())
}
