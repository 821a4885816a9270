//! sha256 digests: computed while bytes stream through, checked against what an archive says,
//! and decompression of layers chosen by magic number.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::error::{Error, Result};

/// An image id: the sha256 of the image's config, `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageId(String);

impl ImageId {
    /// From `sha256:<hex>` or bare `<hex>` (64 lowercase hex digits).
    pub fn parse(s: &str) -> Result<ImageId> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if !is_sha256_hex(hex) {
            return Err(Error::invalid(format!("invalid image id {s:?}")));
        }
        Ok(ImageId(format!("sha256:{hex}")))
    }

    pub(crate) fn of_config(config: &[u8]) -> ImageId {
        ImageId(format!("sha256:{}", sha256_hex(config)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// The 12-digit form `docker images` shows.
    pub fn short(&self) -> &str {
        &self.0[7..19]
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ImageId {
    type Error = Error;
    fn try_from(s: String) -> Result<ImageId> {
        ImageId::parse(&s)
    }
}

impl From<ImageId> for String {
    fn from(id: ImageId) -> String {
        id.0
    }
}

impl AsRef<str> for ImageId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

pub fn is_sha256_hex(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The hex of a `sha256:<hex>` digest; anything else is refused.
pub fn sha256_of(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(h) if is_sha256_hex(h) => Ok(h),
        _ => Err(Error::invalid(format!(
            "unsupported or malformed digest {digest:?} (want sha256:<64 hex digits>)"
        ))),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[usize::from(b >> 4)] as char);
        s.push(D[usize::from(b & 15)] as char);
    }
    s
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// The chain id of a layer on top of `parent` (OCI image spec: the id of the stack of layers
/// up to and including this one).
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(p) => format!("sha256:{}", sha256_hex(format!("{p} {diff_id}").as_bytes())),
    }
}

/// Hashes (and counts) every byte read through it.
pub struct HashReader<R> {
    inner: R,
    hash: Sha256,
    count: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> HashReader<R> {
        HashReader {
            inner,
            hash: Sha256::new(),
            count: 0,
        }
    }

    /// Reads what is left (a tar's trailing zero blocks count for its digest), then returns
    /// `(sha256:<hex>, bytes, inner reader)`.
    pub fn finish(mut self) -> io::Result<(String, u64, R)> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((
            format!("sha256:{}", hex(&self.hash.finalize())),
            self.count,
            self.inner,
        ))
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Hashes (and counts) every byte written through it.
pub struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> HashWriter<W> {
        HashWriter {
            inner,
            hash: Sha256::new(),
            count: 0,
        }
    }

    /// `(sha256:<hex>, bytes, inner writer)`.
    pub fn finish(self) -> (String, u64, W) {
        (
            format!("sha256:{}", hex(&self.hash.finalize())),
            self.count,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies every byte read through it to `w`; a failed write fails the read.
pub struct TeeReader<R, W> {
    pub inner: R,
    pub w: W,
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.w.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// How a stream is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Wraps `r` in the decompressor its magic number asks for (gzip, zstd, or none). bzip2 and
/// xz are refused with a clear message.
pub fn decompress<'a, R: Read + 'a>(r: R, what: &str) -> Result<(Box<dyn Read + 'a>, Compression)> {
    let mut br = BufReader::with_capacity(256 * 1024, r);
    let head = br
        .fill_buf()
        .map_err(|e| super::error::input_err(what, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((
            Box::new(flate2::read::MultiGzDecoder::new(br)),
            Compression::Gzip,
        ))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = zstd::stream::read::Decoder::with_buffer(br)
            .map_err(|e| super::error::input_err(what, e))?;
        Ok((Box::new(d), Compression::Zstd))
    } else if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Err(Error::invalid(format!(
            "{what}: bzip2 and xz compression are not supported (use plain tar, gzip or zstd)"
        )))
    } else {
        Ok((Box::new(br), Compression::None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_while_reading_and_writing() {
        let mut r = HashReader::new(&b"hello"[..]);
        let mut first = [0u8; 2];
        r.read_exact(&mut first).unwrap();
        let (d, n, _) = r.finish().unwrap();
        assert_eq!(n, 5);
        let want = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(d, want);
        let mut w = HashWriter::new(Vec::new());
        w.write_all(b"hello").unwrap();
        let (d2, n2, v) = w.finish();
        assert_eq!((d2.as_str(), n2, v.as_slice()), (want, 5, &b"hello"[..]));
    }

    #[test]
    fn chain_ids_follow_the_oci_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        assert_eq!(chain_id(None, &a), a);
        let want = format!("sha256:{}", sha256_hex(format!("{a} {b}").as_bytes()));
        assert_eq!(chain_id(Some(&a), &b), want);
    }

    #[test]
    fn ids_and_digests_are_checked() {
        let h = "0123456789abcdef".repeat(4);
        let id = ImageId::parse(&h).unwrap();
        assert_eq!(id.as_str(), format!("sha256:{h}"));
        assert_eq!(id.short(), "0123456789ab");
        assert!(ImageId::parse("sha256:xyz").is_err());
        assert!(ImageId::parse(&h.to_uppercase()).is_err());
        assert!(sha256_of("md5:abc").is_err());
        assert_eq!(sha256_of(&format!("sha256:{h}")).unwrap(), h);
    }

    #[test]
    fn detects_compression() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"tar bytes").unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&b"tar bytes"[..], 1).unwrap();
        for (bytes, want) in [
            (gz, Compression::Gzip),
            (zs, Compression::Zstd),
            (b"tar bytes".to_vec(), Compression::None),
        ] {
            let (mut r, c) = decompress(&bytes[..], "t").unwrap();
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!((out.as_slice(), c), (&b"tar bytes"[..], want));
        }
        assert!(decompress(&b"BZh91AY"[..], "t").is_err());
    }
}
