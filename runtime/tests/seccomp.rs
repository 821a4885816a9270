//! seccomp filters from config.json, enforced on the container and on exec'd processes.

mod common;

use common::{unique_id, Bundle, Runtime};
use serde_json::json;

fn deny_mkdir_and_sethostname(c: &mut serde_json::Value, no_new_privs: bool) {
    c["process"]["noNewPrivileges"] = json!(no_new_privs);
    c["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            // Only personality(0xffffffff) (a query) is denied: argument filters work.
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 4294967295u32, "op": "SCMP_CMP_EQ"}]}
        ]
    });
}

#[test]
fn a_filter_denies_what_it_lists_with_or_without_no_new_privs() {
    for nnp in [true, false] {
        let rt = Runtime::new();
        let mut b = Bundle::sh(
            "mkdir /tmp/x 2>&1; hostname x 2>&1; echo still-running; grep Seccomp: /proc/self/status",
        );
        b.edit(|c| {
            deny_mkdir_and_sethostname(c, nnp);
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/tmp", "type": "tmpfs", "source": "tmpfs"
            }));
        });
        let (code, out, err) = rt.run(&b, &unique_id("seccomp"));
        assert_eq!(code, 0, "nnp={nnp}: {err}");
        assert!(out.contains("Operation not permitted"), "nnp={nnp}: {out}");
        assert!(out.contains("Function not implemented"), "nnp={nnp}: {out}");
        assert!(out.contains("still-running"), "{out}");
        // Mode 2: filter.
        assert!(out.contains("Seccomp:\t2"), "{out}");
    }
}

#[test]
fn exec_gets_the_containers_filter() {
    let rt = Runtime::new();
    let id = unique_id("secexec");
    let mut b = Bundle::new(&["sleep", "100"]);
    b.edit(|c| deny_mkdir_and_sethostname(c, true));
    rt.create(&b, &id);
    rt.ok(&["start", &id]);
    let o = rt
        .cmd()
        .args([
            "exec",
            &id,
            "sh",
            "-c",
            "hostname x 2>&1; grep Seccomp: /proc/self/status",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Function not implemented"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    rt.ok(&["delete", "--force", &id]);
}

#[test]
fn a_default_deny_filter_with_an_allow_list() {
    let rt = Runtime::new();
    // Everything echo and exit need, nothing else: the shell's fork fails, its builtin works.
    let mut b = Bundle::sh("echo allowed; exit 4");
    b.edit(|c| {
        c["process"]["noNewPrivileges"] = json!(true);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "syscalls": [{"names": [
                "execve", "brk", "arch_prctl", "set_tid_address", "mmap", "munmap", "mprotect",
                "rt_sigaction", "rt_sigprocmask", "getpid", "getppid", "getuid", "geteuid",
                "getgid", "getegid", "write", "read", "exit", "exit_group", "ioctl", "fcntl",
                "newfstatat", "fstat", "stat", "lstat", "uname", "prctl", "getcwd", "close",
                "openat", "access", "faccessat", "faccessat2", "dup2", "dup3", "sigaltstack",
                "rseq", "set_robust_list", "prlimit64", "getrandom"
            ], "action": "SCMP_ACT_ALLOW"}]
        });
    });
    let (code, out, err) = rt.run(&b, &unique_id("secallow"));
    assert_eq!((code, out.as_str()), (4, "allowed\n"), "{err}");
}
