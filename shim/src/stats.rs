//! The shim's resource figures: the runtime's per-second cgroup reading (v1, v2 or hybrid), as
//! the control protocol carries them.

use berth_runtime::cgroups::Cgroup;

use crate::protocol::Stats;

pub fn read(cg: &Cgroup) -> Stats {
    let u = cg.usage();
    Stats {
        cpu_usage_ns: u.cpu_ns,
        memory_usage_bytes: u.memory,
        // The runtime reports "no limit" as 0.
        memory_limit_bytes: Some(u.memory_limit).filter(|&l| l != 0),
        pids: u.pids,
        oom_kills: u.oom_kills,
        read_at: berth_runtime::time::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_runtime_figures() {
        let d = tempfile::tempdir().unwrap();
        let w = |f: &str, v: &str| std::fs::write(d.path().join(f), v).unwrap();
        w("memory.events", "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n");
        w("memory.current", "4096\n");
        w("memory.max", "max\n");
        w("pids.current", "3\n");
        w("cpu.stat", "usage_usec 12\nuser_usec 1\n");
        let cg = Cgroup {
            unified: Some(d.path().to_path_buf()),
            ..Cgroup::default()
        };
        let s = read(&cg);
        assert_eq!(
            (s.cpu_usage_ns, s.memory_usage_bytes, s.memory_limit_bytes),
            (12_000, 4096, None)
        );
        assert_eq!((s.pids, s.oom_kills), (3, 1));
        w("memory.max", "65536\n");
        assert_eq!(read(&cg).memory_limit_bytes, Some(65536));
    }
}
