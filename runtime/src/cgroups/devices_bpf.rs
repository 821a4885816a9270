//! The device allow-list on cgroup v2, where there is no devices controller: the rules become
//! an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the container's v2 directory with
//! BPF_CGROUP_DEVICE. The kernel runs it on every open and mknod of a device node by a process
//! in that cgroup (or below), and refuses with EPERM when it returns 0.
//!
//! Semantics are those of the v1 lists the rules were written for: the rules apply in order
//! and, for each access bit asked for (mknod, read, write), the last rule that matches the
//! device and names that bit decides; a bit no rule names is allowed (a new v1 cgroup allows
//! everything). The program walks the rules from last to first and stops as soon as every
//! requested bit is decided.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::sys;

/// One rule, as in "c 1:3 rwm" (None: any type, major or minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// 'c' or 'b'; None for 'a'.
    pub kind: Option<char>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// ACC_* bits.
    pub access: u32,
}

/// Access bits of `struct bpf_cgroup_dev_ctx.access_type >> 16`.
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
/// Device types in its low 16 bits.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

impl Rule {
    /// Parse the v1 text form ("c 1:3 rwm", "a *:* m", "b 8:* r").
    pub fn parse(allow: bool, text: &str) -> Option<Rule> {
        let mut parts = text.split_whitespace();
        let kind = match parts.next()? {
            "a" => None,
            "c" => Some('c'),
            "b" => Some('b'),
            _ => return None,
        };
        let (major, minor) = parts.next().unwrap_or("*:*").split_once(':')?;
        let num = |s: &str| -> Option<Option<u32>> {
            if s == "*" {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        let mut access = 0;
        for c in parts.next().unwrap_or("rwm").chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return None,
            };
        }
        Some(Rule {
            allow,
            kind,
            major: num(major)?,
            minor: num(minor)?,
            access,
        })
    }
}

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// Opcodes used (class | op | source).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const JNE32_K: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K
const JEQ32_K: u8 = 0x16; // BPF_JMP32 | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// Registers: r1 the context; r2 the access bits still undecided; r3 type; r4 major; r5 minor.
const R0: u8 = 0;
const R1: u8 = 1;
const ACC: u8 = 2;
const TYPE: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;
const TMP: u8 = 6;

/// The program for `rules`.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, ACC, R1, 0, 0),
        insn(LDX_W, MAJOR, R1, 4, 0),
        insn(LDX_W, MINOR, R1, 8, 0),
        insn(MOV64_X, TYPE, ACC, 0, 0),
        insn(AND32_K, TYPE, 0, 0, 0xffff),
        insn(RSH32_K, ACC, 0, 0, 16),
    ];
    for r in rules.iter().rev() {
        let mut checks = Vec::new();
        if let Some(k) = r.kind {
            let t = if k == 'b' { DEV_BLOCK } else { DEV_CHAR };
            checks.push((TYPE, t));
        }
        if let Some(m) = r.major {
            checks.push((MAJOR, m as i32));
        }
        if let Some(m) = r.minor {
            checks.push((MINOR, m as i32));
        }
        let decide = if r.allow {
            // Bits this rule allows are decided; all decided: allow.
            vec![
                insn(AND32_K, ACC, 0, 0, !(r.access as i32)),
                insn(JNE32_K, ACC, 0, 2, 0),
                insn(MOV64_K, R0, 0, 0, 1),
                insn(EXIT, 0, 0, 0, 0),
            ]
        } else {
            // Any undecided bit this rule denies: deny.
            vec![
                insn(MOV64_X, TMP, ACC, 0, 0),
                insn(AND32_K, TMP, 0, 0, r.access as i32),
                insn(JEQ32_K, TMP, 0, 2, 0),
                insn(MOV64_K, R0, 0, 0, 0),
                insn(EXIT, 0, 0, 0, 0),
            ]
        };
        // Each failed check skips the rest of this rule's block.
        let n = checks.len();
        for (i, (reg, v)) in checks.into_iter().enumerate() {
            let skip = (n - 1 - i + decide.len()) as i16;
            p.push(insn(JNE32_K, reg, 0, skip, v));
        }
        p.extend(decide);
    }
    // Bits no rule names stay allowed.
    p.push(insn(MOV64_K, R0, 0, 0, 1));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The head of `union bpf_attr` for BPF_PROG_LOAD, padded to the size we pass (the kernel
/// wants the rest zero).
#[repr(C)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _rest: [u8; 64],
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    _rest: [u8; 44],
}

/// Load the program for `rules` and attach it to the cgroup v2 directory `dir` (alongside
/// those above it, which must allow too). It stays attached as long as the cgroup exists.
pub fn attach(dir: &Path, rules: &[Rule]) -> Result<()> {
    let insns = program(rules);
    let prog = match load(&insns, None) {
        Ok(fd) => fd,
        Err(e) => {
            // Once more with the verifier's log, for the message.
            let mut log = vec![0u8; 1 << 16];
            let _ = load(&insns, Some(&mut log));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let verifier = String::from_utf8_lossy(&log[..end]);
            let verifier = verifier.trim();
            return Err(Error::Unsupported(format!(
                "load the cgroup device eBPF program ({} rules): {e}{}",
                rules.len(),
                if verifier.is_empty() {
                    String::new()
                } else {
                    format!(" (verifier: {verifier})")
                }
            )));
        }
    };
    let cg = sys::openat(
        None,
        &super::cstr(dir)?,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .ctx("open cgroup", dir)?;
    let mut at = AttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
        _rest: [0; 44],
    };
    crate::sys::bpf(BPF_PROG_ATTACH, &mut at)
        .ctx("attach the device eBPF program to cgroup", dir)?;
    Ok(())
}

fn load(insns: &[Insn], log: Option<&mut [u8]>) -> std::io::Result<OwnedFd> {
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_device");
    let (log_level, log_size, log_buf) = match log {
        Some(l) => (1, l.len() as u32, l.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let mut attr = LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: c"Apache-2.0".as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
        _rest: [0; 64],
    };
    let fd = crate::sys::bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: BPF_PROG_LOAD returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_rule_text() {
        assert_eq!(
            Rule::parse(true, "c 1:3 rwm"),
            Some(Rule {
                allow: true,
                kind: Some('c'),
                major: Some(1),
                minor: Some(3),
                access: 7
            })
        );
        let any = Rule::parse(false, "a *:* m").unwrap();
        assert_eq!(
            (any.kind, any.major, any.minor, any.access),
            (None, None, None, 1)
        );
        assert_eq!(Rule::parse(true, "b 8:* r").unwrap().minor, None);
        assert!(Rule::parse(true, "x 1:3 r").is_none());
        assert!(Rule::parse(true, "c 1:3 q").is_none());
    }

    /// Interpret the program for one request, to test its logic without the kernel.
    fn run(p: &[Insn], kind: i32, major: u32, minor: u32, access: u32) -> u64 {
        let mut r = [0u64; 11];
        let ctx = [((access << 16) | kind as u32), major, minor];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let k = i.imm as u32;
            pc += 1;
            match i.code {
                LDX_W => r[dst] = ctx[(i.off / 4) as usize] as u64,
                MOV64_X => r[dst] = r[src],
                MOV64_K => r[dst] = i.imm as i64 as u64,
                AND32_K => r[dst] = (r[dst] as u32 & k) as u64,
                RSH32_K => r[dst] = (r[dst] as u32 >> k) as u64,
                JNE32_K if r[dst] as u32 != k => pc += i.off as usize,
                JEQ32_K if r[dst] as u32 == k => pc += i.off as usize,
                JNE32_K | JEQ32_K => {}
                EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn the_last_matching_rule_decides_each_access_bit() {
        let rules: Vec<Rule> = [
            (false, "a *:* rwm"),
            (true, "c 1:3 rwm"),
            (true, "c 1:5 r"),
            (true, "c 136:* rw"),
            (false, "c 136:7 w"),
            (true, "b *:* m"),
        ]
        .iter()
        .map(|(a, t)| Rule::parse(*a, t).unwrap())
        .collect();
        let p = program(&rules);
        let (r, w, m) = (ACC_READ, ACC_WRITE, ACC_MKNOD);
        let cases = [
            (DEV_CHAR, 1, 3, r | w, 1),
            (DEV_CHAR, 1, 5, r, 1),
            (DEV_CHAR, 1, 5, r | w, 0),
            (DEV_CHAR, 1, 9, r, 0),
            (DEV_CHAR, 136, 2, r | w, 1),
            (DEV_CHAR, 136, 7, r, 1),
            (DEV_CHAR, 136, 7, w, 0),
            (DEV_BLOCK, 8, 0, m, 1),
            (DEV_BLOCK, 8, 0, r, 0),
            (DEV_CHAR, 1, 3, m, 1),
        ];
        for (kind, major, minor, access, want) in cases {
            assert_eq!(
                run(&p, kind, major, minor, access),
                want,
                "type {kind} {major}:{minor} access {access}"
            );
        }
        // Without rules everything is allowed, as in a new v1 cgroup.
        assert_eq!(run(&program(&[]), DEV_CHAR, 1, 9, r | w), 1);
    }
}
