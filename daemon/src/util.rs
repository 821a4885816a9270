//! Small helpers the whole daemon uses: ids, RFC 3339 time, crash-safe file writes.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A new 64-hex-digit id, as Docker makes for containers and exec sessions.
pub fn random_id() -> String {
    let mut b = [0u8; 32];
    // SAFETY: b is a writable buffer of b.len() bytes; getrandom writes at most that many.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(n, b.len() as isize, "getrandom failed");
    hex(&b)
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Seconds since the epoch as Docker's JSON shows them in lists (`Created`).
pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// RFC 3339 with nanoseconds in UTC, the format of Docker's timestamps
/// (`2026-11-22T10:00:00.123456789Z`): the runtime's formatter.
pub use berth_runtime::time::rfc3339;

/// Docker's zero time, shown for containers that never started or finished.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Parses what `rfc3339` writes (and RFC 3339 with any fraction or offset) back to a time.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(f) = rest.strip_prefix('.') {
        let digits = f.bytes().take_while(u8::is_ascii_digit).count();
        let mut frac = f[..digits].to_string();
        frac.truncate(9);
        while frac.len() < 9 {
            frac.push('0');
        }
        nanos = frac.parse().ok()?;
        rest = &f[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
    Some(UNIX_EPOCH + Duration::new(u64::try_from(secs).ok()?, nanos))
}

/// `since`/`until` query values: Unix seconds with an optional fraction
/// (what the docker CLI sends), or RFC 3339.
pub fn parse_api_time(s: &str) -> Option<SystemTime> {
    if let Some(t) = parse_rfc3339(s) {
        return Some(t);
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: u64 = secs.parse().ok()?;
    let mut f = frac.to_string();
    f.truncate(9);
    while f.len() < 9 {
        f.push('0');
    }
    Some(UNIX_EPOCH + Duration::new(secs, f.parse().ok()?))
}

// Howard Hinnant's civil date -> days algorithm (the inverse of the runtime's).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// "Up 3 minutes" / "Exited (0) 2 hours ago": Docker's human durations.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// Writes `data` to `path` so that a crash at any moment leaves either the old or the new
/// content: temporary file, fsync, rename, fsync of the directory.
pub fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    write_via_tmp(path, data, true, |a, b| fs::rename(a, b))
}

/// The size of a directory slot's record before a create writes it: that many spaces, on
/// disk with their blocks. A create then overwrites the start of allocated blocks and syncs
/// only the data (fdatasync): one write of the block to the disk, where writing into an
/// empty file also allocates the blocks and writes the inode (measured here on the root
/// ext4: 70-80 us against 180-480 us). JSON allows the spaces left after the record; a
/// record longer than this grows the file, which the sync covers too.
pub const BLANK_RECORD_LEN: usize = 8192;

/// Makes `f` a blank record ([`BLANK_RECORD_LEN`] spaces), durably.
pub fn blank_record(f: &fs::File) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[b' '; BLANK_RECORD_LEN], 0)?;
    f.set_len(BLANK_RECORD_LEN as u64)?;
    f.sync_all()
}

/// Whether the record at `path` is blank (empty, or spaces only): a directory slot's, or one
/// whose create never answered. False when it cannot be read.
pub fn record_is_blank(path: &Path) -> bool {
    match fs::read(path) {
        Ok(b) => b.iter().all(u8::is_ascii_whitespace),
        Err(_) => false,
    }
}

/// A container record, written as [`atomic_write`] does (`durable`: with fsyncs) or as
/// [`replace_file`] does, but the new content trades places with the old one
/// (renameat2 RENAME_EXCHANGE) instead of replacing it: the old content stays under the
/// temporary name, where the next save overwrites it. After a record's first two saves no
/// save makes an inode; on this project's hosts (ext4 without a journal) each one made costs
/// 46-300 us while the inodes freed in the last seconds are skipped, and a container's
/// record is saved at create, start and exit. Readers never look at the temporary name.
pub fn write_record(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    write_via_tmp(path, data, durable, exchange_or_rename)
}

/// Replaces `path` atomically (temporary file, rename) without waiting for the disk: for
/// state that is rebuilt from the shims after a power loss, and files under the exec root.
pub fn replace_file(path: &Path, data: &[u8]) -> io::Result<()> {
    write_via_tmp(path, data, false, |a, b| fs::rename(a, b))
}

/// `data` into `.<name>.tmp` beside `path`, then `place(tmp, path)`; `durable`: the file is
/// fsynced before and its directory after.
fn write_via_tmp(
    path: &Path,
    data: &[u8],
    durable: bool,
    place: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tmp_path(path);
    let mut f = fs::File::create(&tmp)?;
    f.write_all(data)?;
    if durable {
        f.sync_all()?;
    }
    drop(f);
    place(&tmp, path)?;
    if durable {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The temporary file beside `path` that its atomic writes go through: `.<name>.tmp`.
pub fn tmp_path(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Swap `from` and `to` atomically; a plain rename when `to` does not exist yet or the
/// filesystem cannot exchange.
fn exchange_or_rename(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (a, b) = (c(from)?, c(to)?);
    // SAFETY: both paths are NUL-terminated and outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::EINVAL) => fs::rename(from, to),
        _ => Err(e),
    }
}

/// The running kernel's release (`uname -r`), empty when unreadable.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The calling thread at background priority (nice 19) until dropped, then back at the nice
/// it had. For speculative work on a blocking thread. berthd's speculative work (parked
/// containers' bundles, slots made ahead, a `--rm` container's clean-up) runs in the
/// background: on a host of two cores it would otherwise slow down the very clients it
/// works ahead for (measured: a `docker` CLI started within milliseconds of berthd's
/// refills ran ~2 ms longer). Not SCHED_IDLE: a task of that class holding a kernel lock
/// (mounts, cgroups) can starve for seconds on a saturated host, and whoever waits on it
/// with it; at nice 19 it still gets a slice within ~100 ms. Best effort: a kernel that
/// refuses leaves the thread as it was.
pub struct BackgroundThread(Option<libc::c_int>);

impl BackgroundThread {
    pub fn enter() -> BackgroundThread {
        BackgroundThread(Some(berth_shim::sys::enter_background()))
    }
}

impl Drop for BackgroundThread {
    fn drop(&mut self) {
        if let Some(prev) = self.0 {
            let _ = berth_shim::sys::set_nice(0, prev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 123_456_789);
        let s = rfc3339(t);
        assert_eq!(s, "2026-11-18T11:06:40.123456789Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(
            parse_rfc3339("2026-11-18T12:06:40+01:00"),
            Some(UNIX_EPOCH + Duration::from_secs(1_795_000_000))
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn api_times_accept_unix_seconds() {
        assert_eq!(
            parse_api_time("1795000000.5"),
            Some(UNIX_EPOCH + Duration::from_millis(1_795_000_000_500))
        );
        assert_eq!(parse_api_time("x"), None);
    }

    #[test]
    fn durations_read_like_dockers() {
        assert_eq!(human_duration(Duration::from_secs(3)), "3 seconds");
        assert_eq!(human_duration(Duration::from_secs(7300)), "2 hours");
    }

    #[test]
    fn ids_are_64_hex() {
        let id = random_id();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, random_id());
    }
}
