//! A container as berthd stores it: the create request's Config and HostConfig (the fields
//! berthd acts on, typed; the docker CLI sends many more defaults, which are accepted and
//! ignored only when they are at their zero value) and the state it tracks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `Config` of POST /containers/create (and of inspect).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    #[serde(deserialize_with = "null_default")]
    pub env: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub cmd: Vec<String>,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    pub working_dir: String,
    #[serde(deserialize_with = "null_default")]
    pub entrypoint: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_disabled: Option<bool>,
    #[serde(deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
}

/// `HostConfig` of POST /containers/create.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    #[serde(deserialize_with = "null_default")]
    pub binds: Vec<String>,
    pub network_mode: String,
    #[serde(deserialize_with = "null_default")]
    pub port_bindings: BTreeMap<String, serde_json::Value>,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    #[serde(deserialize_with = "null_default")]
    pub mounts: Vec<Mount>,
    #[serde(deserialize_with = "null_default")]
    pub cap_add: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(deserialize_with = "null_default")]
    pub tmpfs: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    pub extra_hosts: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub dns: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub security_opt: Vec<String>,
    pub log_config: LogConfig,
    pub oom_score_adj: i64,
    pub shm_size: i64,
    #[serde(deserialize_with = "null_default")]
    pub sysctls: BTreeMap<String, String>,
    pub pid_mode: String,
    pub ipc_mode: String,
    pub uts_mode: String,
    pub userns_mode: String,
    pub cgroupns_mode: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cgroup_parent: String,
    pub runtime: String,
    #[serde(deserialize_with = "null_default")]
    pub devices: Vec<serde_json::Value>,
    #[serde(deserialize_with = "null_default")]
    pub volumes_from: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub links: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub group_add: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub ulimits: Vec<Ulimit>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(deserialize_with = "null_default")]
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// HostConfig.Mounts entries (`--mount`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Mount {
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    pub size_bytes: i64,
    pub mode: u32,
}

/// The body of POST /containers/create.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateRequest {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig")]
    pub host_config: HostConfig,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
    pub fn is_running(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i64,
    pub oom_killed: bool,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            oom_killed: false,
            error: String::new(),
            started_at: crate::util::ZERO_TIME.into(),
            finished_at: crate::util::ZERO_TIME.into(),
        }
    }
}

/// A mount point as inspect and `docker ps` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountPoint {
    /// bind, volume or tmpfs
    pub kind: String,
    /// Volume name (volumes only).
    pub name: String,
    /// Host path (bind source or the volume's data dir).
    pub source: PathBuf,
    pub destination: String,
    pub rw: bool,
    /// tmpfs mount options (tmpfs only).
    pub options: Vec<String>,
}

/// Everything persisted for one container, in `<data-root>/containers/<id>/config.v2.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub created: String,
    pub image_id: String,
    /// argv[0] and the rest, as inspect's Path/Args show them.
    pub path: String,
    pub args: Vec<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub state: State,
    pub mounts: Vec<MountPoint>,
    pub restart_count: u64,
    /// Stopped by the user (stop/kill): restart policies other than `always` hold off.
    pub manually_stopped: bool,
    pub log_max_size: u64,
    pub log_max_file: u32,
}
