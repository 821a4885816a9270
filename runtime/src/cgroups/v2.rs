//! cgroup v2 resource files, and enabling controllers down the tree.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use super::write_file;
use crate::error::{Error, IoContext, Result};

/// The v2 controllers `res` sets limits for ("io" stands for blkio).
pub fn controllers_needed(res: &LinuxResources) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut add = |c| {
        if !out.contains(&c) {
            out.push(c)
        }
    };
    if let Some(m) = res.memory() {
        if m.limit().is_some()
            || m.reservation().is_some()
            || m.swap().is_some()
            || m.swappiness().is_some()
            || m.disable_oom_killer() == Some(true)
        {
            add("memory");
        }
    }
    if let Some(c) = res.cpu() {
        if c.shares().is_some()
            || c.quota().is_some()
            || c.period().is_some()
            || c.burst().is_some()
            || c.idle().is_some()
            || c.realtime_period().is_some()
            || c.realtime_runtime().is_some()
        {
            add("cpu");
        }
        if c.cpus().as_deref().is_some_and(|s| !s.is_empty())
            || c.mems().as_deref().is_some_and(|s| !s.is_empty())
        {
            add("cpuset");
        }
    }
    if res.pids().is_some() {
        add("pids");
    }
    // v1 only (cgroup v2 has no counterpart): a host without them refuses the config.
    if let Some(n) = res.network() {
        if n.class_id().is_some() {
            add("net_cls");
        }
        if n.priorities().as_ref().is_some_and(|v| !v.is_empty()) {
            add("net_prio");
        }
    }
    if let Some(b) = res.block_io() {
        if b.weight().is_some()
            || b.leaf_weight().is_some()
            || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
            || b.throttle_read_bps_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty())
            || b.throttle_write_bps_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty())
            || b.throttle_read_iops_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty())
            || b.throttle_write_iops_device()
                .as_ref()
                .is_some_and(|v| !v.is_empty())
        {
            add("io");
        }
    }
    if res
        .hugepage_limits()
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        add("hugetlb");
    }
    for key in res.unified().iter().flat_map(|m| m.keys()) {
        for c in ["memory", "cpu", "cpuset", "pids", "io", "hugetlb"] {
            if key.strip_prefix(c).is_some_and(|r| r.starts_with('.')) {
                add(c);
            }
        }
    }
    out
}

/// Controllers usable in `dir` (enabled by its parent).
pub fn enabled_controllers(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// mkdir `dir` below `mount`, enabling `controllers` in every ancestor's subtree_control.
pub fn create_with_controllers(mount: &Path, dir: &Path, controllers: &[&str]) -> Result<()> {
    let rel = dir.strip_prefix(mount).unwrap_or(dir);
    let mut cur = mount.to_path_buf();
    for comp in rel.components() {
        if !controllers.is_empty() {
            let sc = cur.join("cgroup.subtree_control");
            let have = fs::read_to_string(&sc).ctx("read", &sc)?;
            for c in controllers {
                if !have.split_whitespace().any(|h| h == *c) {
                    write_file(&cur, "cgroup.subtree_control", &format!("+{c}"))?;
                }
            }
        }
        cur.push(comp);
        match fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create cgroup", &cur, e)),
        }
    }
    Ok(())
}

/// cpu.shares (2..262144) to cpu.weight (1..10000), as runc and crun convert.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// blkio.weight (10..1000) to io.weight (1..10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + ((w.clamp(10, 1000) as u64 - 10) * 9999) / 990
}

pub fn apply(dir: &Path, res: &LinuxResources, has_v1: &dyn Fn(&str) -> bool) -> Result<()> {
    if let (false, Some(m)) = (has_v1("memory"), res.memory()) {
        if let Some(l) = m.limit() {
            write_file(dir, "memory.max", &max_or(l))?;
        }
        if let Some(r) = m.reservation() {
            write_file(dir, "memory.low", &max_or(r))?;
        }
        if let Some(swap) = m.swap() {
            // OCI swap is memory+swap; memory.swap.max is swap alone.
            let v = match (swap, m.limit()) {
                (-1, _) => "max".to_string(),
                (s, Some(l)) if l > 0 => {
                    if s < l {
                        return Err(Error::Unsupported(format!(
                            "memory.swap {s} is below memory.limit {l}"
                        )));
                    }
                    (s - l).to_string()
                }
                (s, _) => s.to_string(),
            };
            write_file(dir, "memory.swap.max", &v)?;
        }
    }
    if let (false, Some(c)) = (has_v1("cpu"), res.cpu()) {
        if let Some(s) = c.shares() {
            write_file(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
        }
        if c.quota().is_some() || c.period().is_some() {
            let q = c
                .quota()
                .filter(|q| *q > 0)
                .map_or("max".into(), |q| q.to_string());
            let p = c.period().unwrap_or(100_000);
            write_file(dir, "cpu.max", &format!("{q} {p}"))?;
        }
        if let Some(i) = c.idle() {
            write_file(dir, "cpu.idle", &i.to_string())?;
        }
    }
    if let (false, Some(c)) = (has_v1("cpuset"), res.cpu()) {
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            write_file(dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            write_file(dir, "cpuset.mems", mems)?;
        }
    }
    if let (false, Some(p)) = (has_v1("pids"), res.pids()) {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        write_file(dir, "pids.max", &v)?;
    }
    if let (false, Some(b)) = (has_v1("blkio"), res.block_io()) {
        if let Some(w) = b.weight() {
            write_file(
                dir,
                "io.weight",
                &format!("default {}", blkio_to_io_weight(w)),
            )?;
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(w) = d.weight() {
                let line = format!("{}:{} {}", d.major(), d.minor(), blkio_to_io_weight(w));
                write_file(dir, "io.weight", &line)?;
            }
        }
        let throttles = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, list) in throttles {
            for d in list.iter().flatten() {
                let line = format!("{}:{} {key}={}", d.major(), d.minor(), d.rate());
                write_file(dir, "io.max", &line)?;
            }
        }
    }
    if !has_v1("hugetlb") {
        for h in res.hugepage_limits().iter().flatten() {
            write_file(
                dir,
                &format!("hugetlb.{}.max", h.page_size()),
                &max_or(h.limit()),
            )?;
        }
    }
    for (key, value) in res.unified().iter().flatten() {
        if key.contains('/') || key.starts_with("cgroup.") || key.is_empty() {
            return Err(Error::Unsupported(format!(
                "linux.resources.unified key {key:?} is not a controller file"
            )));
        }
        write_file(dir, key, value)?;
    }
    Ok(())
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// Write cgroup.freeze and wait for cgroup.events to report the state.
pub fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    write_file(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let events = dir.join("cgroup.events");
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = fs::read_to_string(&events).ctx("read", &events)?;
        if s.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Unsupported(format!(
                "{}: not {want} after 5 s",
                events.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_shares_and_weights_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        assert_eq!(blkio_to_io_weight(500), 4950);
    }

    #[test]
    fn finds_the_controllers_a_config_needs() {
        let res: LinuxResources = serde_json::from_str(
            r#"{"memory": {"limit": 1000000}, "pids": {"limit": 10},
                "unified": {"io.max": "8:0 rbps=1"}}"#,
        )
        .unwrap();
        assert_eq!(controllers_needed(&res), vec!["memory", "pids", "io"]);
        let none: LinuxResources =
            serde_json::from_str(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#).unwrap();
        assert!(controllers_needed(&none).is_empty());
    }
}
