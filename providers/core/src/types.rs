use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// Label / tag keys every provider puts on what it creates.
pub mod labels {
    pub const DEPLOYMENT: &str = "io.flotilla.deployment";
    pub const GROUP: &str = "io.flotilla.group";
    pub const NODE: &str = "io.flotilla.node";
    pub const ROLE: &str = "io.flotilla.role";
    pub const RUN: &str = "io.flotilla.run";
    pub const MANAGED: &str = "io.flotilla.managed";
    /// When the deployment expires (RFC 3339, UTC): `gc` deletes it after that, even when the
    /// operator's state is lost.
    pub const EXPIRES_AT: &str = "io.flotilla.expires-at";
    /// When flotilla created the resource (RFC 3339, UTC), on resources whose API reports no
    /// creation time (an EC2 security group): `gc`'s grace period needs an age.
    pub const CREATED_AT: &str = "io.flotilla.created-at";
}

/// Which deployment a call is about. Providers filter every describe by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    pub deployment: String,
    /// The deployment's expiry (RFC 3339), written as a label on what gets created.
    pub expires_at: Option<String>,
}

impl Ownership {
    pub fn new(deployment: impl Into<String>) -> Self {
        Self {
            deployment: deployment.into(),
            expires_at: None,
        }
    }

    /// The same owner, labelling what it creates with an expiry.
    pub fn expiring(mut self, expires_at: Option<String>) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// The labels every resource of the deployment carries: deployment, managed, and the expiry
    /// when there is one.
    pub fn base_labels(&self) -> Vec<(String, String)> {
        let mut l = vec![
            (labels::DEPLOYMENT.to_string(), self.deployment.clone()),
            (labels::MANAGED.to_string(), "true".to_string()),
        ];
        if let Some(e) = &self.expires_at {
            l.push((labels::EXPIRES_AT.to_string(), e.clone()));
        }
        l
    }

    /// Name of a deployment-wide cloud resource (key pair, security group, network): the one the
    /// blueprint gives, else `flotilla-<deployment>`.
    pub fn resource_name(&self, configured: Option<&str>) -> String {
        configured
            .map(String::from)
            .unwrap_or_else(|| format!("flotilla-{}", self.deployment))
    }
}

/// Cluster role of a node, as the blueprint's group declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Manager,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "manager" => Some(Role::Manager),
            "worker" => Some(Role::Worker),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The provider's own identifier of a machine (container id, instance id, server id, host address).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct MachineId(pub String);

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One machine to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub group: String,
    pub role: Role,
}

/// A batch of machines to create in one call, all for one deployment and one run.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub owner: Ownership,
    /// Identifies the run that creates the machines; recorded on each machine's labels.
    pub run_token: String,
    pub nodes: Vec<NodeSpec>,
    /// The OpenSSH public key line to install for the login user (as cloud-init would).
    pub ssh_public_key: String,
}

/// Lifecycle state as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum NodeState {
    Pending,
    Running,
    Stopped,
    Error(String),
}

impl NodeState {
    pub fn as_str(&self) -> &str {
        match self {
            NodeState::Pending => "pending",
            NodeState::Running => "running",
            NodeState::Stopped => "stopped",
            NodeState::Error(_) => "error",
        }
    }
}

/// What a provider knows about one of its machines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: MachineId,
    /// Node name from the labels (`workers-2`).
    pub name: String,
    pub group: String,
    pub role: Role,
    /// Run token from the labels: which run created the machine.
    pub run_token: String,
    pub state: NodeState,
    pub private_ip: Option<IpAddr>,
    pub public_ip: Option<IpAddr>,
    pub ssh_port: u16,
    /// Login user when the provider knows it (static inventories name one).
    pub ssh_user: Option<String>,
}

impl NodeInfo {
    /// The address flotilla connects to: the public one when there is one.
    pub fn ssh_address(&self) -> Option<IpAddr> {
        self.public_ip.or(self.private_ip)
    }
}

/// A port range a cluster needs open between its own members (never to the world).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRule {
    pub proto: &'static str,
    pub from: i32,
    pub to: i32,
}

/// What a provider resource is to the garbage collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceScope {
    /// A node's machine (container, instance, server).
    Machine,
    /// Belongs to one node (its volume, port, floating IP): goes with or after the machine.
    NodeAttached,
    /// Shared by the deployment (network, security group, key pair): goes last.
    Deployment,
}

/// One resource carrying flotilla's labels, as `gc` finds it on a provider (any deployment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedResource {
    /// `container`, `volume`, `network`, `instance`, `security-group`, `key-pair`, `server`, ...
    pub kind: String,
    /// The provider's id (what `delete_managed` needs).
    pub id: String,
    /// A name a human recognises.
    pub name: String,
    pub deployment: String,
    pub scope: ResourceScope,
    /// The node it belongs to (machines and node-attached resources).
    pub node: Option<String>,
    /// The run that created it, when the provider records one.
    pub run_token: Option<String>,
    /// RFC 3339; `None` when the provider does not tell (then the grace period cannot pass and
    /// the resource is only collected with an expired deployment).
    pub created_at: Option<String>,
    /// The `io.flotilla.expires-at` label, when set.
    pub expires_at: Option<String>,
}
