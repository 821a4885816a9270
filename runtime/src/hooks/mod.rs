//! OCI lifecycle hooks. This module runs those that live in the runtime's namespaces:
//! `prestart` and `createRuntime` (after the namespaces exist, before the container's root is
//! set up), `poststart` (after `start`) and `poststop` (after `delete`, or after a create that
//! failed half-way). Each gets the container's state JSON on stdin, exactly its own args and
//! env, and is killed at its timeout. `createContainer` and `startContainer` run inside the
//! container, started by its init: see [`in_container`].

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Spec};
use serde_json::json;

use crate::error::{Error, Result};

pub mod in_container;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }
}

/// The hooks of one kind in `spec`, in order.
pub fn of(spec: &Spec, kind: Kind) -> Vec<Hook> {
    let Some(h) = spec.hooks() else {
        return Vec::new();
    };
    #[allow(deprecated)]
    let list = match kind {
        Kind::Prestart => h.prestart(),
        Kind::CreateRuntime => h.create_runtime(),
        Kind::CreateContainer => h.create_container(),
        Kind::StartContainer => h.start_container(),
        Kind::Poststart => h.poststart(),
        Kind::Poststop => h.poststop(),
    };
    list.clone().unwrap_or_default()
}

/// The state JSON a hook reads on stdin.
pub fn state_json(spec: &Spec, id: &str, pid: libc::pid_t, status: &str, bundle: &Path) -> Vec<u8> {
    let mut v = json!({
        "ociVersion": spec.version(),
        "id": id,
        "status": status,
        "bundle": bundle,
    });
    if pid > 0 {
        v["pid"] = json!(pid);
    }
    if let Some(a) = spec.annotations() {
        v["annotations"] = json!(a);
    }
    serde_json::to_vec(&v).expect("state serialises")
}

/// Runs every hook of `kind` in order; the first failure stops the rest and is returned.
pub fn run(spec: &Spec, kind: Kind, state: &[u8]) -> Result<()> {
    for (i, h) in of(spec, kind).iter().enumerate() {
        run_one(h, state).map_err(|msg| {
            Error::Init(format!(
                "{} hook #{i} ({}): {msg}",
                kind.name(),
                h.path().display()
            ))
        })?;
    }
    Ok(())
}

/// Runs the hooks of a kind whose failures only warn (poststart, poststop).
pub fn run_warn(spec: &Spec, kind: Kind, state: &[u8]) {
    for (i, h) in of(spec, kind).iter().enumerate() {
        if let Err(msg) = run_one(h, state) {
            crate::log::warn(&format!(
                "{} hook #{i} ({}): {msg}",
                kind.name(),
                h.path().display()
            ));
        }
    }
}

fn run_one(h: &Hook, state: &[u8]) -> std::result::Result<(), String> {
    let mut cmd = Command::new(h.path());
    let args = h.args().clone().unwrap_or_default();
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for e in h.env().clone().unwrap_or_default() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("exec: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is not an error.
        let _ = stdin.write_all(state);
    }
    let deadline = h
        .timeout()
        .filter(|&t| t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.by_ref().take(4096).read_to_string(&mut err);
                }
                return if st.success() {
                    Ok(())
                } else if let Some(sig) = st.signal() {
                    Err(format!("killed by signal {sig}: {}", err.trim()))
                } else {
                    Err(format!(
                        "exit status {}: {}",
                        st.code().unwrap_or(-1),
                        err.trim()
                    ))
                };
            }
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {} s", h.timeout().unwrap_or(0)));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
