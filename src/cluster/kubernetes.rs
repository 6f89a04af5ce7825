//! Kubernetes with kubeadm: nodes prepared (containerd's CRI, kernel settings, swap off, pinned
//! kubeadm/kubelet/kubectl from pkgs.k8s.io), `kubeadm init` from a rendered config on the first
//! control-plane node, a fresh bootstrap token and certificate key every run (tokens expire after
//! 24 h; a scale-out a week later must still work), extra control-plane nodes joined one at a time
//! (each adds an etcd member; one at a time keeps the etcd quorum safe), workers in parallel, the
//! CNI applied once, labels, a bounded wait for Ready, and the admin kubeconfig fetched.
//!
//! Join secrets travel inside scripts on SSH stdin and land in 0600 files on the node, never on a
//! command line.

use super::{ClusterError, ClusterNode, ConvergeReport, Member, Orchestrator};
use crate::ssh::{shell_quote, SshPool};
use async_trait::async_trait;
use flotilla_provider_core::backoff::Backoff;
use flotilla_provider_core::Role;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const PREPARE: &str = include_str!("../../templates/kubernetes/prepare.sh");
const STATE: &str = include_str!("../../templates/kubernetes/state.sh");
const INIT_CONFIG: &str = include_str!("../../templates/kubernetes/init-config.yaml");
const JOIN_CONFIG: &str = include_str!("../../templates/kubernetes/join-config.yaml");

pub const CNI_CHOICES: &[&str] = &["flannel", "calico", "none"];
const FLANNEL: &str =
    "https://github.com/flannel-io/flannel/releases/download/v0.26.1/kube-flannel.yml";
const CALICO: &str =
    "https://raw.githubusercontent.com/projectcalico/calico/v3.28.2/manifests/calico.yaml";
pub const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf";

/// `1.31`, `v1.31` or `1.31.2` → (minor, patch).
pub fn parse_version(v: &str) -> Option<(u32, Option<u32>)> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let mut parts = v.split('.');
    if parts.next()? != "1" {
        return None;
    }
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((minor, patch))
}

/// A `kubeadm token create --print-join-command` line, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinCommand {
    pub api_server: String,
    pub token: String,
    pub ca_hash: String,
}

/// Parsed strictly (a node's answer goes into another node's configuration): the endpoint is
/// `host:port`, the token `[a-z0-9]{6}.[a-z0-9]{16}`, the hash `sha256:` and 64 hex digits.
pub fn parse_join_command(out: &str) -> Option<JoinCommand> {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("kubeadm join"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string())
    };
    let api_server = words.get(2)?.to_string();
    let (host, port) = api_server.rsplit_once(':')?;
    crate::ssh::argv::check_host("", host).ok()?;
    port.parse::<u16>().ok().filter(|p| *p > 0)?;
    let token = after("--token")?;
    let (id, secret) = token.split_once('.')?;
    let lower_alnum = |s: &str, n: usize| {
        s.len() == n
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    if !(lower_alnum(id, 6) && lower_alnum(secret, 16)) {
        return None;
    }
    let ca_hash = after("--discovery-token-ca-cert-hash")?;
    let hex = ca_hash.strip_prefix("sha256:")?;
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(JoinCommand {
        api_server,
        token,
        ca_hash,
    })
}

/// Members from `kubectl get nodes -o json`.
pub fn parse_nodes(json: &str) -> Result<Vec<Member>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = v["items"].as_array().ok_or("no `items` in the node list")?;
    Ok(items
        .iter()
        .map(|n| {
            let name = n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let labels: BTreeMap<String, String> = n["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let control_plane = labels.contains_key("node-role.kubernetes.io/control-plane");
            let ready = n["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"].as_str().unwrap_or("Unknown").to_string());
            let status = match ready.as_deref() {
                Some("True") => "ready",
                Some("False") => "down",
                _ => "unknown",
            };
            let addr = n["status"]["addresses"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                .and_then(|x| x["address"].as_str())
                .unwrap_or_default()
                .to_string();
            Member {
                id: name.clone(),
                hostname: name,
                role: if control_plane { "manager" } else { "worker" }.into(),
                status: status.into(),
                availability: if n["spec"]["unschedulable"] == true {
                    "drain"
                } else {
                    "active"
                }
                .into(),
                reachability: String::new(),
                leader: false,
                addr,
                labels,
            }
        })
        .collect())
}

/// The labels flotilla must (re)apply: blueprint labels the member lacks or has with another value.
fn missing_labels(want: &BTreeMap<String, String>, member: Option<&Member>) -> Vec<String> {
    want.iter()
        .filter(|(k, v)| member.and_then(|m| m.labels.get(*k)) != Some(*v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// `cluster.kubernetes`: kubeadm settings.
#[derive(Debug, Clone, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KubernetesOptions {
    /// `podSubnet` (default 10.244.0.0/16, flannel's).
    pub pod_cidr: Option<ipnet::Ipv4Net>,
    /// `serviceSubnet` (default 10.96.0.0/12, kubeadm's).
    pub service_cidr: Option<ipnet::Ipv4Net>,
    /// `controlPlaneEndpoint` (`host[:port]`, a load balancer or DNS name in front of the
    /// control-plane nodes); required with more than one control-plane node.
    pub control_plane_endpoint: Option<String>,
    /// `flannel` (default), `calico`, `none`, or the https:// URL of a manifest.
    pub cni: Option<String>,
}

impl KubernetesOptions {
    /// The values that reach scripts on the nodes, against their patterns.
    fn problems(&self) -> Vec<(String, String)> {
        use crate::blueprint::values::{is_endpoint, is_url, mismatch};
        let mut problems = Vec::new();
        if let Some(e) = &self.control_plane_endpoint {
            if !is_endpoint(e) {
                let what = "host[:port] (an IP address or a DNS name, then a port)";
                problems.push(mismatch(
                    "cluster.kubernetes.control_plane_endpoint",
                    e,
                    what,
                ));
            }
        }
        if let Some(cni) = self.cni.as_deref() {
            let url = cni.starts_with("https://") && is_url(cni);
            if !CNI_CHOICES.contains(&cni) && !url {
                problems.push((
                    "cluster.kubernetes.cni".to_string(),
                    format!(
                        "{}: {} or the https:// URL of a manifest",
                        crate::names::shown(cni),
                        crate::blueprint::problem::expected_one_of(cni, CNI_CHOICES)
                    ),
                ));
            }
        }
        problems
    }
}

/// The kind's checked settings: the release and `cluster.kubernetes`.
#[derive(Debug)]
struct Settings {
    version: String,
    options: KubernetesOptions,
}

impl super::kind::ClusterSettings for Settings {
    fn check_managers(&self, managers: u32) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if managers > 1 && self.options.control_plane_endpoint.is_none() {
            problems.push((
                "cluster.kubernetes.control_plane_endpoint".to_string(),
                format!("{managers} control-plane nodes need `control_plane_endpoint` (a load balancer or DNS name in front of them, `host[:port]`): kubeadm cannot add control-plane nodes without it"),
            ));
        }
        problems
    }

    fn build(
        &self,
        _bp: &crate::blueprint::Blueprint,
        pool: Arc<SshPool>,
    ) -> Option<Box<dyn Orchestrator>> {
        let k = Kubernetes::new(pool, &self.version, self.options.clone());
        Some(Box::new(k))
    }
}

pub struct Kubernetes {
    pool: Arc<SshPool>,
    version: String,
    options: KubernetesOptions,
    settle_timeout: Duration,
}

#[derive(Debug, Default, Clone)]
struct NodeState {
    admin_conf: bool,
    kubelet_conf: bool,
}

/// A file written on the node from a heredoc, mode 0600 (it may hold a join token). The
/// delimiter has a random part, so no line of the content can end the heredoc early.
fn write_private(path: &str, content: &str) -> String {
    let end = format!("FLOTILLA_EOF_{:016x}", rand::random::<u64>());
    format!("umask 077; mkdir -p \"$(dirname {path})\"; cat > {path} <<'{end}'\n{content}\n{end}\n")
}

impl Kubernetes {
    pub fn new(pool: Arc<SshPool>, version: &str, options: KubernetesOptions) -> Self {
        Self {
            pool,
            version: version.to_string(),
            options,
            settle_timeout: Duration::from_secs(300),
        }
    }

    fn kubeadm_api(&self) -> &'static str {
        // v1beta4 exists from 1.31; v1beta3 is read by 1.22–1.33.
        match parse_version(&self.version) {
            Some((m, _)) if m >= 31 => "v1beta4",
            _ => "v1beta3",
        }
    }

    fn endpoint(&self) -> Option<String> {
        self.options.control_plane_endpoint.as_ref().map(|e| {
            if e.contains(':') {
                e.clone()
            } else {
                format!("{e}:6443")
            }
        })
    }

    fn cni_manifest(&self) -> Option<String> {
        match self.options.cni.as_deref().unwrap_or("flannel") {
            "none" => None,
            "flannel" => Some(FLANNEL.into()),
            "calico" => Some(CALICO.into()),
            url => Some(url.into()),
        }
    }

    async fn prepare(&self, node: &ClusterNode) -> Result<(), ClusterError> {
        let (minor, patch) = parse_version(&self.version).ok_or_else(|| {
            ClusterError::Cluster(format!("`{}` is not a Kubernetes version", self.version))
        })?;
        let mut ctx = tera::Context::new();
        ctx.insert("minor", &format!("1.{minor}"));
        ctx.insert(
            "patch",
            &patch.map(|p| format!("1.{minor}.{p}")).unwrap_or_default(),
        );
        let script = super::render_script("prepare.sh", PREPARE, &ctx)?;
        self.pool
            .run_ok(
                &node.target,
                "kubernetes prepare",
                &script,
                Some(Duration::from_secs(900)),
            )
            .await?;
        Ok(())
    }

    async fn state(&self, node: &ClusterNode) -> Result<NodeState, ClusterError> {
        let out = self
            .pool
            .run_ok(
                &node.target,
                "kubeadm state",
                STATE,
                Some(Duration::from_secs(60)),
            )
            .await?;
        Ok(NodeState {
            admin_conf: out.contains("admin_conf=yes"),
            kubelet_conf: out.contains("kubelet_conf=yes"),
        })
    }

    async fn init(
        &self,
        node: &ClusterNode,
        managers: &[&ClusterNode],
    ) -> Result<(), ClusterError> {
        let version = self
            .pool
            .run_ok(
                &node.target,
                "kubeadm version",
                "kubeadm version -o short",
                Some(Duration::from_secs(60)),
            )
            .await?;
        let mut sans: Vec<String> = managers
            .iter()
            .flat_map(|m| [m.target.address.clone(), m.ip.clone()])
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(e) = &self.options.control_plane_endpoint {
            sans.push(e.rsplit_once(':').map(|(h, _)| h).unwrap_or(e).to_string());
        }
        sans.sort();
        sans.dedup();
        let mut ctx = tera::Context::new();
        ctx.insert(
            "api_version",
            &format!("kubeadm.k8s.io/{}", self.kubeadm_api()),
        );
        ctx.insert("advertise", &node.ip);
        ctx.insert("node", &node.name);
        ctx.insert("k8s_version", version.trim());
        ctx.insert("endpoint", &self.endpoint());
        ctx.insert(
            "pod_cidr",
            &self
                .options
                .pod_cidr
                .map(|c| c.to_string())
                .unwrap_or_else(|| DEFAULT_POD_CIDR.into()),
        );
        ctx.insert(
            "service_cidr",
            &self
                .options
                .service_cidr
                .map(|c| c.to_string())
                .unwrap_or_else(|| DEFAULT_SERVICE_CIDR.into()),
        );
        ctx.insert("sans", &sans);
        let config = super::render_config("init-config.yaml", INIT_CONFIG, &ctx)?;
        let mut script = write_private("/etc/flotilla/kubeadm-init.yaml", &config);
        script.push_str(
            "kubeadm init --config /etc/flotilla/kubeadm-init.yaml --upload-certs >/var/log/flotilla-kubeadm-init.log 2>&1 \
             || { tail -n 20 /var/log/flotilla-kubeadm-init.log >&2; exit 1; }\n",
        );
        if let Some(url) = self.cni_manifest() {
            script.push_str(&format!(
                "{KUBECTL} apply -f {} >/dev/null\n",
                shell_quote(&url)
            ));
        }
        self.pool
            .run_ok(
                &node.target,
                "kubeadm init",
                &script,
                Some(Duration::from_secs(900)),
            )
            .await?;
        tracing::info!(node = %node.name, "kubeadm init done");
        Ok(())
    }

    /// A fresh bootstrap token (1 h) and, when control-plane nodes join, a fresh certificate key.
    async fn join_material(
        &self,
        via: &ClusterNode,
        control_plane: bool,
    ) -> Result<(JoinCommand, Option<String>), ClusterError> {
        let out = self
            .pool
            .run_ok(
                &via.target,
                "kubeadm token create",
                "kubeadm token create --print-join-command --ttl 1h",
                Some(Duration::from_secs(120)),
            )
            .await?;
        let join = parse_join_command(&out).ok_or_else(|| ClusterError::Node {
            node: via.name.clone(),
            message: "kubeadm token create printed no join command".into(),
        })?;
        let key = if control_plane {
            let out = self
                .pool
                .run_ok(
                    &via.target,
                    "kubeadm upload-certs",
                    "kubeadm init phase upload-certs --upload-certs",
                    Some(Duration::from_secs(120)),
                )
                .await?;
            let key = out
                .lines()
                .map(str::trim)
                .rfind(|l| l.len() == 64 && l.chars().all(|c| c.is_ascii_hexdigit()))
                .ok_or_else(|| ClusterError::Node {
                    node: via.name.clone(),
                    message: "kubeadm upload-certs printed no certificate key".into(),
                })?;
            Some(key.to_string())
        } else {
            None
        };
        Ok((join, key))
    }

    async fn join(
        &self,
        node: &ClusterNode,
        join: &JoinCommand,
        certificate_key: Option<&str>,
    ) -> Result<(), ClusterError> {
        let mut ctx = tera::Context::new();
        ctx.insert(
            "api_version",
            &format!("kubeadm.k8s.io/{}", self.kubeadm_api()),
        );
        ctx.insert("api_server", &join.api_server);
        ctx.insert("token", &join.token);
        ctx.insert("ca_hash", &join.ca_hash);
        ctx.insert("node", &node.name);
        ctx.insert("advertise", &node.ip);
        ctx.insert("certificate_key", &certificate_key);
        let config = super::render_config("join-config.yaml", JOIN_CONFIG, &ctx)?;
        let mut script = write_private("/etc/flotilla/kubeadm-join.yaml", &config);
        script.push_str(
            "kubeadm join --config /etc/flotilla/kubeadm-join.yaml >/var/log/flotilla-kubeadm-join.log 2>&1 \
             || { rc=$?; tail -n 20 /var/log/flotilla-kubeadm-join.log >&2; rm -f /etc/flotilla/kubeadm-join.yaml; exit $rc; }\n\
             rm -f /etc/flotilla/kubeadm-join.yaml\n",
        );
        self.pool
            .run_ok(
                &node.target,
                "kubeadm join",
                &script,
                Some(Duration::from_secs(600)),
            )
            .await?;
        tracing::info!(node = %node.name, role = %node.role, "joined the cluster");
        Ok(())
    }

    async fn members_via(&self, via: &ClusterNode) -> Result<Vec<Member>, ClusterError> {
        let out = self
            .pool
            .run_ok(
                &via.target,
                "kubectl get nodes",
                &format!("{KUBECTL} get nodes -o json"),
                Some(Duration::from_secs(60)),
            )
            .await?;
        parse_nodes(&out).map_err(|e| ClusterError::Node {
            node: via.name.clone(),
            message: format!("kubectl get nodes: {e}"),
        })
    }

    async fn wait_ready(
        &self,
        via: &ClusterNode,
        names: &[String],
    ) -> Result<Vec<Member>, ClusterError> {
        let mut backoff = Backoff::new(self.settle_timeout);
        loop {
            let members = self.members_via(via).await?;
            let waiting: Vec<&String> = names
                .iter()
                .filter(|n| !members.iter().any(|m| &&m.id == n && m.status == "ready"))
                .collect();
            if waiting.is_empty() {
                return Ok(members);
            }
            if !backoff.wait().await {
                return Err(ClusterError::Cluster(format!(
                    "nodes not Ready after {}s: {} (a CNI that does not come up is the usual cause: `kubectl get pods -A` on a control-plane node)",
                    self.settle_timeout.as_secs(),
                    waiting.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }

    /// The admin kubeconfig with its server pointed at an address reachable from here.
    async fn kubeconfig(&self, via: &ClusterNode) -> Result<String, ClusterError> {
        let text = self
            .pool
            .run_ok(
                &via.target,
                "fetch admin.conf",
                "cat /etc/kubernetes/admin.conf",
                Some(Duration::from_secs(60)),
            )
            .await?;
        let server = match self.endpoint() {
            Some(e) => format!("https://{e}"),
            None => format!("https://{}:6443", via.target.address),
        };
        Ok(rewrite_server(&text, &server))
    }
}

/// Replaces every `server:` line of a kubeconfig.
pub fn rewrite_server(kubeconfig: &str, server: &str) -> String {
    let mut out: String = kubeconfig
        .lines()
        .map(|l| {
            let trimmed = l.trim_start();
            if trimmed.starts_with("server:") {
                let indent = &l[..l.len() - trimmed.len()];
                format!("{indent}server: {server}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

/// The `kubernetes` kind (registered in `crate::kinds`).
pub struct Kind;

/// The release a blueprint gets without `cluster.version`.
pub const DEFAULT_VERSION: &str = "1.31";
/// The oldest minor release flotilla installs (older ones need dockershim, which is gone).
pub const MIN_MINOR: u32 = 24;

impl super::kind::OrchestratorKind for Kind {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn version(&self, written: Option<&str>) -> Result<Option<String>, String> {
        let v = written.unwrap_or(DEFAULT_VERSION);
        match parse_version(v) {
            Some((minor, _)) if minor >= MIN_MINOR => Ok(Some(v.to_string())),
            Some(_) => Err(format!(
                "Kubernetes {v} is too old: 1.{MIN_MINOR} or newer (older releases need dockershim, which is gone, and their package repositories are frozen)"
            )),
            None => Err(format!("`{v}` is not a Kubernetes version; write `1.31` or `1.31.2`")),
        }
    }

    fn settings(
        &self,
        version: Option<&str>,
        section: Option<serde_json::Value>,
    ) -> Result<Arc<dyn super::kind::ClusterSettings>, flotilla_provider_core::SettingsError> {
        let options: KubernetesOptions = match section {
            Some(v) => flotilla_provider_core::parse_section(v)?,
            None => KubernetesOptions::default(),
        };
        let problems = options.problems();
        if !problems.is_empty() {
            return Err(flotilla_provider_core::SettingsError::Invalid(problems));
        }
        let version = version.unwrap_or(DEFAULT_VERSION).to_string();
        Ok(Arc::new(Settings { version, options }))
    }

    fn managers(&self) -> Option<super::kind::Quorum> {
        Some(super::kind::Quorum {
            managers_are: "control-plane nodes",
            quorum: "the etcd quorum",
            advice: "recover by hand (restore etcd from a snapshot on a surviving control-plane node with `etcdutl snapshot restore`, then rejoin the others)",
        })
    }

    /// The API server, etcd, the kubelet and control-plane components, NodePorts, and
    /// flannel's VXLAN / calico's BGP (the two CNIs flotilla knows by name).
    fn ports(&self) -> Vec<flotilla_provider_core::PortRule> {
        let r = |proto, from, to| flotilla_provider_core::PortRule { proto, from, to };
        vec![
            r("tcp", 6443, 6443),
            r("tcp", 2379, 2380),
            r("tcp", 10250, 10259),
            r("tcp", 30000, 32767),
            r("udp", 8472, 8472),
            r("tcp", 179, 179),
        ]
    }

    fn takes_services(&self) -> bool {
        true
    }

    fn container_detail(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<String> {
        if let Some(pod) = labels.get("io.kubernetes.pod.name") {
            let ns = labels
                .get("io.kubernetes.pod.namespace")
                .map(String::as_str)
                .unwrap_or("default");
            return Some(format!("pod {ns}/{pod}"));
        }
        name.starts_with("k8s_").then(String::new)
    }

    fn after_stop(&self) -> &'static str {
        " (the kubelet will restart it)"
    }
}

#[async_trait]
impl Orchestrator for Kubernetes {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    async fn converge(&self, nodes: &[ClusterNode]) -> Result<ConvergeReport, ClusterError> {
        let mut report = ConvergeReport::default();
        // 1. Every node prepared (a no-op check where it already is), in parallel.
        let prepared: Vec<Result<(), ClusterError>> = self
            .pool
            .fan_out(nodes.to_vec(), |n| async move { self.prepare(&n).await })
            .await;
        for r in prepared {
            r?;
        }
        // 2. What kubeadm already did on each node.
        let mut states = BTreeMap::new();
        for n in nodes {
            states.insert(n.name.clone(), self.state(n).await?);
        }
        let managers: Vec<&ClusterNode> =
            nodes.iter().filter(|n| n.role == Role::Manager).collect();
        let existing = managers
            .iter()
            .find(|m| states.get(&m.name).is_some_and(|s| s.admin_conf))
            .copied();
        let bootstrap: &ClusterNode = match existing {
            Some(m) => m,
            None => {
                if let Some(n) = nodes
                    .iter()
                    .find(|n| states.get(&n.name).is_some_and(|s| s.kubelet_conf))
                {
                    return Err(ClusterError::Node {
                        node: n.name.clone(),
                        message: "has joined a cluster whose control plane is none of the deployment's manager nodes; \
                                  `kubeadm reset -f` it or add its control plane"
                            .into(),
                    });
                }
                let first = managers.first().ok_or_else(|| {
                    ClusterError::Cluster("no control-plane node to run kubeadm init on".into())
                })?;
                self.init(first, &managers).await?;
                report.initialized_on = Some(first.name.clone());
                first
            }
        };
        // 3. Joins with fresh material.
        let joined_already = |n: &&ClusterNode| {
            n.name == bootstrap.name
                || states
                    .get(&n.name)
                    .is_some_and(|s| s.kubelet_conf || s.admin_conf)
        };
        let pending_cp: Vec<&ClusterNode> = managers
            .iter()
            .copied()
            .filter(|n| !joined_already(n))
            .collect();
        let pending_workers: Vec<&ClusterNode> = nodes
            .iter()
            .filter(|n| n.role == Role::Worker)
            .filter(|n| !joined_already(n))
            .collect();
        if !pending_cp.is_empty() || !pending_workers.is_empty() {
            let (join, key) = self
                .join_material(bootstrap, !pending_cp.is_empty())
                .await?;
            report.cluster_id = Some(join.ca_hash.clone());
            for n in &pending_cp {
                self.join(n, &join, key.as_deref()).await?;
                report.joined.push(n.name.clone());
            }
            let owned: Vec<ClusterNode> = pending_workers.into_iter().cloned().collect();
            let results: Vec<(String, Result<(), ClusterError>)> = self
                .pool
                .fan_out(owned, |n| {
                    let join = join.clone();
                    async move {
                        let r = self.join(&n, &join, None).await;
                        (n.name.clone(), r)
                    }
                })
                .await;
            for (name, r) in results {
                r?;
                report.joined.push(name);
            }
        }
        // 4. Labels, then every node Ready.
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let members = self.members_via(bootstrap).await?;
        for n in nodes {
            let missing = missing_labels(&n.labels, members.iter().find(|m| m.id == n.name));
            if missing.is_empty() {
                continue;
            }
            let args: Vec<String> = missing.iter().map(|l| shell_quote(l)).collect();
            self.pool
                .run_ok(
                    &bootstrap.target,
                    "kubectl label",
                    &format!(
                        "{KUBECTL} label node {} {} --overwrite >/dev/null",
                        shell_quote(&n.name),
                        args.join(" ")
                    ),
                    Some(Duration::from_secs(60)),
                )
                .await?;
            report.labelled.push(n.name.clone());
        }
        let members = self.wait_ready(bootstrap, &names).await?;
        for n in nodes {
            if members.iter().any(|m| m.id == n.name) {
                report.member_ids.insert(n.name.clone(), n.name.clone());
            }
        }
        let admin = self.kubeconfig(bootstrap).await?;
        report.secret_files.insert("kubeconfig".into(), admin);
        Ok(report)
    }

    async fn members(&self, managers: &[ClusterNode]) -> Result<Vec<Member>, ClusterError> {
        super::ask_managers(managers, |m| self.members_via(m)).await
    }

    async fn remove(
        &self,
        node: &ClusterNode,
        managers: &[ClusterNode],
        member_id: Option<&str>,
    ) -> Result<(), ClusterError> {
        let via = managers.iter().find(|m| m.name != node.name);
        let name = member_id.unwrap_or(&node.name);
        // The documented order: drain, `kubeadm reset` on the node (which also takes a
        // control-plane node's etcd member out), then delete the Node object.
        if let Some(m) = via {
            let drain = format!(
                "{KUBECTL} drain {} --ignore-daemonsets --delete-emptydir-data --force --timeout=120s >/dev/null 2>&1",
                shell_quote(name)
            );
            if self
                .pool
                .run_ok(
                    &m.target,
                    "kubectl drain",
                    &drain,
                    Some(Duration::from_secs(150)),
                )
                .await
                .is_err()
            {
                tracing::warn!(node = %node.name, "drain did not finish within 120 s; removing the node anyway");
            }
        }
        let reset = self
            .pool
            .run_ok(
                &node.target,
                "kubeadm reset",
                "kubeadm reset -f >/dev/null 2>&1; rm -rf /etc/cni/net.d",
                Some(Duration::from_secs(180)),
            )
            .await;
        if let Some(m) = via {
            if reset.is_err() {
                // The node is gone: its etcd member must be removed by hand.
                self.remove_member(std::slice::from_ref(m), name, node.role == Role::Manager)
                    .await?;
            } else {
                self.pool
                    .run_ok(
                        &m.target,
                        "kubectl delete node",
                        &format!(
                            "{KUBECTL} delete node {} --ignore-not-found >/dev/null",
                            shell_quote(name)
                        ),
                        Some(Duration::from_secs(60)),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn remove_member(
        &self,
        via: &[ClusterNode],
        member_id: &str,
        was_manager: bool,
    ) -> Result<(), ClusterError> {
        let Some(m) = via.first() else {
            return Ok(());
        };
        let name = shell_quote(member_id);
        let mut script = format!("{KUBECTL} delete node {name} --ignore-not-found >/dev/null\n");
        if was_manager {
            // Stacked etcd: the dead control-plane node's member goes through a live etcd pod.
            script.push_str(&format!(
                "ETCD=\"{KUBECTL} -n kube-system exec etcd-{via} -- etcdctl --endpoints=https://127.0.0.1:2379 \
                 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key\"\n\
                 id=$($ETCD member list | awk -F', ' -v n={name} '$3 == n {{ print $1 }}')\n\
                 [ -z \"$id\" ] || $ETCD member remove \"$id\" >/dev/null\n",
                via = m.name
            ));
        }
        self.pool
            .run_ok(
                &m.target,
                "remove stale node",
                &script,
                Some(Duration::from_secs(120)),
            )
            .await?;
        Ok(())
    }

    async fn deploy_services(
        &self,
        managers: &[ClusterNode],
        _name: &str,
        definition: &str,
        _resolve_image: Option<&str>,
    ) -> Result<(), ClusterError> {
        let script = format!("{KUBECTL} apply -f -");
        super::pipe_to_manager(&self.pool, managers, "kubectl apply", &script, definition).await
    }

    async fn remove_services(
        &self,
        managers: &[ClusterNode],
        _name: &str,
        definition: &str,
    ) -> Result<(), ClusterError> {
        let script = format!("{KUBECTL} delete --ignore-not-found -f -");
        super::pipe_to_manager(&self.pool, managers, "kubectl delete", &script, definition).await
    }

    async fn leave(&self, node: &ClusterNode) -> Result<(), ClusterError> {
        self.pool
            .run_ok(
                &node.target,
                "kubeadm reset",
                "if [ -f /etc/kubernetes/kubelet.conf ] || [ -f /etc/kubernetes/admin.conf ]; then kubeadm reset -f >/dev/null 2>&1; rm -rf /etc/cni/net.d; fi",
                Some(Duration::from_secs(180)),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_script_renders_and_parses() {
        let mut ctx = tera::Context::new();
        ctx.insert("minor", "1.31");
        ctx.insert("patch", "1.31.2");
        let s = super::super::render_script("prepare.sh", PREPARE, &ctx).expect("render");
        assert!(s.contains("flotilla_retry()"), "retry helper included");
        assert!(s.contains("pkgs.k8s.io/core:/stable:/v$want/deb/"));
        crate::util::assert_sh_syntax(&s);
        let mut ctx = tera::Context::new();
        ctx.insert("api_version", "kubeadm.k8s.io/v1beta4");
        ctx.insert("api_server", "10.0.0.5:6443");
        ctx.insert("token", "abcdef.0123456789abcdef");
        ctx.insert("ca_hash", "sha256:00");
        ctx.insert("node", "control-plane-2");
        ctx.insert("advertise", "10.0.0.6");
        ctx.insert("certificate_key", &Some("ff".repeat(32)));
        let j = super::super::render_config("join-config.yaml", JOIN_CONFIG, &ctx).expect("join");
        assert!(
            j.contains("controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: \"10.0.0.6\""),
            "{j}"
        );
        crate::util::assert_sh_syntax(&write_private("/etc/flotilla/kubeadm-join.yaml", &j));
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.31"), Some((31, None)));
        assert_eq!(parse_version("v1.30.4"), Some((30, Some(4))));
        assert_eq!(parse_version("2.1"), None);
        assert_eq!(parse_version("1.x"), None);
        assert_eq!(parse_version("1.31.2.3"), None);
    }

    #[test]
    fn join_command_is_taken_apart() {
        let hash = format!("sha256:{}", "ab12".repeat(16));
        let out = format!("kubeadm join 10.0.0.5:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash {hash} \n");
        let j = parse_join_command(&out).expect("join");
        assert_eq!(j.api_server, "10.0.0.5:6443");
        assert_eq!(j.token, "abcdef.0123456789abcdef");
        assert_eq!(j.ca_hash, hash);
        assert!(parse_join_command("error: no").is_none());
        // A node's answer is parsed strictly: anything else is no join command.
        for bad in [
            out.replace("abcdef.", "abc$(id)."),
            out.replace("10.0.0.5:6443", "-x:6443"),
            out.replace(&hash, "sha256:1234"),
            out.replace(&hash, &format!("{hash}0")),
        ] {
            assert!(parse_join_command(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn node_list_gives_ready_roles_and_labels() {
        let json = r#"{"items":[
          {"metadata":{"name":"managers-1","labels":{"node-role.kubernetes.io/control-plane":"","zone":"a"}},
           "spec":{},"status":{"conditions":[{"type":"Ready","status":"True"}],"addresses":[{"type":"InternalIP","address":"10.0.0.5"}]}},
          {"metadata":{"name":"workers-1","labels":{}},"spec":{"unschedulable":true},
           "status":{"conditions":[{"type":"Ready","status":"Unknown"}]}}]}"#;
        let ms = parse_nodes(json).expect("nodes");
        assert_eq!(ms[0].role, "manager");
        assert_eq!(ms[0].status, "ready");
        assert_eq!(ms[0].addr, "10.0.0.5");
        assert_eq!(ms[1].status, "unknown");
        assert_eq!(ms[1].availability, "drain");
        let want: BTreeMap<String, String> = [("zone".to_string(), "a".to_string())].into();
        assert!(missing_labels(&want, Some(&ms[0])).is_empty());
        assert_eq!(missing_labels(&want, Some(&ms[1])), vec!["zone=a"]);
    }

    #[test]
    fn kubeconfig_server_is_rewritten() {
        let k = "clusters:\n- cluster:\n    certificate-authority-data: X\n    server: https://10.0.0.5:6443\n  name: kubernetes\n";
        let r = rewrite_server(k, "https://203.0.113.7:6443");
        assert!(r.contains("    server: https://203.0.113.7:6443\n"), "{r}");
        assert!(!r.contains("10.0.0.5"));
    }
}
