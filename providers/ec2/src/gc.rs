//! What `flotilla gc` and `flotilla extend` need from EC2: every instance, security group and
//! key pair tagged `io.flotilla.managed=true` (any deployment), deleting one of them, and
//! rewriting a deployment's expiry tag. Nothing without that tag is ever listed.

use crate::{filter, tag, tag_map, Ec2Provider};
use aws_sdk_ec2::primitives::{DateTime, DateTimeFormat};
use flotilla_provider_core::backoff::Backoff;
use flotilla_provider_core::{
    labels, time, MachineId, ManagedResource, Ownership, Provider, ProviderError, ResourceScope,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// Resource ids per CreateTags call (EC2 takes up to 1000).
const TAG_BATCH: usize = 500;
/// How long a security group delete waits for the network interfaces of just-terminated
/// instances to go (EC2 answers DependencyViolation meanwhile).
const SG_IN_USE_WAIT: Duration = Duration::from_secs(300);

fn rfc3339(t: &DateTime) -> Option<String> {
    t.fmt(DateTimeFormat::DateTime)
        .ok()
        .and_then(|s| time::utc(&s))
}

/// A listed resource from its tags; `None` without a deployment tag (half-tagged by hand).
fn resource(
    kind: &str,
    id: &str,
    name: String,
    scope: ResourceScope,
    tags: &BTreeMap<&str, &str>,
    created_at: Option<String>,
) -> Option<ManagedResource> {
    Some(ManagedResource {
        kind: kind.into(),
        id: id.into(),
        name,
        deployment: tags.get(labels::DEPLOYMENT)?.to_string(),
        scope,
        node: tags.get(labels::NODE).map(|s| s.to_string()),
        run_token: tags.get(labels::RUN).map(|s| s.to_string()),
        created_at: created_at.or_else(|| tags.get(labels::CREATED_AT).and_then(|t| time::utc(t))),
        expires_at: tags.get(labels::EXPIRES_AT).map(|s| s.to_string()),
    })
}

impl Ec2Provider {
    pub(crate) async fn list_managed(&self) -> Result<Vec<ManagedResource>, ProviderError> {
        let c = &self.api.client;
        let managed = || filter(&format!("tag:{}", labels::MANAGED), &["true"]);
        let mut out = Vec::new();
        for i in self.describe_tagged(labels::MANAGED, "true").await? {
            let Some(id) = i.instance_id() else { continue };
            let t = crate::tags_of(&i);
            // The node's name, as `describe` derives it (wave tag + launch index).
            let node = self.to_info(&i).map(|n| n.name);
            let launched = i.launch_time().and_then(rfc3339);
            let mut r = resource(
                "instance",
                id,
                node.clone().unwrap_or_else(|| id.to_string()),
                ResourceScope::Machine,
                &t,
                launched,
            );
            if let Some(r) = r.as_mut() {
                r.node = r.node.take().or(node);
            }
            out.extend(r);
        }
        let mut token: Option<String> = None;
        loop {
            let page = self
                .api
                .call("DescribeSecurityGroups", || {
                    c.describe_security_groups()
                        .filters(managed())
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            for sg in page.security_groups() {
                let Some(id) = sg.group_id() else { continue };
                out.extend(resource(
                    "security-group",
                    id,
                    sg.group_name().unwrap_or(id).to_string(),
                    ResourceScope::Deployment,
                    &tag_map(sg.tags()),
                    None,
                ));
            }
            token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(String::from);
            if token.is_none() {
                break;
            }
        }
        let kps = self
            .api
            .call("DescribeKeyPairs", || {
                c.describe_key_pairs().filters(managed()).send()
            })
            .await?;
        for kp in kps.key_pairs() {
            let Some(name) = kp.key_name() else { continue };
            out.extend(resource(
                "key-pair",
                name,
                name.to_string(),
                ResourceScope::Deployment,
                &tag_map(kp.tags()),
                kp.create_time().and_then(rfc3339),
            ));
        }
        Ok(out)
    }

    pub(crate) async fn delete_one(&self, r: &ManagedResource) -> Result<(), ProviderError> {
        match r.kind.as_str() {
            // Terminated and waited for, so the security group can go right after.
            "instance" => {
                self.delete_nodes(&Ownership::new(&r.deployment), &[MachineId(r.id.clone())])
                    .await
            }
            "security-group" => self.delete_security_group(&r.id).await,
            "key-pair" => self.delete_key_pair(&r.id).await,
            other => Err(ProviderError::Api {
                operation: format!("delete {other} {}", r.name),
                message: "not a kind of resource the ec2 provider creates".into(),
                source: None,
            }),
        }
    }

    /// Deletes a security group; already gone counts as deleted. Waits (bounded) while the
    /// network interfaces of just-terminated instances still use it.
    pub(crate) async fn delete_security_group(&self, id: &str) -> Result<(), ProviderError> {
        let c = &self.api.client;
        // Instances that used it may take a while to let go: wait that out, bounded.
        let mut in_use = Backoff::new(SG_IN_USE_WAIT).every(Duration::from_secs(5));
        loop {
            match self
                .api
                .call("DeleteSecurityGroup", || {
                    c.delete_security_group().group_id(id).send()
                })
                .await
            {
                Ok(_) | Err(ProviderError::NotFound { .. }) => return Ok(()),
                Err(ProviderError::Api { message, .. })
                    if message.contains("DependencyViolation") && in_use.wait().await => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Deletes a key pair by name; already gone counts as deleted.
    pub(crate) async fn delete_key_pair(&self, name: &str) -> Result<(), ProviderError> {
        let c = &self.api.client;
        match self
            .api
            .call("DeleteKeyPair", || {
                c.delete_key_pair().key_name(name).send()
            })
            .await
        {
            Ok(_) | Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Rewrites the expiry tag on every instance, security group and key pair of the
    /// deployment (CreateTags overwrites a tag's value).
    pub(crate) async fn retag_expiry(
        &self,
        owner: &Ownership,
        expires_at: &str,
    ) -> Result<(), ProviderError> {
        let c = &self.api.client;
        let (sgs, kps) = self.shared_resources(owner).await?;
        let ids: Vec<String> = self
            .describe_raw(owner)
            .await?
            .iter()
            .filter_map(|i| i.instance_id().map(String::from))
            .chain(sgs.iter().filter_map(|g| g.group_id().map(String::from)))
            .chain(kps.iter().filter_map(|k| k.key_pair_id().map(String::from)))
            .collect();
        for batch in ids.chunks(TAG_BATCH) {
            self.api
                .call("CreateTags", || {
                    c.create_tags()
                        .set_resources(Some(batch.to_vec()))
                        .tags(tag(labels::EXPIRES_AT, expires_at))
                        .send()
                })
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NAMES_TAG;

    #[test]
    fn resources_need_a_deployment_tag_and_take_the_created_at_tag_for_age() {
        let mut t = BTreeMap::from([(labels::MANAGED, "true"), (NAMES_TAG, "1-3")]);
        assert!(resource(
            "key-pair",
            "k",
            "k".into(),
            ResourceScope::Deployment,
            &t,
            None
        )
        .is_none());
        t.insert(labels::DEPLOYMENT, "nightly");
        t.insert(labels::CREATED_AT, "2026-11-28T10:00:00Z");
        let r = resource(
            "security-group",
            "sg-1",
            "flotilla-nightly".into(),
            ResourceScope::Deployment,
            &t,
            None,
        )
        .expect("listed");
        assert_eq!(r.deployment, "nightly");
        assert_eq!(r.created_at.as_deref(), Some("2026-11-28T10:00:00Z"));
        let launched = resource(
            "instance",
            "i-1",
            "workers-1".into(),
            ResourceScope::Machine,
            &t,
            Some("2026-11-28T11:00:00Z".into()),
        )
        .expect("listed");
        assert_eq!(
            launched.created_at.as_deref(),
            Some("2026-11-28T11:00:00Z"),
            "the API's time wins over the tag"
        );
    }

    #[test]
    fn sdk_times_become_rfc3339() {
        assert_eq!(
            rfc3339(&DateTime::from_secs(1_795_000_000)).as_deref(),
            Some("2026-11-18T11:06:40Z")
        );
    }
}
