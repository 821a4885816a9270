//! Reading a json-file log back (what `docker logs` shows): the raw bytes of each entry's
//! `log`, oldest rotated file first. Entries in the exact form the shim writes are decoded by
//! a direct scanner; any other valid json-file line goes through serde_json.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::logfile::Stream;

#[derive(Debug, thiserror::Error)]
pub enum ReadLogError {
    #[error("read log {}: {err}", path.display())]
    Io { path: PathBuf, err: io::Error },
    #[error("log {} line {line}: not a json-file entry", path.display())]
    Format { path: PathBuf, line: u64 },
    #[error("write log output: {0}")]
    Output(io::Error),
}

/// The log's files, oldest first: `<path>.N` … `<path>.1`, `<path>`.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    // Bounded: rotation keeps at most max-file files; 10,000 is far beyond any setting.
    for n in 1..10_000u32 {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        let p = PathBuf::from(p);
        if !p.exists() {
            break;
        }
        v.push(p);
    }
    v.reverse();
    v.push(path.to_path_buf());
    v
}

/// Write the text of every entry whose stream is in `want` to `out`, in order.
///
/// Entries in the shim's own shape are decoded straight from the read buffer into the output
/// buffer in one pass (the scan for the end of `log` also finds the line's end, since a JSON
/// string holds no raw newline); any other line is cut at its newline and goes through
/// [`decode_line`].
pub fn copy_log(path: &Path, want: &[Stream], out: &mut impl Write) -> Result<u64, ReadLogError> {
    let mut total = 0;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut text = Vec::new();
    let mut outbuf = Vec::with_capacity(OUT_CHUNK + READ_CHUNK);
    for f in files(path) {
        let mut file = match File::open(&f) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(ReadLogError::Io { path: f, err }),
        };
        let mut have = 0;
        let mut line_no = 0u64;
        loop {
            let n = file
                .read(&mut buf[have..])
                .map_err(|err| ReadLogError::Io {
                    path: f.clone(),
                    err,
                })?;
            have += n;
            let mut pos = 0;
            // Bounded by the buffer: every pass consumes one line or leaves the loop.
            while pos < have {
                let start = outbuf.len();
                if let Some((stream, used)) = fast_entry(&buf[pos..have], false, &mut outbuf) {
                    line_no += 1;
                    pos += used;
                    if want.contains(&stream) {
                        total += (outbuf.len() - start) as u64;
                    } else {
                        outbuf.truncate(start);
                    }
                    continue;
                }
                outbuf.truncate(start);
                let Some(nl) = memchr::memchr(b'\n', &buf[pos..have]) else {
                    break;
                };
                line_no += 1;
                text.clear();
                let stream = decode_line(&buf[pos..pos + nl], &mut text).ok_or_else(|| {
                    ReadLogError::Format {
                        path: f.clone(),
                        line: line_no,
                    }
                })?;
                pos += nl + 1;
                if want.contains(&stream) {
                    outbuf.extend_from_slice(&text);
                    total += text.len() as u64;
                }
            }
            if outbuf.len() >= OUT_CHUNK {
                out.write_all(&outbuf).map_err(ReadLogError::Output)?;
                outbuf.clear();
            }
            buf.copy_within(pos..have, 0);
            have -= pos;
            if n == 0 {
                // What is left has no newline: an entry the shim is writing right now (the
                // log of a running container is read while it grows); it is not shown yet.
                break;
            }
            if have == buf.len() {
                // A line longer than the buffer: grow (bounded by the file's own size).
                buf.resize(buf.len() * 2, 0);
            }
        }
    }
    out.write_all(&outbuf).map_err(ReadLogError::Output)?;
    Ok(total)
}

/// Bytes read from a log file at a time.
const READ_CHUNK: usize = 1 << 20;
/// Text gathered before a write to the output.
const OUT_CHUNK: usize = 512 * 1024;

/// Decode one json-file line into its `log` text; returns its stream.
pub fn decode_line(line: &[u8], text: &mut Vec<u8>) -> Option<Stream> {
    let start = text.len();
    if let Some((s, _)) = fast_entry(line, true, text) {
        return Some(s);
    }
    text.truncate(start);
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        log: String,
        stream: String,
    }
    let e: Entry = serde_json::from_slice(line).ok()?;
    text.extend_from_slice(e.log.as_bytes());
    match e.stream.as_str() {
        "stdout" => Some(Stream::Stdout),
        "stderr" => Some(Stream::Stderr),
        _ => None,
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(..4)? {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// An entry in the shim's own shape, `{"log":"…","stream":"stdout|stderr",…}`, at the start
/// of `s` (`one_line`: `s` is exactly one line, without its newline): its text is appended to
/// `text`; returns its stream and the bytes it takes, up to and including its newline (all of
/// `s` for `one_line`). None for any other shape, or when `s` ends before the entry does;
/// `text` may then hold a part, which the caller drops.
fn fast_entry(s: &[u8], one_line: bool, text: &mut Vec<u8>) -> Option<(Stream, usize)> {
    let len = s.len();
    let mut s = s.strip_prefix(b"{\"log\":\"")?;
    loop {
        let i = memchr::memchr3(b'"', b'\\', b'\n', s)?;
        text.extend_from_slice(&s[..i]);
        match s[i] {
            b'"' => {
                s = &s[i + 1..];
                break;
            }
            // A raw newline inside the string: not JSON; the slow path says so.
            b'\n' => return None,
            _ => {}
        }
        let esc = *s.get(i + 1)?;
        s = &s[i + 2..];
        match esc {
            b'n' => text.push(b'\n'),
            b'r' => text.push(b'\r'),
            b't' => text.push(b'\t'),
            b'"' | b'\\' | b'/' => text.push(esc),
            b'b' => text.push(8),
            b'f' => text.push(12),
            b'u' => {
                let mut c = hex4(s)?;
                s = &s[4..];
                if (0xD800..0xDC00).contains(&c) {
                    let lo = s.strip_prefix(b"\\u").and_then(hex4)?;
                    s = &s[6..];
                    c = 0x10000 + ((c - 0xD800) << 10) + (lo.checked_sub(0xDC00)?);
                }
                let ch = char::from_u32(c)?;
                let mut tmp = [0u8; 4];
                text.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
            }
            _ => return None,
        }
    }
    let s = s.strip_prefix(b",\"stream\":\"")?;
    let stream = if s.starts_with(b"stdout\"") {
        Stream::Stdout
    } else if s.starts_with(b"stderr\"") {
        Stream::Stderr
    } else {
        return None;
    };
    if one_line {
        return Some((stream, len));
    }
    let rest = &s[7..];
    let nl = memchr::memchr(b'\n', rest)?;
    Some((stream, len - rest.len() + nl + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logfile::{LogWriter, MAX_LINE};

    #[test]
    fn reads_back_exactly_what_was_written() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, 4096, 5).unwrap();
        let mut want_out = Vec::new();
        let mut want_err = Vec::new();
        let samples: [&[u8]; 6] = [
            b"hello\n",
            b"tab\tquote\"back\\slash<&>\n",
            "utf8 \u{e9}\u{1F600} \u{2028}\n".as_bytes(),
            b"ctl \x01\x1f\r\n",
            b"no newline at first",
            b" then newline\n",
        ];
        for (k, s) in samples.iter().enumerate() {
            w.feed(Stream::Stdout, s).unwrap();
            want_out.extend_from_slice(s);
            let e = format!("err {k}\n");
            w.feed(Stream::Stderr, e.as_bytes()).unwrap();
            want_err.extend_from_slice(e.as_bytes());
        }
        let long = vec![b'z'; MAX_LINE * 3 + 7];
        w.feed(Stream::Stdout, &long).unwrap();
        w.feed(Stream::Stdout, b"\n").unwrap();
        want_out.extend_from_slice(&long);
        want_out.push(b'\n');
        w.flush().unwrap();
        assert!(files(&p).len() > 2, "rotation happened");
        let mut got = Vec::new();
        copy_log(&p, &[Stream::Stdout], &mut got).unwrap();
        assert_eq!(got, want_out);
        got.clear();
        copy_log(&p, &[Stream::Stderr], &mut got).unwrap();
        assert_eq!(got, want_err);
    }

    #[test]
    fn accepts_dockerd_lines_and_refuses_garbage() {
        let mut t = Vec::new();
        let l = br#"{"log":"a\u003cb\n","stream":"stderr","attrs":{"x":"y"},"time":"2026-01-01T00:00:00.000000000Z"}"#;
        assert_eq!(decode_line(l, &mut t), Some(Stream::Stderr));
        assert_eq!(t, b"a<b\n");
        t.clear();
        let reordered = br#"{"stream":"stdout","log":"x\n","time":"2026-01-01T00:00:00Z"}"#;
        assert_eq!(decode_line(reordered, &mut t), Some(Stream::Stdout));
        assert_eq!(t, b"x\n");
        t.clear();
        assert_eq!(decode_line(b"not json", &mut t), None);
    }

    #[test]
    fn entries_across_read_chunks_mixed_shapes_and_an_unfinished_last_line() {
        // Over three read chunks of entries of every length 0..300, every tenth in dockerd's
        // other key order, so entries straddle the chunk edges in every shape; serde_json
        // writes the reference.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut file = Vec::new();
        let mut want = Vec::new();
        let mut k = 0usize;
        while file.len() < 3 * READ_CHUNK + 1000 {
            let t: String = (0..k % 300)
                .map(|j| (b'a' + (j % 26) as u8) as char)
                .collect();
            let t = format!("{t}\"\u{e9}<\n");
            let stream = if k % 7 == 0 { "stderr" } else { "stdout" };
            let v = serde_json::json!(t).to_string();
            let line = if k % 10 == 0 {
                format!(r#"{{"stream":"{stream}","log":{v},"time":"2026-01-01T00:00:00Z"}}"#)
            } else {
                format!(r#"{{"log":{v},"stream":"{stream}","time":"2026-01-01T00:00:00Z"}}"#)
            };
            file.extend_from_slice(line.as_bytes());
            file.push(b'\n');
            if stream == "stdout" {
                want.extend_from_slice(t.as_bytes());
            }
            k += 1;
        }
        // Half an entry, as a reader may see while the shim appends: left out.
        file.extend_from_slice(br#"{"log":"being written","stre"#);
        std::fs::write(&p, &file).unwrap();
        let mut got = Vec::new();
        let n = copy_log(&p, &[Stream::Stdout], &mut got).unwrap();
        assert_eq!(n as usize, got.len());
        assert!(got == want, "{} bytes, want {}", got.len(), want.len());
    }

    #[test]
    fn a_bad_line_is_reported_by_number() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        std::fs::write(
            &p,
            "{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"x\"}\n{\"log\":\"raw\nnewline\",\"stream\":\"stdout\"}\n",
        )
        .unwrap();
        let e = copy_log(&p, &[Stream::Stdout], &mut Vec::new()).unwrap_err();
        assert!(matches!(e, ReadLogError::Format { line: 2, .. }), "{e}");
    }
}
