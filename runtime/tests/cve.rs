//! Known container escapes, attempted for real.

mod common;

use common::{unique_id, Bundle, Runtime};
use serde_json::json;

/// CVE-2019-5736: a container process opens the runtime's binary through /proc/PID/exe of a
/// runtime process that is inside the container (here: a created container's init, which is
/// berth-runtime code waiting for `start`), to overwrite it once the runtime exits.
#[test]
fn cve_2019_5736_runtime_exe_cannot_be_opened_from_the_container() {
    let rt = Runtime::new();
    let waiting = unique_id("cve5736-init");
    rt.create(&Bundle::new(&["true"]), &waiting);
    let pid = rt.state(&waiting)["pid"].as_i64().unwrap();
    // The attacker shares the waiting init's pid namespace (as an exec'd process would), with
    // Docker-like default capabilities (no CAP_SYS_PTRACE).
    let mut attacker = Bundle::sh(
        "ls -l /proc/1/exe 2>&1; \
         if cat /proc/1/exe > /dev/null 2>&1; then echo OPENED-EXE; else echo denied-exe; fi; \
         if (exec 3</proc/1/exe) 2>/dev/null; then echo OPENED-FD; else echo denied-fd; fi",
    );
    attacker.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
        ns.push(json!({"type": "pid", "path": format!("/proc/{pid}/ns/pid")}));
    });
    let (code, out, err) = rt.run(&attacker, &unique_id("cve5736-attacker"));
    rt.ok(&["delete", "--force", &waiting]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("denied-exe") && out.contains("denied-fd"),
        "{out}"
    );
    assert!(
        !out.contains("OPENED"),
        "the runtime binary was reachable: {out}"
    );
}

/// CVE-2024-21626: a working directory under /proc/self/fd/N (a leaked host directory fd)
/// must not give the container the host's filesystem.
#[test]
fn cve_2024_21626_cwd_through_a_leaked_fd_is_refused() {
    let rt = Runtime::new();
    for n in 3..10 {
        let mut b = Bundle::sh("ls / > /dev/null; pwd; ls ../../../ 2>&1 | head -3");
        b.edit(|c| c["process"]["cwd"] = json!(format!("/proc/self/fd/{n}")));
        let (code, out, _err) = rt.run(&b, &unique_id("cve21626"));
        // Either the cwd is refused, or it resolves inside the container: never the host's
        // root (which has /work, /root …, not the busybox tree only).
        if code == 0 {
            assert!(
                !out.contains("work") && !out.contains("home"),
                "fd {n}: {out}"
            );
        }
    }
}
