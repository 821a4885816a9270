//! sha256 while streaming, and layer decompression by magic number.

use std::io::{self, BufRead, BufReader, Read};

use sha2::{Digest, Sha256};

/// Hashes every byte read through it.
pub struct Hashing<R> {
    inner: R,
    hash: Sha256,
    pub count: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hash: Sha256::new(),
            count: 0,
        }
    }
    /// Reads what is left (a tar's trailing padding), then returns `sha256:<hex>`.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self.inner, &mut Sink(&mut self.hash, &mut self.count))?;
        Ok((
            format!("sha256:{}", crate::util::hex(&self.hash.finalize())),
            self.count,
        ))
    }
}

struct Sink<'a>(&'a mut Sha256, &'a mut u64);

impl io::Write for Sink<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.update(b);
        *self.1 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    crate::util::hex(&Sha256::digest(b))
}

/// A reader that undoes gzip or zstd compression if the stream starts with their magic.
pub fn decompress<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(256 * 1024, r);
    let head = br.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(br)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(br)?))
    } else if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']) {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bzip2 and xz layers are not supported (gzip, zstd or plain tar)",
        ))
    } else {
        Ok(Box::new(br))
    }
}
