//! Amazon EC2 machines through aws-sdk-ec2.
//!
//! * one RunInstances per group wave (MinCount = MaxCount = N) with every tag in the call itself and
//!   a ClientToken derived from the run token, so a retried call never creates twice on AWS;
//! * node names travel in the wave's tags (see `names`), so no per-instance tagging call exists and
//!   a run killed right after RunInstances leaves instances the next run recognises and adopts;
//! * observation is one batched DescribeInstances by the deployment tag per poll round;
//! * one process-wide backoff when AWS throttles (see `client`).

mod client;
mod config;
mod gc;
mod names;

mod factory;

pub use client::{Ec2Api, Stats};
pub use config::{AddressMode, AmiSpec, Ec2Config};
pub use factory::Factory;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, Instance, InstanceNetworkInterfaceSpecification,
    InstanceStateName, InstanceType, IpPermission, IpRange, KeyPairInfo, ResourceType,
    SecurityGroup, Tag, TagSpecification, UserIdGroupPair,
};
use flotilla_provider_core::{
    labels, CreateRequest, MachineId, ManagedResource, NodeInfo, NodeState, Ownership, Provider,
    ProviderError, Role,
};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::info;

/// Tag holding a wave's node indexes (`3-5,9`); each instance takes the one at its launch index.
const NAMES_TAG: &str = "io.flotilla.names";
/// Max instance ids per TerminateInstances call.
const TERMINATE_BATCH: usize = 500;
const WAIT_TIMEOUT: Duration = Duration::from_secs(900);

use flotilla_provider_core::backoff::Backoff;
pub use flotilla_provider_core::PortRule;

#[derive(Debug, Clone)]
struct Resolved {
    ami: String,
    subnet_id: String,
    vpc_id: String,
}

pub struct Ec2Provider {
    api: Ec2Api,
    cfg: Ec2Config,
    ports: Vec<PortRule>,
    public_key: String,
    resolved: Mutex<Option<Resolved>>,
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// The tags that mark a deployment-wide resource (key pair, security group) as this deployment's:
/// deployment, managed, expiry, and the creation time (EC2 reports none for security groups, and
/// `gc`'s grace period needs an age).
fn owner_tags(resource: ResourceType, owner: &Ownership) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(resource);
    for (k, v) in owner.base_labels() {
        b = b.tags(tag(&k, &v));
    }
    b.tags(tag(
        labels::CREATED_AT,
        &flotilla_provider_core::time::now_rfc3339(),
    ))
    .build()
}

fn filter(name: &str, values: &[&str]) -> Filter {
    let mut f = Filter::builder().name(name);
    for v in values {
        f = f.values(*v);
    }
    f.build()
}

fn tags_of(i: &Instance) -> BTreeMap<&str, &str> {
    tag_map(i.tags())
}

fn tag_map(tags: &[Tag]) -> BTreeMap<&str, &str> {
    tags.iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect()
}

impl Ec2Provider {
    /// `ports` are opened inside the group (the cluster's own); `public_key` is the line
    /// imported as the key pair (never overwriting a different key of the same name).
    pub async fn new(
        cfg: Ec2Config,
        ports: Vec<PortRule>,
        public_key: String,
    ) -> Result<Self, ProviderError> {
        let api = Ec2Api::new(&cfg).await?;
        Ok(Self {
            api,
            cfg,
            ports,
            public_key,
            resolved: Mutex::new(None),
        })
    }

    pub fn stats(&self) -> BTreeMap<&'static str, u64> {
        self.api.stats.snapshot()
    }

    fn key_name(&self, owner: &Ownership) -> String {
        owner.resource_name(self.cfg.key_name.as_deref())
    }

    fn sg_name(&self, owner: &Ownership) -> String {
        owner.resource_name(self.cfg.security_group.as_deref())
    }

    async fn resolve(&self) -> Result<Resolved, ProviderError> {
        if let Some(r) = self.resolved.lock().await.clone() {
            return Ok(r);
        }
        let c = &self.api.client;
        // AMI: by id, or the newest image matching name + owner.
        let ami = match &self.cfg.ami {
            AmiSpec::Id(id) => {
                let out = self
                    .api
                    .call("DescribeImages", || c.describe_images().image_ids(id).send())
                    .await
                    .map_err(|e| not_found_as_config(e, "provider.ami", &format!("AMI {id} does not exist in this region (or is not visible to this account)")))?;
                if out.images().is_empty() {
                    return Err(ProviderError::Config {
                        field: "provider.ami".into(),
                        message: format!("AMI {id} does not exist in this region"),
                    });
                }
                id.clone()
            }
            AmiSpec::Search { name, owner } => {
                let out = self
                    .api
                    .call("DescribeImages", || {
                        c.describe_images()
                            .owners(owner)
                            .filters(filter("name", &[name]))
                            .filters(filter("state", &["available"]))
                            .send()
                    })
                    .await?;
                let newest = out
                    .images()
                    .iter()
                    .filter(|i| i.image_id().is_some())
                    .max_by(|a, b| {
                        a.creation_date()
                            .unwrap_or("")
                            .cmp(b.creation_date().unwrap_or(""))
                    });
                match newest.and_then(|i| i.image_id()) {
                    Some(id) => id.to_string(),
                    None => {
                        return Err(ProviderError::Config {
                            field: "provider.ami".into(),
                            message: format!(
                                "no available AMI named `{name}` owned by `{owner}` in this region"
                            ),
                        })
                    }
                }
            }
        };
        // Instance type.
        let itype = self.cfg.instance_type.clone();
        self.api
            .call("DescribeInstanceTypes", || {
                c.describe_instance_types()
                    .instance_types(InstanceType::from(itype.as_str()))
                    .send()
            })
            .await
            .map_err(|e| match e {
                ProviderError::Api { message, .. } if message.contains("InvalidInstanceType") => {
                    ProviderError::Config {
                        field: "provider.instance_type".into(),
                        message: format!("instance type `{itype}` does not exist in this region"),
                    }
                }
                other => other,
            })?;
        // Subnet and VPC.
        let (subnet_id, vpc_id) = match &self.cfg.subnet {
            Some(s) => {
                let out = if s.starts_with("subnet-") {
                    self.api
                        .call("DescribeSubnets", || {
                            c.describe_subnets().subnet_ids(s).send()
                        })
                        .await
                } else {
                    self.api
                        .call("DescribeSubnets", || {
                            c.describe_subnets()
                                .filters(filter("tag:Name", &[s]))
                                .send()
                        })
                        .await
                }
                .map_err(|e| {
                    not_found_as_config(
                        e,
                        "provider.subnet",
                        &format!("subnet `{s}` does not exist"),
                    )
                })?;
                match out.subnets() {
                    [one] => (
                        one.subnet_id().unwrap_or_default().to_string(),
                        one.vpc_id().unwrap_or_default().to_string(),
                    ),
                    [] => {
                        return Err(ProviderError::Config {
                            field: "provider.subnet".into(),
                            message: format!("subnet `{s}` does not exist"),
                        })
                    }
                    many => {
                        return Err(ProviderError::Config {
                            field: "provider.subnet".into(),
                            message: format!(
                                "`{s}` names {} subnets; use the subnet id",
                                many.len()
                            ),
                        })
                    }
                }
            }
            None => {
                let vpc = match &self.cfg.vpc {
                    Some(v) if v.starts_with("vpc-") => v.clone(),
                    Some(v) => {
                        let out = self
                            .api
                            .call("DescribeVpcs", || {
                                c.describe_vpcs().filters(filter("tag:Name", &[v])).send()
                            })
                            .await?;
                        out.vpcs()
                            .first()
                            .and_then(|x| x.vpc_id())
                            .map(String::from)
                            .ok_or_else(|| ProviderError::Config {
                                field: "provider.vpc".into(),
                                message: format!("no VPC named `{v}`"),
                            })?
                    }
                    None => {
                        let out = self
                            .api
                            .call("DescribeVpcs", || {
                                c.describe_vpcs()
                                    .filters(filter("isDefault", &["true"]))
                                    .send()
                            })
                            .await?;
                        out.vpcs()
                            .first()
                            .and_then(|x| x.vpc_id())
                            .map(String::from)
                            .ok_or_else(|| ProviderError::Config {
                                field: "provider.subnet".into(),
                                message: "this region has no default VPC; set provider.subnet"
                                    .into(),
                            })?
                    }
                };
                let out = self
                    .api
                    .call("DescribeSubnets", || {
                        c.describe_subnets()
                            .filters(filter("vpc-id", &[&vpc]))
                            .filters(filter("default-for-az", &["true"]))
                            .send()
                    })
                    .await?;
                let sub = out
                    .subnets()
                    .first()
                    .and_then(|s| s.subnet_id())
                    .map(String::from)
                    .ok_or_else(|| ProviderError::Config {
                        field: "provider.subnet".into(),
                        message: format!("VPC {vpc} has no default subnet; set provider.subnet"),
                    })?;
                (sub, vpc)
            }
        };
        let r = Resolved {
            ami,
            subnet_id,
            vpc_id,
        };
        *self.resolved.lock().await = Some(r.clone());
        Ok(r)
    }

    /// Imports the key pair once; an existing key of the same name must be the same key.
    async fn ensure_key_pair(
        &self,
        owner: &Ownership,
        create: bool,
    ) -> Result<String, ProviderError> {
        let c = &self.api.client;
        let name = self.key_name(owner);
        let existing = match self
            .api
            .call("DescribeKeyPairs", || {
                c.describe_key_pairs()
                    .key_names(&name)
                    .include_public_key(true)
                    .send()
            })
            .await
        {
            Ok(out) => out.key_pairs().first().cloned(),
            Err(ProviderError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        if let Some(kp) = existing {
            let theirs = kp.public_key().map(key_body).unwrap_or_default();
            if !theirs.is_empty() && theirs != key_body(&self.public_key) {
                return Err(ProviderError::Config {
                    field: "provider.key_name".into(),
                    message: format!("key pair `{name}` already exists with a different public key; flotilla never overwrites a key pair: choose another provider.key_name or delete it"),
                });
            }
            return Ok(name);
        }
        if create {
            let material =
                aws_sdk_ec2::primitives::Blob::new(self.public_key.trim().as_bytes().to_vec());
            self.api
                .call("ImportKeyPair", || {
                    c.import_key_pair()
                        .key_name(&name)
                        .public_key_material(material.clone())
                        .tag_specifications(owner_tags(ResourceType::KeyPair, owner))
                        .send()
                })
                .await?;
            info!(key = %name, "key pair imported");
        }
        Ok(name)
    }

    /// Finds or creates the deployment's security group and adds only the missing rules.
    async fn ensure_security_group(
        &self,
        owner: &Ownership,
        vpc: &str,
    ) -> Result<String, ProviderError> {
        let c = &self.api.client;
        let name = self.sg_name(owner);
        let out = self
            .api
            .call("DescribeSecurityGroups", || {
                c.describe_security_groups()
                    .filters(filter("group-name", &[&name]))
                    .filters(filter("vpc-id", &[vpc]))
                    .send()
            })
            .await?;
        let (id, perms) = match out.security_groups().first() {
            Some(sg) => (
                sg.group_id().unwrap_or_default().to_string(),
                sg.ip_permissions().to_vec(),
            ),
            None => {
                let created = self
                    .api
                    .call("CreateSecurityGroup", || {
                        c.create_security_group()
                            .group_name(&name)
                            .description(format!("flotilla deployment {}", owner.deployment))
                            .vpc_id(vpc)
                            .tag_specifications(owner_tags(ResourceType::SecurityGroup, owner))
                            .send()
                    })
                    .await?;
                info!(group = %name, "security group created");
                (
                    created.group_id().unwrap_or_default().to_string(),
                    Vec::new(),
                )
            }
        };
        let has = |proto: &str, from: i32, to: i32, cidr: Option<&str>, group: Option<&str>| {
            perms.iter().any(|p| {
                p.ip_protocol() == Some(proto)
                    && p.from_port() == Some(from)
                    && p.to_port() == Some(to)
                    && match (cidr, group) {
                        (Some(c), _) => p.ip_ranges().iter().any(|r| r.cidr_ip() == Some(c)),
                        (_, Some(g)) => p
                            .user_id_group_pairs()
                            .iter()
                            .any(|u| u.group_id() == Some(g)),
                        _ => false,
                    }
            })
        };
        let mut missing: Vec<IpPermission> = Vec::new();
        if !has("tcp", 22, 22, Some(&self.cfg.ssh_cidr), None) {
            missing.push(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .ip_ranges(
                        IpRange::builder()
                            .cidr_ip(&self.cfg.ssh_cidr)
                            .description("ssh from the operator")
                            .build(),
                    )
                    .build(),
            );
        }
        for p in &self.ports {
            if !has(p.proto, p.from, p.to, None, Some(&id)) {
                missing.push(
                    IpPermission::builder()
                        .ip_protocol(p.proto)
                        .from_port(p.from)
                        .to_port(p.to)
                        .user_id_group_pairs(UserIdGroupPair::builder().group_id(&id).build())
                        .build(),
                );
            }
        }
        if !missing.is_empty() {
            // One call per rule: AuthorizeSecurityGroupIngress fails whole on one duplicate.
            for perm in missing {
                match self
                    .api
                    .call("AuthorizeSecurityGroupIngress", || {
                        c.authorize_security_group_ingress()
                            .group_id(&id)
                            .ip_permissions(perm.clone())
                            .send()
                    })
                    .await
                {
                    Ok(_) => {}
                    Err(ProviderError::Api { message, .. })
                        if message.contains("InvalidPermission.Duplicate") => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(id)
    }

    fn to_info(&self, i: &Instance) -> Option<NodeInfo> {
        let t = tags_of(i);
        let group = t.get(labels::GROUP)?.to_string();
        let name = match t.get(labels::NODE) {
            Some(n) => n.to_string(),
            None => {
                let idx = names::decode(t.get(NAMES_TAG)?)?;
                let pos = usize::try_from(i.ami_launch_index()?).ok()?;
                format!("{group}-{}", idx.get(pos)?)
            }
        };
        let state = match i.state().and_then(|s| s.name()) {
            Some(InstanceStateName::Running) => NodeState::Running,
            Some(InstanceStateName::Pending) => NodeState::Pending,
            Some(InstanceStateName::Stopped) | Some(InstanceStateName::Stopping) => {
                NodeState::Stopped
            }
            Some(other) => NodeState::Error(format!("instance is {}", other.as_str())),
            None => NodeState::Error("instance state unknown".into()),
        };
        let private_ip = i.private_ip_address().and_then(|a| a.parse().ok());
        let public_ip = match self.cfg.address {
            AddressMode::Private => None,
            _ => i.public_ip_address().and_then(|a| a.parse().ok()),
        };
        Some(NodeInfo {
            id: MachineId(i.instance_id()?.to_string()),
            name,
            group,
            role: t
                .get(labels::ROLE)
                .and_then(|r| Role::parse(r))
                .unwrap_or(Role::Worker),
            run_token: t
                .get(labels::RUN)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            state,
            private_ip,
            public_ip,
            ssh_port: 22,
            ssh_user: None,
        })
    }

    /// Every live instance of the deployment, one paginated DescribeInstances by tag.
    async fn describe_raw(&self, owner: &Ownership) -> Result<Vec<Instance>, ProviderError> {
        self.describe_tagged(labels::DEPLOYMENT, &owner.deployment)
            .await
    }

    /// The security groups and key pairs carrying the deployment's tag.
    async fn shared_resources(
        &self,
        owner: &Ownership,
    ) -> Result<(Vec<SecurityGroup>, Vec<KeyPairInfo>), ProviderError> {
        let c = &self.api.client;
        let by_deployment = || filter(&format!("tag:{}", labels::DEPLOYMENT), &[&owner.deployment]);
        let sgs = self
            .api
            .call("DescribeSecurityGroups", || {
                c.describe_security_groups().filters(by_deployment()).send()
            })
            .await?;
        let kps = self
            .api
            .call("DescribeKeyPairs", || {
                c.describe_key_pairs().filters(by_deployment()).send()
            })
            .await?;
        Ok((sgs.security_groups().to_vec(), kps.key_pairs().to_vec()))
    }

    /// Every live instance whose tag `key` has `value`, one paginated DescribeInstances.
    async fn describe_tagged(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<Instance>, ProviderError> {
        let c = &self.api.client;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .api
                .call("DescribeInstances", || {
                    c.describe_instances()
                        .filters(filter(&format!("tag:{key}"), &[value]))
                        .filters(filter(
                            "instance-state-name",
                            &["pending", "running", "stopping", "stopped", "shutting-down"],
                        ))
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            for r in page.reservations() {
                out.extend(r.instances().iter().cloned());
            }
            token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(String::from);
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}

fn key_body(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn not_found_as_config(e: ProviderError, field: &str, message: &str) -> ProviderError {
    match e {
        ProviderError::NotFound { .. } => ProviderError::Config {
            field: field.into(),
            message: message.into(),
        },
        ProviderError::Api { message: m, .. }
            if m.contains("Malformed") || m.contains("Invalid") =>
        {
            ProviderError::Config {
                field: field.into(),
                message: format!("{message} ({m})"),
            }
        }
        other => other,
    }
}

/// ClientToken for one wave: the same run asking for the same names gets the same token.
fn client_token(run: &str, group: &str, encoded: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (run, group, encoded).hash(&mut h);
    format!(
        "fl-{}-{:016x}",
        &run[run.len().saturating_sub(8)..],
        h.finish()
    )
}

#[async_trait]
impl Provider for Ec2Provider {
    fn kind(&self) -> &'static str {
        "ec2"
    }

    async fn preflight(&self, owner: &Ownership) -> Result<(), ProviderError> {
        self.api.check_credentials().await?;
        self.resolve().await?;
        // A foreign key pair of the same name is refused before anything is created.
        self.ensure_key_pair(owner, false).await?;
        Ok(())
    }

    async fn create_nodes(&self, req: &CreateRequest) -> Result<Vec<NodeInfo>, ProviderError> {
        let owner = &req.owner;
        let r = self.resolve().await?;
        let key = self.ensure_key_pair(owner, true).await?;
        let sg = self.ensure_security_group(owner, &r.vpc_id).await?;
        let existing: Vec<NodeInfo> = self
            .describe_raw(owner)
            .await?
            .iter()
            .filter_map(|i| self.to_info(i))
            .collect();
        let mut result: Vec<NodeInfo> = existing
            .iter()
            .filter(|n| req.nodes.iter().any(|s| s.name == n.name))
            .cloned()
            .collect();
        let mut by_group: BTreeMap<(String, Role), Vec<u32>> = BTreeMap::new();
        for s in &req.nodes {
            if existing.iter().any(|n| n.name == s.name) {
                continue;
            }
            let idx = s
                .name
                .rsplit_once('-')
                .and_then(|(_, i)| i.parse::<u32>().ok())
                .ok_or_else(|| ProviderError::Config {
                    field: format!("groups.{}", s.group),
                    message: format!("node name `{}` does not end in a number", s.name),
                })?;
            by_group
                .entry((s.group.clone(), s.role))
                .or_default()
                .push(idx);
        }
        let c = &self.api.client;
        for ((group, role), mut indexes) in by_group {
            indexes.sort_unstable();
            for wave in names::waves(&indexes) {
                let encoded = names::encode(&wave);
                let n = i32::try_from(wave.len()).unwrap_or(i32::MAX);
                let token = client_token(&req.run_token, &group, &encoded);
                let tags = TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(tag(
                        "Name",
                        &format!("flotilla-{}-{group}", owner.deployment),
                    ))
                    .tags(tag(labels::DEPLOYMENT, &owner.deployment))
                    .tags(tag(labels::GROUP, &group))
                    .tags(tag(labels::ROLE, role.as_str()))
                    .tags(tag(labels::RUN, &req.run_token))
                    .tags(tag(labels::MANAGED, "true"))
                    .tags(tag(NAMES_TAG, &encoded));
                let tags = match &owner.expires_at {
                    Some(e) => tags.tags(tag(labels::EXPIRES_AT, e)),
                    None => tags,
                }
                .build();
                let out = self
                    .api
                    .call("RunInstances", || {
                        let mut b = c
                            .run_instances()
                            .image_id(&r.ami)
                            .instance_type(InstanceType::from(self.cfg.instance_type.as_str()))
                            .min_count(n)
                            .max_count(n)
                            .key_name(&key)
                            .client_token(&token)
                            .tag_specifications(tags.clone());
                        b = match self.cfg.associate_public_ip {
                            Some(public) => b.network_interfaces(
                                InstanceNetworkInterfaceSpecification::builder()
                                    .device_index(0)
                                    .subnet_id(&r.subnet_id)
                                    .groups(&sg)
                                    .associate_public_ip_address(public)
                                    .build(),
                            ),
                            None => b.subnet_id(&r.subnet_id).security_group_ids(&sg),
                        };
                        if let Some(gb) = self.cfg.root_volume_gb {
                            b = b.block_device_mappings(
                                BlockDeviceMapping::builder()
                                    .device_name("/dev/xvda")
                                    .ebs(EbsBlockDevice::builder().volume_size(gb).build())
                                    .build(),
                            );
                        }
                        b.send()
                    })
                    .await?;
                info!(group = %group, count = n, nodes = %encoded, "RunInstances");
                result.extend(out.instances().iter().filter_map(|i| {
                    // RunInstances' answer carries no tags on some clouds: name by launch index.
                    let pos = usize::try_from(i.ami_launch_index()?).ok()?;
                    let mut info = self.to_info(i).or_else(|| {
                        Some(NodeInfo {
                            id: MachineId(i.instance_id()?.to_string()),
                            name: String::new(),
                            group: group.clone(),
                            role,
                            run_token: req.run_token.clone(),
                            state: NodeState::Pending,
                            private_ip: i.private_ip_address().and_then(|a| a.parse().ok()),
                            public_ip: None,
                            ssh_port: 22,
                            ssh_user: None,
                        })
                    })?;
                    info.name = format!("{group}-{}", wave.get(pos)?);
                    Some(info)
                }));
            }
        }
        Ok(result)
    }

    async fn wait_running(
        &self,
        owner: &Ownership,
        ids: &[MachineId],
    ) -> Result<Vec<NodeInfo>, ProviderError> {
        let wanted: HashSet<&str> = ids.iter().map(|i| i.0.as_str()).collect();
        let mut wait = Backoff::new(WAIT_TIMEOUT);
        loop {
            let all: Vec<NodeInfo> = self
                .describe_raw(owner)
                .await?
                .iter()
                .filter_map(|i| self.to_info(i))
                .collect();
            let mine: Vec<NodeInfo> = all
                .into_iter()
                .filter(|n| wanted.contains(n.id.0.as_str()))
                .collect();
            if let Some(bad) = mine.iter().find(|n| matches!(n.state, NodeState::Error(_))) {
                return Err(ProviderError::Api {
                    operation: "wait for running".into(),
                    message: format!(
                        "{} ({}) {}",
                        bad.name,
                        bad.id,
                        match &bad.state {
                            NodeState::Error(e) => e.clone(),
                            _ => String::new(),
                        }
                    ),
                    source: None,
                });
            }
            let gone: Vec<&str> = wanted
                .iter()
                .filter(|w| !mine.iter().any(|n| n.id.0 == **w))
                .copied()
                .collect();
            if !gone.is_empty() && wait.elapsed() > Duration::from_secs(30) {
                return Err(ProviderError::Api {
                    operation: "wait for running".into(),
                    message: format!("instances disappeared: {}", gone.join(", ")),
                    source: None,
                });
            }
            if gone.is_empty() && mine.iter().all(|n| n.state == NodeState::Running) {
                if self.cfg.address == AddressMode::Public {
                    if let Some(n) = mine.iter().find(|n| n.public_ip.is_none()) {
                        return Err(ProviderError::Config { field: "provider.address".into(), message: format!("{} has no public IP; set provider.associate_public_ip: true or provider.address: private", n.name) });
                    }
                }
                return Ok(mine);
            }
            if !wait.wait().await {
                return Err(ProviderError::Api {
                    operation: "wait for running".into(),
                    message: format!("instances not running after {}s", WAIT_TIMEOUT.as_secs()),
                    source: None,
                });
            }
        }
    }

    async fn describe(&self, owner: &Ownership) -> Result<Vec<NodeInfo>, ProviderError> {
        Ok(self
            .describe_raw(owner)
            .await?
            .iter()
            .filter_map(|i| self.to_info(i))
            .collect())
    }

    async fn delete_nodes(
        &self,
        owner: &Ownership,
        ids: &[MachineId],
    ) -> Result<(), ProviderError> {
        if ids.is_empty() {
            return Ok(());
        }
        let c = &self.api.client;
        let live: HashSet<String> = self
            .describe_raw(owner)
            .await?
            .iter()
            .filter_map(|i| i.instance_id().map(String::from))
            .collect();
        // Already gone counts as deleted.
        let targets: Vec<String> = ids
            .iter()
            .map(|i| i.0.clone())
            .filter(|i| live.contains(i))
            .collect();
        for batch in targets.chunks(TERMINATE_BATCH) {
            match self
                .api
                .call("TerminateInstances", || {
                    c.terminate_instances()
                        .set_instance_ids(Some(batch.to_vec()))
                        .send()
                })
                .await
            {
                Ok(_) => {}
                Err(ProviderError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        // Wait until none of them is alive (shutting-down counts as alive).
        let mut wait = Backoff::new(WAIT_TIMEOUT);
        loop {
            let still: Vec<String> = self
                .describe_raw(owner)
                .await?
                .iter()
                .filter_map(|i| i.instance_id().map(String::from))
                .filter(|i| targets.contains(i))
                .collect();
            if still.is_empty() {
                return Ok(());
            }
            if !wait.wait().await {
                return Err(ProviderError::Api {
                    operation: "wait for terminated".into(),
                    message: format!("still alive: {}", still.join(", ")),
                    source: None,
                });
            }
        }
    }

    async fn teardown(&self, owner: &Ownership) -> Result<(), ProviderError> {
        // Only what carries this deployment's tag, and only once nothing uses it.
        if !self.describe_raw(owner).await?.is_empty() {
            return Err(ProviderError::Api {
                operation: "teardown".into(),
                message: "instances of the deployment still exist".into(),
                source: None,
            });
        }
        let (sgs, kps) = self.shared_resources(owner).await?;
        for sg in &sgs {
            if let Some(id) = sg.group_id() {
                self.delete_security_group(id).await?;
            }
        }
        for kp in &kps {
            if let Some(name) = kp.key_name() {
                self.delete_key_pair(name).await?;
            }
        }
        Ok(())
    }

    async fn managed_resources(&self) -> Result<Option<Vec<ManagedResource>>, ProviderError> {
        self.list_managed().await.map(Some)
    }

    async fn delete_managed(&self, resource: &ManagedResource) -> Result<(), ProviderError> {
        self.delete_one(resource).await
    }

    async fn relabel_expiry(
        &self,
        owner: &Ownership,
        expires_at: &str,
    ) -> Result<bool, ProviderError> {
        self.retag_expiry(owner, expires_at).await.map(|()| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_stable_per_wave() {
        assert_eq!(
            client_token("r1-abcdef12", "w", "1-3"),
            client_token("r1-abcdef12", "w", "1-3")
        );
        assert_ne!(
            client_token("r1-abcdef12", "w", "1-3"),
            client_token("r1-abcdef12", "w", "4")
        );
        assert!(
            client_token("r1-abcdef12", "w", "1-3").len() <= 64,
            "EC2 limit"
        );
    }
}
