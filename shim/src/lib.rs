//! berth-shim: one small process per container. It owns the container's lifetime from
//! create to reap (the init is its child, watched through a pidfd), the container's stdio
//! (pipes or the pty master), the json-file log (written by the shim itself, every byte), and
//! a control socket whose protocol ([`protocol`]) the daemon imports. It must never block on
//! the daemon or on an attached client, never lose a log line, and keeps serving when the
//! daemon is gone.

pub mod attach;
pub mod control;
pub mod escape;
pub mod exec;
pub mod logfile;
pub mod logread;
pub mod protocol;
pub mod reactor;
pub mod record;
pub mod shim;
pub mod stats;
pub mod sys;

pub use protocol::{Client, ExitInfo, Request, Response};
pub use shim::{Config, Shim, ShimError};
