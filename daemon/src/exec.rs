//! Exec sessions (POST /containers/{id}/exec, /exec/{id}/start, /exec/{id}/json): created in
//! memory, run by the container's shim, which reports their exit codes.

use std::collections::HashMap;

use serde::Deserialize;

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
