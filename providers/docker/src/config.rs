use ipnet::Ipv4Net;
use serde::Deserialize;

/// How node containers get the privileges a nested dockerd needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PrivilegeMode {
    /// Try `--privileged`; where the engine refuses it (a host whose capability bounding set lacks a
    /// capability), fall back to the explicit capability set.
    #[default]
    Auto,
    /// Always `--privileged`.
    Privileged,
    /// Always the explicit set: every capability but SYS_RESOURCE, no seccomp/apparmor, no masked
    /// paths, all devices.
    Capabilities,
}

/// Where each node's `/var/lib/docker` lives. On the container's own overlay root a nested dockerd
/// falls back to the slow vfs driver, so it is always a volume or a tmpfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DockerStorage {
    #[default]
    Volume,
    Tmpfs,
}

fn default_subnet() -> Ipv4Net {
    // Parsing a literal cannot fail.
    "10.198.0.0/24".parse().unwrap_or_default()
}

fn default_suite() -> String {
    "bookworm".to_string()
}

fn default_mirror() -> String {
    "http://deb.debian.org/debian".to_string()
}

/// The `provider:` section of a blueprint whose `kind` is `docker`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// Engine address (`unix:///path`, `tcp://host:port`); default `DOCKER_HOST`, then the local socket.
    #[serde(default)]
    pub host: Option<String>,
    /// Node image. Default: flotilla's own Debian image, built locally with debootstrap (no registry).
    #[serde(default)]
    pub image: Option<String>,
    /// Debian suite for the locally built image.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// Debian mirror used by debootstrap for the locally built image.
    #[serde(default = "default_mirror")]
    pub mirror: String,
    /// Docker network for the nodes; default `flotilla-<deployment>`.
    #[serde(default)]
    pub network: Option<String>,
    /// Subnet of that network; nodes get fixed addresses from `.10` upwards.
    #[serde(default = "default_subnet")]
    pub subnet: Ipv4Net,
    #[serde(default)]
    pub privileged: PrivilegeMode,
    #[serde(default)]
    pub docker_storage: DockerStorage,
    /// Host folders bind-mounted into every node, `host_path:node_path[:ro]` (kind's
    /// `extraMounts`): shared fixtures, caches, or a local package mirror.
    #[serde(default)]
    pub mounts: Vec<String>,
}

/// One `mounts` entry taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub host: String,
    pub node: String,
    pub read_only: bool,
}

/// `host_path:node_path[:ro|:rw]`, both absolute.
pub fn parse_mount(s: &str) -> Result<BindMount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, node, read_only) = match parts.as_slice() {
        [h, n] => (*h, *n, false),
        [h, n, "ro"] => (*h, *n, true),
        [h, n, "rw"] => (*h, *n, false),
        _ => {
            return Err(format!(
                "`{s}`: write `host_path:node_path` or `host_path:node_path:ro`"
            ))
        }
    };
    if !host.starts_with('/') || !node.starts_with('/') {
        return Err(format!("`{s}`: both paths must be absolute"));
    }
    Ok(BindMount {
        host: host.into(),
        node: node.into(),
        read_only,
    })
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            host: None,
            image: None,
            suite: default_suite(),
            mirror: default_mirror(),
            network: None,
            subnet: default_subnet(),
            privileged: PrivilegeMode::Auto,
            docker_storage: DockerStorage::Volume,
            mounts: Vec::new(),
        }
    }
}

impl DockerConfig {
    /// Checks that do not need the engine: the subnet must leave room for a gateway and nodes.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.subnet.prefix_len() > 28 {
            problems.push((
                "provider.subnet".to_string(),
                format!(
                    "subnet {} is too small; use a /28 or larger (e.g. 10.198.0.0/24)",
                    self.subnet
                ),
            ));
        }
        if self.suite.is_empty()
            || !self
                .suite
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            problems.push((
                "provider.suite".to_string(),
                format!(
                    "`{}` is not a Debian suite name (e.g. bookworm)",
                    self.suite
                ),
            ));
        }
        for (i, m) in self.mounts.iter().enumerate() {
            match parse_mount(m) {
                Err(e) => problems.push((format!("provider.mounts[{i}]"), e)),
                Ok(b) if !std::path::Path::new(&b.host).exists() => problems.push((
                    format!("provider.mounts[{i}]"),
                    format!("host path {} does not exist", b.host),
                )),
                Ok(_) => {}
            }
        }
        problems
    }
}

#[cfg(test)]
mod mount_tests {
    use super::*;

    #[test]
    fn mounts_parse() {
        assert_eq!(
            parse_mount("/srv/a:/opt/a:ro"),
            Ok(BindMount {
                host: "/srv/a".into(),
                node: "/opt/a".into(),
                read_only: true
            })
        );
        assert!(parse_mount("/srv/a:/opt/a").is_ok_and(|b| !b.read_only));
        assert!(parse_mount("srv:/opt").is_err());
        assert!(parse_mount("/srv:/opt:bad").is_err());
    }
}
