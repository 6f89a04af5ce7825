//! Host entries (`[user@]host[:port]`, `[v6addr]:port`) and ansible-style inventory files.

use flotilla_provider_core::argv::{check_host, check_user};
use std::collections::BTreeMap;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum InventoryError {
    #[error("`{entry}`: {message}")]
    BadEntry { entry: String, message: String },
    #[error("line {line}: {message}")]
    BadLine { line: usize, message: String },
}

impl HostEntry {
    /// Parses `[user@]host[:port]`; IPv6 addresses go in brackets when a port follows.
    pub fn parse(s: &str) -> Result<Self, InventoryError> {
        let bad = |message: &str| InventoryError::BadEntry {
            entry: s.to_string(),
            message: message.to_string(),
        };
        let s = s.trim();
        if s.is_empty() {
            return Err(bad("empty host entry"));
        }
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
            Some(_) => return Err(bad("empty user before `@`")),
            None => (None, s),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) = inner
                .split_once(']')
                .ok_or_else(|| bad("missing `]` after an IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("expected `:port` after `]`")),
            };
            (addr.to_string(), port)
        } else if rest.matches(':').count() > 1 {
            // A bare IPv6 address without a port.
            (rest.to_string(), None)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        if let Some(u) = &user {
            check_user("user", u).map_err(|e| bad(&e.to_string()))?;
        }
        check_host("host", &host).map_err(|e| bad(&e.to_string()))?;
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("port must be 1-65535"))?,
            None => 22,
        };
        Ok(HostEntry { user, host, port })
    }

    /// Stable identifier used as the machine id.
    /// The entry as a blueprint's `hosts:` list writes it (`[user@]host[:port]`).
    pub fn written(&self) -> String {
        let user = self
            .user
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        format!("{user}{}", self.id())
    }

    pub fn id(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses an inventory: `[group]` headers (hosts before any header go to `ungrouped`), one host
/// per line, `#` comments, and ansible's `ansible_host=`, `ansible_user=`, `ansible_port=` variables.
pub fn parse_inventory(text: &str) -> Result<BTreeMap<String, Vec<HostEntry>>, InventoryError> {
    let mut groups: BTreeMap<String, Vec<HostEntry>> = BTreeMap::new();
    let mut current = "ungrouped".to_string();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let name = header.strip_suffix(']').ok_or(InventoryError::BadLine {
                line: i + 1,
                message: "group header must look like [name]".into(),
            })?;
            current = name.split(':').next().unwrap_or(name).trim().to_string();
            continue;
        }
        let mut tokens = line.split_whitespace();
        let first = tokens.next().unwrap_or_default();
        let mut entry = HostEntry::parse(first).map_err(|e| InventoryError::BadLine {
            line: i + 1,
            message: e.to_string(),
        })?;
        for var in tokens {
            let Some((k, v)) = var.split_once('=') else {
                return Err(InventoryError::BadLine {
                    line: i + 1,
                    message: format!("`{var}` is not key=value"),
                });
            };
            match k {
                "ansible_host" => entry.host = v.to_string(),
                "ansible_user" => entry.user = Some(v.to_string()),
                "ansible_port" => {
                    entry.port = v.parse().map_err(|_| InventoryError::BadLine {
                        line: i + 1,
                        message: format!("ansible_port `{v}` is not a port"),
                    })?
                }
                _ => {}
            }
        }
        // `ansible_host=` / `ansible_user=` may replace what the entry said: check again.
        let checked = entry
            .user
            .as_deref()
            .map(|u| check_user("ansible_user", u))
            .transpose()
            .and_then(|_| check_host("ansible_host", &entry.host));
        if let Err(e) = checked {
            return Err(InventoryError::BadLine {
                line: i + 1,
                message: e.to_string(),
            });
        }
        groups.entry(current.clone()).or_default().push(entry);
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_that_could_become_ssh_options_are_refused() {
        for bad in [
            "-oProxyCommand=x@h",
            "u@-oProxyCommand=x",
            "a b@h",
            "u@h;id",
            "u@$(id)",
        ] {
            assert!(HostEntry::parse(bad).is_err(), "{bad}");
        }
        let inv = "[workers]\n10.0.0.1 ansible_user=-oProxyCommand=touch\n";
        assert!(parse_inventory(inv).is_err());
        let inv = "[workers]\n10.0.0.1 ansible_host=-x\n";
        assert!(parse_inventory(inv).is_err());
    }

    #[test]
    fn parses_host_forms() {
        assert_eq!(
            HostEntry::parse("10.0.0.1").ok(),
            Some(HostEntry {
                user: None,
                host: "10.0.0.1".into(),
                port: 22
            })
        );
        assert_eq!(
            HostEntry::parse("admin@db.example:2222").ok(),
            Some(HostEntry {
                user: Some("admin".into()),
                host: "db.example".into(),
                port: 2222
            })
        );
        assert_eq!(
            HostEntry::parse("[fd00::1]:23")
                .ok()
                .map(|h| (h.host, h.port)),
            Some(("fd00::1".into(), 23))
        );
        assert_eq!(HostEntry::parse("fd00::1").ok().map(|h| h.port), Some(22));
        assert!(HostEntry::parse("host:0").is_err());
        assert!(HostEntry::parse("host:http").is_err());
        assert!(HostEntry::parse("@host").is_err());
    }

    #[test]
    fn parses_ansible_style_inventory() {
        let inv = "# edge\n10.0.0.9\n[managers]\nroot@10.0.0.1\n[workers]\n10.0.0.2:2222 # comment\nw3 ansible_host=10.0.0.3 ansible_user=ops\n";
        let g = parse_inventory(inv).expect("valid inventory");
        assert_eq!(g["ungrouped"][0].host, "10.0.0.9");
        assert_eq!(g["managers"][0].user.as_deref(), Some("root"));
        assert_eq!(g["workers"][0].port, 2222);
        assert_eq!(g["workers"][1].host, "10.0.0.3");
        assert_eq!(g["workers"][1].user.as_deref(), Some("ops"));
        assert!(matches!(
            parse_inventory("[bad\n"),
            Err(InventoryError::BadLine { line: 1, .. })
        ));
    }
}
