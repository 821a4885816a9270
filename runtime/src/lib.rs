//! berth-runtime: an OCI runtime built on clone3 (CLONE_PIDFD, namespace flags,
//! CLONE_INTO_CGROUP on cgroup v2) that signals and waits through pidfds, never by pid.
//! It owns a container's set-up, its state under the state root and its cgroups; it never
//! stays resident (the shim embeds it in-process, the CLI exits after each command) and never
//! polls /proc to learn that a process died.

pub mod cgroups;
pub mod container;
pub mod error;
pub mod features;
pub mod hooks;
pub mod init;
pub mod log;
pub mod lsm;
pub mod mounts;
pub mod seccomp;
pub mod seccomp_agent;
pub mod spec;
pub mod sys;
pub mod time;

pub use container::{CreateOptions, Status};
pub use error::{Error, Result};
