//! Image references as Docker normalises them. `busybox` is kept internally as
//! `docker.io/library/busybox:latest` and shown as `busybox:latest`; `host:5000/a/b` keeps its
//! registry; `name@sha256:…` is a digest reference. The grammar is the one of
//! distribution/reference (lowercase path components separated by `.`, `_`, `__` or dashes; tags
//! of up to 128 word characters, dots and dashes; names of at most 255 characters).

use std::fmt;

use super::digest::is_sha256_hex;
use super::error::{Error, Result};

const DEFAULT_DOMAIN: &str = "docker.io";
const OFFICIAL_PREFIX: &str = "library/";

/// A normalised reference: always a full name, with a tag, a digest or both.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    /// `docker.io/library/busybox`, `localhost:5000/a/b`.
    name: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn invalid(s: &str) -> Error {
    Error::invalid(format!("invalid reference format: {s:?}"))
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'a'..=b'z' | b'0'..=b'9' => i += 1,
            b'.' | b'_' => {
                // `.`, `_` or `__`, then an alphanumeric.
                let sep = if b[i] == b'_' && b.get(i + 1) == Some(&b'_') {
                    2
                } else {
                    1
                };
                i += sep;
                if !b
                    .get(i)
                    .is_some_and(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
                {
                    return false;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
                if !b
                    .get(i)
                    .is_some_and(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
                {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// A registry host (labels of alphanumerics and inner dashes, dot-separated, optional port)
/// or a bracketed IPv6 address with an optional port.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return false;
        };
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(p) => return !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
                None => return false,
            },
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

/// `[\w][\w.-]{0,127}`
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || b"_.-".contains(x))
}

/// Splits `name` into (domain, path) as ParseNormalizedNamed does: the first component is a
/// domain when it has a `.` or `:`, is `localhost`, or has uppercase letters.
fn split_domain(name: &str) -> (String, String) {
    let (domain, mut path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        path = format!("{OFFICIAL_PREFIX}{path}");
    }
    (domain, path)
}

impl Reference {
    /// Parses and normalises `s`; without a tag or digest the tag is `latest`.
    pub fn parse(s: &str) -> Result<Reference> {
        let mut r = Reference::parse_any(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".into());
        }
        Ok(r)
    }

    /// A repository (no tag, no digest) and a tag, as `POST /images/{name}/tag?repo=&tag=`
    /// and `docker import - repo:tag` give them; an empty tag means `latest`.
    pub fn with_tag(repo: &str, tag: &str) -> Result<Reference> {
        let r = Reference::parse_any(repo)?;
        if r.tag.is_some() && !tag.is_empty() || r.digest.is_some() {
            return Err(invalid(&format!("{repo}:{tag}")));
        }
        if tag.is_empty() {
            return Ok(Reference {
                tag: r.tag.or(Some("latest".into())),
                ..r
            });
        }
        if !valid_tag(tag) {
            return Err(Error::invalid(format!("invalid tag format: {tag:?}")));
        }
        Ok(Reference {
            tag: Some(tag.into()),
            ..r
        })
    }

    /// Parses without defaulting the tag.
    fn parse_any(s: &str) -> Result<Reference> {
        if s.is_empty() {
            return Err(invalid(s));
        }
        if is_sha256_hex(s) {
            return Err(Error::invalid(format!(
                "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d.strip_prefix("sha256:").ok_or_else(|| invalid(s))?;
                if !is_sha256_hex(hex) {
                    return Err(invalid(s));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A `:` after the last `/` starts the tag (one before it is a registry port).
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].find(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(invalid(s));
            }
        }
        let (domain, path) = split_domain(name);
        if !valid_domain(&domain) {
            return Err(invalid(s));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Error::invalid(format!(
                "invalid reference format: repository name ({path}) must be lowercase"
            )));
        }
        if !path.split('/').all(valid_path_component) {
            return Err(invalid(s));
        }
        let name = format!("{domain}/{path}");
        if name.len() > 255 {
            return Err(Error::invalid(
                "invalid reference format: repository name must not be more than 255 characters",
            ));
        }
        Ok(Reference {
            name,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The full name, `docker.io/library/busybox`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The name as Docker shows it: `busybox`, `me/app`, `localhost:5000/a/b`.
    pub fn familiar_name(&self) -> &str {
        match self.name.strip_prefix("docker.io/") {
            Some(p) => match p.strip_prefix(OFFICIAL_PREFIX) {
                Some(official) if !official.contains('/') => official,
                _ => p,
            },
            None => &self.name,
        }
    }

    /// The full form kept in the store: `docker.io/library/busybox:latest`.
    pub fn canonical(&self) -> String {
        self.render(&self.name)
    }

    fn render(&self, name: &str) -> String {
        match (&self.tag, &self.digest) {
            // A digest identifies the content: lookups and RepoDigests keep only it.
            (_, Some(d)) => format!("{name}@{d}"),
            (Some(t), None) => format!("{name}:{t}"),
            (None, None) => name.to_string(),
        }
    }

    /// Only the name and the digest (a `RepoDigests` entry).
    pub fn is_digest(&self) -> bool {
        self.digest.is_some()
    }
}

/// The familiar form: `busybox:latest`, `me/app@sha256:…`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(self.familiar_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(s: &str) -> (String, String) {
        let r = Reference::parse(s).unwrap();
        (r.to_string(), r.canonical())
    }

    #[test]
    fn normalises_like_docker() {
        let full = |s: &str| ("busybox:latest".to_string(), s.to_string());
        assert_eq!(both("busybox"), full("docker.io/library/busybox:latest"));
        assert_eq!(
            both("library/busybox"),
            full("docker.io/library/busybox:latest")
        );
        assert_eq!(
            both("docker.io/library/busybox:latest"),
            full("docker.io/library/busybox:latest")
        );
        assert_eq!(both("index.docker.io/busybox").0, "busybox:latest");
        assert_eq!(
            both("me/app:v1"),
            ("me/app:v1".into(), "docker.io/me/app:v1".into())
        );
        assert_eq!(both("docker.io/me/app:v1").0, "me/app:v1");
        assert_eq!(both("localhost:5000/a/b").0, "localhost:5000/a/b:latest");
        assert_eq!(both("localhost/a").0, "localhost/a:latest");
        assert_eq!(both("reg.example.com/x:y").1, "reg.example.com/x:y");
        assert_eq!(both("[::1]:5000/x:1.0").0, "[::1]:5000/x:1.0");
        assert_eq!(
            both("x/a__b-c.d/e---f_g:1.2-rc_3").0,
            "x/a__b-c.d/e---f_g:1.2-rc_3"
        );
        assert!(Reference::parse("a__b.c/x").is_err());
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(both(&format!("busybox@{d}")).0, format!("busybox@{d}"));
        assert_eq!(
            both(&format!("busybox:1@{d}")).1,
            format!("docker.io/library/busybox@{d}")
        );
    }

    #[test]
    fn refuses_what_docker_refuses() {
        for bad in [
            "",
            "Busybox",
            "a:b:c",
            "x@sha256:abc",
            "x@md5:00",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "a/",
            "/a",
            "a//b",
            "a:",
            "a:-x",
            "a b",
            "a:b/c",
            "reg.example.com/A",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
        let e = Reference::parse("docker.io/Library/Busybox").unwrap_err();
        assert!(e.to_string().contains("must be lowercase"), "{e}");
        assert!(Reference::parse(&"a".repeat(64))
            .unwrap_err()
            .to_string()
            .contains("64-byte"));
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
        assert!(Reference::parse(&"a/".repeat(130)).is_err());
    }

    #[test]
    fn with_tag_combines_repo_and_tag() {
        assert_eq!(
            Reference::with_tag("busybox", "").unwrap().to_string(),
            "busybox:latest"
        );
        assert_eq!(
            Reference::with_tag("x/y", "v2").unwrap().canonical(),
            "docker.io/x/y:v2"
        );
        assert_eq!(Reference::with_tag("x:v3", "").unwrap().to_string(), "x:v3");
        assert!(Reference::with_tag("x:v3", "v4").is_err());
        assert!(Reference::with_tag("x", "bad tag").is_err());
    }
}
