//! Strict patterns for every blueprint value that reaches a script on a node or a file there
//! (versions, URLs, proxy settings, endpoints, image names, labels, environment names). Checked
//! at validate time — exit 2 with the field's location — as the first fence; the templates and
//! scripts quote every value as the second (`template.rs`, `shell_quote`).

use super::model::{Blueprint, ImageSource};

/// (field path, message) for each value that does not fit its pattern.
pub fn problems(bp: &Blueprint) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut check = |field: String, value: &str, ok: bool, what: &str| {
        if !ok {
            out.push(mismatch(field, value, what));
        }
    };
    let d = &bp.docker;
    if let Some(v) = &d.version {
        check("docker.version".into(), v, is_version(v), VERSION);
    }
    for (field, v) in [
        ("docker.proxy.http", &d.proxy.http),
        ("docker.proxy.https", &d.proxy.https),
        ("docker.apt_proxy", &d.apt_proxy),
    ] {
        if let Some(v) = v {
            check(field.into(), v, is_url(v), URL);
        }
    }
    if let Some(v) = &d.proxy.no_proxy {
        check("docker.proxy.no_proxy".into(), v, is_no_proxy(v), NO_PROXY);
    }
    if let Some(v) = &bp.cluster_version {
        check("cluster.version".into(), v, is_version(v), VERSION);
    }
    if let Some(v) = bp.manager.as_ref().and_then(|m| m.image.as_ref()) {
        check("manager.image".into(), v, is_image(v), IMAGE);
    }
    for g in &bp.groups {
        for (k, v) in &g.labels {
            let at = format!("groups.{}.labels.{k}", g.name);
            check(at.clone(), k, is_label_key(k), LABEL_KEY);
            check(at, v, is_text(v), TEXT);
        }
    }
    for (name, c) in &bp.containers {
        let at = format!("containers.{name}");
        match &c.image {
            ImageSource::Repository { repository, tag } => {
                check(
                    format!("{at}.image.repository"),
                    repository,
                    is_image(repository),
                    IMAGE,
                );
                check(format!("{at}.image.tag"), tag, is_tag(tag), TAG);
            }
            ImageSource::Tarball { src, .. } if src.contains("://") => {
                check(format!("{at}.image.src"), src, is_url(src), URL);
            }
            ImageSource::Tarball { .. } => {}
        }
        for (k, v) in &c.labels {
            check(format!("{at}.labels.{k}"), k, is_label_key(k), LABEL_KEY);
            check(format!("{at}.labels.{k}"), v, is_text(v), TEXT);
        }
        for (k, v) in &c.env {
            check(format!("{at}.env.{k}"), k, is_env_name(k), ENV_NAME);
            check(format!("{at}.env.{k}"), v, !v.contains('\0'), "free of NUL");
        }
        for (i, a) in c.command.iter().enumerate() {
            check(
                format!("{at}.command[{i}]"),
                a,
                !a.contains('\0'),
                "free of NUL",
            );
        }
    }
    for (name, s) in &bp.services {
        if let Some(r) = &s.resolve_image {
            check(
                format!("services.{name}.resolve_image"),
                r,
                matches!(r.as_str(), "always" | "changed" | "never"),
                "always, changed or never",
            );
        }
    }
    out
}

/// (field, "<value> is not <what>"): a value that does not fit its pattern (the kinds check
/// their own options with the same words).
pub(crate) fn mismatch(field: impl Into<String>, value: &str, what: &str) -> (String, String) {
    (
        field.into(),
        format!("{} is not {what}", crate::names::shown(value)),
    )
}

const VERSION: &str =
    "a version (letters, digits and . : ~ + _ -, starting with a letter or digit)";
pub(crate) const URL: &str = "an http(s) or socks URL without spaces, quotes or backslashes";
const NO_PROXY: &str =
    "a comma-separated list of host names, domains (.example.com), addresses or CIDRs";
pub(crate) const IMAGE: &str = "an image name ([registry[:port]/]path[:tag][@sha256:digest])";
const TAG: &str = "an image tag (letters, digits, _ . -, up to 128, not starting with . or -)";
const LABEL_KEY: &str =
    "a label key (letters, digits and . _ / -, starting with a letter or digit)";
const TEXT: &str = "text without control characters";
const ENV_NAME: &str =
    "an environment variable name (letters, digits and _, not starting with a digit)";

fn is_version(v: &str) -> bool {
    let mut c = v.chars();
    v.len() <= 128
        && c.next().is_some_and(|x| x.is_ascii_alphanumeric())
        && c.all(|x| x.is_ascii_alphanumeric() || matches!(x, '.' | ':' | '~' | '+' | '_' | '-'))
}

/// Only RFC 3986 characters (no quote, backslash, space, `<>{}|^` or control character), an
/// http, https or socks scheme and a host.
pub(crate) fn is_url(v: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c);
    let Some((scheme, rest)) = v.split_once("://") else {
        return false;
    };
    v.len() <= 2048
        && matches!(scheme, "http" | "https" | "socks5" | "socks5h")
        && !rest.is_empty()
        && !rest.starts_with('/')
        && v.chars().all(allowed)
}

fn is_no_proxy(v: &str) -> bool {
    v.len() <= 4096
        && v.split(',').map(str::trim).all(|p| {
            !p.is_empty()
                && !p.starts_with('-')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-*:/[]_".contains(c))
        })
}

pub(crate) fn is_endpoint(v: &str) -> bool {
    let (host, port) = match v.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, Some(p)),
        _ => (v, None),
    };
    crate::ssh::argv::check_host("", host).is_ok()
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0))
}

pub(crate) fn is_image(v: &str) -> bool {
    let mut c = v.chars();
    (1..=255).contains(&v.len())
        && c.next().is_some_and(|x| x.is_ascii_alphanumeric())
        && c.all(|x| x.is_ascii_alphanumeric() || "._-/:@".contains(x))
}

fn is_tag(v: &str) -> bool {
    let mut c = v.chars();
    (1..=128).contains(&v.len())
        && c.next()
            .is_some_and(|x| x.is_ascii_alphanumeric() || x == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || "._-".contains(x))
}

fn is_label_key(v: &str) -> bool {
    let mut c = v.chars();
    (1..=253).contains(&v.len())
        && c.next().is_some_and(|x| x.is_ascii_alphanumeric())
        && c.all(|x| x.is_ascii_alphanumeric() || "._/-".contains(x))
}

fn is_text(v: &str) -> bool {
    v.len() <= 4096 && !v.chars().any(char::is_control)
}

fn is_env_name(v: &str) -> bool {
    let mut c = v.chars();
    c.next()
        .is_some_and(|x| x.is_ascii_alphabetic() || x == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_take_the_real_thing_and_refuse_syntax() {
        for ok in [
            "27.3.1",
            "5:27.3.1-1~debian.12~bookworm",
            "1.31",
            "v1.2.3+build_1",
        ] {
            assert!(is_version(ok), "{ok}");
        }
        for ok in [
            "http://10.0.0.1:3128",
            "https://user:p%40ss@proxy.example.com:8443/",
            "socks5h://127.0.0.1:1080",
        ] {
            assert!(is_url(ok), "{ok}");
        }
        assert!(is_no_proxy(
            "localhost,127.0.0.1,.example.com,10.0.0.0/8,*.svc"
        ));
        assert!(is_endpoint("lb.example.com:6443") && is_endpoint("10.0.0.5"));
        assert!(is_image(
            "registry.example.com:5000/team/app:1.2@sha256:abc"
        ));
        assert!(is_tag("1.2.3-alpine") && is_label_key("io.flotilla/zone"));
        let hostile = [
            "1'; touch /tmp/x; '",
            "$(id)",
            "`id`",
            "a\nb",
            "a b",
            "-x",
            "a\"b",
            "a\\b",
        ];
        for h in hostile {
            assert!(!is_version(h), "version {h:?}");
            assert!(!is_no_proxy(h), "no_proxy {h:?}");
            assert!(!is_endpoint(h), "endpoint {h:?}");
            assert!(!is_image(h), "image {h:?}");
            assert!(!is_tag(h), "tag {h:?}");
            assert!(!is_label_key(h), "label {h:?}");
            assert!(!is_env_name(h), "env {h:?}");
        }
        for bad_url in [
            "ftp://x",
            "http://",
            "http:///x",
            "http://a b",
            "http://a\"b",
            "http://a\\b",
            "http://a`id`",
            "http://a\nb",
            "file:///etc/passwd",
        ] {
            assert!(!is_url(bad_url), "{bad_url}");
        }
        assert!(!is_text("a\nb") && is_text("any text; even $(this)"));
    }
}
