//! berthd's configuration: command-line flags, optionally a daemon.json-style file.
//! Only the keys listed in `FileConfig` are accepted; anything else is refused by name, so a
//! setting is never silently ignored.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

#[derive(Debug, Clone)]
pub struct Config {
    pub hosts: Vec<String>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub debug: bool,
    /// json-file log rotation for new containers (Docker's `log-opts` max-size/max-file).
    pub log_max_size: u64,
    pub log_max_file: u32,
    /// The berth-shim binary started for each container.
    pub shim: PathBuf,
    /// Group owning the API sockets (Docker's `group`, default `docker` when it exists).
    pub group: Option<String>,
    /// Keep a container parked for the next create like the last one (`slots`).
    pub park: bool,
}

/// The daemon.json keys berthd understands.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub hosts: Option<Vec<String>>,
    pub data_root: Option<PathBuf>,
    pub exec_root: Option<PathBuf>,
    pub debug: Option<bool>,
    pub group: Option<String>,
    pub log_driver: Option<String>,
    pub log_opts: Option<LogOpts>,
    /// berth's own: keep a container parked for the next create (default true).
    pub park_containers: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogOpts {
    pub max_size: Option<String>,
    pub max_file: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let c: FileConfig = serde_json::from_str(&text).with_context(|| {
            format!(
                "config file {}: (supported keys: hosts, data-root, exec-root, debug, group, \
                 log-driver, log-opts.max-size, log-opts.max-file, park-containers)",
                path.display()
            )
        })?;
        if let Some(d) = &c.log_driver {
            if d != "json-file" {
                bail!(
                    "config file {}: log-driver {d:?} is not supported (only json-file)",
                    path.display()
                );
            }
        }
        Ok(c)
    }
}

/// "10m", "1g", "512k", "100" → bytes.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_lowercase() {
                'b' => 1,
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                _ => bail!("invalid size {s:?}"),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    if n < 0.0 {
        bail!("invalid size {s:?}");
    }
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m").unwrap(), 10 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("42").unwrap(), 42);
        assert!(parse_size("ten").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = serde_json::from_str::<FileConfig>(r#"{"iptables": false}"#).unwrap_err();
        assert!(e.to_string().contains("iptables"), "{e}");
        let c: FileConfig =
            serde_json::from_str(r#"{"data-root": "/x", "log-opts": {"max-size": "1m"}}"#).unwrap();
        assert_eq!(c.data_root.unwrap(), PathBuf::from("/x"));
    }
}
