//! The one rule for names that become paths, labels, hostnames and script arguments:
//! deployments, groups, nodes and services. Every entry checks names here — the blueprint,
//! `import` (manifest and state), the API's route parameters, every state-backend method and
//! `Home::deployment_dir` — so a name that could leave `<home>/deployments/` (`..`, `/`),
//! become an option (`-x`) or carry a control character never reaches a path or a command.

use thiserror::Error;

/// What a name names (each has its own length limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Deployment,
    Group,
    /// `<group>-<index>`: a group name and a number.
    Node,
    Service,
}

impl NameKind {
    pub fn max_len(self) -> usize {
        match self {
            NameKind::Deployment | NameKind::Service => 40,
            NameKind::Group => 30,
            // A DNS label: node names become hostnames.
            NameKind::Node => 63,
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            NameKind::Deployment => "deployment",
            NameKind::Group => "group",
            NameKind::Node => "node",
            NameKind::Service => "service",
        }
    }
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{shown} is not a valid {} name: use 1-{max} lowercase letters, digits and `-`, starting with a letter and not ending with `-`", kind.what())]
pub struct NameError {
    pub kind: NameKind,
    /// The rejected name, quoted and escaped (it may hold control characters).
    pub shown: String,
    pub max: usize,
}

/// True when `s` is a valid name of this kind.
pub fn is_valid(kind: NameKind, s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= kind.max_len()
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.ends_with('-')
}

/// Checks a name; the error shows it escaped (safe to print on a terminal or in a log).
pub fn check(kind: NameKind, s: &str) -> Result<(), NameError> {
    if is_valid(kind, s) {
        Ok(())
    } else {
        Err(NameError {
            kind,
            shown: shown(s),
            max: kind.max_len(),
        })
    }
}

pub use flotilla_provider_core::argv::shown;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused_for_every_kind() {
        let hostile = [
            "",
            "..",
            "../etc",
            "a/b",
            "/abs",
            "-rf",
            "a b",
            "a\nb",
            "A",
            "a_b",
            "a.b",
            "a-",
            "1a",
            "é",
            "a\u{0}",
            "ab\u{202e}",
        ];
        for kind in [
            NameKind::Deployment,
            NameKind::Group,
            NameKind::Node,
            NameKind::Service,
        ] {
            for h in hostile {
                let e = check(kind, h).expect_err(h);
                assert!(!e.to_string().contains('\n'), "{e}");
            }
            assert!(check(kind, "web-1").is_ok());
            assert!(check(kind, &"a".repeat(kind.max_len())).is_ok());
            assert!(check(kind, &"a".repeat(kind.max_len() + 1)).is_err());
        }
    }

    #[test]
    fn shown_escapes_control_characters() {
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        assert!(shown(&"x".repeat(200)).ends_with('…'));
    }
}
