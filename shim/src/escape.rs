//! JSON string escaping exactly as dockerd's json-file writes a log line (Go's encoding/json
//! with HTML escaping): `"` and `\` as `\"` `\\`; `\n` `\r`; other controls and `<` `>` `&` as
//! `\u00XX`; DEL and valid UTF-8 as they are, except U+2028/9 as `\u2028`/`\u2029`; each byte
//! of invalid UTF-8 as one `\ufffd` (Go's utf8.DecodeRune).
//!
//! Log text is mostly plain ASCII, so the escaper looks for the next byte that needs attention
//! 16 bytes at a time (SSE2, which every x86-64 has) and copies the run before it with one
//! memcpy; an 80-byte line without specials is five compares and one copy. Other
//! architectures scan a byte at a time through a table.

/// 1 for bytes that are escaped or start a UTF-8 sequence to check.
static SPECIAL: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b < 0x20 || b >= 0x80 || b == b'"' || b == b'\\' || b == b'<' || b == b'>' || b == b'&' {
            t[i] = 1;
        }
        i += 1;
    }
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The length of the prefix of `s` that is copied as it is (no byte of it is special).
#[inline]
fn plain_prefix(s: &[u8]) -> usize {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86-64 baseline; every load reads 16 bytes that lie
        // inside `s` (i + 16 <= len), unaligned loads being allowed.
        unsafe {
            // Signed compare: below 0x20 are the controls, and bytes from 0x80 up are negative.
            let space = _mm_set1_epi8(0x20);
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            let lt = _mm_set1_epi8(b'<' as i8);
            let gt = _mm_set1_epi8(b'>' as i8);
            let amp = _mm_set1_epi8(b'&' as i8);
            while i + 16 <= s.len() {
                let v = _mm_loadu_si128(s.as_ptr().add(i).cast());
                let hit = _mm_or_si128(
                    _mm_or_si128(_mm_cmplt_epi8(v, space), _mm_cmpeq_epi8(v, quote)),
                    _mm_or_si128(
                        _mm_or_si128(_mm_cmpeq_epi8(v, backslash), _mm_cmpeq_epi8(v, amp)),
                        _mm_or_si128(_mm_cmpeq_epi8(v, lt), _mm_cmpeq_epi8(v, gt)),
                    ),
                );
                let mask = _mm_movemask_epi8(hit) as u32;
                if mask != 0 {
                    return i + mask.trailing_zeros() as usize;
                }
                i += 16;
            }
        }
    }
    while i < s.len() && SPECIAL[s[i] as usize] == 0 {
        i += 1;
    }
    i
}

/// Append `s` JSON-escaped as dockerd's json-file does (without the surrounding quotes).
pub fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    // s[start..i] is plain and not yet copied.
    let mut start = 0;
    let mut i = 0;
    loop {
        i += plain_prefix(&s[i..]);
        if i >= s.len() {
            break;
        }
        let b = s[i];
        if b < 0x80 {
            out.extend_from_slice(&s[start..i]);
            match b {
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]),
            }
            i += 1;
            start = i;
            continue;
        }
        // Non-ASCII: decode one character as Go's utf8.DecodeRune would.
        let len = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => 0,
        };
        let valid = len > 0 && i + len <= s.len() && std::str::from_utf8(&s[i..i + len]).is_ok();
        if !valid {
            // Each invalid byte becomes one U+FFFD.
            out.extend_from_slice(&s[start..i]);
            out.extend_from_slice(b"\\ufffd");
            i += 1;
            start = i;
        } else if b == 0xE2 && s[i + 1] == 0x80 && (s[i + 2] == 0xA8 || s[i + 2] == 0xA9) {
            out.extend_from_slice(&s[start..i]);
            out.extend_from_slice(b"\\u202");
            out.push(HEX[(s[i + 2] & 15) as usize]);
            i += 3;
            start = i;
        } else {
            i += len;
        }
    }
    out.extend_from_slice(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &[u8]) -> String {
        let mut v = Vec::new();
        escape_into(&mut v, s);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escapes_like_dockerd() {
        assert_eq!(esc(b"plain text"), "plain text");
        assert_eq!(esc(b"a\"b\\c"), r#"a\"b\\c"#);
        assert_eq!(esc(b"\t\r\n\x01\x7f"), "\\u0009\\r\\n\\u0001\x7f");
        assert_eq!(esc(b"<a&b>"), r"\u003ca\u0026b\u003e");
        assert_eq!(
            esc("h\u{e9}llo \u{1F600}".as_bytes()),
            "h\u{e9}llo \u{1F600}"
        );
        assert_eq!(esc(b"a\xffb"), r"a\ufffdb");
        assert_eq!(esc(b"a\xe2\x82"), r"a\ufffd\ufffd");
        assert_eq!(esc(b"\xe2\x82A"), r"\ufffd\ufffdA");
        assert_eq!(esc("x\u{2028}y\u{2029}".as_bytes()), r"x\u2028y\u2029");
        assert_eq!(esc("\u{e9}\"\u{e9}".as_bytes()), "\u{e9}\\\"\u{e9}");
    }

    /// Byte-at-a-time: what every special byte should produce.
    fn one(b: u8) -> Vec<u8> {
        match b {
            b'"' | b'\\' => vec![b'\\', b],
            b'\n' => b"\\n".to_vec(),
            b'\r' => b"\\r".to_vec(),
            0..=0x1f | b'<' | b'>' | b'&' => format!("\\u{:04x}", b).into_bytes(),
            0x80..=0xff => b"\\ufffd".to_vec(),
            _ => vec![b],
        }
    }

    #[test]
    fn every_byte_at_every_offset_of_a_vector() {
        // Each byte value alone at each position of runs longer than one SIMD block, so the
        // vector scan, its tail and the table agree; bytes from 0x80 up are invalid alone.
        for b in 0..=255u8 {
            for len in [1, 15, 16, 17, 31, 32, 33, 80] {
                for at in 0..len {
                    let mut s = vec![b'x'; len];
                    s[at] = b;
                    let mut want = vec![b'x'; at];
                    want.extend(one(b));
                    want.extend(vec![b'x'; len - at - 1]);
                    let mut got = Vec::new();
                    escape_into(&mut got, &s);
                    assert_eq!(got, want, "byte {b:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn multibyte_characters_across_block_edges() {
        for at in 10..20 {
            let mut s = "y".repeat(at);
            s.push_str("\u{e9}\u{2028}\u{1F600}<");
            s.push_str(&"z".repeat(20));
            let want = format!(
                "{}\u{e9}\\u2028\u{1F600}\\u003c{}",
                "y".repeat(at),
                "z".repeat(20)
            );
            assert_eq!(esc(s.as_bytes()), want, "at {at}");
        }
    }
}
