//! Existing machines: hosts listed in the blueprint's groups or in an ansible-style inventory file.
//! flotilla never creates or destroys them; "delete" only releases them from the deployment.

mod inventory;

mod factory;

pub use factory::Factory;
pub use inventory::{parse_inventory, HostEntry, InventoryError};

use async_trait::async_trait;
use flotilla_provider_core::{
    CreateRequest, MachineId, NodeInfo, NodeState, Ownership, Provider, ProviderError, Role,
};
use serde::Deserialize;
use std::net::IpAddr;

/// The `provider:` section of a blueprint whose `kind` is `static`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// Inventory file: one host per line (`[user@]host[:port]`), `[group]` headers, `#` comments.
    pub inventory: Option<String>,
}

/// One existing host assigned to a node name.
#[derive(Debug, Clone)]
pub struct StaticHost {
    pub name: String,
    pub group: String,
    pub role: Role,
    pub entry: HostEntry,
}

pub struct StaticProvider {
    hosts: Vec<StaticHost>,
}

impl StaticProvider {
    pub fn new(hosts: Vec<StaticHost>) -> Self {
        Self { hosts }
    }

    async fn info(&self, h: &StaticHost) -> NodeInfo {
        let ip = resolve(&h.entry.host, h.entry.port).await;
        NodeInfo {
            id: MachineId(h.entry.id()),
            name: h.name.clone(),
            group: h.group.clone(),
            role: h.role,
            run_token: String::new(),
            // The provider cannot see an existing host's power state; SSH probes tell.
            state: if ip.is_some() {
                NodeState::Running
            } else {
                NodeState::Error(format!("cannot resolve host name `{}`", h.entry.host))
            },
            private_ip: ip,
            public_ip: None,
            ssh_port: h.entry.port,
            ssh_user: h.entry.user.clone(),
        }
    }
}

async fn resolve(host: &str, port: u16) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    tokio::net::lookup_host((host, port))
        .await
        .ok()?
        .next()
        .map(|a| a.ip())
}

#[async_trait]
impl Provider for StaticProvider {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn owns_machines(&self) -> bool {
        false
    }

    async fn preflight(&self, _owner: &Ownership) -> Result<(), ProviderError> {
        for h in &self.hosts {
            if resolve(&h.entry.host, h.entry.port).await.is_none() {
                return Err(ProviderError::NotFound {
                    what: format!("host `{}` of group {}", h.entry.host, h.group),
                    message: "the name does not resolve; fix the inventory or use an IP address"
                        .into(),
                });
            }
        }
        Ok(())
    }

    async fn create_nodes(&self, req: &CreateRequest) -> Result<Vec<NodeInfo>, ProviderError> {
        let mut out = Vec::new();
        for spec in &req.nodes {
            let host = self
                .hosts
                .iter()
                .find(|h| h.name == spec.name)
                .ok_or_else(|| ProviderError::Config {
                    field: format!("groups.{}.hosts", spec.group),
                    message: format!(
                        "node {} needs a host, but the group lists fewer hosts than its count",
                        spec.name
                    ),
                })?;
            out.push(self.info(host).await);
        }
        Ok(out)
    }

    async fn describe(&self, _owner: &Ownership) -> Result<Vec<NodeInfo>, ProviderError> {
        let mut out = Vec::with_capacity(self.hosts.len());
        for h in &self.hosts {
            out.push(self.info(h).await);
        }
        Ok(out)
    }

    async fn delete_nodes(
        &self,
        _owner: &Ownership,
        _ids: &[MachineId],
    ) -> Result<(), ProviderError> {
        // Existing machines belong to the user: releasing them is all there is to do.
        Ok(())
    }

    async fn teardown(&self, _owner: &Ownership) -> Result<(), ProviderError> {
        Ok(())
    }
}
