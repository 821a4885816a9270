//! A parked init's program. A container can be created *parked* (`ChildPlan::park`): its
//! init does everything that depends on the container — namespaces, cgroups, rootfs, mounts,
//! devices, pivot_root, sysctls — reports `TAG_PARKED`, and waits. Whoever claims it sends the
//! program: arguments, environment, working directory, user and groups, umask, rlimits and
//! the executable's candidate paths. Those are bound now; everything else (capabilities,
//! seccomp, no_new_privs, LSM label, oom_score_adj) was fixed by the parked config, which the
//! claim's config must match in everything but the program (`container::claim` checks).
//!
//! The runtime sends one packed message; the init reads it into memory the runtime set aside
//! before clone ([`Arena`]), so it still allocates nothing. Layout, little-endian:
//!
//! ```text
//! u32 length of what follows
//! u32 uid, gid, umask, gids, rlimits, candidates, argv, envp   (the last five are counts)
//! gids × u32;  rlimits × (u32 resource, u64 soft, u64 hard)
//! cwd, candidates…, argv…, envp…                              (each NUL-terminated)
//! ```

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::BorrowedFd;

use super::ProcessPlan;
use crate::sys;

/// Limits of a parked init's program; a claim beyond them is refused before anything is sent.
pub const MAX_BYTES: usize = 512 * 1024;
pub const MAX_STRINGS: usize = 16 * 1024;
pub const MAX_GIDS: usize = 256;

const HEADER: usize = 8 * 4;
const RLIMIT: usize = 4 + 8 + 8;

/// Memory for the program, allocated before clone; the init writes into its own copy.
#[derive(Debug)]
pub struct Arena {
    buf: *mut u8,
    ptrs: *mut *const libc::c_char,
}

/// The backing of an [`Arena`], kept by the runtime for as long as the init is parked.
pub struct ArenaMemory {
    _buf: Vec<u8>,
    _ptrs: Vec<*const libc::c_char>,
}

impl Arena {
    pub fn new() -> (Arena, ArenaMemory) {
        let mut buf = vec![0u8; MAX_BYTES];
        // argv and envp, each with its NULL.
        let mut ptrs = vec![std::ptr::null(); MAX_STRINGS + 2];
        let arena = Arena {
            buf: buf.as_mut_ptr(),
            ptrs: ptrs.as_mut_ptr(),
        };
        (
            arena,
            ArenaMemory {
                _buf: buf,
                _ptrs: ptrs,
            },
        )
    }
}

/// Packs the late-bound half of `p`; None when it exceeds the limits above.
pub fn encode(p: &ProcessPlan) -> Option<Vec<u8>> {
    let strings = 1 + p.exec_candidates.len() + p.argv.len() + p.envp.len();
    if p.additional_gids.len() > MAX_GIDS || strings > MAX_STRINGS {
        return None;
    }
    let mut m = Vec::with_capacity(4096);
    m.extend_from_slice(&0u32.to_le_bytes());
    for v in [
        p.uid,
        p.gid,
        p.umask,
        p.additional_gids.len() as u32,
        p.rlimits.len() as u32,
        p.exec_candidates.len() as u32,
        p.argv.len() as u32,
        p.envp.len() as u32,
    ] {
        m.extend_from_slice(&v.to_le_bytes());
    }
    for g in &p.additional_gids {
        m.extend_from_slice(&g.to_le_bytes());
    }
    for (res, soft, hard) in &p.rlimits {
        m.extend_from_slice(&(*res as u32).to_le_bytes());
        m.extend_from_slice(&soft.to_le_bytes());
        m.extend_from_slice(&hard.to_le_bytes());
    }
    let all = std::iter::once(&p.cwd)
        .chain(&p.exec_candidates)
        .chain(&p.argv)
        .chain(&p.envp);
    for s in all {
        m.extend_from_slice(s.as_bytes_with_nul());
    }
    let len = m.len() - 4;
    if len > MAX_BYTES {
        return None;
    }
    m[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Some(m)
}

/// The program as the init applies it: from its plan, or from a claim's message.
pub struct View<'a> {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub umask: libc::mode_t,
    pub gids: &'a [libc::gid_t],
    pub rlimits: Rlimits<'a>,
    pub cwd: &'a CStr,
    pub candidates: Strings<'a>,
}

impl<'a> View<'a> {
    pub fn of(p: &'a ProcessPlan) -> View<'a> {
        View {
            uid: p.uid,
            gid: p.gid,
            umask: p.umask,
            gids: &p.additional_gids,
            rlimits: Rlimits::Plan(&p.rlimits),
            cwd: &p.cwd,
            candidates: Strings::Plan(&p.exec_candidates),
        }
    }
}

pub enum Rlimits<'a> {
    Plan(&'a [(libc::c_int, u64, u64)]),
    /// `n` packed (u32, u64, u64) entries.
    Packed(&'a [u8]),
}

impl Rlimits<'_> {
    pub fn get(&self, i: usize) -> Option<(libc::c_int, u64, u64)> {
        match self {
            Rlimits::Plan(r) => r.get(i).copied(),
            Rlimits::Packed(b) => {
                let e = b.get(i * RLIMIT..(i + 1) * RLIMIT)?;
                Some((
                    u32::from_le_bytes(e[0..4].try_into().ok()?) as libc::c_int,
                    u64::from_le_bytes(e[4..12].try_into().ok()?),
                    u64::from_le_bytes(e[12..20].try_into().ok()?),
                ))
            }
        }
    }
}

pub enum Strings<'a> {
    Plan(&'a [CString]),
    /// NUL-terminated strings one after the other.
    Packed(&'a [u8]),
}

impl<'a> Strings<'a> {
    /// Calls `f` on each string until it returns Some.
    pub fn find<T>(&self, mut f: impl FnMut(&'a CStr) -> Option<T>) -> Option<T> {
        match *self {
            Strings::Plan(v) => v.iter().find_map(|s| f(s.as_c_str())),
            Strings::Packed(mut b) => {
                while let Ok(s) = CStr::from_bytes_until_nul(b) {
                    if let Some(t) = f(s) {
                        return Some(t);
                    }
                    b = &b[s.to_bytes_with_nul().len()..];
                }
                None
            }
        }
    }
}

/// A claim's program, read into the arena.
pub struct Program<'a> {
    pub view: View<'a>,
    pub argv: &'a [*const libc::c_char],
    pub envp: &'a [*const libc::c_char],
}

fn read_exact(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<()> {
    if sys::read_full(fd, buf)? < buf.len() {
        return Err(io::Error::from_raw_os_error(libc::EPIPE));
    }
    Ok(())
}

fn bad() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADMSG)
}

/// Waits on `sync` for the program, reads it into `arena` and lays out argv and envp.
/// Called in the parked init only, which owns its copy of the arena's memory.
pub fn receive<'a>(
    sync: BorrowedFd<'_>,
    arena: &Arena,
    gids: &'a mut [libc::gid_t; MAX_GIDS],
) -> io::Result<Program<'a>> {
    let mut len = [0u8; 4];
    read_exact(sync, &mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if !(HEADER..=MAX_BYTES).contains(&len) {
        return Err(bad());
    }
    // SAFETY: the arena's buffer is MAX_BYTES long, allocated before clone, and this process
    // (the init) is its only user.
    let buf: &'a mut [u8] = unsafe { std::slice::from_raw_parts_mut(arena.buf, len) };
    read_exact(sync, buf)?;
    let buf: &'a [u8] = buf;
    let word = |i: usize| u32::from_le_bytes(buf[i * 4..i * 4 + 4].try_into().unwrap());
    let (uid, gid, umask) = (word(0), word(1), word(2));
    let (n_gids, n_rl, n_cand, n_argv, n_envp) = (
        word(3) as usize,
        word(4) as usize,
        word(5) as usize,
        word(6) as usize,
        word(7) as usize,
    );
    if n_gids > MAX_GIDS || 1 + n_cand + n_argv + n_envp > MAX_STRINGS {
        return Err(bad());
    }
    let mut at = HEADER;
    let gid_bytes = buf.get(at..at + n_gids * 4).ok_or_else(bad)?;
    for (i, g) in gid_bytes.chunks_exact(4).enumerate() {
        gids[i] = u32::from_le_bytes(g.try_into().unwrap());
    }
    at += n_gids * 4;
    let rlimits = buf.get(at..at + n_rl * RLIMIT).ok_or_else(bad)?;
    at += n_rl * RLIMIT;
    // SAFETY: the arena's pointer array holds MAX_STRINGS + 2 entries; only this init uses it.
    let ptrs: &'a mut [*const libc::c_char] =
        unsafe { std::slice::from_raw_parts_mut(arena.ptrs, MAX_STRINGS + 2) };
    let next = |at: &mut usize| -> io::Result<&'a CStr> {
        let s = CStr::from_bytes_until_nul(&buf[*at..]).map_err(|_| bad())?;
        *at += s.to_bytes_with_nul().len();
        Ok(s)
    };
    let cwd = next(&mut at)?;
    let cand_start = at;
    for _ in 0..n_cand {
        next(&mut at)?;
    }
    let candidates = &buf[cand_start..at];
    for p in ptrs.iter_mut().take(n_argv) {
        *p = next(&mut at)?.as_ptr();
    }
    ptrs[n_argv] = std::ptr::null();
    for p in ptrs[n_argv + 1..].iter_mut().take(n_envp) {
        *p = next(&mut at)?.as_ptr();
    }
    ptrs[n_argv + 1 + n_envp] = std::ptr::null();
    if at != len || n_argv == 0 {
        return Err(bad());
    }
    let (argv, envp) = ptrs.split_at(n_argv + 1);
    Ok(Program {
        view: View {
            uid,
            gid,
            umask,
            gids: &gids[..n_gids],
            rlimits: Rlimits::Packed(rlimits),
            cwd,
            candidates: Strings::Packed(candidates),
        },
        argv,
        envp: &envp[..n_envp + 1],
    })
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn plan() -> ProcessPlan {
        let c = |s: &str| CString::new(s).unwrap();
        ProcessPlan {
            console: None,
            console_size: None,
            rlimits: vec![(libc::RLIMIT_NOFILE as libc::c_int, 1024, 4096)],
            oom_score_adj: None,
            caps: None,
            uid: 1000,
            gid: 100,
            additional_gids: vec![10, 20],
            umask: 0o027,
            no_new_privs: false,
            cwd: c("/work"),
            exec_candidates: vec![c("/bin/sh"), c("/usr/bin/sh")],
            argv: vec![c("sh"), c("-c"), c("echo hi")],
            envp: vec![c("PATH=/bin"), c("A=b")],
            seccomp: None,
            exec_label: None,
        }
    }

    #[test]
    fn a_program_travels_whole() {
        let p = plan();
        let msg = encode(&p).unwrap();
        let (a, b) = sys::socketpair().unwrap();
        sys::write_all(a.as_fd(), &msg).unwrap();
        let (arena, _mem) = Arena::new();
        let mut gids = [0; MAX_GIDS];
        let got = receive(b.as_fd(), &arena, &mut gids).unwrap();
        let v = &got.view;
        assert_eq!(
            (v.uid, v.gid, v.umask, v.gids),
            (1000, 100, 0o027, &[10, 20][..])
        );
        assert_eq!(
            v.rlimits.get(0),
            Some((libc::RLIMIT_NOFILE as i32, 1024, 4096))
        );
        assert_eq!(v.rlimits.get(1), None);
        assert_eq!(v.cwd.to_bytes(), b"/work");
        let mut cands = Vec::new();
        v.candidates.find(|s| {
            cands.push(s.to_owned());
            None::<()>
        });
        assert_eq!(cands, p.exec_candidates);
        let strs = |ptrs: &[*const libc::c_char]| -> Vec<String> {
            assert!(ptrs.last().unwrap().is_null());
            ptrs[..ptrs.len() - 1]
                .iter()
                // SAFETY: the pointers point into the arena's NUL-terminated strings.
                .map(|p| unsafe { CStr::from_ptr(*p) }.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(strs(got.argv), ["sh", "-c", "echo hi"]);
        assert_eq!(strs(got.envp), ["PATH=/bin", "A=b"]);
    }

    #[test]
    fn a_short_or_bent_message_is_refused() {
        let msg = encode(&plan()).unwrap();
        let (arena, _mem) = Arena::new();
        let mut gids = [0; MAX_GIDS];
        // Cut short: the writer goes away.
        let (a, b) = sys::socketpair().unwrap();
        sys::write_all(a.as_fd(), &msg[..msg.len() - 3]).unwrap();
        drop(a);
        assert!(receive(b.as_fd(), &arena, &mut gids).is_err());
        // A count that does not match the strings.
        let mut bent = msg.clone();
        bent[4 + 6 * 4] = 9;
        let (a, b) = sys::socketpair().unwrap();
        sys::write_all(a.as_fd(), &bent).unwrap();
        assert!(receive(b.as_fd(), &arena, &mut gids).is_err());
    }
}
