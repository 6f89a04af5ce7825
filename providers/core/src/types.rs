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
}

/// Which deployment a call is about. Providers filter every describe by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    pub deployment: String,
}

impl Ownership {
    pub fn new(deployment: impl Into<String>) -> Self {
        Self {
            deployment: deployment.into(),
        }
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

/// The orchestrator's ports: Swarm 2377/tcp, 7946/tcp+udp, 4789/udp; Kubernetes 6443,
/// 2379-2380, 10250-10259, 30000-32767; Mesos 5050-5051 and ZooKeeper 2181.
pub fn cluster_ports(cluster: &str) -> Vec<PortRule> {
    let r = |proto, from, to| PortRule { proto, from, to };
    match cluster {
        "swarm" => vec![
            r("tcp", 2377, 2377),
            r("tcp", 7946, 7946),
            r("udp", 7946, 7946),
            r("udp", 4789, 4789),
        ],
        "kubernetes" => vec![
            r("tcp", 6443, 6443),
            r("tcp", 2379, 2380),
            r("tcp", 10250, 10259),
            r("tcp", 30000, 32767),
            // flannel's VXLAN and calico's BGP (the two CNIs flotilla knows by name).
            r("udp", 8472, 8472),
            r("tcp", 179, 179),
        ],
        "mesos" => vec![
            r("tcp", 5050, 5051),
            // ZooKeeper clients, followers, elections.
            r("tcp", 2181, 2181),
            r("tcp", 2888, 2888),
            r("tcp", 3888, 3888),
            // Marathon, and the port range agents offer to tasks.
            r("tcp", 8080, 8080),
            r("tcp", 31000, 32000),
        ],
        _ => vec![],
    }
}
