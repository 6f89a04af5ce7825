//! The provider interface: how flotilla asks a cloud (or a Docker engine, or a list of existing hosts)
//! for machines, finds them again by their labels, and deletes them.
//!
//! Every resource a provider creates carries the deployment, group, node name and run token in the
//! create call itself, so a crashed run's machines are found again by `describe` and are adopted or
//! deleted by the next run: the provider never has to remember anything between runs.

pub mod argv;
pub mod backoff;
mod error;
pub mod factory;
pub mod fake;
pub mod time;
mod types;

pub use error::ProviderError;
pub use factory::{
    parse_section, BuildContext, GroupHosts, ProviderFactory, ProviderSettings, SettingsError,
};
pub use types::{
    labels, CreateRequest, MachineId, ManagedResource, NodeInfo, NodeSpec, NodeState, Ownership,
    PortRule, ResourceScope, Role,
};

use async_trait::async_trait;

/// What a machine provider must do. Implementations are cheap to call repeatedly: every method is
/// idempotent with respect to the labels in its arguments.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Short kind name as used in blueprints (`docker`, `static`, `ec2`, `openstack`).
    fn kind(&self) -> &'static str;

    /// Whether `delete_nodes` really destroys machines. The static provider answers `false`: its
    /// machines belong to the user and are only "released".
    fn owns_machines(&self) -> bool {
        true
    }

    /// Checks credentials, images, networks and quotas before anything is created.
    async fn preflight(&self, owner: &Ownership) -> Result<(), ProviderError>;

    /// Creates the requested machines (or finds them, when a previous attempt with the same run token
    /// already created them) and returns what it knows about each one.
    async fn create_nodes(&self, req: &CreateRequest) -> Result<Vec<NodeInfo>, ProviderError>;

    /// Waits until the given machines run (batched polling), returning what is then known about
    /// them (addresses appear only once a machine runs on some clouds). Providers whose
    /// `create_nodes` already returns running machines keep this default.
    async fn wait_running(
        &self,
        owner: &Ownership,
        ids: &[MachineId],
    ) -> Result<Vec<NodeInfo>, ProviderError> {
        Ok(self
            .describe(owner)
            .await?
            .into_iter()
            .filter(|n| ids.contains(&n.id))
            .collect())
    }

    /// Every machine that carries this deployment's labels, in one batched call where the API allows.
    async fn describe(&self, owner: &Ownership) -> Result<Vec<NodeInfo>, ProviderError>;

    /// Deletes machines. A machine that is already gone counts as deleted.
    async fn delete_nodes(&self, owner: &Ownership, ids: &[MachineId])
        -> Result<(), ProviderError>;

    /// Removes the deployment-wide resources (networks, security groups, key pairs) once no machine
    /// uses them any more. Resources without this deployment's labels are never touched.
    async fn teardown(&self, owner: &Ownership) -> Result<(), ProviderError>;

    /// Every resource carrying flotilla's `managed` label, of any deployment (for `gc`). Only
    /// what flotilla labelled is ever listed. `None`: this provider cannot list them (existing
    /// hosts are never collected).
    async fn managed_resources(&self) -> Result<Option<Vec<ManagedResource>>, ProviderError> {
        Ok(None)
    }

    /// Deletes one resource `managed_resources` listed. Already gone counts as deleted.
    async fn delete_managed(&self, resource: &ManagedResource) -> Result<(), ProviderError> {
        Err(ProviderError::Api {
            operation: format!("delete {} {}", resource.kind, resource.name),
            message: format!("the {} provider does not collect resources", self.kind()),
            source: None,
        })
    }

    /// Rewrites the expiry label on the deployment's resources (`flotilla extend`). `false`:
    /// this provider's labels cannot change after creation (Docker), so only the state knows.
    async fn relabel_expiry(
        &self,
        _owner: &Ownership,
        _expires_at: &str,
    ) -> Result<bool, ProviderError> {
        Ok(false)
    }
}
