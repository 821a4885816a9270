//! The Dockerfile instructions `docker import --change` (and `docker commit --change`)
//! accept, applied to an image's run config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
//! STOPSIGNAL, USER, VOLUME, WORKDIR.

use std::collections::BTreeMap;

use serde_json::Value;

use super::config::RunConfig;
use super::error::{Error, Result};

/// Splits `s` into words, honouring single and double quotes and backslash escapes.
fn words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut in_word, mut quote) = (false, None::<char>);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                cur.push(chars.next().unwrap_or('\\'));
                in_word = true;
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(Error::invalid(format!("unterminated quote in {s:?}")));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `K=V K2="v 2"` or the old `K some value`.
fn pairs(instr: &str, rest: &str) -> Result<Vec<(String, String)>> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| Error::invalid(format!("{instr} needs a name and a value: {rest:?}")))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words(rest)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Error::invalid(format!("{instr}: {w:?} is not NAME=VALUE"))),
        })
        .collect()
}

/// JSON array form, or the shell form run by `/bin/sh -c`.
fn command(rest: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(rest) {
        Ok(v) => v,
        Err(_) => vec!["/bin/sh".into(), "-c".into(), rest.to_string()],
    }
}

fn ports(rest: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in rest.split_whitespace() {
        let (range, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        let proto = proto.to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(Error::invalid(format!("invalid proto: {proto}")));
        }
        let bad = || Error::invalid(format!("invalid containerPort: {p}"));
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (
                a.parse::<u16>().map_err(|_| bad())?,
                b.parse::<u16>().map_err(|_| bad())?,
            ),
            None => {
                let n = range.parse::<u16>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(bad());
        }
        out.extend((lo..=hi).map(|n| format!("{n}/{proto}")));
    }
    Ok(out)
}

/// Applies each change (one instruction per string; several lines in one string are
/// several instructions) in order.
pub fn apply(cfg: &mut RunConfig, changes: &[String]) -> Result<()> {
    for line in changes
        .iter()
        .flat_map(|c| c.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let (instr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let upper = instr.to_ascii_uppercase();
        if rest.is_empty() {
            return Err(Error::invalid(format!(
                "{upper} requires at least one argument"
            )));
        }
        match upper.as_str() {
            "CMD" => cfg.cmd = Some(command(rest)),
            "ENTRYPOINT" => cfg.entrypoint = Some(command(rest)),
            "USER" => cfg.user = Some(rest.to_string()),
            "STOPSIGNAL" => cfg.stop_signal = Some(rest.to_string()),
            "WORKDIR" => {
                let base = cfg.working_dir.clone().unwrap_or_else(|| "/".into());
                cfg.working_dir = Some(if rest.starts_with('/') {
                    rest.to_string()
                } else {
                    format!("{}/{rest}", base.trim_end_matches('/'))
                });
            }
            "ENV" => {
                let env = cfg.env.get_or_insert_with(Vec::new);
                for (k, v) in pairs(&upper, rest)? {
                    env.retain(|e| e.split_once('=').map_or(e.as_str(), |x| x.0) != k);
                    env.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                let labels = cfg.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in pairs(&upper, rest)? {
                    labels.insert(k, v);
                }
            }
            "EXPOSE" => {
                let exposed = cfg.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in ports(rest)? {
                    exposed.insert(p, Value::Object(Default::default()));
                }
            }
            "VOLUME" => {
                let vols = match serde_json::from_str::<Vec<String>>(rest) {
                    Ok(v) => v,
                    Err(_) => words(rest)?,
                };
                let map = cfg.volumes.get_or_insert_with(BTreeMap::new);
                for v in vols {
                    map.insert(v, Value::Object(Default::default()));
                }
            }
            "ONBUILD" => cfg
                .on_build
                .get_or_insert_with(Vec::new)
                .push(rest.to_string()),
            _ => {
                return Err(Error::invalid(format!(
                    "{upper} is not a valid change command"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> Result<RunConfig> {
        let mut c = RunConfig::default();
        apply(
            &mut c,
            &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )?;
        Ok(c)
    }

    #[test]
    fn applies_dockerfile_instructions() {
        let c = applied(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /init --flag",
            r#"ENV A=1 B="two words" C=x\ y"#,
            "ENV OLD style value",
            "ENV A=3",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER 1000:1000",
            r#"LABEL org.x="a b" k=v"#,
            "EXPOSE 80 53/udp 8000-8001",
            r#"VOLUME ["/data", "/logs"]"#,
            "STOPSIGNAL SIGINT",
            "onbuild RUN true",
        ])
        .unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["sh", "-c", "echo hi"]);
        assert_eq!(c.entrypoint.unwrap(), vec!["/bin/sh", "-c", "/init --flag"]);
        assert_eq!(
            c.env.unwrap(),
            vec!["B=two words", "C=x y", "OLD=style value", "A=3"]
        );
        assert_eq!(c.working_dir.unwrap(), "/srv/app");
        assert_eq!(c.user.unwrap(), "1000:1000");
        let labels = c.labels.unwrap();
        assert_eq!(
            (labels["org.x"].as_str(), labels["k"].as_str()),
            ("a b", "v")
        );
        let ports: Vec<String> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, vec!["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
        assert_eq!(c.volumes.unwrap().len(), 2);
        assert_eq!(c.stop_signal.unwrap(), "SIGINT");
        assert_eq!(c.on_build.unwrap(), vec!["RUN true"]);
    }

    #[test]
    fn refuses_what_import_cannot_do() {
        assert!(applied(&["RUN echo"])
            .unwrap_err()
            .to_string()
            .contains("not a valid change command"));
        assert!(applied(&["CMD"]).is_err());
        assert!(applied(&["EXPOSE 99999"]).is_err());
        assert!(applied(&["EXPOSE 80/xyz"]).is_err());
        assert!(applied(&["ENV A=\"open"]).is_err());
        assert!(applied(&["ENV lonely"]).is_err());
    }
}
