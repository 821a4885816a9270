//! The compiled program decides what the profile says, for every syscall number: a profile
//! shaped like Docker's default (an allow list, argument rules, one errno rule, two
//! architectures) is compiled and its BPF run by a small classic-BPF interpreter over every
//! number of x86_64 and x86, with several argument values. Needs no root and no container.

use berth_runtime::seccomp::{compile, Program};
use libseccomp::{ScmpArch, ScmpSyscall};

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const ALLOW: u32 = 0x7fff_0000;
const fn errno(e: u32) -> u32 {
    0x0005_0000 | e
}
const CLONE_MASK: u64 = 0x7E02_0000;

/// seccomp_data: nr, arch, instruction_pointer, args[6]; classic BPF loads 32-bit words.
fn run(p: &Program, arch: u32, nr: i32, args: [u64; 6]) -> u32 {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&nr.to_ne_bytes());
    data.extend_from_slice(&arch.to_ne_bytes());
    data.extend_from_slice(&0u64.to_ne_bytes());
    for a in args {
        data.extend_from_slice(&a.to_ne_bytes());
    }
    let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
    loop {
        let i = &p.filter[pc];
        let k = i.k;
        pc += 1;
        let jump = |cond: bool| if cond { i.jt as usize } else { i.jf as usize };
        match i.code {
            0x20 => a = u32::from_ne_bytes(data[k as usize..k as usize + 4].try_into().unwrap()),
            0x60 => a = mem[k as usize],
            0x61 => x = mem[k as usize],
            0x02 => mem[k as usize] = a,
            0x03 => mem[k as usize] = x,
            0x54 => a &= k,
            0x44 => a |= k,
            0x07 => x = a,
            0x87 => a = x,
            0x05 => pc += k as usize,
            0x15 => pc += jump(a == k),
            0x25 => pc += jump(a > k),
            0x35 => pc += jump(a >= k),
            0x45 => pc += jump(a & k != 0),
            0x06 => return k,
            c => panic!("BPF instruction {c:#x} at {} not interpreted", pc - 1),
        }
    }
}

#[test]
fn a_docker_shaped_profile_decides_every_syscall_as_written() {
    let allowed = [
        "read",
        "write",
        "openat",
        "close",
        "fstat",
        "mmap",
        "munmap",
        "brk",
        "execve",
        "exit_group",
        "exit",
        "rt_sigaction",
        "rt_sigprocmask",
        "getpid",
        "wait4",
        "futex",
        "set_tid_address",
        "arch_prctl",
        "prlimit64",
        "getdents64",
        "newfstatat",
        "statx",
        "ioctl",
        "fcntl",
        "dup2",
        "pipe2",
        "socket",
        "connect",
        "sendto",
        "recvfrom",
        "uname",
        "getuid",
        "getgid",
        "geteuid",
        "getegid",
        "chdir",
        "readlink",
        "access",
        "lseek",
    ];
    let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": allowed.to_vec(), "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 4294967295u32, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_MASK, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
        ]
    }))
    .unwrap();
    let p = compile(&profile).unwrap();

    let arg0s = [
        0u64,
        8,
        0xffff_ffff,
        0x1_0000_0000,
        0x0002_0000,
        0x11,
        12345,
    ];
    let mut checked = 0;
    for (arch, audit) in [
        (ScmpArch::X8664, AUDIT_ARCH_X86_64),
        (ScmpArch::X86, AUDIT_ARCH_I386),
    ] {
        for nr in 0..600 {
            let name = ScmpSyscall::from(nr).get_name_by_arch(arch).ok();
            for &arg0 in &arg0s {
                // The 32-bit architecture sees only the low word of each argument.
                let seen = if arch == ScmpArch::X86 {
                    arg0 & 0xffff_ffff
                } else {
                    arg0
                };
                let want = match name.as_deref() {
                    Some(n) if allowed.contains(&n) => ALLOW,
                    Some("personality") if [0, 8, 0xffff_ffff].contains(&seen) => ALLOW,
                    Some("clone") if seen & CLONE_MASK == 0 => ALLOW,
                    Some("clone3") => errno(38),
                    _ => errno(libc::EPERM as u32),
                };
                let got = run(&p, audit, nr, [arg0, 0, 0, 0, 0, 0]);
                assert_eq!(
                    got, want,
                    "{arch:?} nr {nr} ({name:?}) arg0 {arg0:#x}: {got:#x}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 8000);
    // Another architecture is killed, whatever it asks.
    assert_eq!(run(&p, 0xC000_00B7, 0, [0; 6]) & 0xffff_0000, 0);
}
