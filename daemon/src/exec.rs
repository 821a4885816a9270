//! Exec sessions (POST /containers/{id}/exec, /exec/{id}/start, /exec/{id}/json): created in
//! memory by berthd, run by the container's shim (`exec` on its control socket, named by the
//! session id), which owns the process: it is the shim's child, so it keeps running — and its
//! exit is still recorded — when berthd stops. The shim reports pids and exit codes; berthd
//! keeps the Docker view (config, Running, ExitCode) and the events.
//!
//! After a berthd restart the table is empty: an id it does not know is looked up in the
//! shims of running containers (`state` lists their execs), so `docker exec inspect` of an
//! exec started before the restart shows what its shim reports (pid, running, exit code, not
//! the command); a running one is waited on again so its `exec_die` is published.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::container::shim::{self, ExecProcess, ExitInfo, Request, Response};
use crate::container::Ctr;
use crate::daemon::Daemon;
use crate::http::ApiResult;

/// The body of POST /containers/{id}/exec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecConfig {
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub privileged: bool,
    pub detach_keys: String,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub container: String,
    pub config: ExecConfig,
    pub running: bool,
    pub started: bool,
    pub exit_code: Option<i64>,
    pub pid: i32,
}

#[derive(Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
}

impl Sessions {
    pub fn insert(&mut self, s: Session) {
        // Bound memory: finished sessions beyond a few hundred are forgotten, oldest first
        // is not tracked, so drop finished ones wholesale when the table grows large.
        if self.by_id.len() > 1024 {
            self.by_id.retain(|_, s| s.running || !s.started);
        }
        self.by_id.insert(s.id.clone(), s);
    }
    pub fn get(&self, id: &str) -> Option<&Session> {
        self.by_id.get(id)
    }
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Session> {
        self.by_id.get_mut(id)
    }
    pub fn ids_for(&self, container: &str) -> Option<Vec<String>> {
        let v: Vec<String> = self
            .by_id
            .values()
            .filter(|s| s.container == container && s.running)
            .map(|s| s.id.clone())
            .collect();
        (!v.is_empty()).then_some(v)
    }
    pub fn forget_container(&mut self, container: &str) {
        self.by_id.retain(|_, s| s.container != container);
    }
}

/// What the shim runs for a session: the container's process with the session's command,
/// env, cwd and user on top. A user name is resolved in the container's own /etc/passwd and
/// /etc/group (under `root`, its mounted rootfs): the shim takes numbers only.
pub fn process(
    cfg: &ExecConfig,
    root: &Path,
    tty: bool,
    console_size: Option<[u16; 2]>,
) -> ApiResult<ExecProcess> {
    let mut p = ExecProcess {
        args: cfg.cmd.clone(),
        env: cfg.env.clone().unwrap_or_default(),
        cwd: Some(cfg.working_dir.clone()).filter(|w| !w.is_empty()),
        tty,
        stdin: cfg.attach_stdin,
        console_size: console_size.filter(|[h, w]| tty && *h > 0 && *w > 0),
        ..ExecProcess::default()
    };
    if !cfg.user.is_empty() {
        use crate::container::rootfs::read_in_root;
        let passwd = read_in_root(root, "etc/passwd").unwrap_or_default();
        let group = read_in_root(root, "etc/group").unwrap_or_default();
        let u = crate::container::spec::resolve_user(&cfg.user, &passwd, &group, &[])?;
        p.user = Some(format!("{}:{}", u.uid, u.gid));
        p.additional_gids = u.additional_gids;
    }
    Ok(p)
}

/// The exit code dockerd records for an exec that could not be started — any reason, a
/// missing program included (unlike `docker run`'s 127).
pub const START_FAILED: i64 = 126;

/// Records the end of a session: its code, or none when the shim could not tell.
pub fn record(d: &Daemon, exec_id: &str, code: Option<i64>) {
    if let Some(s) = d.exec.lock().unwrap().get_mut(exec_id) {
        s.running = false;
        s.exit_code = code;
    }
}

/// Records the end of a session that ran and publishes `exec_die`, as dockerd does.
pub fn finish(d: &Daemon, c: &Ctr, exec_id: &str, code: Option<i64>) {
    record(d, exec_id, code);
    let mut attrs = vec![("execID", exec_id.to_string())];
    if let Some(code) = code {
        attrs.push(("exitCode", code.to_string()));
    }
    d.container_event(c, "exec_die", &attrs);
}

/// A `wait` for one exec, parked in its shim as soon as the exec runs: the shim answers it
/// when it records the exit — before it closes the exec's attach streams, and even if the
/// container's end shuts the shim down right after.
pub struct ExitWatch {
    exec_id: String,
    conn: Result<shim::Conn, shim::CallError>,
}

impl ExitWatch {
    pub async fn park(d: &Daemon, c: &Ctr, exec_id: &str) -> ExitWatch {
        let wait = Request::Wait {
            exec_id: Some(exec_id.to_string()),
        };
        let conn = match shim::Conn::connect(&d.paths(&c.id).shim).await {
            Ok(mut conn) => conn.send(&wait).await.map(|()| conn),
            Err(e) => Err(e),
        };
        ExitWatch {
            exec_id: exec_id.to_string(),
            conn,
        }
    }

    /// Waits for the shim's answer, then [`finish`]es the session.
    pub async fn finish(self, d: &Daemon, c: &Ctr) {
        let r = match self.conn {
            Ok(mut conn) => conn.reply().await,
            Err(e) => Err(e),
        };
        let code = match r {
            Ok(Response::Exited(ExitInfo { exit_code, .. })) => Some(i64::from(exit_code)),
            other => {
                crate::log::warn(format_args!(
                    "exec {} in {}: no exit code from the shim: {other:?}",
                    self.exec_id, c.id
                ));
                // Its container is gone: the process went with it (SIGKILL by the kernel).
                (!c.status().is_running()).then_some(137)
            }
        };
        finish(d, c, &self.exec_id, code);
    }
}

/// Waits until the shim has recorded the exec's exit, then [`finish`]es the session.
pub async fn wait_and_finish(d: &Daemon, c: &Ctr, exec_id: &str) {
    ExitWatch::park(d, c, exec_id).await.finish(d, c).await
}

/// An exec id berthd does not know (it was restarted): looked up in the shims of running
/// containers; when found, the session is remembered (and waited on if it still runs).
pub async fn find_in_shims(d: &Arc<Daemon>, id: &str) -> Option<Session> {
    let running: Vec<Arc<Ctr>> = d
        .containers
        .lock()
        .unwrap()
        .all()
        .filter(|c| c.status().is_running())
        .cloned()
        .collect();
    for c in running {
        let Ok(Response::State(st)) = shim::call(&d.paths(&c.id).shim, &Request::State).await
        else {
            continue;
        };
        let Some(e) = st.execs.into_iter().find(|e| e.exec_id == id) else {
            continue;
        };
        let s = Session {
            id: id.to_string(),
            container: c.id.clone(),
            config: ExecConfig {
                tty: e.tty,
                ..ExecConfig::default()
            },
            running: e.exit.is_none(),
            started: true,
            exit_code: e.exit.as_ref().map(|x| i64::from(x.exit_code)),
            pid: e.pid,
        };
        {
            // Two lookups may race: the first one recorded is the session (and has the waiter).
            let mut t = d.exec.lock().unwrap();
            if let Some(known) = t.get(id) {
                return Some(known.clone());
            }
            t.insert(s.clone());
        }
        if s.running {
            let d = d.clone();
            let id = id.to_string();
            tokio::spawn(async move { wait_and_finish(&d, &c, &id).await });
        }
        return Some(s);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_carries_the_session_config() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65533::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("etc/group"),
            "nogroup:x:65533:\nextra:x:7:nobody\n",
        )
        .unwrap();
        let cfg = ExecConfig {
            cmd: vec!["id".into()],
            env: Some(vec!["A=1".into()]),
            user: "nobody".into(),
            working_dir: "/tmp".into(),
            attach_stdin: true,
            ..ExecConfig::default()
        };
        let p = process(&cfg, root.path(), true, Some([30, 100])).unwrap();
        assert_eq!(p.args, ["id"]);
        assert_eq!(p.env, ["A=1"]);
        assert_eq!(p.cwd.as_deref(), Some("/tmp"));
        assert_eq!(p.user.as_deref(), Some("65534:65533"));
        assert_eq!(p.additional_gids, [7]);
        assert!(p.tty && p.stdin);
        assert_eq!(p.console_size, Some([30, 100]));
        // No tty: no console size; no user: the container's.
        let plain = ExecConfig {
            user: String::new(),
            working_dir: String::new(),
            ..cfg
        };
        let p = process(&plain, root.path(), false, Some([30, 100])).unwrap();
        assert_eq!((p.user, p.cwd, p.console_size), (None, None, None));
        let unknown = ExecConfig {
            user: "nosuchuser".into(),
            ..plain
        };
        assert!(process(&unknown, root.path(), false, None).is_err());
    }
}
