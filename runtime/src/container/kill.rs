//! `kill`: signal the init through its pidfd, or every process of the container.

use std::os::fd::AsFd;
use std::path::Path;

use super::{Container, Status};
use crate::error::{Error, Result};
use crate::sys;

pub fn kill(root: &Path, id: &str, sig: libc::c_int, all: bool) -> Result<()> {
    let c = Container::load(root, id)?;
    if all {
        return c.record.cgroup.signal_all(sig);
    }
    let not_running = || Error::BadState {
        id: id.to_string(),
        status: "stopped",
        what: "container not running",
    };
    if c.status() == Status::Stopped {
        return Err(not_running());
    }
    let pidfd = c.init_pidfd().ok_or_else(not_running)?;
    match sys::pidfd_send_signal(pidfd.as_fd(), sig) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(not_running()),
        Err(e) => Err(Error::sys("pidfd_send_signal", e)),
    }
}

/// A signal by name ("KILL", "SIGKILL", "sigkill") or number.
pub fn parse_signal(s: &str) -> Option<libc::c_int> {
    if let Ok(n) = s.parse::<libc::c_int>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    const NAMES: [(&str, libc::c_int); 31] = [
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ILL", libc::SIGILL),
        ("TRAP", libc::SIGTRAP),
        ("ABRT", libc::SIGABRT),
        ("IOT", libc::SIGIOT),
        ("BUS", libc::SIGBUS),
        ("FPE", libc::SIGFPE),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("SEGV", libc::SIGSEGV),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("STKFLT", libc::SIGSTKFLT),
        ("CHLD", libc::SIGCHLD),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("TSTP", libc::SIGTSTP),
        ("TTIN", libc::SIGTTIN),
        ("TTOU", libc::SIGTTOU),
        ("URG", libc::SIGURG),
        ("XCPU", libc::SIGXCPU),
        ("XFSZ", libc::SIGXFSZ),
        ("VTALRM", libc::SIGVTALRM),
        ("PROF", libc::SIGPROF),
        ("WINCH", libc::SIGWINCH),
        ("IO", libc::SIGIO),
        ("SYS", libc::SIGSYS),
    ];
    if let Some((_, n)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Some(*n);
    }
    // RTMIN, RTMIN+3, RTMAX-2
    let rt = |base: libc::c_int, rest: &str| -> Option<libc::c_int> {
        if rest.is_empty() {
            return Some(base);
        }
        let off: libc::c_int = rest[1..].parse().ok()?;
        Some(if rest.starts_with('+') {
            base + off
        } else {
            base - off
        })
    };
    let v = if let Some(r) = name.strip_prefix("RTMIN") {
        rt(libc::SIGRTMIN(), r)?
    } else if let Some(r) = name.strip_prefix("RTMAX") {
        rt(libc::SIGRTMAX(), r)?
    } else {
        return None;
    };
    (libc::SIGRTMIN()..=libc::SIGRTMAX())
        .contains(&v)
        .then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signal_names_and_numbers() {
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("KILL"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("sigusr1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("RTMIN+1"), Some(libc::SIGRTMIN() + 1));
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal("65"), None);
    }
}
