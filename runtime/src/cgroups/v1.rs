//! cgroup v1 resource files.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::{write_file, write_lines};
use crate::error::{Error, IoContext, Result};

/// A new v1 cpuset cgroup starts with empty cpus/mems and refuses tasks: copy the parent's,
/// filling empty ancestors first.
pub fn inherit_cpuset(dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        fill_from_parent(dir, file)?;
    }
    Ok(())
}

fn fill_from_parent(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    let cur = fs::read_to_string(&path).ctx("read", &path)?;
    if !cur.trim().is_empty() {
        return Ok(cur);
    }
    let parent = dir.parent().expect("a cgroup below the hierarchy root");
    let value = fill_from_parent(parent, file)?;
    write_file(dir, file, value.trim())?;
    Ok(value)
}

/// Devices every container may use whatever its config says (runc's list): the standard
/// character devices, ptys, and mknod of anything (the access check is on open).
pub(super) const DEFAULT_ALLOW: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

/// The rule text for the devices cgroup, e.g. "c 1:3 rwm" or "a *:* rwm".
pub fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let t = match d.typ() {
        None | Some(LinuxDeviceType::A) => 'a',
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
        Some(LinuxDeviceType::P) => 'p',
    };
    let n = |v: Option<i64>| {
        v.filter(|v| *v >= 0)
            .map_or("*".to_string(), |v| v.to_string())
    };
    let access = d
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    format!("{t} {}:{} {access}", n(d.major()), n(d.minor()))
}

pub fn apply<'a>(get: &dyn Fn(&str) -> Option<&'a Path>, res: &LinuxResources) -> Result<()> {
    if let (Some(dir), Some(m)) = (get("memory"), res.memory()) {
        if let Some(limit) = m.limit() {
            write_file(dir, "memory.limit_in_bytes", &limit.to_string())?;
        }
        if let Some(r) = m.reservation() {
            write_file(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
        }
        if let Some(swap) = m.swap() {
            if !dir.join("memory.memsw.limit_in_bytes").exists() {
                return Err(Error::Unsupported(
                    "memory.swap: this kernel has no swap accounting (memory.memsw.*)".into(),
                ));
            }
            write_file(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
        }
        if let Some(s) = m.swappiness() {
            if s > 100 {
                return Err(Error::Unsupported(format!(
                    "memory.swappiness {s} is above 100"
                )));
            }
            write_file(dir, "memory.swappiness", &s.to_string())?;
        }
        if m.disable_oom_killer() == Some(true) {
            write_file(dir, "memory.oom_control", "1")?;
        }
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            crate::log::warn_once(
                "memory.kernel",
                "linux.resources.memory.kernel/kernelTCP are deprecated and not applied",
            );
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(dir) = get("cpu") {
            if let Some(s) = c.shares() {
                write_file(dir, "cpu.shares", &s.to_string())?;
            }
            if let Some(p) = c.period() {
                write_file(dir, "cpu.cfs_period_us", &p.to_string())?;
            }
            if let Some(q) = c.quota() {
                write_file(dir, "cpu.cfs_quota_us", &q.to_string())?;
            }
            if let Some(b) = c.burst() {
                write_file(dir, "cpu.cfs_burst_us", &b.to_string())?;
            }
            if let Some(p) = c.realtime_period() {
                write_file(dir, "cpu.rt_period_us", &p.to_string())?;
            }
            if let Some(r) = c.realtime_runtime() {
                write_file(dir, "cpu.rt_runtime_us", &r.to_string())?;
            }
            if let Some(i) = c.idle() {
                write_file(dir, "cpu.idle", &i.to_string())?;
            }
        }
        if let Some(dir) = get("cpuset") {
            if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                write_file(dir, "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                write_file(dir, "cpuset.mems", mems)?;
            }
        }
    }
    if let Some(n) = res.network() {
        if let (Some(dir), Some(id)) = (get("net_cls"), n.class_id()) {
            write_file(dir, "net_cls.classid", &id.to_string())?;
        }
        if let (Some(dir), Some(prios)) = (get("net_prio"), n.priorities()) {
            // One "interface priority" per write: the kernel takes a single pair each time.
            let lines: Vec<String> = prios
                .iter()
                .map(|p| format!("{} {}", p.name(), p.priority()))
                .collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            write_lines(dir, "net_prio.ifpriomap", &lines)?;
        }
    }
    if let (Some(dir), Some(p)) = (get("pids"), res.pids()) {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".to_string()
        };
        write_file(dir, "pids.max", &v)?;
    }
    if let (Some(dir), Some(b)) = (get("blkio"), res.block_io()) {
        if let Some(w) = b.weight() {
            let file = if dir.join("blkio.weight").exists() {
                "blkio.weight"
            } else {
                "blkio.bfq.weight"
            };
            write_file(dir, file, &w.to_string())?;
        }
        if let Some(w) = b.leaf_weight() {
            write_file(dir, "blkio.leaf_weight", &w.to_string())?;
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(w) = d.weight() {
                write_file(
                    dir,
                    "blkio.weight_device",
                    &format!("{}:{} {w}", d.major(), d.minor()),
                )?;
            }
        }
        let throttles = [
            (
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ];
        for (file, list) in throttles {
            for d in list.iter().flatten() {
                write_file(
                    dir,
                    file,
                    &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                )?;
            }
        }
    }
    if let Some(dir) = get("hugetlb") {
        for h in res.hugepage_limits().iter().flatten() {
            let file = format!("hugetlb.{}.limit_in_bytes", h.page_size());
            write_file(dir, &file, &h.limit().to_string())?;
        }
    }
    if let (Some(dir), Some(devs)) = (get("devices"), res.devices()) {
        // Consecutive rules of one kind go through one open file.
        let mut i = 0;
        while i < devs.len() {
            let allow = devs[i].allow();
            let rules: Vec<String> = devs[i..]
                .iter()
                .take_while(|d| d.allow() == allow)
                .map(device_rule)
                .collect();
            i += rules.len();
            let refs: Vec<&str> = rules.iter().map(String::as_str).collect();
            let file = if allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write_lines(dir, file, &refs)?;
        }
        if !devs.is_empty() {
            write_lines(dir, "devices.allow", DEFAULT_ALLOW)?;
        }
    }
    Ok(())
}

/// Set freezer.state and wait until the kernel reports it reached.
pub fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    write_file(dir, "freezer.state", want)?;
    let path = dir.join("freezer.state");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let cur = fs::read_to_string(&path).ctx("read", &path)?;
        if cur.trim() == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Unsupported(format!(
                "{}: still {} after 5 s",
                path.display(),
                cur.trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
        if frozen {
            write_file(dir, "freezer.state", want)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> String {
        device_rule(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn device_rules_render_like_the_kernel_wants() {
        assert_eq!(rule(r#"{"allow": false, "access": "rwm"}"#), "a *:* rwm");
        assert_eq!(
            rule(r#"{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}"#),
            "c 1:3 rw"
        );
        assert_eq!(
            rule(r#"{"allow": true, "type": "b", "major": 8}"#),
            "b 8:* rwm"
        );
    }
}
