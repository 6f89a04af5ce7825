//! Machines as containers on a Docker engine: each node is an (almost) privileged container on a
//! user-defined bridge network with a fixed address, running only sshd until flotilla installs
//! Docker in it over SSH, exactly as it would on a fresh cloud VM.

mod config;
mod gc;
mod image;
mod naming;

mod factory;

pub use config::{DockerConfig, DockerStorage, PrivilegeMode};
pub use factory::Factory;
use flotilla_provider_core::backoff::Backoff;
pub use image::{default_image_name, IMAGE_REVISION};

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam,
    IpamConfig, Mount, MountType, NetworkCreateRequest, NetworkingConfig, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, ListVolumesOptions, RemoveContainerOptions,
    RemoveVolumeOptions, UploadToContainerOptions,
};
use bollard::Docker;
use flotilla_provider_core::{
    labels, CreateRequest, MachineId, ManagedResource, NodeInfo, NodeSpec, NodeState, Ownership,
    Provider, ProviderError, Role,
};
use futures::stream::{self, StreamExt};
use ipnet::Ipv4Net;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Mutex;
use tracing::{debug, info};

use naming::{container_name, volume_name};

/// How many containers are created or removed at once.
const PARALLELISM: usize = 8;
/// First host number handed to nodes (`.1` is the gateway; a few addresses stay free for the user).
const FIRST_NODE_HOST: u32 = 10;

pub struct DockerProvider {
    docker: Docker,
    config: DockerConfig,
    image: String,
    image_is_default: bool,
    cache_dir: PathBuf,
    /// Decided on the first start of the run: `Some(true)` = `--privileged` works here.
    privileged_works: Mutex<Option<bool>>,
    endpoint: String,
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn api(op: impl Into<String>, e: bollard::errors::Error) -> ProviderError {
    ProviderError::api(op, e)
}

impl DockerProvider {
    /// Connects to the engine named in the config, `DOCKER_HOST`, or the local socket, and
    /// negotiates the API version down to what the daemon speaks (Debian's 20.10 speaks 1.41).
    pub async fn connect(config: DockerConfig, cache_dir: PathBuf) -> Result<Self, ProviderError> {
        let endpoint = config
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let unreachable =
            |message: String, source: Option<bollard::errors::Error>| ProviderError::Unreachable {
                endpoint: endpoint.clone(),
                message,
                source: source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
            };
        let docker = Docker::connect_with_host(&endpoint).map_err(|e| {
            unreachable(
                "invalid Docker engine address (provider.host / DOCKER_HOST)".into(),
                Some(e),
            )
        })?;
        let docker = docker.negotiate_version().await.map_err(|e| {
            unreachable(
                "the Docker engine does not answer; is dockerd running? (start it, or set \
                 DOCKER_HOST / provider.host)"
                    .into(),
                Some(e),
            )
        })?;
        let (image, image_is_default) = match &config.image {
            Some(i) => (i.clone(), false),
            None => (default_image_name(&config.suite), true),
        };
        let privileged_works = match config.privileged {
            PrivilegeMode::Auto => None,
            PrivilegeMode::Privileged => Some(true),
            PrivilegeMode::Capabilities => Some(false),
        };
        Ok(Self {
            docker,
            config,
            image,
            image_is_default,
            cache_dir,
            privileged_works: Mutex::new(privileged_works),
            endpoint,
        })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub fn image(&self) -> &str {
        &self.image
    }

    fn network_name(&self, owner: &Ownership) -> String {
        owner.resource_name(self.config.network.as_deref())
    }

    fn owner_filter(owner: &Ownership) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_string(),
            vec![format!("{}={}", labels::DEPLOYMENT, owner.deployment)],
        )])
    }

    fn privileged_mode(&self) -> Option<bool> {
        *self
            .privileged_works
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn set_privileged_mode(&self, works: bool) {
        *self
            .privileged_works
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(works);
    }

    /// Creates the deployment's network, or checks that the existing one is ours and matches.
    async fn ensure_network(&self, owner: &Ownership) -> Result<String, ProviderError> {
        let name = self.network_name(owner);
        match self.docker.inspect_network(&name, None).await {
            Ok(net) => {
                let owned = net
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(labels::DEPLOYMENT))
                    .is_some_and(|d| d == &owner.deployment);
                if !owned {
                    return Err(ProviderError::Config {
                        field: "provider.network".into(),
                        message: format!(
                            "Docker network `{name}` already exists and does not belong to deployment \
                             `{}`; choose another provider.network name",
                            owner.deployment
                        ),
                    });
                }
                let subnet = net
                    .ipam
                    .and_then(|i| i.config)
                    .and_then(|c| c.into_iter().find_map(|c| c.subnet));
                if let Some(s) = subnet {
                    if s != self.config.subnet.to_string() {
                        return Err(ProviderError::Config {
                            field: "provider.subnet".into(),
                            message: format!(
                                "the deployment's network `{name}` has subnet {s}, the blueprint asks for {}; \
                                 a subnet cannot change while nodes exist (run `flotilla down` first)",
                                self.config.subnet
                            ),
                        });
                    }
                }
                Ok(name)
            }
            Err(e) if is_not_found(&e) => {
                let gateway = nth_host(self.config.subnet, 1).map(|g| g.to_string());
                let request = NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".into()),
                    ipam: Some(Ipam {
                        config: Some(vec![IpamConfig {
                            subnet: Some(self.config.subnet.to_string()),
                            gateway,
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    labels: Some(owner.base_labels().into_iter().collect()),
                    ..Default::default()
                };
                self.docker.create_network(request).await.map_err(|e| match &e {
                    bollard::errors::Error::DockerResponseServerError { message, .. }
                        if message.contains("overlap") =>
                    {
                        ProviderError::Config {
                            field: "provider.subnet".into(),
                            message: format!(
                                "subnet {} overlaps a network that already exists on the Docker engine \
                                 ({message}); choose another provider.subnet",
                                self.config.subnet
                            ),
                        }
                    }
                    _ => api(format!("create network {name}"), e),
                })?;
                info!(network = %name, subnet = %self.config.subnet, "network created");
                Ok(name)
            }
            Err(e) => Err(api(format!("inspect network {name}"), e)),
        }
    }

    /// Addresses already taken on the network (by anyone), plus the gateway.
    async fn used_addresses(&self, network: &str) -> Result<BTreeSet<Ipv4Addr>, ProviderError> {
        let net = self
            .docker
            .inspect_network(network, None)
            .await
            .map_err(|e| api(format!("inspect network {network}"), e))?;
        let mut used = BTreeSet::new();
        for c in net.containers.unwrap_or_default().values() {
            if let Some(ip) = c.ipv4_address.as_deref().and_then(|a| a.split('/').next()) {
                if let Ok(ip) = ip.parse() {
                    used.insert(ip);
                }
            }
        }
        if let Some(g) = nth_host(self.config.subnet, 1) {
            used.insert(g);
        }
        Ok(used)
    }

    fn summary_to_info(&self, c: &ContainerSummary, network: &str) -> Option<NodeInfo> {
        let l = c.labels.as_ref()?;
        let name = l.get(labels::NODE)?.clone();
        let group = l.get(labels::GROUP).cloned().unwrap_or_default();
        let role = l
            .get(labels::ROLE)
            .and_then(|r| Role::parse(r))
            .unwrap_or(Role::Worker);
        let run_token = l.get(labels::RUN).cloned().unwrap_or_default();
        let state = match c.state.as_ref().map(|s| s.to_string()).as_deref() {
            Some("running") => NodeState::Running,
            Some("created") | Some("restarting") => NodeState::Pending,
            Some("exited") | Some("paused") => NodeState::Stopped,
            Some(other) => NodeState::Error(format!("container is {other}")),
            None => NodeState::Error("container state unknown".into()),
        };
        let ip = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|n| n.get(network))
            .and_then(|e| e.ip_address.as_deref())
            .filter(|a| !a.is_empty())
            .and_then(|a| a.parse::<IpAddr>().ok())
            .or_else(|| {
                // A stopped container has no address; the label keeps the one it was given.
                l.get("io.flotilla.ip").and_then(|a| a.parse().ok())
            });
        Some(NodeInfo {
            id: MachineId(c.id.clone()?),
            name,
            group,
            role,
            run_token,
            state,
            private_ip: ip,
            public_ip: None,
            ssh_port: 22,
            ssh_user: Some("root".into()),
        })
    }

    async fn list_owned(&self, owner: &Ownership) -> Result<Vec<ContainerSummary>, ProviderError> {
        self.docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(Self::owner_filter(owner)),
                ..Default::default()
            }))
            .await
            .map_err(|e| api("list containers", e))
    }

    fn host_config(&self, owner: &Ownership, spec: &NodeSpec, privileged: bool) -> HostConfig {
        let mut hc = HostConfig {
            init: Some(true),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        match self.config.docker_storage {
            DockerStorage::Volume => {
                hc.mounts = Some(vec![Mount {
                    target: Some("/var/lib/docker".into()),
                    source: Some(volume_name(&owner.deployment, &spec.name)),
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                }]);
            }
            DockerStorage::Tmpfs => {
                hc.tmpfs = Some(HashMap::from([(
                    "/var/lib/docker".to_string(),
                    "rw,exec,size=8g".to_string(),
                )]));
            }
        }
        let binds: Vec<Mount> = self
            .config
            .mounts
            .iter()
            .filter_map(|m| config::parse_mount(m).ok())
            .map(|b| Mount {
                target: Some(b.node),
                source: Some(b.host),
                typ: Some(MountType::BIND),
                read_only: Some(b.read_only),
                ..Default::default()
            })
            .collect();
        if !binds.is_empty() {
            hc.mounts.get_or_insert_with(Vec::new).extend(binds);
        }
        if privileged {
            hc.privileged = Some(true);
        } else {
            // Everything a nested dockerd needs, minus what a reduced bounding set cannot grant.
            hc.cap_add = Some(vec!["ALL".into()]);
            hc.cap_drop = Some(vec!["SYS_RESOURCE".into()]);
            hc.security_opt = Some(vec![
                "seccomp=unconfined".into(),
                "apparmor=unconfined".into(),
            ]);
            hc.masked_paths = Some(vec![]);
            hc.readonly_paths = Some(vec![]);
            hc.device_cgroup_rules = Some(vec!["a *:* rwm".into()]);
        }
        hc
    }

    /// Creates (or finds) one node container and starts it.
    async fn create_one(
        &self,
        owner: &Ownership,
        network: &str,
        req: &CreateRequest,
        spec: &NodeSpec,
        ip: Ipv4Addr,
    ) -> Result<(), ProviderError> {
        let cname = container_name(&owner.deployment, &spec.name);
        let privileged = self.privileged_mode().unwrap_or(true);
        self.create_container(owner, network, req, spec, ip, privileged)
            .await?;
        match self.docker.start_container(&cname, None).await {
            Ok(()) => {
                if self.privileged_mode().is_none() {
                    self.set_privileged_mode(privileged);
                }
            }
            Err(e)
                if privileged
                    && self.config.privileged == PrivilegeMode::Auto
                    && caps_refused(&e) =>
            {
                info!(
                    node = %spec.name,
                    "the engine refuses --privileged here (capability bounding set); using the explicit capability set"
                );
                self.set_privileged_mode(false);
                self.remove_container(&cname).await?;
                self.create_container(owner, network, req, spec, ip, false)
                    .await?;
                self.docker
                    .start_container(&cname, None)
                    .await
                    .map_err(|e| api(format!("start container {cname}"), e))?;
            }
            Err(e) => return Err(api(format!("start container {cname}"), e)),
        }
        Ok(())
    }

    async fn create_container(
        &self,
        owner: &Ownership,
        network: &str,
        req: &CreateRequest,
        spec: &NodeSpec,
        ip: Ipv4Addr,
        privileged: bool,
    ) -> Result<(), ProviderError> {
        let cname = container_name(&owner.deployment, &spec.name);
        let mut node_labels: HashMap<String, String> = owner.base_labels().into_iter().collect();
        node_labels.extend([
            (labels::GROUP.to_string(), spec.group.clone()),
            (labels::NODE.to_string(), spec.name.clone()),
            (labels::ROLE.to_string(), spec.role.as_str().to_string()),
            (labels::RUN.to_string(), req.run_token.clone()),
            ("io.flotilla.ip".to_string(), ip.to_string()),
        ]);
        if self.config.docker_storage == DockerStorage::Volume {
            let vname = volume_name(&owner.deployment, &spec.name);
            self.docker
                .create_volume(bollard::models::VolumeCreateRequest {
                    name: Some(vname.clone()),
                    labels: Some(node_labels.clone()),
                    ..Default::default()
                })
                .await
                .map_err(|e| api(format!("create volume {vname}"), e))?;
        }
        let body = ContainerCreateBody {
            hostname: Some(spec.name.clone()),
            image: Some(self.image.clone()),
            labels: Some(node_labels),
            host_config: Some(self.host_config(owner, spec, privileged)),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.to_string(),
                    EndpointSettings {
                        ipam_config: Some(EndpointIpamConfig {
                            ipv4_address: Some(ip.to_string()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(cname.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| api(format!("create container {cname}"), e))?;
        // The key goes in before first boot, as cloud-init would write it from instance metadata.
        let archive =
            authorized_keys_tar(&req.ssh_public_key).map_err(|e| ProviderError::Local {
                what: "authorized_keys archive".into(),
                message: e.to_string(),
                source: Some(e),
            })?;
        self.docker
            .upload_to_container(
                &cname,
                Some(UploadToContainerOptions {
                    path: "/".into(),
                    ..Default::default()
                }),
                bollard::body_full(archive.into()),
            )
            .await
            .map_err(|e| api(format!("inject SSH key into {cname}"), e))?;
        Ok(())
    }

    async fn remove_container(&self, name_or_id: &str) -> Result<(), ProviderError> {
        match self
            .docker
            .remove_container(
                name_or_id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Ok(()),
            Err(e) => Err(api(format!("remove container {name_or_id}"), e)),
        }
    }

    async fn remove_volume(&self, name: &str) -> Result<(), ProviderError> {
        // A volume can stay "in use" for a moment after its container is removed.
        let mut in_use = Backoff::new(std::time::Duration::from_secs(5))
            .every(std::time::Duration::from_millis(250));
        loop {
            match self
                .docker
                .remove_volume(name, Some(RemoveVolumeOptions { force: true }))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) if in_use.wait().await => {}
                Err(e) => return Err(api(format!("remove volume {name}"), e)),
            }
        }
    }
}

fn caps_refused(e: &bollard::errors::Error) -> bool {
    let s = e.to_string();
    s.contains("apply caps") || (s.contains("operation not permitted") && s.contains("caps"))
}

/// The n-th host address of a subnet (1 = first usable).
fn nth_host(net: Ipv4Net, n: u32) -> Option<Ipv4Addr> {
    let base = u32::from(net.network());
    let addr = base.checked_add(n)?;
    let broadcast = u32::from(net.broadcast());
    (addr < broadcast).then(|| Ipv4Addr::from(addr))
}

/// A tar archive holding `root/.ssh/authorized_keys` with the modes sshd's StrictModes wants.
fn authorized_keys_tar(public_key: &str) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o700);
    dir.set_uid(0);
    dir.set_gid(0);
    dir.set_size(0);
    builder.append_data(&mut dir, "root/.ssh/", std::io::empty())?;
    let content = format!("{}\n", public_key.trim());
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o600);
    file.set_uid(0);
    file.set_gid(0);
    file.set_size(content.len() as u64);
    builder.append_data(&mut file, "root/.ssh/authorized_keys", content.as_bytes())?;
    builder.into_inner()
}

#[async_trait]
impl Provider for DockerProvider {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn preflight(&self, _owner: &Ownership) -> Result<(), ProviderError> {
        self.docker
            .ping()
            .await
            .map_err(|e| ProviderError::Unreachable {
                endpoint: self.endpoint.clone(),
                message: "the Docker engine does not answer".into(),
                source: Some(Box::new(e)),
            })?;
        image::ensure_image(
            &self.docker,
            &self.image,
            self.image_is_default,
            &self.config.suite,
            &self.config.mirror,
            &self.cache_dir,
        )
        .await
    }

    async fn create_nodes(&self, req: &CreateRequest) -> Result<Vec<NodeInfo>, ProviderError> {
        let owner = &req.owner;
        let network = self.ensure_network(owner).await?;
        let existing = self.describe(owner).await?;
        let mut used = self.used_addresses(&network).await?;
        let mut todo = Vec::new();
        for spec in &req.nodes {
            if let Some(found) = existing.iter().find(|n| n.name == spec.name) {
                // Created by an earlier (maybe interrupted) attempt: adopt it, start it if needed.
                if found.state != NodeState::Running {
                    let _ = self.docker.start_container(&found.id.0, None).await;
                }
                continue;
            }
            let mut host = FIRST_NODE_HOST;
            let ip = loop {
                let candidate =
                    nth_host(self.config.subnet, host).ok_or_else(|| ProviderError::Config {
                        field: "provider.subnet".into(),
                        message: format!(
                            "subnet {} has no free address left for node {}",
                            self.config.subnet, spec.name
                        ),
                    })?;
                if !used.contains(&candidate) {
                    break candidate;
                }
                host += 1;
            };
            used.insert(ip);
            todo.push((spec.clone(), ip));
        }
        // Until we know whether --privileged works here, create one node alone to find out.
        let mut rest = todo.as_slice();
        if self.privileged_mode().is_none() {
            if let Some(((spec, ip), tail)) = todo.split_first() {
                self.create_one(owner, &network, req, spec, *ip).await?;
                rest = tail;
            }
        }
        let network = network.as_str();
        let results: Vec<Result<(), ProviderError>> = stream::iter(rest.to_vec())
            .map(|(spec, ip)| async move { self.create_one(owner, network, req, &spec, ip).await })
            .buffer_unordered(PARALLELISM)
            .collect()
            .await;
        if let Some(err) = results.into_iter().find_map(Result::err) {
            return Err(err);
        }
        let all = self.describe(owner).await?;
        Ok(all
            .into_iter()
            .filter(|n| req.nodes.iter().any(|s| s.name == n.name))
            .collect())
    }

    async fn describe(&self, owner: &Ownership) -> Result<Vec<NodeInfo>, ProviderError> {
        let network = self.network_name(owner);
        let list = self.list_owned(owner).await?;
        Ok(list
            .iter()
            .filter_map(|c| self.summary_to_info(c, &network))
            .collect())
    }

    async fn delete_nodes(
        &self,
        owner: &Ownership,
        ids: &[MachineId],
    ) -> Result<(), ProviderError> {
        let list = self.list_owned(owner).await?;
        let targets: Vec<(String, Option<String>)> = ids
            .iter()
            .map(|id| {
                let node = list
                    .iter()
                    .find(|c| c.id.as_deref() == Some(id.0.as_str()))
                    .and_then(|c| c.labels.as_ref())
                    .and_then(|l| l.get(labels::NODE).cloned());
                (id.0.clone(), node)
            })
            .collect();
        let results: Vec<Result<(), ProviderError>> = stream::iter(targets)
            .map(|(id, node)| async move {
                self.remove_container(&id).await?;
                if let Some(node) = node {
                    self.remove_volume(&volume_name(&owner.deployment, &node))
                        .await?;
                }
                debug!(container = %id, "node container removed");
                Ok(())
            })
            .buffer_unordered(PARALLELISM)
            .collect()
            .await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    }

    async fn managed_resources(&self) -> Result<Option<Vec<ManagedResource>>, ProviderError> {
        self.list_managed().await.map(Some)
    }

    async fn delete_managed(&self, resource: &ManagedResource) -> Result<(), ProviderError> {
        self.delete_one(resource).await
    }

    async fn teardown(&self, owner: &Ownership) -> Result<(), ProviderError> {
        // Anything still labelled for the deployment goes: containers, volumes, then the network.
        let leftovers: Vec<MachineId> = self
            .list_owned(owner)
            .await?
            .into_iter()
            .filter_map(|c| c.id.map(MachineId))
            .collect();
        if !leftovers.is_empty() {
            self.delete_nodes(owner, &leftovers).await?;
        }
        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(Self::owner_filter(owner)),
            }))
            .await
            .map_err(|e| api("list volumes", e))?;
        for v in volumes.volumes.unwrap_or_default() {
            self.remove_volume(&v.name).await?;
        }
        let networks = self
            .docker
            .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
                filters: Some(Self::owner_filter(owner)),
            }))
            .await
            .map_err(|e| api("list networks", e))?;
        for n in networks {
            let Some(id) = n.id else { continue };
            match self.docker.remove_network(&id).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(api(
                        format!("remove network {}", n.name.unwrap_or_default()),
                        e,
                    ))
                }
            }
            // Removal is asynchronous: wait (bounded) until the network is really gone, so an
            // immediate `up` can create it again.
            let mut gone = Backoff::new(std::time::Duration::from_secs(5))
                .every(std::time::Duration::from_millis(100));
            loop {
                match self.docker.inspect_network(&id, None).await {
                    Err(e) if is_not_found(&e) => break,
                    _ if gone.wait().await => {}
                    _ => break,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_host_stays_inside_the_subnet() {
        let net: Ipv4Net = "10.198.3.0/24".parse().expect("valid");
        assert_eq!(nth_host(net, 1), Some(Ipv4Addr::new(10, 198, 3, 1)));
        assert_eq!(nth_host(net, 254), Some(Ipv4Addr::new(10, 198, 3, 254)));
        assert_eq!(nth_host(net, 255), None, "broadcast is not a host");
    }

    #[test]
    fn key_archive_has_strict_modes() {
        let bytes = authorized_keys_tar("ssh-ed25519 AAAA test").expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.path().expect("path").display().to_string(),
                    e.header().mode().expect("mode"),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("root/.ssh/".to_string(), 0o700),
                ("root/.ssh/authorized_keys".to_string(), 0o600)
            ]
        );
    }
}
