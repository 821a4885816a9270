//! The container's log, in Docker's json-file format, written by the shim itself.
//!
//! One JSON object per line: `{"log":"…","stream":"stdout","time":"…"}`, `time` in RFC 3339
//! with nine fraction digits (UTC). Text is escaped byte for byte as dockerd's json-file does
//! (`"` `\` as `\"` `\\`; `\n` `\r`; other controls and `<` `>` `&` as `\u00XX`; invalid UTF-8
//! as one `\ufffd` per byte; U+2028/9 escaped), so the files are interchangeable.
//!
//! Lines: as dockerd's copier, which gathers output in a 16 KiB buffer: an entry's text,
//! newline included, is at most [`MAX_LINE`] bytes. When 16 KiB arrive without a newline they
//! are written as a piece without a trailing `\n` inside `log` (Docker's partial message), and
//! the line goes on in the next entry; the final piece carries the `\n`. So a line of 16,383
//! bytes is one entry, and one of exactly 16 KiB is a 16 KiB piece followed by `"\n"` alone.
//! Output that ends without a newline is written, when the stream ends, as a piece without
//! `\n`.
//!
//! Rotation (`max_size` > 0): before an entry is written, a file that has reached `max_size`
//! is renamed to `<path>.1` (older ones shift to `.2` … up to `max_files - 1`; the oldest goes)
//! and a new file begins; with `max_files` = 1 the file is truncated instead.
//!
//! All entries are built in one buffer and written with one write(2) per batch; the file is
//! never behind by more than the batch being relayed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::escape::escape_into;

/// Longest `log` text of one entry (Docker's 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;
/// The encode buffer is written out once it holds this much.
const FLUSH_AT: usize = 256 * 1024;
/// Room for one worst-case entry: every byte of a full line escaped to six, plus the frame.
const ENTRY_MAX: usize = 6 * MAX_LINE + 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{op} log {}: {err}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        err: io::Error,
    },
}

/// The entry time as Go's `time.RFC3339Nano` prints it for dockerd (UTC, the fraction without
/// trailing zeros, no fraction at all on a whole second): the date part is formatted once a
/// second, the fraction per entry.
struct Stamp {
    sec: i64,
    /// "YYYY-MM-DDTHH:MM:SS" then ".fffffffff" (trimmed) then "Z".
    text: [u8; 30],
    len: usize,
}

impl Stamp {
    fn set(&mut self, sec: i64, nsec: u32) {
        if sec != self.sec {
            let t = UNIX_EPOCH + Duration::from_secs(sec.max(0) as u64);
            let s = berth_runtime::time::rfc3339(t);
            self.text[..19].copy_from_slice(&s.as_bytes()[..19]);
            self.sec = sec;
        }
        let mut len = 19;
        if nsec != 0 {
            let mut digits = [0u8; 9];
            let mut n = nsec;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
            let keep = 9 - digits.iter().rev().take_while(|&&d| d == b'0').count();
            self.text[19] = b'.';
            self.text[20..20 + keep].copy_from_slice(&digits[..keep]);
            len = 20 + keep;
        }
        self.text[len] = b'Z';
        self.len = len + 1;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.text[..self.len]
    }
}

pub struct LogWriter {
    path: PathBuf,
    file: File,
    /// Bytes in the current file (including what `buf` will add once written).
    size: u64,
    max_size: u64,
    max_files: u32,
    buf: Vec<u8>,
    /// The unfinished line of each stream (at most MAX_LINE bytes).
    carry: [Vec<u8>; 2],
    stamp: Stamp,
    /// What follows an entry's text: `","stream":"…","time":"…"}` and the newline, for the
    /// stream and time of the current feed (built once per feed, not per entry).
    tail: [u8; TAIL_MAX],
    tail_len: usize,
}

/// `","stream":"stdout","time":"` + 30 bytes of time + `"}\n`.
const TAIL_MAX: usize = 64;

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

impl LogWriter {
    /// Rotation limits from now on (a parked container's claim names them).
    pub fn set_limits(&mut self, max_size: u64, max_files: u32) {
        self.max_size = max_size;
        self.max_files = max_files;
    }

    /// Open (appending to) `path`; `max_size` 0 means no rotation.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> Result<LogWriter, LogError> {
        let file = open_log(path).map_err(|err| LogError::Io {
            op: "open",
            path: path.to_path_buf(),
            err,
        })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
            buf: Vec::new(),
            carry: [Vec::new(), Vec::new()],
            stamp: Stamp {
                sec: i64::MIN,
                text: [0; 30],
                len: 0,
            },
            tail: [0; TAIL_MAX],
            tail_len: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Log bytes read from `stream` now: complete lines become entries, the rest waits.
    pub fn feed(&mut self, stream: Stream, mut data: &[u8]) -> Result<(), LogError> {
        self.stamp_now(stream);
        let s = stream as usize;
        if !self.carry[s].is_empty() {
            // Finish the line begun in an earlier read.
            let room = MAX_LINE - self.carry[s].len();
            let window = &data[..data.len().min(room)];
            if let Some(i) = memchr_nl(window) {
                let mut line = std::mem::take(&mut self.carry[s]);
                line.extend_from_slice(&data[..i]);
                self.entry(stream, &line, true)?;
                line.clear();
                self.carry[s] = line;
                data = &data[i + 1..];
            } else if data.len() >= room {
                let mut line = std::mem::take(&mut self.carry[s]);
                line.extend_from_slice(&data[..room]);
                self.entry(stream, &line, false)?;
                line.clear();
                self.carry[s] = line;
                data = &data[room..];
            } else {
                self.carry[s].extend_from_slice(data);
                return Ok(());
            }
        }
        while !data.is_empty() {
            let window = &data[..data.len().min(MAX_LINE)];
            match memchr_nl(window) {
                Some(i) => {
                    self.entry(stream, &data[..i], true)?;
                    data = &data[i + 1..];
                }
                None if data.len() >= MAX_LINE => {
                    self.entry(stream, &data[..MAX_LINE], false)?;
                    data = &data[MAX_LINE..];
                }
                None => {
                    self.carry[s].extend_from_slice(data);
                    break;
                }
            }
        }
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// The stream ended: its unfinished line is written as a piece without newline.
    pub fn end(&mut self, stream: Stream) -> Result<(), LogError> {
        let s = stream as usize;
        if self.carry[s].is_empty() {
            return Ok(());
        }
        self.stamp_now(stream);
        let line = std::mem::take(&mut self.carry[s]);
        self.entry(stream, &line, false)
    }

    /// The time of the entries about to be built, and their tail for `stream`.
    fn stamp_now(&mut self, stream: Stream) {
        let (sec, nsec) = crate::sys::realtime();
        self.stamp.set(sec, nsec);
        let mut n = 0;
        for part in [
            &b"\",\"stream\":\""[..],
            stream.name().as_bytes(),
            b"\",\"time\":\"",
            self.stamp.as_bytes(),
            b"\"}\n",
        ] {
            self.tail[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        }
        self.tail_len = n;
    }

    fn entry(&mut self, stream: Stream, text: &[u8], newline: bool) -> Result<(), LogError> {
        if self.max_size > 0 && self.size >= self.max_size {
            self.flush()?;
            self.rotate()?;
        }
        if self.buf.capacity() - self.buf.len() < ENTRY_MAX {
            if self.buf.len() >= FLUSH_AT / 2 {
                self.flush()?;
            }
            self.buf.reserve(FLUSH_AT + ENTRY_MAX);
        }
        let before = self.buf.len();
        self.buf.extend_from_slice(b"{\"log\":\"");
        escape_into(&mut self.buf, text);
        if newline {
            self.buf.extend_from_slice(b"\\n");
        }
        // The tail was built for this stream by the feed or end that called us.
        debug_assert!(self.tail[12..self.tail_len].starts_with(stream.name().as_bytes()));
        self.buf.extend_from_slice(&self.tail[..self.tail_len]);
        self.size += (self.buf.len() - before) as u64;
        Ok(())
    }

    /// Write every built entry to the file.
    pub fn flush(&mut self) -> Result<(), LogError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.buf);
        self.buf.clear();
        r.map_err(|err| LogError::Io {
            op: "write",
            path: self.path.clone(),
            err,
        })
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        let io = |op, path: &Path, err| LogError::Io {
            op,
            path: path.to_path_buf(),
            err,
        };
        if self.max_files <= 1 {
            self.file
                .set_len(0)
                .map_err(|e| io("truncate", &self.path, e))?;
            self.size = 0;
            return Ok(());
        }
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        for n in (1..self.max_files - 1).rev() {
            match std::fs::rename(numbered(n), numbered(n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("rotate", &numbered(n), e)),
            }
        }
        std::fs::rename(&self.path, numbered(1)).map_err(|e| io("rotate", &self.path, e))?;
        self.file = open_log(&self.path).map_err(|e| io("reopen", &self.path, e))?;
        self.size = 0;
        Ok(())
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_newlines_at_every_offset() {
        for len in 0..40 {
            for at in 0..len {
                let mut v = vec![b'x'; len];
                v[at] = b'\n';
                assert_eq!(memchr_nl(&v), Some(at), "len {len} at {at}");
            }
            assert_eq!(memchr_nl(&vec![b'x'; len]), None);
        }
        // Bytes that differ from '\n' only in the high bit must not match.
        assert_eq!(memchr_nl(&[0x8a; 16]), None);
    }

    fn entries(path: &Path) -> Vec<(String, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["log"].as_str().unwrap().to_string(),
                    v["stream"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn splits_lines_across_reads_and_at_16k() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, 0, 1).unwrap();
        w.feed(Stream::Stdout, b"one\ntw").unwrap();
        w.feed(Stream::Stderr, b"err\n").unwrap();
        w.feed(Stream::Stdout, b"o\n").unwrap();
        let long = vec![b'a'; MAX_LINE * 2 + 5];
        w.feed(Stream::Stdout, &long[..100]).unwrap();
        w.feed(Stream::Stdout, &long[100..]).unwrap();
        w.feed(Stream::Stdout, b"\n").unwrap();
        let exact = vec![b'b'; MAX_LINE];
        w.feed(Stream::Stdout, &exact).unwrap();
        w.feed(Stream::Stdout, b"\n").unwrap();
        let fits = vec![b'c'; MAX_LINE - 1];
        w.feed(Stream::Stdout, &fits[..10]).unwrap();
        w.feed(Stream::Stdout, &fits[10..]).unwrap();
        w.feed(Stream::Stdout, b"\nend").unwrap();
        w.end(Stream::Stdout).unwrap();
        w.flush().unwrap();
        let e = entries(&p);
        let a16 = "a".repeat(MAX_LINE);
        let want: Vec<(String, String)> = vec![
            ("one\n".into(), "stdout".into()),
            ("err\n".into(), "stderr".into()),
            ("two\n".into(), "stdout".into()),
            (a16.clone(), "stdout".into()),
            (a16, "stdout".into()),
            ("aaaaa\n".into(), "stdout".into()),
            ("b".repeat(MAX_LINE), "stdout".into()),
            ("\n".into(), "stdout".into()),
            ("c".repeat(MAX_LINE - 1) + "\n", "stdout".into()),
            ("end".into(), "stdout".into()),
        ];
        assert_eq!(e, want);
        let first = std::fs::read_to_string(&p).unwrap();
        let line = first.lines().next().unwrap();
        assert!(
            line.starts_with(r#"{"log":"one\n","stream":"stdout","time":""#),
            "{line}"
        );
        let time = line
            .split_once(r#""time":""#)
            .unwrap()
            .1
            .trim_end_matches("\"}");
        assert!(time.ends_with('Z') && time.len() <= 30, "{time}");
    }

    #[test]
    fn times_are_go_rfc3339nano() {
        let mut s = Stamp {
            sec: i64::MIN,
            text: [0; 30],
            len: 0,
        };
        let t = 1_795_382_499;
        s.set(t, 123_456_789);
        assert_eq!(s.as_bytes(), b"2026-11-22T21:21:39.123456789Z");
        s.set(t, 120_000_000);
        assert_eq!(s.as_bytes(), b"2026-11-22T21:21:39.12Z");
        s.set(t, 5);
        assert_eq!(s.as_bytes(), b"2026-11-22T21:21:39.000000005Z");
        s.set(t + 1, 0);
        assert_eq!(s.as_bytes(), b"2026-11-22T21:21:40Z");
    }

    #[test]
    fn rotates_by_size_and_count() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, 300, 3).unwrap();
        for i in 0..40 {
            w.feed(Stream::Stdout, format!("line {i:03}\n").as_bytes())
                .unwrap();
            w.flush().unwrap();
        }
        let mut all = Vec::new();
        for f in ["c.log.2", "c.log.1", "c.log"] {
            let fp = d.path().join(f);
            let len = std::fs::metadata(&fp).unwrap().len();
            // A file is rotated once it reaches 300 bytes: at most one entry beyond.
            assert!(len < 300 + 80, "{f}: {len}");
            all.extend(entries(&fp));
        }
        assert!(!d.path().join("c.log.3").exists());
        // The newest entries are all kept, in order, ending with the last line.
        let n = all.len();
        for (k, (log, _)) in all.iter().enumerate() {
            assert_eq!(log, &format!("line {:03}\n", 40 - n + k));
        }
    }

    #[test]
    fn max_files_one_truncates() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, 200, 1).unwrap();
        for i in 0..20 {
            w.feed(Stream::Stdout, format!("l{i}\n").as_bytes())
                .unwrap();
        }
        w.flush().unwrap();
        assert!(!d.path().join("c.log.1").exists());
        let e = entries(&p);
        assert_eq!(e.last().unwrap().0, "l19\n");
        assert!(e.len() < 20);
    }
}
