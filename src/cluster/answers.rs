//! Values that come back from nodes (member IDs, join tokens) are parsed strictly before they
//! are reused: a node's answer ends up in a script that runs on *another* node (a member ID in
//! `docker node update` on the leader), so a node that answers `x; rm -rf /` must not get to
//! run that there. The scripts also quote them; this is the first of the two fences.

/// A cluster member's ID: a Swarm node ID (25 lowercase letters and digits), a Mesos agent ID
/// (`<uuid>-S0`) or a Kubernetes node name.
pub fn member_id(s: &str) -> Option<String> {
    let s = s.trim();
    let ok = (1..=128).contains(&s.len())
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    ok.then(|| s.to_string())
}

/// A Swarm join token: `SWMTKN-1-<cluster digest>-<secret>`.
pub fn swarm_join_token(s: &str) -> Option<String> {
    let s = s.trim();
    let rest = s.strip_prefix("SWMTKN-1-")?;
    let (digest, secret) = rest.split_once('-')?;
    let part = |p: &str| {
        p.len() >= 16
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    (part(digest) && part(secret)).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_answers_are_parsed_strictly() {
        assert_eq!(
            member_id(" x1qsq2cnu4z3v6b1aj9a8zc3j\n").as_deref(),
            Some("x1qsq2cnu4z3v6b1aj9a8zc3j")
        );
        assert!(member_id("0f4b1a52-7b5e-4c1e-9d6a-2e8f1c3b4a5d-S0").is_some());
        for bad in [
            "",
            "x; rm -rf /",
            "$(id)",
            "-x",
            "a b",
            "a\nb",
            "`id`",
            "a'b",
        ] {
            assert!(member_id(bad).is_none(), "{bad:?}");
        }
        let t =
            "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx";
        assert_eq!(swarm_join_token(t).as_deref(), Some(t));
        for bad in [
            "",
            "SWMTKN-1-abc",
            "SWMTKN-1-aaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbbbbbb; id",
            "x",
        ] {
            assert!(swarm_join_token(bad).is_none(), "{bad:?}");
        }
    }
}
