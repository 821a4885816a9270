//! HTTP plumbing shared by every endpoint: the response body type (whole or streamed), the
//! Docker-style JSON error, query parsing, and a blocking reader over a request body.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;
pub type Reply = Response<Body>;

/// An API failure as the docker CLI reads it: a status and `{"message": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

pub type ApiResult<T = Reply> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, m)
    }
    pub fn conflict(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, m)
    }
    pub fn internal(m: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m.to_string())
    }
    pub fn not_implemented(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_IMPLEMENTED, m)
    }

    pub fn into_reply(self) -> Reply {
        #[derive(Serialize)]
        struct Msg<'a> {
            message: &'a str,
        }
        let mut r = json(
            self.status,
            &Msg {
                message: &self.message,
            },
        );
        *r.status_mut() = self.status;
        r
    }
}

impl From<io::Error> for ApiError {
    fn from(e: io::Error) -> ApiError {
        ApiError::internal(e)
    }
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

pub fn json<T: Serialize + ?Sized>(status: StatusCode, v: &T) -> Reply {
    let mut body = serde_json::to_vec(v).expect("API values serialise");
    body.push(b'\n');
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn ok_json<T: Serialize + ?Sized>(v: &T) -> ApiResult {
    Ok(json(StatusCode::OK, v))
}

pub fn status(code: StatusCode) -> ApiResult {
    let mut r = Response::new(empty());
    *r.status_mut() = code;
    Ok(r)
}

/// A response body fed through a channel: for logs, events, stats and progress streams.
/// Dropping the sender ends the body; a gone client makes `send` fail.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A streamed 200 response with `content_type`, and the sender that feeds it.
pub fn stream(content_type: &'static str) -> (mpsc::Sender<Bytes>, Reply) {
    let (tx, rx) = mpsc::channel(16);
    let mut r = Response::new(ChannelBody(rx).boxed_unsync());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    (tx, r)
}

/// Copies `r` into a streamed body until either ends; false when the client went away.
pub async fn pump<R: tokio::io::AsyncRead + Unpin>(mut r: R, tx: &mpsc::Sender<Bytes>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// Query string parameters, percent-decoded.
#[derive(Default, Debug)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        let mut m = Vec::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.push((percent_decode(k), percent_decode(v)));
        }
        Query(m)
    }
    /// The last value of `k` (as Go's url.Values.Get would give the first; the docker CLI
    /// never repeats single-valued keys).
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    /// Every value of a repeated key (`names=a&names=b`).
    pub fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// Docker's booleans: `1`, `true`, `True` (and a bare key) are true.
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1" | "true" | "True" | "yes" | ""))
    }
    pub fn int(&self, k: &str) -> ApiResult<Option<i64>> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {v:?}"))),
        }
    }
    /// The `filters` parameter: `{"name": ["a", "b"]}` (or the old `{"name": {"a": true}}`).
    pub fn filters(&self) -> ApiResult<Filters> {
        let Some(raw) = self.get("filters").filter(|s| !s.is_empty()) else {
            return Ok(Filters::default());
        };
        let v: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid filters {raw:?}: {e}")))?;
        let mut out = HashMap::new();
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::bad_request(format!("invalid filters {raw:?}")))?;
        for (k, vals) in obj {
            let list: Vec<String> = match vals {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                serde_json::Value::Object(o) => o.keys().cloned().collect(),
                _ => return Err(ApiError::bad_request(format!("invalid filter {k:?}"))),
            };
            out.insert(k.clone(), list);
        }
        Ok(Filters(out))
    }
}

/// Parsed `filters`; each key's values are alternatives (OR), keys combine with AND.
#[derive(Default, Debug)]
pub struct Filters(pub HashMap<String, Vec<String>>);

impl Filters {
    pub fn values(&self, k: &str) -> &[String] {
        self.0.get(k).map_or(&[], Vec::as_slice)
    }
    /// Refuses keys the endpoint does not know, as dockerd does.
    pub fn only(&self, known: &[&str]) -> ApiResult<()> {
        for k in self.0.keys() {
            if !known.contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
            }
        }
        Ok(())
    }
    /// True when the key is absent or any of its values satisfies `f`.
    pub fn any(&self, k: &str, f: impl Fn(&str) -> bool) -> bool {
        match self.0.get(k) {
            None => true,
            Some(v) => v.iter().any(|x| f(x)),
        }
    }
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hexval(b[i + 1]), hexval(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Reads a whole JSON request body (bounded), treating an empty body as `T::default()`.
pub async fn read_json<T: serde::de::DeserializeOwned + Default>(body: Incoming) -> ApiResult<T> {
    const LIMIT: usize = 4 << 20;
    let bytes = http_body_util::Limited::new(body, LIMIT)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in request body: {e}")))
}

/// A request body as a blocking `std::io::Read`, for code that runs on a blocking thread
/// (image load/import, archive upload). A task pumps frames into a small channel.
pub struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl BodyReader {
    pub fn new(mut body: Incoming) -> BodyReader {
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            loop {
                match body.frame().await {
                    None => break,
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            if tx.send(Ok(d)).await.is_err() {
                                break;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(Err(io::Error::other(e))).await;
                        break;
                    }
                }
            }
        });
        BodyReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// A `std::io::Write` on a blocking thread that feeds a streamed response body.
pub struct ChannelWriter(pub mpsc::Sender<Bytes>);

impl io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_filters_decode() {
        let q = Query::parse(Some(
            "all=1&filters=%7B%22name%22%3A%5B%22web%22%5D%7D&x=a+b",
        ));
        assert!(q.flag("all"));
        assert!(!q.flag("size"));
        assert_eq!(q.get("x"), Some("a b"));
        let f = q.filters().unwrap();
        assert_eq!(f.values("name"), ["web"]);
        assert!(f.only(&["name"]).is_ok());
        assert!(f.only(&["label"]).is_err());
    }

    #[test]
    fn bad_percent_sequences_are_kept() {
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
