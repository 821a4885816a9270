//! docker-proxy compatibility: the command line dockerd passes to its `userland-proxy-path`
//! and the readiness report it waits for on fd 3.
//!
//! dockerd starts the proxy with `-proto tcp|udp -host-ip IP -host-port N -container-ip IP
//! -container-port N` (Go flag syntax: one or two dashes, `-flag value` or `-flag=value`).
//! Docker 28 binds the host port itself and adds `-use-listen-fd`: the socket is fd 4. The
//! proxy then writes "0\n" to fd 3 once it relays, or "1\n" followed by the error text and
//! exits 1.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, OwnedFd};

use crate::protocol::{MappingSpec, Proto};

/// The descriptor dockerd reads readiness from.
pub const SIGNAL_FD: i32 = 3;
/// The descriptor Docker 28 passes the bound host socket in.
pub const LISTEN_FD: i32 = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompatError {
    #[error("flag provided but not defined: -{0}")]
    UnknownFlag(String),
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("invalid value {value:?} for flag -{flag}: {reason}")]
    BadValue {
        flag: String,
        value: String,
        reason: String,
    },
    #[error("missing required flag -{0}")]
    Missing(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatArgs {
    pub spec: MappingSpec,
    /// Use the socket on fd 4 instead of binding `spec.host`.
    pub use_listen_fd: bool,
}

/// Whether argv looks like a docker-proxy invocation rather than berth-proxy's own CLI.
pub fn is_compat_invocation(args: &[String]) -> bool {
    args.iter().skip(1).any(|a| {
        let name = a.trim_start_matches('-');
        let name = name.split('=').next().unwrap_or("");
        a.starts_with('-')
            && matches!(
                name,
                "proto"
                    | "host-ip"
                    | "host-port"
                    | "container-ip"
                    | "container-port"
                    | "use-listen-fd"
            )
    })
}

/// Parse docker-proxy's flags (argv without the program name).
pub fn parse(args: &[String]) -> Result<CompatArgs, CompatError> {
    let mut proto = "tcp".to_string();
    let (mut host_ip, mut host_port, mut cont_ip, mut cont_port) = (None, None, None, None);
    let mut use_listen_fd = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(CompatError::UnknownFlag(arg.clone()));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "use-listen-fd" {
            use_listen_fd = match inline.as_deref() {
                None | Some("true") | Some("1") => true,
                Some("false") | Some("0") => false,
                Some(v) => {
                    return Err(CompatError::BadValue {
                        flag: name.into(),
                        value: v.into(),
                        reason: "want a boolean".into(),
                    })
                }
            };
            continue;
        }
        let slot = match name {
            "proto" => &mut proto,
            "host-ip" => host_ip.get_or_insert_with(String::new),
            "host-port" => host_port.get_or_insert_with(String::new),
            "container-ip" => cont_ip.get_or_insert_with(String::new),
            "container-port" => cont_port.get_or_insert_with(String::new),
            other => return Err(CompatError::UnknownFlag(other.to_string())),
        };
        *slot = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| CompatError::MissingValue(name.to_string()))?
                .clone(),
        };
    }
    let bad = |flag: &str, value: &str, reason: String| CompatError::BadValue {
        flag: flag.into(),
        value: value.into(),
        reason,
    };
    let proto: Proto = proto.parse().map_err(|e| bad("proto", &proto, e))?;
    let ip = |flag: &'static str, v: Option<String>| -> Result<IpAddr, CompatError> {
        let v = v.ok_or(CompatError::Missing(flag))?;
        v.parse()
            .map_err(|e: std::net::AddrParseError| bad(flag, &v, e.to_string()))
    };
    let port = |flag: &'static str, v: Option<String>| -> Result<u16, CompatError> {
        let v = v.ok_or(CompatError::Missing(flag))?;
        v.parse()
            .map_err(|e: std::num::ParseIntError| bad(flag, &v, e.to_string()))
    };
    let spec = MappingSpec {
        proto,
        host: SocketAddr::new(ip("host-ip", host_ip)?, port("host-port", host_port)?),
        container: SocketAddr::new(
            ip("container-ip", cont_ip)?,
            port("container-port", cont_port)?,
        ),
    };
    Ok(CompatArgs {
        spec,
        use_listen_fd,
    })
}

/// Tell the parent on fd 3 how start-up went, then close fd 3. A missing fd 3 (started by
/// hand) is not an error.
pub fn report(result: Result<(), &str>) {
    // SAFETY: fd 3 is, by docker-proxy convention, ours to write and close; if it is not open,
    // fcntl fails and we never wrap it.
    if unsafe { libc::fcntl(SIGNAL_FD, libc::F_GETFD) } < 0 {
        return;
    }
    // SAFETY: fd 3 is open (checked above) and handed to us by the parent for this one use.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(SIGNAL_FD) });
    let _ = match result {
        Ok(()) => f.write_all(b"0\n"),
        Err(msg) => f.write_all(format!("1\n{msg}").as_bytes()),
    };
}

/// Take ownership of the socket Docker 28 passes on fd 4.
pub fn take_listen_fd() -> Option<OwnedFd> {
    // SAFETY: probing whether fd 4 is open; nothing is wrapped if it is not.
    if unsafe { libc::fcntl(LISTEN_FD, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: fd 4 is open and, with -use-listen-fd, handed to us by the parent to own.
    Some(unsafe { OwnedFd::from_raw_fd(LISTEN_FD) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_docker_20_10_command_line() {
        let a = parse(&v("-proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip 172.17.0.2 -container-port 80")).unwrap();
        assert_eq!(a.spec.proto, Proto::Tcp);
        assert_eq!(a.spec.host, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(a.spec.container, "172.17.0.2:80".parse().unwrap());
        assert!(!a.use_listen_fd);
    }

    #[test]
    fn parses_go_flag_variants_and_listen_fd() {
        let a = parse(&v("--proto=udp -host-ip=:: --host-port 53 -container-ip fd00::2 -container-port=5353 -use-listen-fd")).unwrap();
        assert_eq!(a.spec.proto, Proto::Udp);
        assert_eq!(a.spec.host, "[::]:53".parse().unwrap());
        assert_eq!(a.spec.container, "[fd00::2]:5353".parse().unwrap());
        assert!(a.use_listen_fd);
        assert!(is_compat_invocation(&v("berth-proxy -proto tcp")));
        assert!(!is_compat_invocation(&v("berth-proxy serve --control /x")));
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(
            parse(&v(
                "-proto sctp -host-ip 1.2.3.4 -host-port 1 -container-ip 1.2.3.4 -container-port 2"
            ))
            .unwrap_err()
            .to_string(),
            "invalid value \"sctp\" for flag -proto: unknown protocol \"sctp\" (want tcp or udp)"
        );
        assert_eq!(
            parse(&v("-proto tcp -host-ip 1.2.3.4")).unwrap_err(),
            CompatError::Missing("host-port")
        );
        assert_eq!(
            parse(&v("-bogus 1")).unwrap_err(),
            CompatError::UnknownFlag("bogus".into())
        );
        assert_eq!(
            parse(&v("-host-port")).unwrap_err(),
            CompatError::MissingValue("host-port".into())
        );
        assert!(matches!(
            parse(&v(
                "-host-ip 1.2.3.4 -host-port 99999 -container-ip 1.2.3.4 -container-port 2"
            )),
            Err(CompatError::BadValue { .. })
        ));
    }
}
