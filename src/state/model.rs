//! The state file: what flotilla knows it created and configured for one deployment.

use flotilla_provider_core::{MachineId, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped whenever the shape changes; `migrate` upgrades older files.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Default)]
#[serde(rename_all = "snake_case")]
pub enum NodePhase {
    /// The machine create call was made; the machine may or may not exist yet.
    #[default]
    Creating,
    /// The provider reports the machine.
    Created,
    /// SSH works and the host key is pinned.
    Reachable,
    /// Docker answers.
    DockerReady,
    /// Member of the cluster (or no cluster is wanted).
    Ready,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OsInfo {
    pub id: String,
    #[serde(default)]
    pub id_like: Vec<String>,
    #[serde(default)]
    pub version_id: String,
    pub pretty_name: String,
    pub systemd: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRecord {
    pub name: String,
    pub group: String,
    pub role: Role,
    pub machine_id: Option<MachineId>,
    /// Run that created the machine.
    pub run_token: String,
    pub phase: NodePhase,
    pub private_ip: Option<std::net::IpAddr>,
    pub public_ip: Option<std::net::IpAddr>,
    pub ssh_port: u16,
    pub ssh_user: String,
    /// Pinned host key (`ssh-ed25519 AAAA...`), recorded on first contact.
    pub host_key: Option<String>,
    pub os: Option<OsInfo>,
    pub docker_version: Option<String>,
    /// Swarm node ID once joined.
    pub cluster_id: Option<String>,
    pub created_at: String,
    /// When `heal` first saw the node unhealthy (cleared when it is healthy again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_since: Option<String>,
    /// When `heal` last restarted Docker on this node in place (cleared when it is healthy again):
    /// a node whose restart did not help is replaced on a later run instead of restarted forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_restart_tried_at: Option<String>,
}

impl NodeRecord {
    /// The record of a machine about to be created (its name is recorded before the create call).
    pub fn creating(spec: &flotilla_provider_core::NodeSpec, run_token: &str, now: &str) -> Self {
        Self {
            name: spec.name.clone(),
            group: spec.group.clone(),
            role: spec.role,
            machine_id: None,
            run_token: run_token.to_string(),
            phase: NodePhase::Creating,
            private_ip: None,
            public_ip: None,
            ssh_port: 22,
            ssh_user: String::new(),
            host_key: None,
            os: None,
            docker_version: None,
            cluster_id: None,
            created_at: now.to_string(),
            unhealthy_since: None,
            docker_restart_tried_at: None,
        }
    }

    pub fn ssh_address(&self) -> Option<std::net::IpAddr> {
        self.public_ip.or(self.private_ip)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ClusterRecord {
    pub kind: String,
    /// Node whose `swarm init` created the cluster.
    pub bootstrap_node: Option<String>,
    pub cluster_id: Option<String>,
    /// What the orchestrator reported about the cluster (e.g. Swarm's `routing_mesh`: whether
    /// the kernel has IPVS), as it reported it.
    #[serde(default, flatten)]
    pub facts: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunRecord {
    pub token: String,
    pub command: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub format_version: u32,
    pub deployment: String,
    pub provider: String,
    pub cluster: ClusterRecord,
    pub blueprint_path: String,
    /// Rendered blueprint of the last successful `up` (for audit and `plan`).
    pub blueprint_rendered: String,
    pub inputs: serde_json::Map<String, serde_json::Value>,
    pub ssh_user: String,
    pub ssh_private_key: String,
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Next index per group, so a replaced or removed node's name is never reused.
    pub next_index: BTreeMap<String, u32>,
    pub outputs: BTreeMap<String, String>,
    /// Group sizes set by `flotilla scale` (a later `up BLUEPRINT` goes back to the blueprint's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub count_overrides: BTreeMap<String, u32>,
    /// Whether `containers:` workloads were deployed (so removing the last entry still cleans up).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub containers_deployed: bool,
    /// `services:` entries deployed, with the text handed to the scheduler (Kubernetes needs it
    /// to delete what an entry created once the entry is gone).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services_deployed: BTreeMap<String, String>,
    /// When the deployment expires (RFC 3339 UTC; `up --ttl`, `expires_after:`, `extend`):
    /// `gc` deletes it after that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The containerized manager, once installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<ManagerRecord>,
    /// Set by `import` (which archive): until an `up` with a blueprint file of this machine,
    /// the files the recorded blueprint names are read only from the deployment's own folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
    pub runs: Vec<RunRecord>,
    pub created_at: String,
    pub updated_at: String,
}

/// Where the manager runs and from which image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManagerRecord {
    pub node: String,
    pub port: u16,
    /// The image tag, and its ID when it was (re)started.
    pub image: String,
    pub image_id: String,
    pub installed_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgraded_at: Option<String>,
    /// The address on the node the API is published on (older records: the node's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::IpAddr>,
    /// `sha256:…` of the API's TLS certificate, read over SSH at install: clients pin it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
}

/// Runs kept in the state file (the journal keeps every step).
pub const RUNS_KEPT: usize = 20;

impl State {
    pub fn new(deployment: &str, provider: &str, now: &str) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            deployment: deployment.to_string(),
            provider: provider.to_string(),
            cluster: ClusterRecord::default(),
            blueprint_path: String::new(),
            blueprint_rendered: String::new(),
            inputs: Default::default(),
            ssh_user: String::new(),
            ssh_private_key: String::new(),
            nodes: BTreeMap::new(),
            next_index: BTreeMap::new(),
            outputs: BTreeMap::new(),
            count_overrides: BTreeMap::new(),
            containers_deployed: false,
            services_deployed: BTreeMap::new(),
            expires_at: None,
            manager: None,
            imported_from: None,
            runs: Vec::new(),
            created_at: now.to_string(),
            updated_at: now.to_string(),
        }
    }

    pub fn nodes_of_group<'a>(
        &'a self,
        group: &'a str,
    ) -> impl Iterator<Item = &'a NodeRecord> + 'a {
        self.nodes.values().filter(move |n| n.group == group)
    }

    /// Allocates the next node name of a group (`workers-4`); names are never reused.
    pub fn allocate_name(&mut self, group: &str) -> String {
        let used_max = self
            .nodes
            .values()
            .filter(|n| n.group == group)
            .filter_map(|n| {
                n.name
                    .rsplit_once('-')
                    .and_then(|(_, i)| i.parse::<u32>().ok())
            })
            .max()
            .unwrap_or(0);
        let next = self.next_index.entry(group.to_string()).or_insert(1);
        *next = (*next).max(used_max + 1);
        let name = format!("{group}-{next}");
        *next += 1;
        name
    }
}

impl State {
    /// Every name and SSH value a state carries, checked as if it came from outside (a state
    /// may come from an export archive or a shared backend): the deployment must be `expected`,
    /// node, group and service names follow the blueprint's rule, users and jump hosts may not
    /// become ssh options. Returns what is wrong, one item per value.
    pub fn trust_problems(&self, expected: &str) -> Vec<String> {
        use crate::names::{check, shown, NameKind};
        let mut names: Vec<(NameKind, String, &str)> =
            vec![(NameKind::Deployment, "deployment".into(), &self.deployment)];
        for (key, n) in &self.nodes {
            names.push((NameKind::Node, format!("nodes.{key}"), key));
            names.push((NameKind::Group, format!("nodes.{key}.group"), &n.group));
        }
        for g in self.next_index.keys().chain(self.count_overrides.keys()) {
            names.push((NameKind::Group, "groups".into(), g));
        }
        for s in self.services_deployed.keys() {
            names.push((NameKind::Service, "services_deployed".into(), s));
        }
        if let Some(m) = &self.manager {
            names.push((NameKind::Node, "manager.node".into(), &m.node));
        }
        let mut out: Vec<String> = names
            .into_iter()
            .filter_map(|(kind, field, value)| {
                check(kind, value).err().map(|e| format!("{field}: {e}"))
            })
            .collect();
        if self.deployment != expected {
            out.push(format!(
                "deployment: the state names {} but is stored as {}",
                shown(&self.deployment),
                shown(expected)
            ));
        }
        for (key, n) in &self.nodes {
            if n.name != *key {
                out.push(format!(
                    "nodes.{key}.name: {} differs from its key",
                    shown(&n.name)
                ));
            }
        }
        let users = std::iter::once(("ssh_user".to_string(), &self.ssh_user)).chain(
            self.nodes
                .iter()
                .map(|(k, n)| (format!("nodes.{k}.ssh_user"), &n.ssh_user)),
        );
        for (field, user) in users.filter(|(_, u)| !u.is_empty()) {
            if let Err(e) = crate::ssh::argv::check_user(&field, user) {
                out.push(e.to_string());
            }
        }
        out
    }
}

/// Upgrades an older state document to the current format.
pub fn migrate(mut doc: serde_json::Value) -> Result<serde_json::Value, String> {
    let version = doc
        .get("format_version")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if version > u64::from(FORMAT_VERSION) {
        return Err(format!(
            "state format {version} is newer than this flotilla understands ({FORMAT_VERSION}); upgrade flotilla"
        ));
    }
    if version == 0 {
        // Pre-release files had no version field; their shape is otherwise the same.
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("format_version".into(), FORMAT_VERSION.into());
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_facts_keep_the_recorded_shape() {
        // States written before the facts map carried `routing_mesh` as a field of its own.
        let old =
            r#"{"kind":"swarm","bootstrap_node":"m-1","cluster_id":"c","routing_mesh":false}"#;
        let rec: ClusterRecord = serde_json::from_str(old).expect("reads");
        assert_eq!(
            rec.facts.get("routing_mesh"),
            Some(&serde_json::json!(false))
        );
        let again = serde_json::to_value(&rec).expect("writes");
        assert_eq!(again["routing_mesh"], false, "{again}");
        assert_eq!(again["kind"], "swarm");
    }

    #[test]
    fn names_are_never_reused() {
        let mut s = State::new("d", "docker", "now");
        assert_eq!(s.allocate_name("workers"), "workers-1");
        assert_eq!(s.allocate_name("workers"), "workers-2");
        assert_eq!(s.allocate_name("managers"), "managers-1");
        assert_eq!(s.allocate_name("workers"), "workers-3");
    }

    #[test]
    fn migrate_refuses_newer_formats() {
        assert!(migrate(serde_json::json!({"format_version": 99})).is_err());
        let v = migrate(serde_json::json!({"deployment": "x"})).expect("v0 upgrades");
        assert_eq!(v["format_version"], 1);
    }
}
