//! nftables rules for published ports, in berth's own table only.
//!
//! The whole table is rendered from the desired state and installed as one libnftables
//! transaction (`add table; delete table; table { … }`): applying is atomic, idempotent, and
//! reconciles whatever an earlier run left behind. `remove` deletes the table; no other table is
//! ever named. libnftables (Debian: libnftables1) is loaded with dlopen at first use, so the
//! proxy runs without it when nftables is not wanted.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::protocol::Proto;

/// The name of berth's table in the `inet` family.
pub const TABLE: &str = "berth";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("load libnftables.so.1: {0} (install libnftables1)")]
    Load(String),
    #[error("libnftables: nft_ctx_new failed")]
    Context,
    #[error("nft {what} in table inet {table}: {message}")]
    Command {
        what: &'static str,
        table: String,
        message: String,
    },
    #[error("invalid rule input {0:?}")]
    Invalid(String),
}

/// One published port: traffic to `host_ip` (any local address when `None`) on `host_port`
/// is sent to `container`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    pub proto: Proto,
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container: SocketAddr,
}

/// A container subnet whose outgoing traffic is masqueraded when it leaves the subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Subnet {
    type Err = NftError;
    fn from_str(s: &str) -> Result<Self, NftError> {
        let bad = || NftError::Invalid(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Subnet { addr, prefix })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Everything berth's table should contain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub ports: Vec<PublishedPort>,
    pub masquerade: Vec<Subnet>,
}

fn fam(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

fn target(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => format!("{}:{}", v.ip(), v.port()),
        SocketAddr::V6(v) => format!("[{}]:{}", v.ip(), v.port()),
    }
}

impl Ruleset {
    /// The nft script that replaces berth's table with this state in one transaction. All
    /// input is typed (addresses, ports, enums), so nothing user-supplied reaches the script
    /// as free text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "add table inet {TABLE}");
        let _ = writeln!(s, "delete table inet {TABLE}");
        let _ = writeln!(s, "table inet {TABLE} {{");
        s.push_str("  chain published {\n");
        for p in &self.ports {
            let cf = fam(&p.container.ip());
            let dst = match p.host_ip {
                Some(ip) => format!("{} daddr {ip} ", fam(&ip)),
                None => format!("meta nfproto {} ", if cf == "ip" { "ipv4" } else { "ipv6" }),
            };
            let _ = writeln!(
                s,
                "    {dst}{} dport {} dnat {cf} to {}",
                p.proto,
                p.host_port,
                target(&p.container)
            );
        }
        s.push_str("  }\n");
        s.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local jump published\n  }\n");
        // Locally generated traffic: loopback cannot be DNATed without route_localnet, so it is
        // left to the userland proxy.
        s.push_str("  chain output {\n    type nat hook output priority -100; policy accept;\n");
        s.push_str("    ip daddr != 127.0.0.0/8 fib daddr type local jump published\n");
        s.push_str("    ip6 daddr != ::1 fib daddr type local jump published\n  }\n");
        s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
        for p in &self.ports {
            // Hairpin: a container reaching its own published port comes back to itself; without
            // masquerade it would answer itself directly and the connection would never form.
            let cf = fam(&p.container.ip());
            let ip = p.container.ip();
            let _ = writeln!(
                s,
                "    {cf} saddr {ip} {cf} daddr {ip} {} dport {} masquerade",
                p.proto,
                p.container.port()
            );
        }
        for n in &self.masquerade {
            let f = fam(&n.addr);
            let _ = writeln!(s, "    {f} saddr {n} {f} daddr != {n} masquerade");
        }
        s.push_str("  }\n}\n");
        s
    }
}

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxInt = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxStr = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// A libnftables context with buffered output and errors.
pub struct Nft {
    lib: *mut c_void,
    ctx: *mut c_void,
    free: CtxFree,
    run: RunCmd,
    out: CtxStr,
    err: CtxStr,
}

fn sym<T: Copy>(lib: *mut c_void, name: &CStr) -> Result<T, NftError> {
    // SAFETY: lib is a live dlopen handle and name is NUL-terminated.
    let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
    if p.is_null() {
        return Err(NftError::Load(format!("symbol {name:?} missing")));
    }
    // SAFETY: T is the function-pointer type of this libnftables symbol (see nftables/libnftables.h).
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

impl Nft {
    pub fn open() -> Result<Self, NftError> {
        // SAFETY: the name is a NUL-terminated literal; RTLD_NOW resolves everything up front.
        let lib = unsafe {
            libc::dlopen(
                c"libnftables.so.1".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            )
        };
        if lib.is_null() {
            // SAFETY: dlerror returns a NUL-terminated string or null.
            let e = unsafe { libc::dlerror() };
            let msg = if e.is_null() {
                "unknown error".to_string()
            } else {
                // SAFETY: non-null dlerror results are NUL-terminated strings.
                unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
            };
            return Err(NftError::Load(msg));
        }
        let new: CtxNew = sym(lib, c"nft_ctx_new")?;
        let free: CtxFree = sym(lib, c"nft_ctx_free")?;
        let buf_out: CtxInt = sym(lib, c"nft_ctx_buffer_output")?;
        let buf_err: CtxInt = sym(lib, c"nft_ctx_buffer_error")?;
        let out: CtxStr = sym(lib, c"nft_ctx_get_output_buffer")?;
        let err: CtxStr = sym(lib, c"nft_ctx_get_error_buffer")?;
        let run: RunCmd = sym(lib, c"nft_run_cmd_from_buffer")?;
        // SAFETY: NFT_CTX_DEFAULT is 0.
        let ctx = unsafe { new(0) };
        if ctx.is_null() {
            return Err(NftError::Context);
        }
        // SAFETY: ctx is a live context from nft_ctx_new.
        unsafe {
            buf_out(ctx);
            buf_err(ctx);
        }
        Ok(Nft {
            lib,
            ctx,
            free,
            run,
            out,
            err,
        })
    }

    fn run(&mut self, what: &'static str, script: &str) -> Result<String, NftError> {
        let c = CString::new(script).map_err(|_| NftError::Invalid(script.to_string()))?;
        // SAFETY: ctx is live; c is NUL-terminated and outlives the call.
        let rc = unsafe { (self.run)(self.ctx, c.as_ptr()) };
        // SAFETY: buffered output/error are NUL-terminated strings owned by ctx, valid until the
        // next command; we copy them out at once.
        let (out, err) = unsafe {
            let o = (self.out)(self.ctx);
            let e = (self.err)(self.ctx);
            (
                if o.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(o).to_string_lossy().into_owned()
                },
                if e.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(e).to_string_lossy().into_owned()
                },
            )
        };
        if rc != 0 {
            return Err(NftError::Command {
                what,
                table: TABLE.to_string(),
                message: err.trim().to_string(),
            });
        }
        Ok(out)
    }

    /// Make berth's table exactly `rules`, atomically. Safe to repeat; replaces what a
    /// previous run left.
    pub fn apply(&mut self, rules: &Ruleset) -> Result<(), NftError> {
        self.run("apply", &rules.render()).map(|_| ())
    }

    /// Delete berth's table (no error if it is absent).
    pub fn remove(&mut self) -> Result<(), NftError> {
        self.run(
            "remove",
            &format!("add table inet {TABLE}\ndelete table inet {TABLE}\n"),
        )
        .map(|_| ())
    }

    /// The current text of berth's table, or `None` if it does not exist.
    pub fn list(&mut self) -> Result<Option<String>, NftError> {
        let tables = self.run("list tables", "list tables")?;
        if !tables
            .lines()
            .any(|l| l.trim() == format!("table inet {TABLE}"))
        {
            return Ok(None);
        }
        self.run("list", &format!("list table inet {TABLE}"))
            .map(Some)
    }

    /// Run an arbitrary nft command; for tests that set up or inspect *other* tables.
    pub fn command(&mut self, script: &str) -> Result<String, NftError> {
        self.run("command", script)
    }
}

impl Drop for Nft {
    fn drop(&mut self) {
        // SAFETY: ctx came from nft_ctx_new and is freed once; lib stays loaded (dlclose of
        // libnftables is not needed and can race its destructors).
        unsafe { (self.free)(self.ctx) };
        let _ = self.lib;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_transaction_for_the_table() {
        let r = Ruleset {
            ports: vec![
                PublishedPort {
                    proto: Proto::Tcp,
                    host_ip: None,
                    host_port: 8080,
                    container: "172.17.0.2:80".parse().unwrap(),
                },
                PublishedPort {
                    proto: Proto::Udp,
                    host_ip: Some("::1".parse().unwrap()),
                    host_port: 53,
                    container: "[fd00::2]:5353".parse().unwrap(),
                },
            ],
            masquerade: vec!["172.17.0.0/16".parse().unwrap()],
        };
        let s = r.render();
        assert!(s.starts_with("add table inet berth\ndelete table inet berth\ntable inet berth {"));
        assert!(
            s.contains("meta nfproto ipv4 tcp dport 8080 dnat ip to 172.17.0.2:80"),
            "{s}"
        );
        assert!(
            s.contains("ip6 daddr ::1 udp dport 53 dnat ip6 to [fd00::2]:5353"),
            "{s}"
        );
        assert!(
            s.contains("ip saddr 172.17.0.2 ip daddr 172.17.0.2 tcp dport 80 masquerade"),
            "{s}"
        );
        assert!(
            s.contains("ip saddr 172.17.0.0/16 ip daddr != 172.17.0.0/16 masquerade"),
            "{s}"
        );
        assert_eq!(
            s.matches("table inet").count(),
            3,
            "only berth's table is named"
        );
    }

    #[test]
    fn subnet_parsing_refuses_garbage() {
        assert!("10.0.0.0/33".parse::<Subnet>().is_err());
        assert!("10.0.0.0".parse::<Subnet>().is_err());
        assert!("x/8".parse::<Subnet>().is_err());
        assert_eq!(
            "fd00::/64".parse::<Subnet>().unwrap().to_string(),
            "fd00::/64"
        );
    }
}
