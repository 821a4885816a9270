//! GET /containers/{id}/logs: the json-file log read back (rotated files first), with
//! since/until/tail/timestamps, Docker's stream framing without a tty, and `follow`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_shim::logfile::Stream;
use berth_shim::logread::{decode_line, files};

use crate::api::Ctx;
use crate::container::Ctr;
use crate::http::{self, ApiError, ApiResult, ChannelWriter};
use crate::util;

struct Opts {
    stdout: bool,
    stderr: bool,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    timestamps: bool,
    tty: bool,
}

fn entry_time(line: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"time\":\"";
    let i = line.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let end = line[i..].iter().position(|&b| b == b'"')? + i;
    std::str::from_utf8(&line[i..end]).ok()
}

/// One decoded entry, ready to send: framed (no tty) or raw, with a timestamp if asked.
fn render(o: &Opts, line: &[u8], text: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
    text.clear();
    let Some(stream) = decode_line(line, text) else {
        return false;
    };
    match stream {
        Stream::Stdout if !o.stdout => return false,
        Stream::Stderr if !o.stderr => return false,
        _ => {}
    }
    let time = entry_time(line);
    if o.since.is_some() || o.until.is_some() {
        let t = time.and_then(util::parse_rfc3339);
        if let (Some(s), Some(t)) = (o.since, t) {
            if t < s {
                return false;
            }
        }
        if let (Some(u), Some(t)) = (o.until, t) {
            if t > u {
                return false;
            }
        }
    }
    let mut payload_len = text.len();
    // The log keeps dockerd's trimmed RFC3339Nano; `docker logs -t` shows nine fixed digits.
    let ts = if o.timestamps {
        let t = time
            .and_then(util::parse_rfc3339)
            .map_or_else(|| util::ZERO_TIME.to_string(), util::rfc3339);
        payload_len += t.len() + 1;
        Some(t)
    } else {
        None
    };
    if !o.tty {
        let n = match stream {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        };
        out.extend_from_slice(&berth_shim::protocol::frame_header(n, payload_len));
    }
    if let Some(t) = &ts {
        out.extend_from_slice(t.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(text);
    true
}

fn read_lines(path: &Path, mut f: impl FnMut(&[u8])) -> std::io::Result<u64> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::new();
    let mut pos = 0;
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            // A line still being written is left for the follower.
            return Ok(pos);
        }
        pos += n as u64;
        f(&line[..line.len() - 1]);
    }
}

fn run(
    o: &Opts,
    tail: Option<usize>,
    follow: bool,
    log: &Path,
    c: &Ctr,
    w: &mut ChannelWriter,
) -> std::io::Result<()> {
    let mut text = Vec::new();
    let mut out = Vec::with_capacity(256 * 1024);
    let mut err = None;
    let flush = |out: &mut Vec<u8>, w: &mut dyn Write| -> std::io::Result<()> {
        if !out.is_empty() {
            w.write_all(out)?;
            out.clear();
        }
        Ok(())
    };
    let mut offset = 0;
    if let Some(n) = tail {
        let mut last: VecDeque<Vec<u8>> = VecDeque::with_capacity(n.min(4096));
        for f in files(log) {
            let end = read_lines(&f, |l| {
                let mut one = Vec::new();
                if n > 0 && render(o, l, &mut text, &mut one) {
                    if last.len() == n {
                        last.pop_front();
                    }
                    last.push_back(one);
                }
            })?;
            if f == log {
                offset = end;
            }
        }
        for l in last {
            w.write_all(&l)?;
        }
    } else {
        for f in files(log) {
            let end = read_lines(&f, |l| {
                render(o, l, &mut text, &mut out);
                if out.len() > 128 * 1024 {
                    if let Err(e) = w.write_all(&out) {
                        err = Some(e);
                    }
                    out.clear();
                }
            })?;
            if let Some(e) = err.take() {
                return Err(e);
            }
            if f == log {
                offset = end;
            }
        }
        flush(&mut out, w)?;
    }
    if !follow {
        return Ok(());
    }
    // Follow: poll the live file; a rotation (new inode or shorter file) restarts at 0.
    let mut ino = std::fs::metadata(log).map(|m| m.ino()).unwrap_or(0);
    let mut idle_after_exit = 0;
    loop {
        if o.until.is_some_and(|u| SystemTime::now() > u) {
            return Ok(());
        }
        let meta = std::fs::metadata(log).ok();
        let (cur_ino, len) = meta.map_or((0, 0), |m| (m.ino(), m.len()));
        if cur_ino != ino || len < offset {
            ino = cur_ino;
            offset = 0;
        }
        if len > offset {
            let mut f = File::open(log)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut r = BufReader::with_capacity(256 * 1024, f);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = r.read_until(b'\n', &mut line)?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                offset += n as u64;
                render(o, &line[..line.len() - 1], &mut text, &mut out);
                if out.len() > 128 * 1024 {
                    flush(&mut out, w)?;
                }
            }
            flush(&mut out, w)?;
            continue;
        }
        let life = c.life.borrow().clone();
        if !life.running || life.removed {
            // The shim has drained the output before reporting the exit; one more pass
            // picks up the last lines.
            idle_after_exit += 1;
            if idle_after_exit > 1 {
                return Ok(());
            }
        } else {
            idle_after_exit = 0;
            if w.0.is_closed() {
                // The client went away.
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub async fn serve(ctx: &Ctx, c: Arc<Ctr>) -> ApiResult {
    let q = &ctx.query;
    let o = Opts {
        stdout: q.flag("stdout"),
        stderr: q.flag("stderr"),
        since: match q.get("since").filter(|s| !s.is_empty() && *s != "0") {
            Some(s) => Some(
                util::parse_api_time(s)
                    .ok_or_else(|| ApiError::bad_request(format!("invalid since {s:?}")))?,
            ),
            None => None,
        },
        until: match q.get("until").filter(|s| !s.is_empty() && *s != "0") {
            Some(s) => Some(
                util::parse_api_time(s)
                    .ok_or_else(|| ApiError::bad_request(format!("invalid until {s:?}")))?,
            ),
            None => None,
        },
        timestamps: q.flag("timestamps"),
        tty: c.rec().config.tty,
    };
    if !o.stdout && !o.stderr {
        return Err(ApiError::bad_request("You must choose at least one stream"));
    }
    let tail = match q.get("tail") {
        None | Some("") | Some("all") => None,
        Some(t) => Some(
            t.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid tail {t:?}")))?,
        ),
    };
    let follow = q.flag("follow");
    let log = ctx.d.paths(&c.id).log(&c.id);
    let ct = if o.tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let (tx, reply) = http::stream(ct);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter(tx);
        let _ = run(&o, tail, follow, &log, &c, &mut w);
    });
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_frames_and_timestamps() {
        let o = Opts {
            stdout: true,
            stderr: false,
            since: None,
            until: None,
            timestamps: true,
            tty: false,
        };
        let line = br#"{"log":"hi\n","stream":"stdout","time":"2026-11-22T00:00:00.000000001Z"}"#;
        let (mut t, mut out) = (Vec::new(), Vec::new());
        assert!(render(&o, line, &mut t, &mut out));
        let payload = b"2026-11-22T00:00:00.000000001Z hi\n";
        assert_eq!(&out[..8], &[1, 0, 0, 0, 0, 0, 0, payload.len() as u8]);
        assert_eq!(&out[8..], payload);
        let err = br#"{"log":"x\n","stream":"stderr","time":"2026-11-22T00:00:00Z"}"#;
        assert!(!render(&o, err, &mut t, &mut out));
    }
}
