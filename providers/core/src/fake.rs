//! An in-memory provider for unit tests of the engine's planning logic. It never touches a network.

use crate::{CreateRequest, MachineId, NodeInfo, NodeState, Ownership, Provider, ProviderError};
use async_trait::async_trait;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

#[derive(Default)]
pub struct FakeProvider {
    machines: Mutex<Vec<(String, NodeInfo)>>,
    next: Mutex<u32>,
    /// How many create calls were made (tests assert idempotence with it).
    pub create_calls: Mutex<u32>,
}

impl FakeProvider {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Machines currently "running" for a deployment.
    pub fn machines(&self, deployment: &str) -> Vec<NodeInfo> {
        Self::lock(&self.machines)
            .iter()
            .filter(|(d, _)| d == deployment)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn preflight(&self, _owner: &Ownership) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn create_nodes(&self, req: &CreateRequest) -> Result<Vec<NodeInfo>, ProviderError> {
        *Self::lock(&self.create_calls) += 1;
        let mut out = Vec::new();
        for spec in &req.nodes {
            let existing = Self::lock(&self.machines)
                .iter()
                .find(|(d, n)| d == &req.owner.deployment && n.name == spec.name)
                .map(|(_, n)| n.clone());
            if let Some(n) = existing {
                out.push(n);
                continue;
            }
            let mut next = Self::lock(&self.next);
            *next += 1;
            let octet = u8::try_from(*next % 250).unwrap_or(1);
            let info = NodeInfo {
                id: MachineId(format!("fake-{}", *next)),
                name: spec.name.clone(),
                group: spec.group.clone(),
                role: spec.role,
                run_token: req.run_token.clone(),
                state: NodeState::Running,
                private_ip: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, octet))),
                public_ip: None,
                ssh_port: 22,
                ssh_user: None,
            };
            Self::lock(&self.machines).push((req.owner.deployment.clone(), info.clone()));
            out.push(info);
        }
        Ok(out)
    }

    async fn describe(&self, owner: &Ownership) -> Result<Vec<NodeInfo>, ProviderError> {
        Ok(self.machines(&owner.deployment))
    }

    async fn delete_nodes(
        &self,
        owner: &Ownership,
        ids: &[MachineId],
    ) -> Result<(), ProviderError> {
        Self::lock(&self.machines)
            .retain(|(d, n)| !(d == &owner.deployment && ids.contains(&n.id)));
        Ok(())
    }

    async fn teardown(&self, _owner: &Ownership) -> Result<(), ProviderError> {
        Ok(())
    }
}
