//! Orchestrators: what forms a cluster out of nodes that run Docker — Swarm, Kubernetes (kubeadm)
//! and Mesos behind one interface, so up/scale/heal/status do not care which.

pub mod answers;
pub mod kind;
pub mod kubernetes;
pub mod mesos;
pub mod swarm;

pub use kind::{ClusterKind, OrchestratorKind, Quorum};

use crate::ssh::{SshError, Target};
use async_trait::async_trait;
use flotilla_provider_core::Role;
use std::collections::BTreeMap;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("{node}: {message}")]
    Node { node: String, message: String },
    #[error("{0}")]
    Cluster(String),
}

/// A node as the orchestrator sees it.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub name: String,
    pub role: Role,
    pub target: Target,
    /// Address other nodes reach it on (advertise address).
    pub ip: String,
    pub labels: BTreeMap<String, String>,
    /// What the node itself reported when it was probed (OS, Docker, the engine's own view of
    /// its cluster membership); each orchestrator reads what it needs. `None`: not probed.
    pub probe: Option<crate::docker::Probe>,
}

impl ClusterNode {
    /// A node known only by name, role and SSH target (for removal, leave and member queries).
    pub fn bare(name: &str, role: Role, target: Target) -> Self {
        Self {
            name: name.to_string(),
            role,
            target,
            ip: String::new(),
            labels: BTreeMap::new(),
            probe: None,
        }
    }
}

/// What the cluster itself believes about a member.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub id: String,
    pub hostname: String,
    pub role: String,
    /// ready | down | unknown | disconnected
    pub status: String,
    /// active | pause | drain
    pub availability: String,
    /// reachable | unreachable | "" for workers
    pub reachability: String,
    pub leader: bool,
    pub addr: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConvergeReport {
    pub initialized_on: Option<String>,
    pub joined: Vec<String>,
    pub labelled: Vec<String>,
    pub cluster_id: Option<String>,
    /// Node name -> cluster member id.
    pub member_ids: BTreeMap<String, String>,
    /// What the orchestrator found out about the cluster that operators should see (recorded
    /// with the state, shown by `status`), e.g. Swarm's `routing_mesh`.
    #[serde(flatten)]
    pub facts: BTreeMap<String, serde_json::Value>,
    /// Things to tell the operator about this cluster (the report's notes).
    #[serde(skip)]
    pub notes: Vec<String>,
    /// Files to keep in the deployment's folder (name → contents), e.g. Kubernetes' admin
    /// kubeconfig. Secrets: never printed, written 0600 by the engine.
    #[serde(skip)]
    pub secret_files: BTreeMap<String, String>,
}

impl ConvergeReport {
    pub fn changed(&self) -> bool {
        self.initialized_on.is_some() || !self.joined.is_empty() || !self.labelled.is_empty()
    }
}

#[async_trait]
pub trait Orchestrator: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Whether a node's probe shows it still has to join (`plan` lists it). Kinds whose
    /// membership a probe cannot see answer false.
    fn needs_join(&self, probe: &crate::docker::Probe) -> bool {
        let _ = probe;
        false
    }
    /// Whether a reachable manager can answer for the cluster (asked for members, used to
    /// remove others); the orchestrator tries those in turn.
    fn can_answer(&self, probe: &crate::docker::Probe) -> bool {
        let _ = probe;
        true
    }
    /// Forms the cluster or brings it to the wanted membership; fresh join tokens every call.
    async fn converge(&self, nodes: &[ClusterNode]) -> Result<ConvergeReport, ClusterError>;
    /// Members as the cluster reports them, asked through any working manager.
    async fn members(&self, managers: &[ClusterNode]) -> Result<Vec<Member>, ClusterError>;
    /// Takes a node out: drain, leave, and remove its member entry through a manager.
    async fn remove(
        &self,
        node: &ClusterNode,
        managers: &[ClusterNode],
        member_id: Option<&str>,
    ) -> Result<(), ClusterError>;
    /// Removes the member entry of a node that is gone (heal, lost machines), through a manager.
    async fn remove_member(
        &self,
        via: &[ClusterNode],
        member_id: &str,
        was_manager: bool,
    ) -> Result<(), ClusterError>;
    /// Undo what flotilla set up on a node that stays (static hosts on `down`).
    async fn leave(&self, node: &ClusterNode) -> Result<(), ClusterError>;
    /// Hands a `services:` entry to the cluster's scheduler, through a manager: a Swarm stack
    /// (`docker stack deploy`) or Kubernetes manifests (`kubectl apply`). Idempotent.
    async fn deploy_services(
        &self,
        managers: &[ClusterNode],
        name: &str,
        definition: &str,
        resolve_image: Option<&str>,
    ) -> Result<(), ClusterError> {
        let _ = (managers, definition, resolve_image);
        Err(ClusterError::Cluster(format!(
            "services.{name}: {} has no stack or manifest support; use `containers:`",
            self.kind()
        )))
    }
    /// Removes what `deploy_services` created for an entry (given the definition it deployed).
    async fn remove_services(
        &self,
        managers: &[ClusterNode],
        name: &str,
        definition: &str,
    ) -> Result<(), ClusterError> {
        let _ = (managers, definition);
        Err(ClusterError::Cluster(format!(
            "services.{name}: {} has no stack or manifest support",
            self.kind()
        )))
    }
}

/// Runs `script` on the first manager that answers, with `input` on its stdin (a compose file,
/// manifests), failing with the script's own output when it exits non-zero everywhere.
async fn pipe_to_manager(
    pool: &crate::ssh::SshPool,
    managers: &[ClusterNode],
    what: &str,
    script: &str,
    input: &str,
) -> Result<(), ClusterError> {
    ask_managers(managers, |m| async move {
        let out = pool
            .run_with_input(
                &m.target,
                what,
                script,
                Some(input.as_bytes().to_vec()),
                Some(std::time::Duration::from_secs(600)),
            )
            .await?;
        if out.status == 0 {
            Ok(())
        } else {
            Err(ClusterError::Node {
                node: m.name.clone(),
                message: format!("{what}: {}", crate::ssh::failure_tail_pub(&out)),
            })
        }
    })
    .await
}

/// Renders one of the cluster scripts (they may `{% include "retry.sh" %}`); every value is
/// shell-quoted.
fn render_script(name: &str, template: &str, ctx: &tera::Context) -> Result<String, ClusterError> {
    crate::template::render_script(
        &[
            ("retry.sh", crate::docker::install::RETRY),
            (name, template),
        ],
        name,
        ctx,
    )
    .map_err(ClusterError::Cluster)
}

/// Renders one of the cluster's YAML configuration files; every value is a quoted scalar.
fn render_config(name: &str, template: &str, ctx: &tera::Context) -> Result<String, ClusterError> {
    crate::template::render_yaml_config(name, template, ctx).map_err(ClusterError::Cluster)
}

/// The first answer any of the managers gives (they are tried in order), or the last error.
async fn ask_managers<'a, T, F, Fut>(managers: &'a [ClusterNode], ask: F) -> Result<T, ClusterError>
where
    F: Fn(&'a ClusterNode) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClusterError>>,
{
    let mut last = None;
    for m in managers {
        match ask(m).await {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| ClusterError::Cluster("no manager node to ask".into())))
}

/// The ports a cluster of this kind needs open between its members (none without a cluster).
pub fn ports(kind: ClusterKind) -> Vec<flotilla_provider_core::PortRule> {
    kind.spec().ports()
}

/// The blueprint's orchestrator, or None for `cluster.kind: none`.
pub fn for_blueprint(
    bp: &crate::blueprint::Blueprint,
    pool: std::sync::Arc<crate::ssh::SshPool>,
) -> Option<Box<dyn Orchestrator>> {
    bp.cluster_settings.build(bp, pool)
}

#[cfg(test)]
mod tests {
    use flotilla_provider_core::PortRule;

    #[test]
    fn each_cluster_kind_opens_its_own_ports_and_none_opens_nothing() {
        let kind = |k: &str| crate::kinds::cluster(k).unwrap_or_else(|| panic!("{k} registered"));
        let vxlan = PortRule {
            proto: "udp",
            from: 4789,
            to: 4789,
        };
        assert!(super::ports(kind("swarm")).contains(&vxlan));
        assert!(super::ports(kind("kubernetes"))
            .iter()
            .any(|p| p.from == 6443));
        assert!(super::ports(kind("mesos")).iter().any(|p| p.from == 5050));
        assert_eq!(super::ports(kind("none")), vec![]);
    }
}
