//! Image references as Docker normalises them: `busybox` is `busybox:latest` (internally the
//! same as `docker.io/library/busybox:latest`), `host:5000/a/b` keeps its registry.

use super::Error;

/// A `repository:tag` in its familiar (shortest) form, e.g. `busybox:latest`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    pub repo: String,
    pub tag: String,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repo, self.tag)
    }
}

fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.as_bytes()[0].is_ascii_alphanumeric()
        && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.as_bytes()[0] != b'.'
        && t.as_bytes()[0] != b'-'
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Normalises the repository part (no tag): drops `docker.io/` and `library/`.
pub fn normalise_repo(repo: &str) -> Result<String, Error> {
    let bad = || {
        Error::InvalidInput(format!(
            "invalid reference format: repository name ({repo}) must be lowercase letters, digits and ._-"
        ))
    };
    let parts: Vec<&str> = repo.split('/').collect();
    let is_registry = |p: &str| p.contains('.') || p.contains(':') || p == "localhost";
    let (mut registry, rest) = if parts.len() > 1 && is_registry(parts[0]) {
        (Some(parts[0]), parts[1..].to_vec())
    } else {
        (None, parts)
    };
    let mut rest = rest;
    if matches!(registry, None | Some("docker.io") | Some("index.docker.io")) {
        registry = None;
        if rest.len() == 2 && rest[0] == "library" {
            rest.remove(0);
        }
    }
    if let Some(r) = registry {
        if r.bytes().any(|b| b.is_ascii_whitespace() || b == b'@') {
            return Err(bad());
        }
    }
    if rest.is_empty() || !rest.iter().all(|c| valid_component(c)) {
        return Err(bad());
    }
    Ok(match registry {
        Some(r) => format!("{r}/{}", rest.join("/")),
        None => rest.join("/"),
    })
}

/// Parses `name[:tag]` (no digest), defaulting the tag to `latest`.
pub fn parse(s: &str) -> Result<Reference, Error> {
    if s.contains('@') {
        return Err(Error::InvalidInput(format!(
            "digest references ({s}) are not supported: berthd keeps no registry digests yet"
        )));
    }
    // A ':' after the last '/' separates the tag (a ':' before it is a registry port).
    let slash = s.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match s[slash..].rfind(':') {
        Some(i) => (&s[..slash + i], &s[slash + i + 1..]),
        None => (s, "latest"),
    };
    if !valid_tag(tag) {
        return Err(Error::InvalidInput(format!(
            "invalid reference format: tag {tag:?}"
        )));
    }
    Ok(Reference {
        repo: normalise_repo(repo)?,
        tag: tag.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let r = |s: &str| parse(s).unwrap().to_string();
        assert_eq!(r("busybox"), "busybox:latest");
        assert_eq!(r("busybox:1.36"), "busybox:1.36");
        assert_eq!(r("docker.io/library/busybox:latest"), "busybox:latest");
        assert_eq!(r("library/busybox"), "busybox:latest");
        assert_eq!(r("docker.io/me/app:v1"), "me/app:v1");
        assert_eq!(r("localhost:5000/a/b"), "localhost:5000/a/b:latest");
        assert_eq!(r("reg.example.com/x:y"), "reg.example.com/x:y");
        assert!(parse("Busybox").is_err());
        assert!(parse("a:b:c").is_err());
        assert!(parse("x@sha256:abc").is_err());
        assert!(parse("").is_err());
    }
}
