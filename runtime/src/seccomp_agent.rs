//! Handing a seccomp notify listener to the agent at `linux.seccomp.listenerPath`. The
//! container's child loads its filter with a new listener and passes it to the runtime over
//! the sync socket; the runtime connects to the agent and sends it, with SCM_RIGHTS, together
//! with the container process state the OCI spec defines (config-linux.md, "The Container
//! Process State"), then closes its own copy. The child never talks to the agent itself: it
//! cannot build that JSON without allocating, and the pid in it is the host's.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use serde_json::json;

use crate::error::{IoContext, Result};
use crate::seccomp::Listener;
use crate::sys;

/// Where one process's listener goes and what accompanies it.
pub struct Agent {
    path: PathBuf,
    payload: Vec<u8>,
}

impl Agent {
    /// `pid` is the process that loaded the filter (the init, or an exec'd process); `state`
    /// is the container's OCI state (hooks::state_json).
    pub fn new(listener: &Listener, oci_version: &str, pid: libc::pid_t, state: &[u8]) -> Agent {
        let state: serde_json::Value =
            serde_json::from_slice(state).expect("the state JSON is ours");
        let payload = serde_json::to_vec(&json!({
            "ociVersion": oci_version,
            "fds": ["seccompFd"],
            "pid": pid,
            "metadata": listener.metadata,
            "state": state,
        }))
        .expect("the process state serialises");
        Agent {
            path: listener.path.clone(),
            payload,
        }
    }

    /// Send `fd` to the agent; our copy is closed when this returns.
    pub fn send(&self, fd: OwnedFd) -> Result<()> {
        let sock = UnixStream::connect(&self.path).ctx("connect to seccomp agent", &self.path)?;
        sys::send_fd(sock.as_fd(), &self.payload, fd.as_raw_fd())
            .ctx("send the seccomp listener to the agent", &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn sends_the_listener_with_the_container_process_state() {
        let dir = std::env::temp_dir().join(format!("berth-agent-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.sock");
        let server = UnixListener::bind(&path).unwrap();
        let l = Listener {
            path: path.clone(),
            metadata: "meta".into(),
        };
        let agent = Agent::new(
            &l,
            "1.2.0",
            42,
            br#"{"id":"c","status":"creating","pid":42}"#,
        );
        let (r, _w) = sys::pipe().unwrap();
        agent.send(r).unwrap();
        let (conn, _) = server.accept().unwrap();
        let mut buf = vec![0u8; 4096];
        let (fd, n) = sys::recv_fd(conn.as_fd(), &mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
        assert_eq!(v["fds"], json!(["seccompFd"]));
        assert_eq!(v["pid"], 42);
        assert_eq!(v["metadata"], "meta");
        assert_eq!(v["ociVersion"], "1.2.0");
        assert_eq!(v["state"]["id"], "c");
        assert!(fd.as_raw_fd() >= 0);
        let missing = Listener {
            path: dir.join("nobody.sock"),
            metadata: String::new(),
        };
        let (r, _w) = sys::pipe().unwrap();
        let e = Agent::new(&missing, "1.2.0", 1, b"{}").send(r).unwrap_err();
        assert!(e.to_string().contains("connect to seccomp agent"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
