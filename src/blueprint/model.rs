//! The blueprint as written (serde shapes, strict about unknown fields) and the checked form the
//! engine uses.

use flotilla_provider_core::Role;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Top-level fields, in the order the reference documents them.
pub const TOP_LEVEL_FIELDS: &[&str] = &[
    "name",
    "expires_after",
    "description",
    "inputs",
    "provider",
    "ssh",
    "docker",
    "cluster",
    "groups",
    "health",
    "containers",
    "services",
    "manager",
    "state",
    "outputs",
];

/// A count written as a number, or as a string a template rendered (`"{{ inputs.workers }}"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CountValue {
    Int(i64),
    Text(String),
}

pub fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| {
        humantime::parse_duration(s.trim()).map_err(|e| {
            serde::de::Error::custom(format!("`{s}` is not a duration like 30s, 5m or 1h ({e})"))
        })
    })
    .transpose()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub role: Option<Role>,
    pub count: Option<CountValue>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Static provider: the group's hosts (`[user@]host[:port]`).
    #[serde(default)]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Trust a host key the first time, record it, and refuse a different key later.
    #[default]
    Pin,
    /// Require the key to be in `ssh.known_hosts` already.
    Strict,
    /// No host key checks at all (throwaway test nodes only).
    Insecure,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    pub user: Option<String>,
    /// Private key file; default: a per-deployment ed25519 key flotilla generates.
    pub private_key: Option<String>,
    pub port: Option<u16>,
    #[serde(default, deserialize_with = "de_duration")]
    pub connect_timeout: Option<Duration>,
    /// How long to keep retrying while a fresh machine boots and sshd is not up yet.
    #[serde(default, deserialize_with = "de_duration")]
    pub boot_timeout: Option<Duration>,
    /// Upper bound for one remote command (a Docker install, a swarm join).
    #[serde(default, deserialize_with = "de_duration")]
    pub command_timeout: Option<Duration>,
    /// Nodes worked on at once.
    pub parallelism: Option<usize>,
    #[serde(default)]
    pub host_key_policy: HostKeyPolicy,
    /// known_hosts file for `host_key_policy: strict`.
    pub known_hosts: Option<String>,
    /// Bastion / jump host (`[user@]host[:port]`).
    pub jump: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum InstallMethod {
    /// The distribution's own packages (docker.io on Debian/Ubuntu, moby-engine/docker on RHEL-family,
    /// docker on Alpine).
    #[default]
    Distro,
    /// Docker's own package repository (docker-ce).
    DockerCe,
    /// Packages the operator supplies (`docker.packages`), uploaded and installed without network.
    Offline,
    /// Docker must already be there; flotilla only checks and starts it.
    Preinstalled,
}

#[derive(Debug, Clone, Deserialize, Default, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub http: Option<String>,
    pub https: Option<String>,
    pub no_proxy: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DockerInstallConfig {
    #[serde(default)]
    pub method: InstallMethod,
    /// docker-ce version pin (e.g. `5:27.3.1-1~debian.12~bookworm`); distro method ignores it.
    pub version: Option<String>,
    /// Offline method: a folder or .tar/.tar.gz of packages (.deb, .rpm or .apk).
    pub packages: Option<String>,
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// apt-only proxy (e.g. an apt-cacher-ng at http://10.0.0.1:3142).
    pub apt_proxy: Option<String>,
    /// Extra keys for /etc/docker/daemon.json.
    pub daemon: Option<serde_json::Map<String, serde_json::Value>>,
    /// `docker save` archives loaded on every node before it joins (relative to the blueprint).
    #[serde(default)]
    pub preload_images: Vec<String>,
}

/// Where a container's image comes from: a repository (pulled unless present) or an image
/// tarball (`docker save` output) loaded on each node.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged, deny_unknown_fields)]
pub enum ImageSource {
    Repository {
        repository: String,
        #[serde(default = "latest")]
        tag: String,
    },
    Tarball {
        /// A path (relative to the blueprint) or an http(s) URL.
        src: String,
        /// Optional `sha256:<hex>` (or bare hex) of the tarball.
        sha256: Option<String>,
    },
}

fn latest() -> String {
    "latest".into()
}

/// One entry of `containers:`: a long-running container on every node of some groups.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// Groups whose nodes run it.
    pub groups: Vec<String>,
    pub image: ImageSource,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `host:container[/proto]` port mappings.
    #[serde(default)]
    pub ports: Vec<String>,
    /// `name:/path`, `/host/path:/path[:ro]`.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// `no`, `always`, `unless-stopped` (default), `on-failure[:N]`.
    pub restart: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One entry of `services:`: what the cluster's own scheduler runs. A Swarm stack (a compose
/// file, `docker stack deploy`) or Kubernetes manifests (`kubectl apply`), by cluster kind.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// A compose file (Swarm) or manifest file (Kubernetes), relative to the blueprint, rendered
    /// with tera (`inputs.*`, `deployment`) when `up` deploys it.
    pub file: Option<String>,
    /// The same, inline (already rendered with the blueprint).
    pub definition: Option<serde_json::Value>,
    /// Swarm only: `docker stack deploy --resolve-image` (`always`, `changed`, `never`);
    /// `never` for images that exist only on the nodes (preloaded, no registry).
    pub resolve_image: Option<String>,
}

/// `state:`: where `up` and `plan` keep this deployment's state (other commands take
/// `--backend` / `FLOTILLA_BACKEND`, having no blueprint).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// `file`, `postgres://user@host/db`, `etcd://host:2379/prefix` (passwords from PGPASSWORD /
    /// ETCDCTL_PASSWORD rather than the blueprint).
    pub backend: String,
}

/// `manager:`: the containerized flotilla manager (an app container and a data-only container
/// holding its volumes) on one node of the deployment.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManagerSpec {
    /// Group whose first node hosts it (default: the first group with role manager, else the
    /// first group).
    pub group: Option<String>,
    /// Port published on that node for the API.
    #[serde(default = "default_manager_port")]
    pub port: u16,
    /// Address on that node the API is published on (default: the node's private address,
    /// never every interface).
    pub listen: Option<std::net::IpAddr>,
    /// Image (default `flotilla/manager:<flotilla version>`, built on the operator's Docker
    /// from the running binary when missing).
    pub image: Option<String>,
}

pub const MANAGER_PORT: u16 = 8700;

fn default_manager_port() -> u16 {
    MANAGER_PORT
}

/// The checked `cluster:` section.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub kind: ClusterKind,
    /// Always set for kubernetes and mesos (defaults applied).
    pub version: Option<String>,
    /// The kind's own options (`cluster.<kind>`), read by the kind.
    pub settings: Arc<dyn ClusterSettings>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// A count (`2`) or a percentage (`40%`).
    pub max_unhealthy: Option<CountValue>,
    #[serde(default, deserialize_with = "de_duration")]
    pub node_startup_timeout: Option<Duration>,
    /// How long a node must stay unhealthy before `heal` replaces it.
    #[serde(default, deserialize_with = "de_duration")]
    pub unhealthy_grace: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub check_interval: Option<Duration>,
    /// After an alert started a heal, further alerts for the deployment within this time are
    /// acknowledged and counted, not acted on.
    #[serde(default, deserialize_with = "de_duration")]
    pub alert_cooldown: Option<Duration>,
}

/// One declared input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(rename = "type")]
    pub ty: Option<String>,
    pub default: Option<serde_json::Value>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    #[serde(rename = "enum")]
    pub allowed: Option<Vec<serde_json::Value>>,
    pub description: Option<String>,
}

pub const INPUT_TYPES: &[&str] = &["string", "integer", "number", "boolean"];

// ---- checked form -------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub name: String,
    pub role: Role,
    pub count: u32,
    pub labels: BTreeMap<String, String>,
    pub hosts: Vec<String>,
}

pub use crate::cluster::kind::ClusterSettings;
pub use crate::cluster::ClusterKind;
use std::sync::Arc;

impl Blueprint {
    /// Whether the nodes form a cluster (any kind but `none`).
    pub fn has_cluster(&self) -> bool {
        self.cluster.spec().managers().is_some()
    }
}

/// The `provider:` section, read by its kind's factory (`crate::kinds`).
pub type ProviderConfig = std::sync::Arc<dyn flotilla_provider_core::ProviderSettings>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MaxUnhealthy {
    Count(u32),
    Percent(u32),
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub max_unhealthy: MaxUnhealthy,
    pub node_startup_timeout: Duration,
    pub check_interval: Duration,
    pub unhealthy_grace: Duration,
    pub alert_cooldown: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            max_unhealthy: MaxUnhealthy::Percent(40),
            node_startup_timeout: Duration::from_secs(600),
            unhealthy_grace: Duration::from_secs(30),
            check_interval: Duration::from_secs(30),
            alert_cooldown: Duration::from_secs(300),
        }
    }
}

/// A rendered, validated blueprint.
#[derive(Debug, Clone)]
pub struct Blueprint {
    pub source: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub inputs: serde_json::Map<String, serde_json::Value>,
    pub provider: ProviderConfig,
    pub ssh: SshConfig,
    pub docker: DockerInstallConfig,
    pub cluster: ClusterKind,
    /// Kubernetes or Mesos version (defaults applied); None for swarm/none.
    pub cluster_version: Option<String>,
    /// The kind's own options (`cluster.<kind>`); they build its orchestrator.
    pub cluster_settings: Arc<dyn ClusterSettings>,
    pub groups: Vec<Group>,
    pub health: HealthConfig,
    /// Container workloads by name.
    pub containers: BTreeMap<String, ContainerSpec>,
    /// Swarm stacks / Kubernetes manifests by name.
    pub services: BTreeMap<String, ServiceSpec>,
    pub manager: Option<ManagerSpec>,
    /// `state.backend`, when the blueprint names one.
    pub state_backend: Option<String>,
    /// `expires_after`: a new deployment expires this long after its first `up` (`gc` deletes
    /// it then); `up --ttl` overrides it.
    pub expires_after: Option<std::time::Duration>,
    /// Output name -> tera template, rendered after bring-up.
    pub outputs: Vec<(String, String)>,
    /// The rendered YAML (kept in state for `plan` diffs and audits).
    pub rendered: String,
    /// Read back from a deployment's state (`load_recorded`), not from a blueprint file.
    pub recorded: bool,
    /// Set for the recorded blueprint of an imported deployment: the files it names are read
    /// from this folder (the deployment's own) only, never from a path the archive chose.
    pub confine: Option<PathBuf>,
}

/// `p` with `~` expanded and, when relative, taken from the folder of the blueprint file `source`.
pub fn resolve_from(source: &std::path::Path, p: &str) -> std::path::PathBuf {
    let path = crate::util::expand_tilde(p);
    if path.is_relative() {
        source
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(path)
    } else {
        path
    }
}

impl Blueprint {
    /// A path from the blueprint: `~` expanded, relative ones taken from the blueprint's folder.
    /// For an imported deployment (`confine`), only a relative path without `..`, inside the
    /// deployment's folder.
    pub fn resolve_path(&self, p: &str) -> Result<std::path::PathBuf, String> {
        use std::path::Component;
        let Some(dir) = &self.confine else {
            return Ok(resolve_from(&self.source, p));
        };
        let rel = std::path::Path::new(p);
        let inside = !p.is_empty()
            && !p.starts_with('~')
            && rel
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if inside {
            Ok(dir.join(rel))
        } else {
            Err(format!(
                "{}: this deployment was imported, so the files its blueprint names are read from {} only (relative paths without `..`); `flotilla up` with a blueprint file of this machine uses that file's paths",
                crate::names::shown(p),
                dir.display()
            ))
        }
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }
}
