//! What `flotilla gc` and `flotilla extend` need from OpenStack, and the Neutron tags that make
//! it possible.
//!
//! Which resources are flotilla's, by what flotilla wrote on them:
//! * servers: metadata `io.flotilla.managed=true` with a deployment;
//! * security groups and floating IPs: the Neutron tag `io.flotilla.managed` (with
//!   `io.flotilla.deployment=<d>`), or, when a run died between the create and the tagging,
//!   the description flotilla gave them (`flotilla deployment <d>`, `flotilla:<d>:<node>`);
//! * key pairs (Nova has no tags on them): named `flotilla-<d>` **and** holding a key whose
//!   comment is `flotilla@<d>`, i.e. a key flotilla generated under the name flotilla chose.
//!   A key pair holding the user's own key is never collected.
//!
//! Ports are Nova's: made for a server and deleted with it, so `gc` has none of its own to find.

use crate::{enc, session::api_error, OpenStackProvider, SG_DESCRIPTION_PREFIX};
use flotilla_provider_core::backoff::Backoff;
use flotilla_provider_core::{
    labels, time, ManagedResource, Ownership, ProviderError, ResourceScope,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

use crate::session::Service;

/// Servers per page when listing every server of the project.
const PAGE: usize = 500;
/// How long a security group delete waits while ports Nova is removing still use it.
const SG_IN_USE_WAIT: Duration = Duration::from_secs(120);

/// A Neutron tag `key=value` (Neutron tags are plain strings).
fn kv(key: &str, value: &str) -> String {
    format!("{key}={value}")
}

/// The value of the `key=value` tag among a resource's tags.
fn tag_value<'a>(tags: &'a Value, key: &str) -> Option<&'a str> {
    tags.as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
}

pub(crate) fn has_tag(tags: &Value, tag: &str) -> bool {
    tags.as_array()
        .is_some_and(|a| a.iter().any(|t| t.as_str() == Some(tag)))
}

/// The Neutron tags of a deployment's security group or floating IP.
pub(crate) fn owner_tags(owner: &Ownership, node: Option<&str>) -> Vec<String> {
    let mut t: Vec<String> = owner
        .base_labels()
        .into_iter()
        .map(|(k, v)| if k == labels::MANAGED { k } else { kv(&k, &v) })
        .collect();
    if let Some(n) = node {
        t.push(kv(labels::NODE, n));
    }
    t
}

/// The deployment a security group belongs to, by its tags or flotilla's description.
fn sg_deployment(sg: &Value) -> Option<String> {
    if has_tag(&sg["tags"], labels::MANAGED) {
        return tag_value(&sg["tags"], labels::DEPLOYMENT).map(String::from);
    }
    sg["description"]
        .as_str()?
        .strip_prefix(SG_DESCRIPTION_PREFIX)
        .filter(|d| !d.is_empty() && !d.contains(' '))
        .map(String::from)
}

/// (deployment, node) of a floating IP, by its tags or flotilla's description.
fn fip_owner(f: &Value) -> Option<(String, Option<String>)> {
    if has_tag(&f["tags"], labels::MANAGED) {
        let d = tag_value(&f["tags"], labels::DEPLOYMENT)?;
        return Some((
            d.into(),
            tag_value(&f["tags"], labels::NODE).map(String::from),
        ));
    }
    let rest = f["description"].as_str()?.strip_prefix("flotilla:")?;
    let (d, node) = rest.split_once(':')?;
    (!d.is_empty() && !node.is_empty()).then(|| (d.to_string(), Some(node.to_string())))
}

/// The deployment of a key pair flotilla generated and named: `flotilla-<d>` holding a key with
/// the comment `flotilla@<d>`.
fn key_pair_deployment(kp: &Value) -> Option<String> {
    let d = kp["name"].as_str()?.strip_prefix("flotilla-")?;
    let comment = kp["public_key"].as_str()?.split_whitespace().nth(2)?;
    (comment.strip_prefix("flotilla@") == Some(d)).then(|| d.to_string())
}

/// A Neutron resource (security group, floating IP) as `gc` lists it: its age from Neutron's
/// `created_at`, its expiry from its tags.
fn neutron_resource(
    kind: &str,
    res: &Value,
    id: &str,
    name: Option<&str>,
    deployment: String,
    scope: ResourceScope,
    node: Option<String>,
) -> ManagedResource {
    ManagedResource {
        kind: kind.into(),
        id: id.into(),
        name: name.unwrap_or(id).to_string(),
        deployment,
        scope,
        node,
        run_token: None,
        created_at: res["created_at"].as_str().and_then(time::utc),
        expires_at: tag_value(&res["tags"], labels::EXPIRES_AT).map(String::from),
    }
}

impl OpenStackProvider {
    /// Sets a Neutron resource's tags (the whole list). Neutron takes no tags in the create
    /// call of security groups, so this follows the create.
    pub(crate) async fn put_tags(
        &self,
        collection: &str,
        id: &str,
        tags: &[String],
    ) -> Result<(), ProviderError> {
        let r = self
            .s
            .call(
                Service::Network,
                Method::PUT,
                &format!("/{collection}/{id}/tags"),
                Some(&json!({ "tags": tags })),
                true,
            )
            .await?;
        if r.status.is_success() {
            Ok(())
        } else {
            Err(api_error(&format!("PUT {collection} tags"), &r))
        }
    }

    /// Every server of the project, page by page.
    async fn all_servers(&self) -> Result<Vec<Value>, ProviderError> {
        let mut out: Vec<Value> = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let path = match &marker {
                Some(m) => format!("/servers/detail?limit={PAGE}&marker={}", enc(m)),
                None => format!("/servers/detail?limit={PAGE}"),
            };
            let v = self
                .s
                .ok(Service::Compute, Method::GET, &path, None)
                .await?;
            let page = v["servers"].as_array().cloned().unwrap_or_default();
            let full = page.len() >= PAGE;
            marker = page.last().and_then(|s| s["id"].as_str()).map(String::from);
            out.extend(page);
            if !full || marker.is_none() {
                return Ok(out);
            }
        }
    }

    /// What gc may collect: only the credentials' own project's resources, even for an admin
    /// whose listings span every project (asked with `project_id`, and checked on each item).
    pub(crate) async fn list_managed(&self) -> Result<Vec<ManagedResource>, ProviderError> {
        let project = self.s.project_id().await?;
        let ours = |v: &Value, key: &str| v[key].as_str() == Some(project.as_str());
        let mut out = Vec::new();
        for s in self.all_servers().await? {
            if !ours(&s, "tenant_id") {
                continue;
            }
            let md = &s["metadata"];
            if md[labels::MANAGED] != "true"
                || matches!(s["status"].as_str(), Some("DELETED") | Some("SOFT_DELETED"))
            {
                continue;
            }
            let (Some(id), Some(dep)) = (s["id"].as_str(), md[labels::DEPLOYMENT].as_str()) else {
                continue;
            };
            let node = md[labels::NODE].as_str().map(String::from);
            out.push(ManagedResource {
                kind: "server".into(),
                id: id.into(),
                name: node.clone().unwrap_or_else(|| id.to_string()),
                deployment: dep.into(),
                scope: ResourceScope::Machine,
                node,
                run_token: md[labels::RUN].as_str().map(String::from),
                created_at: s["created"].as_str().and_then(time::utc),
                expires_at: md[labels::EXPIRES_AT].as_str().map(String::from),
            });
        }
        let fips = self
            .s
            .ok(
                Service::Network,
                Method::GET,
                &format!("/floatingips?project_id={}", enc(&project)),
                None,
            )
            .await?;
        for f in fips["floatingips"].as_array().into_iter().flatten() {
            if !ours(f, "project_id") {
                continue;
            }
            let (Some(id), Some((dep, node))) = (f["id"].as_str(), fip_owner(f)) else {
                continue;
            };
            out.push(neutron_resource(
                "floating-ip",
                f,
                id,
                f["floating_ip_address"].as_str(),
                dep,
                ResourceScope::NodeAttached,
                node,
            ));
        }
        let sgs = self
            .s
            .ok(
                Service::Network,
                Method::GET,
                &format!("/security-groups?project_id={}", enc(&project)),
                None,
            )
            .await?;
        for sg in sgs["security_groups"].as_array().into_iter().flatten() {
            if !ours(sg, "project_id") {
                continue;
            }
            let (Some(id), Some(dep)) = (sg["id"].as_str(), sg_deployment(sg)) else {
                continue;
            };
            out.push(neutron_resource(
                "security-group",
                sg,
                id,
                sg["name"].as_str(),
                dep,
                ResourceScope::Deployment,
                None,
            ));
        }
        let kps = self
            .s
            .ok(Service::Compute, Method::GET, "/os-keypairs", None)
            .await?;
        for kp in kps["keypairs"].as_array().into_iter().flatten() {
            let kp = &kp["keypair"];
            let (Some(name), Some(dep)) = (kp["name"].as_str(), key_pair_deployment(kp)) else {
                continue;
            };
            // The list carries no creation time; the key pair's own record does.
            let detail = self.get_key_pair(name).await?;
            out.push(ManagedResource {
                kind: "key-pair".into(),
                id: name.into(),
                name: name.into(),
                deployment: dep,
                scope: ResourceScope::Deployment,
                node: None,
                run_token: None,
                created_at: detail.body["keypair"]["created_at"]
                    .as_str()
                    .and_then(time::utc),
                expires_at: None,
            });
        }
        Ok(out)
    }

    pub(crate) async fn delete_one(&self, r: &ManagedResource) -> Result<(), ProviderError> {
        let (service, path) = match r.kind.as_str() {
            // Deleted and waited for, so its ports are gone before the security group goes.
            "server" => {
                return self
                    .delete_server_and_wait(
                        &Ownership::new(&r.deployment),
                        std::slice::from_ref(&r.id),
                    )
                    .await
            }
            "security-group" => return self.delete_security_group(&r.id).await,
            "floating-ip" => (Service::Network, format!("/floatingips/{}", r.id)),
            "key-pair" => (Service::Compute, format!("/os-keypairs/{}", enc(&r.id))),
            other => {
                return Err(ProviderError::Api {
                    operation: format!("delete {other} {}", r.name),
                    message: "not a kind of resource the openstack provider creates".into(),
                    source: None,
                })
            }
        };
        let d = self
            .s
            .call(service, Method::DELETE, &path, None, true)
            .await?;
        if d.status.is_success() || d.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(api_error(&format!("DELETE {} {}", r.kind, r.name), &d))
        }
    }

    /// Deletes a security group; already gone counts as deleted. Waits (bounded) while ports
    /// that Nova is removing still use it (409).
    pub(crate) async fn delete_security_group(&self, id: &str) -> Result<(), ProviderError> {
        let mut in_use = Backoff::new(SG_IN_USE_WAIT).every(Duration::from_secs(2));
        loop {
            let r = self
                .s
                .call(
                    Service::Network,
                    Method::DELETE,
                    &format!("/security-groups/{id}"),
                    None,
                    false,
                )
                .await?;
            if r.status.is_success() || r.status == StatusCode::NOT_FOUND {
                return Ok(());
            }
            if r.status == StatusCode::CONFLICT && in_use.wait().await {
                continue;
            }
            return Err(api_error("DELETE security-groups", &r));
        }
    }

    /// Rewrites the expiry on the deployment's servers (metadata), and its security groups
    /// and floating IPs (Neutron tags).
    pub(crate) async fn retag_expiry(
        &self,
        owner: &Ownership,
        expires_at: &str,
    ) -> Result<(), ProviderError> {
        for s in self.list(owner).await? {
            let Some(id) = s["id"].as_str() else { continue };
            let r = self
                .s
                .call(
                    Service::Compute,
                    Method::PUT,
                    &format!("/servers/{id}/metadata/{}", enc(labels::EXPIRES_AT)),
                    Some(&json!({"meta": {labels::EXPIRES_AT: expires_at}})),
                    true,
                )
                .await?;
            if !r.status.is_success() {
                return Err(api_error("PUT server metadata", &r));
            }
        }
        let mine = kv(labels::DEPLOYMENT, &owner.deployment);
        let expiry_prefix = format!("{}=", labels::EXPIRES_AT);
        for (collection, key) in [
            ("security-groups", "security_groups"),
            ("floatingips", "floatingips"),
        ] {
            let v = self
                .s
                .ok(
                    Service::Network,
                    Method::GET,
                    &format!("/{collection}?tags={}", enc(&mine)),
                    None,
                )
                .await?;
            for res in v[key].as_array().into_iter().flatten() {
                let Some(id) = res["id"].as_str() else {
                    continue;
                };
                let mut tags: Vec<String> = res["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter(|t| !t.starts_with(&expiry_prefix))
                    .map(String::from)
                    .collect();
                tags.push(kv(labels::EXPIRES_AT, expires_at));
                self.put_tags(collection, id, &tags).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_groups_are_flotillas_by_tag_or_by_its_description() {
        let tagged = json!({"tags": ["io.flotilla.managed", "io.flotilla.deployment=ci-1"], "description": "anything"});
        assert_eq!(sg_deployment(&tagged).as_deref(), Some("ci-1"));
        let untagged = json!({"tags": [], "description": "flotilla deployment ci-2"});
        assert_eq!(sg_deployment(&untagged).as_deref(), Some("ci-2"));
        let foreign =
            json!({"tags": ["io.flotilla.deployment=ci-1"], "description": "web servers"});
        assert_eq!(
            sg_deployment(&foreign),
            None,
            "no managed tag, not our description"
        );
    }

    #[test]
    fn floating_ips_name_their_deployment_and_node() {
        let f = json!({"tags": [], "description": "flotilla:ci-1:workers-2"});
        assert_eq!(
            fip_owner(&f),
            Some(("ci-1".into(), Some("workers-2".into())))
        );
        let t = json!({"tags": ["io.flotilla.managed", "io.flotilla.deployment=ci-1", "io.flotilla.node=managers-1"]});
        assert_eq!(
            fip_owner(&t),
            Some(("ci-1".into(), Some("managers-1".into())))
        );
        assert_eq!(fip_owner(&json!({"description": "flotilla:"})), None);
        assert_eq!(fip_owner(&json!({"description": "office vpn"})), None);
    }

    #[test]
    fn only_key_pairs_flotilla_generated_and_named_are_collected() {
        let kp = |name: &str, key: &str| json!({"name": name, "public_key": key});
        assert_eq!(
            key_pair_deployment(&kp("flotilla-ci-1", "ssh-ed25519 AAAA flotilla@ci-1")).as_deref(),
            Some("ci-1")
        );
        assert_eq!(
            key_pair_deployment(&kp("flotilla-ci-1", "ssh-ed25519 AAAA alice@laptop")),
            None,
            "the user's own key under flotilla's name"
        );
        assert_eq!(
            key_pair_deployment(&kp("team-key", "ssh-ed25519 AAAA flotilla@team-key")),
            None,
            "a name flotilla did not choose"
        );
    }

    #[test]
    fn tags_carry_deployment_node_and_expiry() {
        let owner = Ownership::new("ci-1").expiring(Some("2026-11-28T20:00:00Z".into()));
        let t = owner_tags(&owner, Some("workers-1"));
        assert!(t.contains(&"io.flotilla.managed".to_string()));
        assert!(t.contains(&"io.flotilla.deployment=ci-1".to_string()));
        assert!(t.contains(&"io.flotilla.expires-at=2026-11-28T20:00:00Z".to_string()));
        assert!(t.contains(&"io.flotilla.node=workers-1".to_string()));
        let v = json!(t);
        assert_eq!(
            tag_value(&v, labels::EXPIRES_AT),
            Some("2026-11-28T20:00:00Z")
        );
    }
}
