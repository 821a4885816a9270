//! The runtime's error type: every variant names the operation and the path or id it was on.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid config {path}: {msg}")]
    InvalidConfig { path: PathBuf, msg: String },
    #[error("invalid container id {0:?}: use 1-1024 characters from [A-Za-z0-9_+.-], not starting with '.'")]
    InvalidId(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("container {id} is {status}: {what}")]
    BadState {
        id: String,
        status: &'static str,
        what: &'static str,
    },
    #[error("{op} {}: {err}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error("{op}: {err}")]
    Sys { op: &'static str, err: io::Error },
    /// A step of container set-up that failed in the container's init, as it reported it.
    #[error("container init: {0}")]
    Init(String),
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            err: source,
        }
    }

    pub fn sys(op: &'static str, source: io::Error) -> Error {
        Error::Sys { op, err: source }
    }
}

/// Attach an operation and path to an `io::Result`.
pub trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
