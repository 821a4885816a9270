//! The image store's error: one variant per HTTP status the docker CLI expects.

use std::io;

/// What went wrong in an image operation. Each variant maps to one HTTP status
/// ([`Error::status`]); the message is what the docker CLI prints after `Error response from
/// daemon: `.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404: `No such image: busybox:latest`.
    #[error("{0}")]
    NotFound(String),
    /// 409: an image in use, a tag that cannot be removed without force.
    #[error("{0}")]
    Conflict(String),
    /// 400: a malformed tarball, a bad reference, a hostile layer, a digest mismatch.
    #[error("{0}")]
    InvalidInput(String),
    /// 500: the store's own disk failed (the message names the operation and path).
    #[error("{0}")]
    Io(io::Error),
}

impl Error {
    /// The HTTP status of the Docker Engine API for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::InvalidInput(_) => 400,
            Error::Io(_) => 500,
        }
    }

    pub(crate) fn no_such_image(name: &str) -> Error {
        Error::NotFound(format!("No such image: {name}"))
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Error {
        Error::InvalidInput(msg.into())
    }
}

/// Wraps an I/O error of the store's own files with the operation and path.
pub(crate) fn io_err(op: &str, path: impl std::fmt::Display, e: io::Error) -> Error {
    Error::Io(io::Error::new(e.kind(), format!("{op} {path}: {e}")))
}

/// An error while reading what the client sent: a truncated or corrupt stream is the
/// client's fault (400), not the store's.
pub(crate) fn input_err(what: &str, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Error::InvalidInput(format!(
            "{what}: unexpected end of data (truncated tarball?)"
        ))
    } else {
        Error::InvalidInput(format!("{what}: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
