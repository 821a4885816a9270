//! Compiled seccomp programs kept under the state root (`ROOT/.seccomp-cache/`, one file per
//! profile), so a profile is compiled once rather than at every create and exec. Docker and
//! Kubernetes start every container with one of a few profiles, and libseccomp needs ~5-8 ms
//! of CPU to compile Docker's default one, many times the cost of loading it.
//!
//! A file holds the whole key it was made for — the profile itself, this binary's identity,
//! libseccomp's version and the kernel's — and is used only when that key matches byte for
//! byte and the file is ours (owned by the effective uid, no access for group or others), so a
//! rebuilt runtime, an upgraded libseccomp or a rebooted kernel never reuse a program. The
//! file name is only a hash of the key. Any problem with the cache (no state root yet, a
//! read-only or full directory, a bad file) falls back to compiling, logged at debug level.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;

use super::Program;
use crate::error::Result;

/// The directory below the state root; container ids cannot start with '.'.
const DIR: &str = ".seccomp-cache";
const MAGIC: &[u8; 8] = b"berthsc1";
/// magic, key length (u32), instruction count (u32), flags (u64).
const HEADER: usize = 8 + 4 + 4 + 8;
/// The kernel's limit for one filter (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;
/// Beyond this many profiles, new ones are compiled every time and not stored: the cache
/// cannot grow without bound when every container brings its own profile.
const MAX_ENTRIES: usize = 64;

/// `super::compile(s)`, through the cache under `root` (the runtime's `--root`).
pub fn compile(root: &Path, s: &LinuxSeccomp) -> Result<Program> {
    let Some(key) = key(s) else {
        return super::compile(s);
    };
    let dir = root.join(DIR);
    let path = dir.join(format!("{:016x}.bpf", hash(&key)));
    if let Some(mut p) = read(&path, &key) {
        // Where a notify listener goes is not part of the program but of the profile (which
        // is in the key, so it was valid when the entry was made).
        p.listener = super::notify_listener(s)?;
        return Ok(p);
    }
    let p = super::compile(s)?;
    if let Err(e) = store(&dir, &path, &key, &p) {
        crate::log::debug(&format!(
            "seccomp: compiled program not cached in {}: {e}",
            dir.display()
        ));
    }
    Ok(p)
}

/// Everything the compiled program depends on, or None if some of it cannot be known.
fn key(s: &LinuxSeccomp) -> Option<Vec<u8>> {
    // This binary (or the shim that links the runtime in): a rebuild changes inode or times.
    let exe = fs::metadata("/proc/self/exe").ok()?;
    let v = libseccomp::ScmpVersion::current().ok()?;
    // SAFETY: uname fills the zeroed struct it is given.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let field = |f: &[libc::c_char]| {
        // SAFETY: the kernel NUL-terminates every utsname field within its array.
        unsafe { std::ffi::CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    let mut k = format!(
        "berth-runtime {} exe {}:{} {} {}.{} {}.{}\nlibseccomp {}.{}.{}\nkernel {} {} {}\n",
        env!("CARGO_PKG_VERSION"),
        exe.dev(),
        exe.ino(),
        exe.size(),
        exe.mtime(),
        exe.mtime_nsec(),
        exe.ctime(),
        exe.ctime_nsec(),
        v.major,
        v.minor,
        v.micro,
        field(&u.release),
        field(&u.version),
        field(&u.machine),
    )
    .into_bytes();
    serde_json::to_writer(&mut k, s).ok()?;
    Some(k)
}

fn hash(key: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// The program stored at `path` for exactly `key`, if there is one and it is ours.
fn read(path: &Path, key: &[u8]) -> Option<Program> {
    let read = |f: &mut fs::File| {
        let meta = f.metadata()?;
        let mut b = Vec::with_capacity(meta.len() as usize);
        f.read_to_end(&mut b)?;
        Ok::<_, std::io::Error>((meta, b))
    };
    let (meta, bytes) = match fs::File::open(path).and_then(|mut f| read(&mut f)) {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(e) => {
            crate::log::debug(&format!("seccomp: read {}: {e}", path.display()));
            return None;
        }
    };
    // SAFETY: geteuid cannot fail.
    if meta.uid() != unsafe { libc::geteuid() } || meta.mode() & 0o077 != 0 {
        crate::log::debug(&format!(
            "seccomp: ignoring {}: not owned by us or open to others",
            path.display()
        ));
        return None;
    }
    let p = parse(&bytes, key);
    if p.is_none() {
        crate::log::debug(&format!(
            "seccomp: ignoring {}: another key or a damaged file",
            path.display()
        ));
    }
    p
}

fn parse(bytes: &[u8], key: &[u8]) -> Option<Program> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_ne_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
    let (key_len, insns) = (u32_at(8), u32_at(12));
    let flags = u64::from_ne_bytes(bytes[16..24].try_into().unwrap());
    if key_len != key.len()
        || !(1..=MAX_INSNS).contains(&insns)
        || bytes.len() != HEADER + key_len + insns * 8
        || &bytes[HEADER..HEADER + key_len] != key
    {
        return None;
    }
    let filter = super::filter_from_bytes(&bytes[HEADER + key_len..]);
    Some(Program {
        filter,
        flags: libc::c_ulong::try_from(flags).ok()?,
        // Filled from the profile by `compile`.
        listener: None,
    })
}

fn serialize(key: &[u8], p: &Program) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + key.len() + p.filter.len() * 8);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&(key.len() as u32).to_ne_bytes());
    b.extend_from_slice(&(p.filter.len() as u32).to_ne_bytes());
    // c_ulong is u32 on 32-bit targets; the file always holds 64 bits.
    #[allow(clippy::useless_conversion)]
    let flags = u64::from(p.flags);
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(key);
    for i in &p.filter {
        b.extend_from_slice(&i.code.to_ne_bytes());
        b.extend_from_slice(&[i.jt, i.jf]);
        b.extend_from_slice(&i.k.to_ne_bytes());
    }
    b
}

/// Write the entry under a temporary name and rename it into place: a reader sees a whole
/// file or none, and two creates racing on a new profile both succeed.
fn store(dir: &Path, path: &Path, key: &[u8], p: &Program) -> std::io::Result<()> {
    if p.filter.len() > MAX_INSNS {
        return Ok(());
    }
    // Not recursive: a state root that does not exist yet is create's to make, with its mode.
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    if fs::read_dir(dir)?.count() >= MAX_ENTRIES {
        return Err(std::io::Error::other(format!(
            "{MAX_ENTRIES} profiles are cached already"
        )));
    }
    let tmp: PathBuf = dir.join(format!(".tmp-{}-{:016x}", std::process::id(), hash(key)));
    let r = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&serialize(key, p)))
        .and_then(|()| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(errno: u32) -> LinuxSeccomp {
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno}]
        }))
        .unwrap()
    }

    fn same(a: &Program, b: &Program) -> bool {
        a.flags == b.flags
            && a.filter.len() == b.filter.len()
            && a.filter
                .iter()
                .zip(&b.filter)
                .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k))
    }

    fn entries(root: &Path) -> Vec<PathBuf> {
        let mut v: Vec<_> = fs::read_dir(root.join(DIR))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn a_profile_is_stored_once_and_read_back_as_compiled() {
        let root = tempfile::tempdir().unwrap();
        let fresh = super::super::compile(&profile(1)).unwrap();
        let first = compile(root.path(), &profile(1)).unwrap();
        let files = entries(root.path());
        assert_eq!(files.len(), 1, "{files:?}");
        let mode = fs::metadata(&files[0]).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        let stored = fs::read(&files[0]).unwrap();
        let second = compile(root.path(), &profile(1)).unwrap();
        assert!(same(&fresh, &first) && same(&first, &second));
        assert_eq!(second.flags, 2);
        // Read, not rewritten.
        assert_eq!(fs::read(&files[0]).unwrap(), stored);
        assert_eq!(entries(root.path()), files);
        // Another profile is another entry with another program.
        let other = compile(root.path(), &profile(2)).unwrap();
        assert!(!same(&other, &first));
        assert_eq!(entries(root.path()).len(), 2);
    }

    #[test]
    fn an_entry_for_another_key_or_damaged_is_ignored_and_replaced() {
        let root = tempfile::tempdir().unwrap();
        let good = compile(root.path(), &profile(1)).unwrap();
        let file = entries(root.path()).remove(0);
        let stored = fs::read(&file).unwrap();

        // The same name holding the program of another profile (as a hash collision would).
        let k2 = key(&profile(2)).unwrap();
        let p2 = super::super::compile(&profile(2)).unwrap();
        fs::write(&file, serialize(&k2, &p2)).unwrap();
        let p = compile(root.path(), &profile(1)).unwrap();
        assert!(same(&p, &good));
        assert_eq!(
            fs::read(&file).unwrap(),
            stored,
            "replaced by the right entry"
        );

        // Truncated.
        fs::write(&file, &stored[..stored.len() - 3]).unwrap();
        assert!(same(&compile(root.path(), &profile(1)).unwrap(), &good));
        assert_eq!(fs::read(&file).unwrap(), stored);

        // Readable by others: not trusted.
        assert!(read(&file, &key(&profile(1)).unwrap()).is_some());
        fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        assert!(read(&file, &key(&profile(1)).unwrap()).is_none());
    }

    #[test]
    fn no_state_root_yet_means_no_cache() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("not-yet");
        compile(&missing, &profile(1)).unwrap();
        assert!(!missing.exists());
    }
}
