//! The control protocol spoken on berth-proxy's unix socket, shared with the daemon.
//!
//! One JSON object per line in each direction; every request gets exactly one response line,
//! in order. See proxy/README.md for the wire examples.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest request line the proxy accepts; longer input is refused and the connection closed.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(format!("unknown protocol {other:?} (want tcp or udp)")),
        }
    }
}

/// One published port: traffic to `host` is relayed to `container`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingSpec {
    pub proto: Proto,
    pub host: SocketAddr,
    pub container: SocketAddr,
}

impl std::fmt::Display for MappingSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.proto, self.host, self.container)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start listening on `host` and relaying to `container`.
    Add(MappingSpec),
    /// Stop listening; TCP connections already relayed finish on their own, UDP flows end.
    Remove { id: u64 },
    /// All active mappings with their counters.
    List,
}

/// Counters of one mapping, as listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// TCP connections accepted since the mapping was added.
    pub connections: u64,
    /// TCP connections currently relayed (or UDP flows currently tracked).
    pub active: u64,
    /// Bytes relayed host → container.
    pub bytes_in: u64,
    /// Bytes relayed container → host.
    pub bytes_out: u64,
    /// Connections refused/reset/timed out towards the container, UDP datagrams dropped.
    pub errors: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingStatus {
    pub id: u64,
    #[serde(flatten)]
    pub spec: MappingSpec,
    #[serde(flatten)]
    pub counters: Counters,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Added { id: u64 },
    Removed { id: u64 },
    Mappings { mappings: Vec<MappingStatus> },
    Error { message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to control socket {path}: {source}")]
    Connect { path: String, source: io::Error },
    #[error("control socket i/o: {0}")]
    Io(#[from] io::Error),
    #[error("control socket: undecodable response {line:?}: {source}")]
    Decode {
        line: String,
        source: serde_json::Error,
    },
    #[error("control socket closed before responding")]
    Closed,
    #[error("proxy refused: {0}")]
    Refused(String),
    #[error("unexpected response {0:?}")]
    Unexpected(Response),
}

/// A blocking client for the control socket (what the daemon and the tests use).
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let s = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let writer = s.try_clone()?;
        Ok(Client {
            reader: BufReader::new(s),
            writer,
        })
    }

    /// Send one request and read its response line.
    pub fn request(&mut self, req: &Request) -> Result<Response, ClientError> {
        let mut line = serde_json::to_vec(req).expect("requests always serialise");
        line.push(b'\n');
        self.writer.write_all(&line)?;
        self.read_response()
    }

    /// Read one response line (public so tests can send raw bytes with `raw_writer`).
    pub fn read_response(&mut self) -> Result<Response, ClientError> {
        let mut buf = String::new();
        if self.reader.read_line(&mut buf)? == 0 {
            return Err(ClientError::Closed);
        }
        serde_json::from_str(buf.trim_end())
            .map_err(|source| ClientError::Decode { line: buf, source })
    }

    /// The raw stream, to send malformed input in tests.
    pub fn raw_writer(&mut self) -> &mut UnixStream {
        &mut self.writer
    }

    pub fn add(&mut self, spec: MappingSpec) -> Result<u64, ClientError> {
        match self.request(&Request::Add(spec))? {
            Response::Added { id } => Ok(id),
            Response::Error { message } => Err(ClientError::Refused(message)),
            other => Err(ClientError::Unexpected(other)),
        }
    }

    pub fn remove(&mut self, id: u64) -> Result<(), ClientError> {
        match self.request(&Request::Remove { id })? {
            Response::Removed { .. } => Ok(()),
            Response::Error { message } => Err(ClientError::Refused(message)),
            other => Err(ClientError::Unexpected(other)),
        }
    }

    pub fn list(&mut self) -> Result<Vec<MappingStatus>, ClientError> {
        match self.request(&Request::List)? {
            Response::Mappings { mappings } => Ok(mappings),
            Response::Error { message } => Err(ClientError::Refused(message)),
            other => Err(ClientError::Unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_stable() {
        let add = Request::Add(MappingSpec {
            proto: Proto::Tcp,
            host: "127.0.0.1:8080".parse().unwrap(),
            container: "172.17.0.2:80".parse().unwrap(),
        });
        assert_eq!(
            serde_json::to_string(&add).unwrap(),
            r#"{"op":"add","proto":"tcp","host":"127.0.0.1:8080","container":"172.17.0.2:80"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Remove { id: 3 }).unwrap(),
            r#"{"op":"remove","id":3}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::List).unwrap(),
            r#"{"op":"list"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::Added { id: 1 }).unwrap(),
            r#"{"result":"added","id":1}"#
        );
        let r: Request = serde_json::from_str(
            r#"{"op":"add","proto":"udp","host":"[::1]:53","container":"[fd00::2]:53"}"#,
        )
        .unwrap();
        assert!(matches!(
            r,
            Request::Add(MappingSpec {
                proto: Proto::Udp,
                ..
            })
        ));
    }

    #[test]
    fn malformed_requests_are_rejected() {
        for bad in [
            r#"{"op":"add","proto":"sctp","host":"1.2.3.4:1","container":"1.2.3.4:2"}"#,
            r#"{"op":"explode"}"#,
            "not json",
            r#"{"op":"remove"}"#,
        ] {
            assert!(
                serde_json::from_str::<Request>(bad).is_err(),
                "{bad} accepted"
            );
        }
    }
}
