//! Resource figures of a container's cgroup, read from whichever hierarchy carries each
//! controller (a v1 hierarchy on v1 and hybrid hosts, the v2 directory otherwise). The shape
//! is runc's `events --stats` data.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Cgroup;

#[derive(Debug, Default, Clone, Serialize)]
pub struct CpuUsage {
    /// Nanoseconds.
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Throttling {
    pub periods: u64,
    #[serde(rename = "throttledPeriods")]
    pub throttled_periods: u64,
    #[serde(rename = "throttledTime")]
    pub throttled_time: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct MemoryEntry {
    pub usage: u64,
    pub max: u64,
    /// 0 means unlimited.
    pub limit: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Memory {
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub oom_kills: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Pids {
    pub current: u64,
    /// 0 means unlimited.
    pub limit: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Blkio {
    #[serde(rename = "ioServiceBytesRecursive")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// A container's running totals: CPU time, memory in use and its limit (0: none), tasks, OOM
/// kills.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub cpu_ns: u64,
    pub memory: u64,
    pub memory_limit: u64,
    pub pids: u64,
    pub oom_kills: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
}

fn read_u64(p: &Path) -> Option<u64> {
    let s = std::fs::read_to_string(p).ok()?;
    let s = s.trim();
    if s == "max" {
        return Some(0);
    }
    s.parse().ok()
}

/// The value of `key` in a flat keyed file ("key value" per line).
fn keyed(p: &Path, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(p).ok()?;
    s.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// v1 reports "no limit" as a page-rounded i64::MAX: 0 here.
fn v1_limit(v: Option<u64>) -> u64 {
    v.filter(|&l| l < (i64::MAX as u64) & !0xfff).unwrap_or(0)
}

impl Cgroup {
    /// The directory holding `controller`'s files, and whether it is a v2 directory.
    fn dir_for(&self, controller: &str) -> Option<(PathBuf, bool)> {
        if let Some((_, d)) = self
            .v1
            .iter()
            .find(|(c, _)| c.split(',').any(|x| x == controller))
        {
            return Some((d.clone(), false));
        }
        self.unified.as_ref().map(|u| (u.clone(), true))
    }

    /// OOM kills counted by the memory controller (0 when unknown).
    pub fn oom_kills(&self) -> u64 {
        match self.dir_for("memory") {
            Some((d, false)) => keyed(&d.join("memory.oom_control"), "oom_kill").unwrap_or(0),
            Some((d, true)) => keyed(&d.join("memory.events"), "oom_kill").unwrap_or(0),
            None => 0,
        }
    }

    /// The figures a monitor polls every second (`docker stats`), each file read once; the
    /// part of [`Cgroup::stats`] that a shim needs.
    pub fn usage(&self) -> Usage {
        let cpu_ns = match self.dir_for("cpuacct") {
            Some((d, false)) => read_u64(&d.join("cpuacct.usage")).unwrap_or(0),
            Some((d, true)) => keyed(&d.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
            None => 0,
        };
        let (memory, memory_limit) = match self.dir_for("memory") {
            Some((d, false)) => (
                read_u64(&d.join("memory.usage_in_bytes")).unwrap_or(0),
                v1_limit(read_u64(&d.join("memory.limit_in_bytes"))),
            ),
            Some((d, true)) => (
                read_u64(&d.join("memory.current")).unwrap_or(0),
                read_u64(&d.join("memory.max")).unwrap_or(0),
            ),
            None => (0, 0),
        };
        let pids = self
            .dir_for("pids")
            .and_then(|(d, _)| read_u64(&d.join("pids.current")))
            .unwrap_or(0);
        Usage {
            cpu_ns,
            memory,
            memory_limit,
            pids,
            oom_kills: self.oom_kills(),
        }
    }

    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        let u = self.usage();
        s.cpu.usage.total = u.cpu_ns;
        s.memory.oom_kills = u.oom_kills;
        s.pids.current = u.pids;
        match self.dir_for("cpuacct") {
            Some((d, false)) => {
                s.cpu.usage.percpu = std::fs::read_to_string(d.join("cpuacct.usage_percpu"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                // cpuacct.stat is in USER_HZ ticks.
                let hz = 100;
                let tick_ns = 1_000_000_000 / hz;
                s.cpu.usage.user = keyed(&d.join("cpuacct.stat"), "user").unwrap_or(0) * tick_ns;
                s.cpu.usage.kernel =
                    keyed(&d.join("cpuacct.stat"), "system").unwrap_or(0) * tick_ns;
            }
            Some((d, true)) => {
                let st = d.join("cpu.stat");
                s.cpu.usage.user = keyed(&st, "user_usec").unwrap_or(0) * 1000;
                s.cpu.usage.kernel = keyed(&st, "system_usec").unwrap_or(0) * 1000;
            }
            None => {}
        }
        if let Some((d, v2)) = self.dir_for("cpu") {
            let st = d.join("cpu.stat");
            s.cpu.throttling.periods = keyed(&st, "nr_periods").unwrap_or(0);
            s.cpu.throttling.throttled_periods = keyed(&st, "nr_throttled").unwrap_or(0);
            s.cpu.throttling.throttled_time = if v2 {
                keyed(&st, "throttled_usec").unwrap_or(0) * 1000
            } else {
                keyed(&st, "throttled_time").unwrap_or(0)
            };
        }
        match self.dir_for("memory") {
            Some((d, false)) => {
                s.memory.usage = MemoryEntry {
                    usage: u.memory,
                    max: read_u64(&d.join("memory.max_usage_in_bytes")).unwrap_or(0),
                    limit: u.memory_limit,
                    failcnt: read_u64(&d.join("memory.failcnt")).unwrap_or(0),
                };
                s.memory.swap = MemoryEntry {
                    usage: read_u64(&d.join("memory.memsw.usage_in_bytes")).unwrap_or(0),
                    max: read_u64(&d.join("memory.memsw.max_usage_in_bytes")).unwrap_or(0),
                    limit: v1_limit(read_u64(&d.join("memory.memsw.limit_in_bytes"))),
                    failcnt: read_u64(&d.join("memory.memsw.failcnt")).unwrap_or(0),
                };
                s.memory.cache = keyed(&d.join("memory.stat"), "cache").unwrap_or(0);
            }
            Some((d, true)) => {
                s.memory.usage = MemoryEntry {
                    usage: u.memory,
                    max: read_u64(&d.join("memory.peak")).unwrap_or(0),
                    limit: u.memory_limit,
                    failcnt: keyed(&d.join("memory.events"), "max").unwrap_or(0),
                };
                s.memory.swap = MemoryEntry {
                    usage: read_u64(&d.join("memory.swap.current")).unwrap_or(0),
                    max: 0,
                    limit: read_u64(&d.join("memory.swap.max")).unwrap_or(0),
                    failcnt: 0,
                };
                s.memory.cache = keyed(&d.join("memory.stat"), "file").unwrap_or(0);
            }
            None => {}
        }
        if let Some((d, _)) = self.dir_for("pids") {
            s.pids.limit = read_u64(&d.join("pids.max")).unwrap_or(0);
        }
        if let Some((d, false)) = self.dir_for("blkio") {
            let parse = |f: &str| -> Vec<BlkioEntry> {
                std::fs::read_to_string(d.join(f))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| {
                        let mut it = l.split_whitespace();
                        let dev = it.next()?;
                        let op = it.next()?;
                        let value = it.next()?.parse().ok()?;
                        let (ma, mi) = dev.split_once(':')?;
                        Some(BlkioEntry {
                            major: ma.parse().ok()?,
                            minor: mi.parse().ok()?,
                            op: op.to_string(),
                            value,
                        })
                    })
                    .collect()
            };
            s.blkio.io_service_bytes_recursive = parse("blkio.throttle.io_service_bytes_recursive");
            s.blkio.io_serviced_recursive = parse("blkio.throttle.io_serviced_recursive");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v2_files() {
        let d = tempfile::tempdir().unwrap();
        let cg = Cgroup {
            unified: Some(d.path().to_path_buf()),
            ..Cgroup::default()
        };
        let w = |f: &str, s: &str| std::fs::write(d.path().join(f), s).unwrap();
        w("memory.current", "4096\n");
        w("memory.max", "max\n");
        w("memory.events", "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n");
        w("pids.current", "3\n");
        w("pids.max", "max\n");
        w("cpu.stat", "usage_usec 12\nuser_usec 5\nsystem_usec 7\n");
        let s = cg.stats();
        assert_eq!(
            (s.cpu.usage.total, s.cpu.usage.user, s.cpu.usage.kernel),
            (12_000, 5000, 7000)
        );
        assert_eq!((s.memory.usage.usage, s.memory.usage.limit), (4096, 0));
        assert_eq!(
            (s.memory.oom_kills, s.pids.current, s.pids.limit),
            (1, 3, 0)
        );
    }
}
