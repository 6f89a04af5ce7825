//! What may reach an `ssh` command line: users, hosts, ports and jump hosts, wherever they come
//! from (blueprint, inventory, state, export archive). Nothing that starts with `-` (it would
//! be read as an option), no spaces, no control characters, no `@`/`:` smuggled into a user —
//! and every `ssh` flotilla spawns also puts `--` before the destination.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{field}: {shown} is not a valid {what}: {rule}")]
pub struct ArgvError {
    pub field: String,
    pub shown: String,
    pub what: &'static str,
    pub rule: &'static str,
}

/// A value quoted for a message: control characters escaped, long values cut (it may be
/// hostile: it must not be able to write to a terminal or a log line as it likes).
pub fn shown(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let mut out = format!("{cut:?}");
    if cut.len() < s.len() {
        out.push('…');
    }
    out
}

fn err(field: &str, value: &str, what: &'static str, rule: &'static str) -> ArgvError {
    ArgvError {
        field: field.to_string(),
        shown: shown(value),
        what,
        rule,
    }
}

const USER_RULE: &str =
    "use 1-64 letters, digits, `_`, `.` and `-`, starting with a letter, a digit or `_`";
const HOST_RULE: &str =
    "use an IP address or a DNS name (letters, digits, `.` and `-`; not starting with `-`)";
const JUMP_RULE: &str = "use [user@]host[:port], several separated by `,`";

/// A login name (`ubuntu`, `ec2-user`, `root`).
pub fn check_user(field: &str, user: &str) -> Result<(), ArgvError> {
    let mut chars = user.chars();
    let ok = user.len() <= 64
        && matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(err(field, user, "SSH user", USER_RULE))
    }
}

/// An IP address (v4, or v6 with or without brackets) or a DNS name.
pub fn check_host(field: &str, host: &str) -> Result<(), ArgvError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let ok = host.len() <= 253 && host.split('.').all(label_ok);
    if ok {
        Ok(())
    } else {
        Err(err(field, host, "host", HOST_RULE))
    }
}

pub fn check_port(field: &str, port: u16) -> Result<(), ArgvError> {
    if port == 0 {
        Err(err(field, "0", "port", "use 1-65535"))
    } else {
        Ok(())
    }
}

/// `ssh -J`: `[user@]host[:port]`, several separated by `,`.
pub fn check_jump(field: &str, jump: &str) -> Result<(), ArgvError> {
    let bad = || err(field, jump, "jump host", JUMP_RULE);
    if jump.is_empty() {
        return Err(bad());
    }
    for hop in jump.split(',') {
        let (user, rest) = match hop.split_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, hop),
        };
        if let Some(u) = user {
            check_user(field, u).map_err(|_| bad())?;
        }
        let (host, port) = split_host_port(rest).ok_or_else(bad)?;
        check_host(field, host).map_err(|_| bad())?;
        if let Some(p) = port {
            let p: u16 = p.parse().map_err(|_| bad())?;
            check_port(field, p).map_err(|_| bad())?;
        }
    }
    Ok(())
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((h, Some(p))),
            None if after.is_empty() => Some((h, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        // More than one `:` without brackets: a bare IPv6 address.
        Some((h, _)) if h.contains(':') => Some((s, None)),
        Some((h, p)) => Some((h, Some(p))),
        None => Some((s, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &[&str] = &[
        "-oProxyCommand=touch /tmp/x",
        "-l",
        "a b",
        "a\nb",
        "a;b",
        "a$(id)",
        "",
        "a@b",
        "a:b",
        "`id`",
    ];

    #[test]
    fn hostile_users_and_hosts_are_refused() {
        for h in HOSTILE {
            assert!(check_user("ssh.user", h).is_err(), "user {h:?}");
            assert!(check_host("host", h).is_err(), "host {h:?}");
            // `a@b` is a fine jump host: user a on host b.
            assert!(
                *h == "a@b" || check_jump("ssh.jump", h).is_err(),
                "jump {h:?}"
            );
        }
        for u in ["ubuntu", "ec2-user", "root", "_svc", "Admin.1"] {
            check_user("u", u).expect(u);
        }
        for h in ["10.0.0.1", "::1", "[fe80::1]", "bastion.example.com", "h-1"] {
            check_host("h", h).expect(h);
        }
        for j in [
            "bastion",
            "ops@bastion:2222",
            "a@10.0.0.1,b@10.0.0.2:22",
            "[::1]:22",
            "fe80::1",
        ] {
            check_jump("j", j).expect(j);
        }
        assert!(check_jump("j", "ops@-bastion").is_err());
        assert!(check_jump("j", "bastion:0").is_err());
        assert!(check_jump("j", "bastion:99999").is_err());
        assert!(check_port("p", 0).is_err());
    }

    #[test]
    fn the_error_names_the_field_and_escapes_the_value() {
        let e = check_user("inventory[2].user", "a\nb").expect_err("bad");
        let s = e.to_string();
        assert!(s.starts_with("inventory[2].user: \"a\\nb\""), "{s}");
    }
}
