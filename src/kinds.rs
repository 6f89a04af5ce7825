//! The registry: the one place that names the provider crates and the orchestrators. Adding a
//! kind is one line here; nothing else in the engine or the blueprint loader names a kind.

use crate::cluster::{ClusterKind, OrchestratorKind};
use flotilla_provider_core::ProviderFactory;

/// Every provider kind this build can drive, in the order messages list them.
pub fn providers() -> [&'static dyn ProviderFactory; 4] {
    [
        &flotilla_provider_docker::Factory,
        &flotilla_provider_static::Factory,
        &flotilla_provider_ec2::Factory,
        &flotilla_provider_openstack::Factory,
    ]
}

/// The provider kind a blueprint names.
pub fn provider(kind: &str) -> Option<&'static dyn ProviderFactory> {
    providers().into_iter().find(|f| f.kind() == kind)
}

pub fn provider_kinds() -> Vec<&'static str> {
    providers().iter().map(|f| f.kind()).collect()
}

/// Whether the blueprint's provider takes existing hosts (from the groups or an inventory).
pub fn existing_hosts(settings: &dyn flotilla_provider_core::ProviderSettings) -> bool {
    provider(settings.kind()).is_some_and(|f| f.existing_hosts())
}

/// `provider.kind: K` for each kind of existing hosts, for messages.
pub fn existing_host_kinds() -> String {
    let kinds: Vec<String> = providers()
        .iter()
        .filter(|f| f.existing_hosts())
        .map(|f| format!("`provider.kind: {}`", f.kind()))
        .collect();
    kinds.join(" or ")
}

/// Every cluster kind, in the order messages list them.
pub fn clusters() -> [&'static dyn OrchestratorKind; 4] {
    [
        &crate::cluster::swarm::Kind,
        &crate::cluster::kubernetes::Kind,
        &crate::cluster::mesos::Kind,
        &crate::cluster::kind::NoCluster,
    ]
}

/// The cluster kind a blueprint names.
pub fn cluster(kind: &str) -> Option<ClusterKind> {
    clusters()
        .into_iter()
        .find(|k| k.kind() == kind)
        .map(ClusterKind::of)
}

pub fn cluster_kinds() -> Vec<&'static str> {
    clusters().iter().map(|k| k.kind()).collect()
}

/// The cluster kinds that answer yes to `what`, for messages ("swarm or kubernetes").
pub fn clusters_that(what: fn(&dyn OrchestratorKind) -> bool) -> String {
    let kinds: Vec<&str> = clusters()
        .into_iter()
        .filter(|k| what(*k))
        .map(|k| k.kind())
        .collect();
    kinds.join(" or ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn kinds_are_unique_and_found_by_name() {
        let kinds = super::provider_kinds();
        let unique: std::collections::BTreeSet<_> = kinds.iter().collect();
        assert_eq!(unique.len(), kinds.len());
        for k in kinds {
            assert_eq!(super::provider(k).map(|f| f.kind()), Some(k));
        }
        assert!(super::provider("vsphere").is_none());
        let kinds = super::cluster_kinds();
        let unique: std::collections::BTreeSet<_> = kinds.iter().collect();
        assert_eq!(unique.len(), kinds.len());
        for k in kinds {
            assert_eq!(super::cluster(k).map(|c| c.as_str()), Some(k));
        }
        assert!(super::cluster("nomad").is_none());
    }
}
