//! What `flotilla gc` needs from the Docker engine: every container, volume and network that
//! carries flotilla's `managed` label (any deployment), and deleting one of them.

use crate::{api, is_not_found, DockerProvider};
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions, ListVolumesOptions};
use flotilla_provider_core::{labels, time, ManagedResource, ProviderError, ResourceScope};
use std::collections::HashMap;

fn managed_filter() -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{}=true", labels::MANAGED)],
    )])
}

fn resource(
    kind: &str,
    id: String,
    name: String,
    scope: ResourceScope,
    l: &HashMap<String, String>,
    created_at: Option<String>,
) -> Option<ManagedResource> {
    Some(ManagedResource {
        kind: kind.into(),
        id,
        name,
        deployment: l.get(labels::DEPLOYMENT)?.clone(),
        scope,
        node: l.get(labels::NODE).cloned(),
        run_token: l.get(labels::RUN).cloned(),
        created_at,
        expires_at: l.get(labels::EXPIRES_AT).cloned(),
    })
}

impl DockerProvider {
    pub(crate) async fn list_managed(&self) -> Result<Vec<ManagedResource>, ProviderError> {
        let mut out = Vec::new();
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(managed_filter()),
                ..Default::default()
            }))
            .await
            .map_err(|e| api("list containers", e))?;
        for c in containers {
            let (Some(id), Some(l)) = (c.id, c.labels) else {
                continue;
            };
            let name = c
                .names
                .and_then(|n| n.first().cloned())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_else(|| id.clone());
            let created = c
                .created
                .and_then(|s| jiff::Timestamp::from_second(s).ok())
                .map(|t| t.to_string());
            out.extend(resource(
                "container",
                id,
                name,
                ResourceScope::Machine,
                &l,
                created,
            ));
        }
        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(managed_filter()),
            }))
            .await
            .map_err(|e| api("list volumes", e))?;
        for v in volumes.volumes.unwrap_or_default() {
            let created = v.created_at.as_deref().and_then(time::utc);
            out.extend(resource(
                "volume",
                v.name.clone(),
                v.name,
                ResourceScope::NodeAttached,
                &v.labels,
                created,
            ));
        }
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(managed_filter()),
            }))
            .await
            .map_err(|e| api("list networks", e))?;
        for n in networks {
            let (Some(id), Some(l)) = (n.id, n.labels) else {
                continue;
            };
            let created = n.created.as_deref().and_then(time::utc);
            out.extend(resource(
                "network",
                id,
                n.name.unwrap_or_default(),
                ResourceScope::Deployment,
                &l,
                created,
            ));
        }
        Ok(out)
    }

    pub(crate) async fn delete_one(&self, r: &ManagedResource) -> Result<(), ProviderError> {
        match r.kind.as_str() {
            "container" => self.remove_container(&r.id).await,
            "volume" => self.remove_volume(&r.id).await,
            "network" => match self.docker.remove_network(&r.id).await {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(api(format!("remove network {}", r.name), e)),
            },
            other => Err(ProviderError::Api {
                operation: format!("delete {other} {}", r.name),
                message: "not a kind of resource the docker provider creates".into(),
                source: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_resources_with_a_deployment_label_are_listed() {
        let mut l = HashMap::from([(labels::MANAGED.to_string(), "true".to_string())]);
        assert!(resource(
            "volume",
            "v".into(),
            "v".into(),
            ResourceScope::NodeAttached,
            &l,
            None
        )
        .is_none());
        l.insert(labels::DEPLOYMENT.into(), "d".into());
        l.insert(labels::EXPIRES_AT.into(), "2026-11-28T18:00:00Z".into());
        let r = resource(
            "volume",
            "v".into(),
            "v".into(),
            ResourceScope::NodeAttached,
            &l,
            None,
        )
        .expect("listed");
        assert_eq!(r.deployment, "d");
        assert_eq!(r.expires_at.as_deref(), Some("2026-11-28T18:00:00Z"));
    }
}
