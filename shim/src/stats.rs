//! Resource figures from the container's cgroup files: a v1 hierarchy that carries the
//! controller when there is one (v1 and hybrid hosts), the cgroup v2 directory otherwise.

use std::path::{Path, PathBuf};

use berth_runtime::cgroups::Cgroup;

use crate::protocol::Stats;

fn v1_dir<'a>(cg: &'a Cgroup, controller: &str) -> Option<&'a Path> {
    cg.v1
        .iter()
        .find(|(c, _)| c.split(',').any(|x| x == controller))
        .map(|(_, d)| d.as_path())
}

/// The directory holding `controller`'s files, and whether it is a v2 directory.
fn dir_for(cg: &Cgroup, controller: &str) -> Option<(PathBuf, bool)> {
    if let Some(d) = v1_dir(cg, controller) {
        return Some((d.to_path_buf(), false));
    }
    cg.unified.as_ref().map(|u| (u.clone(), true))
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat keyed file ("key value" per line).
fn keyed(p: &Path, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(p).ok()?;
    s.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// OOM kills the container's memory cgroup has counted (0 when unknown).
pub fn oom_kills(cg: &Cgroup) -> u64 {
    match dir_for(cg, "memory") {
        Some((d, false)) => keyed(&d.join("memory.oom_control"), "oom_kill").unwrap_or(0),
        Some((d, true)) => keyed(&d.join("memory.events"), "oom_kill").unwrap_or(0),
        None => 0,
    }
}

pub fn read(cg: &Cgroup) -> Stats {
    let cpu_usage_ns = match dir_for(cg, "cpuacct") {
        Some((d, false)) => read_u64(&d.join("cpuacct.usage")),
        Some((d, true)) => keyed(&d.join("cpu.stat"), "usage_usec").map(|u| u * 1000),
        None => None,
    }
    .unwrap_or(0);
    let (memory_usage_bytes, memory_limit_bytes) = match dir_for(cg, "memory") {
        Some((d, false)) => {
            // usage_in_bytes includes the page cache, as `docker stats` reads before
            // subtracting inactive file pages; the subtraction is the daemon's choice.
            let limit = read_u64(&d.join("memory.limit_in_bytes"));
            // v1 reports "unlimited" as a page-rounded i64::MAX.
            let limit = limit.filter(|&l| l < (i64::MAX as u64) & !0xfff);
            (
                read_u64(&d.join("memory.usage_in_bytes")).unwrap_or(0),
                limit,
            )
        }
        Some((d, true)) => (
            read_u64(&d.join("memory.current")).unwrap_or(0),
            read_u64(&d.join("memory.max")),
        ),
        None => (0, None),
    };
    let pids = dir_for(cg, "pids")
        .and_then(|(d, _)| read_u64(&d.join("pids.current")))
        .unwrap_or(0);
    Stats {
        cpu_usage_ns,
        memory_usage_bytes,
        memory_limit_bytes,
        pids,
        oom_kills: oom_kills(cg),
        read_at: berth_runtime::time::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keyed_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("memory.events");
        std::fs::write(&p, "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n").unwrap();
        assert_eq!(keyed(&p, "oom_kill"), Some(1));
        assert_eq!(keyed(&p, "oom"), Some(2));
        assert_eq!(keyed(&p, "nope"), None);
        let cg = Cgroup {
            v1: vec![],
            unified: Some(d.path().to_path_buf()),
        };
        std::fs::write(d.path().join("memory.current"), "4096\n").unwrap();
        std::fs::write(d.path().join("memory.max"), "max\n").unwrap();
        std::fs::write(d.path().join("pids.current"), "3\n").unwrap();
        std::fs::write(d.path().join("cpu.stat"), "usage_usec 12\nuser_usec 1\n").unwrap();
        let s = read(&cg);
        assert_eq!(
            (s.cpu_usage_ns, s.memory_usage_bytes, s.memory_limit_bytes),
            (12_000, 4096, None)
        );
        assert_eq!((s.pids, s.oom_kills), (3, 1));
    }
}
