//! OpenStack machines over the REST APIs (Keystone v3, Nova, Neutron, Glance) with reqwest.
//!
//! Servers are created one per call, a bounded number in flight: multi-create answers only the
//! first server (or only a reservation id) and cannot give each server its own name and metadata,
//! which flotilla needs to find every node again after a crash. Each server carries the tag
//! `flotilla:<deployment>` (one batched list per poll round) and metadata naming its deployment,
//! group, node and run.

pub mod auth;
mod config;
mod gc;
mod session;

mod factory;

pub use config::{AddressMode, OpenStackConfig};
pub use factory::Factory;

use async_trait::async_trait;
use flotilla_provider_core::backoff::Backoff;
use flotilla_provider_core::{
    labels, CreateRequest, MachineId, ManagedResource, NodeInfo, NodeSpec, NodeState, Ownership,
    PortRule, Provider, ProviderError, Role,
};
use futures::stream::{self, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use session::{api_error, Resend, Service, Session};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::{info, warn};

const WAIT_TIMEOUT: Duration = Duration::from_secs(900);
/// Creates of one server sent before giving up (each after checking none was made).
const CREATE_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone)]
struct Resolved {
    image_id: String,
    flavor_id: String,
    network_id: String,
    network_name: String,
    fip_network_id: Option<String>,
}

pub struct OpenStackProvider {
    s: Session,
    cfg: OpenStackConfig,
    ports: Vec<PortRule>,
    public_key: String,
    resolved: Mutex<Option<Resolved>>,
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn tag_of(owner: &Ownership) -> String {
    format!("flotilla:{}", owner.deployment)
}

/// Starts the description of every security group flotilla makes; `gc` reads the deployment
/// back from it when a run died before the group was tagged.
const SG_DESCRIPTION_PREFIX: &str = "flotilla deployment ";

/// The description of the deployment's security group: how teardown tells the group flotilla
/// made from one the blueprint names and the user made.
fn sg_description(owner: &Ownership) -> String {
    format!("{SG_DESCRIPTION_PREFIX}{}", owner.deployment)
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

/// "not found" with the closest names the cloud has.
fn not_found(field: &str, what: &str, wanted: &str, names: &[String]) -> ProviderError {
    let mut ranked: Vec<(&String, f64)> = names
        .iter()
        .map(|n| (n, strsim::jaro_winkler(wanted, n)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let close: Vec<&str> = ranked
        .iter()
        .take(3)
        .filter(|(_, s)| *s > 0.6)
        .map(|(n, _)| n.as_str())
        .collect();
    let hint = if close.is_empty() {
        if names.is_empty() {
            String::new()
        } else {
            format!(
                "; available: {}",
                names.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
            )
        }
    } else {
        format!(
            "; did you mean {}?",
            close
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        )
    };
    ProviderError::Config {
        field: field.into(),
        message: format!("{what} `{wanted}` not found{hint}"),
    }
}

impl OpenStackProvider {
    pub fn new(
        cfg: OpenStackConfig,
        ports: Vec<PortRule>,
        public_key: String,
    ) -> Result<Self, ProviderError> {
        let cloud = auth::resolve(
            cfg.cloud.as_deref(),
            &|k| std::env::var(k).ok().filter(|v| !v.is_empty()),
            &auth::clouds_yaml_paths(),
        )
        .map_err(|message| ProviderError::Config {
            field: "provider.cloud".into(),
            message,
        })?;
        let interface = cfg.interface(cloud.interface.as_deref());
        let s = Session::new(cloud, interface, cfg.region.clone())?;
        Ok(Self {
            s,
            cfg,
            ports,
            public_key,
            resolved: Mutex::new(None),
        })
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
        // Flavor by id or name.
        let flavors = self
            .s
            .ok(Service::Compute, Method::GET, "/flavors/detail", None)
            .await?;
        let list = flavors["flavors"].as_array().cloned().unwrap_or_default();
        let flavor = list
            .iter()
            .find(|f| f["id"] == self.cfg.flavor.as_str())
            .or_else(|| list.iter().find(|f| f["name"] == self.cfg.flavor.as_str()));
        let flavor_id = match flavor.and_then(|f| f["id"].as_str()) {
            Some(id) => id.to_string(),
            None => {
                let names: Vec<String> = list
                    .iter()
                    .filter_map(|f| f["name"].as_str().map(String::from))
                    .collect();
                return Err(not_found(
                    "provider.flavor",
                    "flavor",
                    &self.cfg.flavor,
                    &names,
                ));
            }
        };
        // Image by id or name.
        let image_id = if looks_like_uuid(&self.cfg.image) {
            let r = self
                .s
                .call(
                    Service::Image,
                    Method::GET,
                    &format!("/images/{}", self.cfg.image),
                    None,
                    false,
                )
                .await?;
            if !r.status.is_success() {
                return Err(ProviderError::Config {
                    field: "provider.image".into(),
                    message: format!("image {} not found ({})", self.cfg.image, r.status),
                });
            }
            self.cfg.image.clone()
        } else {
            let found = self
                .s
                .ok(
                    Service::Image,
                    Method::GET,
                    &format!("/images?name={}&status=active", enc(&self.cfg.image)),
                    None,
                )
                .await?;
            match found["images"]
                .as_array()
                .and_then(|a| a.first())
                .and_then(|i| i["id"].as_str())
            {
                Some(id) => id.to_string(),
                None => {
                    let all = self
                        .s
                        .ok(Service::Image, Method::GET, "/images?limit=200", None)
                        .await?;
                    let names: Vec<String> = all["images"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|i| i["name"].as_str().map(String::from))
                        .collect();
                    return Err(not_found(
                        "provider.image",
                        "image",
                        &self.cfg.image,
                        &names,
                    ));
                }
            }
        };
        // Network by id or name.
        let (network_id, network_name) = self
            .find_network(&self.cfg.network, false, "provider.network")
            .await?;
        let fip_network_id = match &self.cfg.floating_ip_pool {
            Some(pool) => Some(
                self.find_network(pool, true, "provider.floating_ip_pool")
                    .await?
                    .0,
            ),
            None => None,
        };
        let r = Resolved {
            image_id,
            flavor_id,
            network_id,
            network_name,
            fip_network_id,
        };
        *self.resolved.lock().await = Some(r.clone());
        Ok(r)
    }

    async fn find_network(
        &self,
        wanted: &str,
        external: bool,
        field: &str,
    ) -> Result<(String, String), ProviderError> {
        let path = if looks_like_uuid(wanted) {
            format!("/networks?id={wanted}")
        } else {
            format!("/networks?name={}", enc(wanted))
        };
        let v = self
            .s
            .ok(Service::Network, Method::GET, &path, None)
            .await?;
        let nets = v["networks"].as_array().cloned().unwrap_or_default();
        let pick = nets
            .iter()
            .find(|n| !external || n["router:external"] == true);
        match pick {
            Some(n) => Ok((
                n["id"].as_str().unwrap_or_default().to_string(),
                n["name"].as_str().unwrap_or_default().to_string(),
            )),
            None => {
                let all = self
                    .s
                    .ok(Service::Network, Method::GET, "/networks", None)
                    .await?;
                let names: Vec<String> = all["networks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|n| !external || n["router:external"] == true)
                    .filter_map(|n| n["name"].as_str().map(String::from))
                    .collect();
                Err(not_found(
                    field,
                    if external {
                        "external network"
                    } else {
                        "network"
                    },
                    wanted,
                    &names,
                ))
            }
        }
    }

    /// The key pair of that name, if it exists.
    async fn get_key_pair(&self, name: &str) -> Result<session::Reply, ProviderError> {
        self.s
            .call(
                Service::Compute,
                Method::GET,
                &format!("/os-keypairs/{}", enc(name)),
                None,
                false,
            )
            .await
    }

    async fn ensure_key_pair(&self, owner: &Ownership, create: bool) -> Result<(), ProviderError> {
        let name = self.key_name(owner);
        let r = self.get_key_pair(&name).await?;
        if r.status.is_success() {
            let theirs = r.body["keypair"]["public_key"]
                .as_str()
                .map(key_body)
                .unwrap_or_default();
            if theirs != key_body(&self.public_key) {
                return Err(ProviderError::Config {
                    field: "provider.key_name".into(),
                    message: format!("key pair `{name}` exists with a different public key; flotilla never overwrites a key pair: choose another provider.key_name or delete it"),
                });
            }
            return Ok(());
        }
        if r.status != StatusCode::NOT_FOUND {
            return Err(api_error("GET os-keypairs", &r));
        }
        if create {
            let body = json!({"keypair": {"name": name, "public_key": self.public_key.trim()}});
            let r = self
                .s
                .call(
                    Service::Compute,
                    Method::POST,
                    "/os-keypairs",
                    Some(&body),
                    false,
                )
                .await?;
            if !(r.status.is_success() || r.status == StatusCode::CONFLICT) {
                return Err(api_error("POST os-keypairs", &r));
            }
            info!(key = %name, "key pair imported");
        }
        Ok(())
    }

    async fn ensure_security_group(&self, owner: &Ownership) -> Result<(), ProviderError> {
        let name = self.sg_name(owner);
        let v = self
            .s
            .ok(
                Service::Network,
                Method::GET,
                &format!("/security-groups?name={}", enc(&name)),
                None,
            )
            .await?;
        let sg = match v["security_groups"]
            .as_array()
            .and_then(|a| a.first())
            .cloned()
        {
            Some(sg) => sg,
            None => {
                let body =
                    json!({"security_group": {"name": name, "description": sg_description(owner)}});
                let created = self
                    .s
                    .ok(
                        Service::Network,
                        Method::POST,
                        "/security-groups",
                        Some(&body),
                    )
                    .await?;
                info!(group = %name, "security group created");
                created["security_group"].clone()
            }
        };
        let id = sg["id"].as_str().unwrap_or_default().to_string();
        // Tagged for `gc` (Neutron takes no tags in this create call). Only a group flotilla
        // made, as its description says: a group the blueprint names and the user made is
        // used, never marked as flotilla's.
        let ours = sg["description"] == sg_description(owner).as_str();
        if ours && !gc::has_tag(&sg["tags"], labels::MANAGED) {
            self.put_tags("security-groups", &id, &gc::owner_tags(owner, None))
                .await?;
        }
        let rules = sg["security_group_rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let has = |proto: &str, from: i32, to: i32, cidr: Option<&str>, group: Option<&str>| {
            rules.iter().any(|r| {
                r["direction"] == "ingress"
                    && r["protocol"] == proto
                    && r["port_range_min"] == from
                    && r["port_range_max"] == to
                    && match (cidr, group) {
                        (Some(c), _) => r["remote_ip_prefix"] == c,
                        (_, Some(g)) => r["remote_group_id"] == g,
                        _ => false,
                    }
            })
        };
        let mut wanted: Vec<Value> = Vec::new();
        if !has("tcp", 22, 22, Some(&self.cfg.ssh_cidr), None) {
            wanted.push(json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": self.cfg.ssh_cidr}));
        }
        for p in &self.ports {
            if !has(p.proto, p.from, p.to, None, Some(&id)) {
                wanted.push(json!({"direction": "ingress", "ethertype": "IPv4", "protocol": p.proto, "port_range_min": p.from, "port_range_max": p.to, "remote_group_id": id}));
            }
        }
        for mut rule in wanted {
            rule["security_group_id"] = Value::String(id.clone());
            let r = self
                .s
                .call(
                    Service::Network,
                    Method::POST,
                    "/security-group-rules",
                    Some(&json!({"security_group_rule": rule})),
                    false,
                )
                .await?;
            if !(r.status.is_success() || r.status == StatusCode::CONFLICT) {
                return Err(api_error("POST security-group-rules", &r));
            }
        }
        Ok(())
    }

    /// Servers of the deployment: one list call by tag.
    async fn list(&self, owner: &Ownership) -> Result<Vec<Value>, ProviderError> {
        let v = self
            .s
            .ok(
                Service::Compute,
                Method::GET,
                &format!("/servers/detail?tags={}", enc(&tag_of(owner))),
                None,
            )
            .await?;
        Ok(v["servers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !matches!(s["status"].as_str(), Some("DELETED") | Some("SOFT_DELETED")))
            .collect())
    }

    fn to_info(&self, s: &Value, network_name: Option<&str>) -> Option<NodeInfo> {
        let md = &s["metadata"];
        let name = md[labels::NODE].as_str()?.to_string();
        let state = match s["status"].as_str().unwrap_or("") {
            "ACTIVE" => NodeState::Running,
            "BUILD" | "REBUILD" | "REBOOT" | "HARD_REBOOT" | "MIGRATING" | "RESIZE" => {
                NodeState::Pending
            }
            "SHUTOFF" | "PAUSED" | "SUSPENDED" | "SHELVED" | "SHELVED_OFFLOADED" | "STOPPED" => {
                NodeState::Stopped
            }
            "ERROR" => NodeState::Error(
                s["fault"]["message"]
                    .as_str()
                    .unwrap_or("server is in ERROR (no fault message)")
                    .to_string(),
            ),
            other => NodeState::Error(format!("server status {other}")),
        };
        let mut fixed = None;
        let mut floating = None;
        if let Some(addrs) = s["addresses"].as_object() {
            for (net, list) in addrs {
                for a in list.as_array().into_iter().flatten() {
                    let ip = a["addr"].as_str().and_then(|x| x.parse().ok());
                    match a["OS-EXT-IPS:type"].as_str() {
                        Some("floating") => floating = floating.or(ip),
                        _ if network_name.is_none_or(|n| n == net) => fixed = fixed.or(ip),
                        _ => {}
                    }
                }
            }
        }
        let public_ip = match self.cfg.address {
            AddressMode::Fixed => None,
            _ => floating,
        };
        Some(NodeInfo {
            id: MachineId(s["id"].as_str()?.to_string()),
            name,
            group: md[labels::GROUP].as_str().unwrap_or_default().to_string(),
            role: md[labels::ROLE]
                .as_str()
                .and_then(Role::parse)
                .unwrap_or(Role::Worker),
            run_token: md[labels::RUN].as_str().unwrap_or_default().to_string(),
            state,
            private_ip: fixed,
            public_ip,
            ssh_port: 22,
            ssh_user: None,
        })
    }

    async fn create_server(
        &self,
        owner: &Ownership,
        r: &Resolved,
        spec: &NodeSpec,
        run: &str,
    ) -> Result<String, ProviderError> {
        let mut metadata: BTreeMap<String, String> = self.cfg.metadata.clone();
        metadata.insert(labels::DEPLOYMENT.into(), owner.deployment.clone());
        metadata.insert(labels::GROUP.into(), spec.group.clone());
        metadata.insert(labels::NODE.into(), spec.name.clone());
        metadata.insert(labels::ROLE.into(), spec.role.as_str().into());
        metadata.insert(labels::RUN.into(), run.into());
        metadata.insert(labels::MANAGED.into(), "true".into());
        if let Some(e) = &owner.expires_at {
            metadata.insert(labels::EXPIRES_AT.into(), e.clone());
        }
        let mut server = json!({
            "name": format!("flotilla-{}-{}", owner.deployment, spec.name),
            "flavorRef": r.flavor_id,
            "imageRef": r.image_id,
            "networks": [{"uuid": r.network_id}],
            "key_name": self.key_name(owner),
            "security_groups": [{"name": self.sg_name(owner)}],
            "metadata": metadata,
            "tags": [tag_of(owner)],
        });
        if let Some(az) = &self.cfg.availability_zone {
            server["availability_zone"] = Value::String(az.clone());
        }
        let body = json!({"server": server});
        // A POST that timed out or got a 5xx may still have created the server (a slow Nova
        // under load does): look for it by name and run before sending the create again, so a
        // retry never makes a second server.
        let mut backoff = Backoff::new(Duration::from_secs(300));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .s
                .call_with(
                    Service::Compute,
                    Method::POST,
                    "/servers",
                    Some(&body),
                    Resend::OnlyUnsent,
                )
                .await;
            let ambiguous = match sent {
                Ok(resp) if resp.status.is_success() => {
                    return resp.body["server"]["id"]
                        .as_str()
                        .map(String::from)
                        .ok_or_else(|| ProviderError::Api {
                            operation: "POST servers".into(),
                            message: "no server id in the answer".into(),
                            source: None,
                        });
                }
                Ok(resp) if resp.status.is_server_error() => api_error("POST servers", &resp),
                Ok(resp) => {
                    let e = api_error("POST servers", &resp);
                    // Over quota is the user's business, not a transient failure.
                    if resp.status == StatusCode::FORBIDDEN
                        || resp.status == StatusCode::PAYLOAD_TOO_LARGE
                    {
                        return Err(ProviderError::Config {
                            field: "provider (quota)".into(),
                            message: e.to_string(),
                        });
                    }
                    return Err(e);
                }
                Err(e @ ProviderError::Unreachable { .. }) => e,
                Err(e) => return Err(e),
            };
            if let Some(id) = self.find_created(owner, &spec.name, run).await? {
                warn!(node = %spec.name, %id, "the create answered with an error, but the server exists; using it");
                return Ok(id);
            }
            if attempt >= CREATE_ATTEMPTS || !backoff.wait().await {
                return Err(ambiguous);
            }
            warn!(node = %spec.name, error = %ambiguous, attempt, "create failed and no server was made; trying again");
        }
    }

    /// A node must have one server. Should a cloud have made two for one name (a create that
    /// went through twice), the extra one is deleted here rather than left to bill someone:
    /// the server this run got an id for is kept, else the first listed.
    async fn remove_duplicates(
        &self,
        owner: &Ownership,
        servers: Vec<Value>,
        created: &[String],
    ) -> Result<Vec<Value>, ProviderError> {
        let mut by_node: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut unnamed = Vec::new();
        for s in servers {
            match s["metadata"][labels::NODE].as_str() {
                Some(n) => by_node.entry(n.to_string()).or_default().push(s),
                None => unnamed.push(s),
            }
        }
        let mut extra: Vec<String> = Vec::new();
        let mut kept = unnamed;
        for (node, mut list) in by_node {
            if list.len() > 1 {
                let keep = list
                    .iter()
                    .position(|s| created.iter().any(|c| s["id"] == c.as_str()))
                    .unwrap_or(0);
                let k = list.swap_remove(keep);
                for s in list {
                    let id = s["id"].as_str().unwrap_or_default().to_string();
                    warn!(node = %node, %id, "a second server exists for this node; deleting it");
                    extra.push(id);
                }
                kept.push(k);
            } else {
                kept.extend(list);
            }
        }
        if !extra.is_empty() {
            self.delete_server_and_wait(owner, &extra).await?;
        }
        Ok(kept)
    }

    /// The server this run created for `node`, if a create that answered with an error made one
    /// anyway. Nova may take a moment to list it, so the lookup is repeated briefly.
    async fn find_created(
        &self,
        owner: &Ownership,
        node: &str,
        run: &str,
    ) -> Result<Option<String>, ProviderError> {
        // Three lookups, 2 s apart.
        let mut again = Backoff::new(Duration::from_secs(4)).every(Duration::from_secs(2));
        loop {
            let found =
                self.list(owner).await?.into_iter().find(|s| {
                    s["metadata"][labels::NODE] == node && s["metadata"][labels::RUN] == run
                });
            if let Some(s) = found {
                return Ok(s["id"].as_str().map(String::from));
            }
            if !again.wait().await {
                return Ok(None);
            }
        }
    }

    /// Floating IP for an ACTIVE server, found again by description after a crash.
    async fn ensure_floating_ip(
        &self,
        owner: &Ownership,
        fip_net: &str,
        server_id: &str,
        node: &str,
    ) -> Result<(), ProviderError> {
        let desc = format!("flotilla:{}:{node}", owner.deployment);
        let ports = self
            .s
            .ok(
                Service::Network,
                Method::GET,
                &format!("/ports?device_id={server_id}"),
                None,
            )
            .await?;
        let Some(port) = ports["ports"]
            .as_array()
            .and_then(|p| p.first())
            .and_then(|p| p["id"].as_str())
            .map(String::from)
        else {
            return Err(ProviderError::Api {
                operation: "floating IP".into(),
                message: format!("{node}: the server has no port yet"),
                source: None,
            });
        };
        let existing = self
            .s
            .ok(
                Service::Network,
                Method::GET,
                &format!("/floatingips?description={}", enc(&desc)),
                None,
            )
            .await?;
        if let Some(f) = existing["floatingips"].as_array().and_then(|a| a.first()) {
            let id = f["id"].as_str().unwrap_or_default();
            // A run that died between the create and the tagging left it untagged.
            if !gc::has_tag(&f["tags"], labels::MANAGED) {
                self.put_tags("floatingips", id, &gc::owner_tags(owner, Some(node)))
                    .await?;
            }
            if f["port_id"] == port.as_str() {
                return Ok(());
            }
            // Association races with other creates on the same network: 409 is retried.
            let r = self
                .s
                .call(
                    Service::Network,
                    Method::PUT,
                    &format!("/floatingips/{id}"),
                    Some(&json!({"floatingip": {"port_id": port}})),
                    true,
                )
                .await?;
            return if r.status.is_success() {
                Ok(())
            } else {
                Err(api_error("PUT floatingips", &r))
            };
        }
        let body = json!({"floatingip": {"floating_network_id": fip_net, "port_id": port, "description": desc}});
        let r = self
            .s
            .call(
                Service::Network,
                Method::POST,
                "/floatingips",
                Some(&body),
                true,
            )
            .await?;
        if !r.status.is_success() {
            return Err(api_error("POST floatingips", &r));
        }
        match r.body["floatingip"]["id"].as_str() {
            Some(id) => {
                self.put_tags("floatingips", id, &gc::owner_tags(owner, Some(node)))
                    .await
            }
            None => Ok(()),
        }
    }

    async fn delete_server_and_wait(
        &self,
        owner: &Ownership,
        ids: &[String],
    ) -> Result<(), ProviderError> {
        for id in ids {
            let r = self
                .s
                .call(
                    Service::Compute,
                    Method::DELETE,
                    &format!("/servers/{id}"),
                    None,
                    true,
                )
                .await?;
            if !(r.status.is_success() || r.status == StatusCode::NOT_FOUND) {
                return Err(api_error("DELETE server", &r));
            }
        }
        let mut wait = Backoff::new(WAIT_TIMEOUT);
        loop {
            let alive: Vec<String> = self
                .list(owner)
                .await?
                .iter()
                .filter_map(|s| s["id"].as_str().map(String::from))
                .filter(|i| ids.contains(i))
                .collect();
            if alive.is_empty() {
                return Ok(());
            }
            if !wait.wait().await {
                return Err(ProviderError::Api {
                    operation: "wait for delete".into(),
                    message: format!("still there: {}", alive.join(", ")),
                    source: None,
                });
            }
        }
    }

    async fn delete_floating_ips(
        &self,
        owner: &Ownership,
        node: Option<&str>,
    ) -> Result<(), ProviderError> {
        let prefix = match node {
            Some(n) => format!("flotilla:{}:{n}", owner.deployment),
            None => format!("flotilla:{}:", owner.deployment),
        };
        let all = self
            .s
            .ok(Service::Network, Method::GET, "/floatingips", None)
            .await?;
        for f in all["floatingips"].as_array().into_iter().flatten() {
            let d = f["description"].as_str().unwrap_or("");
            let matches = if node.is_some() {
                d == prefix
            } else {
                d.starts_with(&prefix)
            };
            if matches {
                let id = f["id"].as_str().unwrap_or_default();
                let r = self
                    .s
                    .call(
                        Service::Network,
                        Method::DELETE,
                        &format!("/floatingips/{id}"),
                        None,
                        true,
                    )
                    .await?;
                if !(r.status.is_success() || r.status == StatusCode::NOT_FOUND) {
                    return Err(api_error("DELETE floatingips", &r));
                }
            }
        }
        Ok(())
    }
}

fn key_body(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[async_trait]
impl Provider for OpenStackProvider {
    fn kind(&self) -> &'static str {
        "openstack"
    }

    async fn preflight(&self, owner: &Ownership) -> Result<(), ProviderError> {
        self.s.project_id().await?;
        self.resolve().await?;
        self.ensure_key_pair(owner, false).await
    }

    async fn create_nodes(&self, req: &CreateRequest) -> Result<Vec<NodeInfo>, ProviderError> {
        let owner = &req.owner;
        let r = self.resolve().await?;
        let existing = self.list(owner).await?;
        let existing_info: Vec<NodeInfo> = existing
            .iter()
            .filter_map(|s| self.to_info(s, Some(&r.network_name)))
            .collect();
        let todo: Vec<NodeSpec> = req
            .nodes
            .iter()
            .filter(|s| !existing_info.iter().any(|n| n.name == s.name))
            .cloned()
            .collect();
        if !todo.is_empty() {
            // Quota where the API tells it: refuse before creating anything.
            let limits = self
                .s
                .ok(Service::Compute, Method::GET, "/limits", None)
                .await?;
            let abs = &limits["limits"]["absolute"];
            if let (Some(max), Some(used)) = (
                abs["maxTotalInstances"].as_i64(),
                abs["totalInstancesUsed"].as_i64(),
            ) {
                let want = i64::try_from(todo.len()).unwrap_or(i64::MAX);
                if max >= 0 && used + want > max {
                    return Err(ProviderError::Config {
                        field: "provider (quota)".into(),
                        message: format!("{want} more servers would exceed the project's instance quota ({used} of {max} used)"),
                    });
                }
            }
            self.ensure_key_pair(owner, true).await?;
            self.ensure_security_group(owner).await?;
        }
        let results: Vec<Result<String, ProviderError>> = stream::iter(todo.clone())
            .map(|spec| {
                let r = r.clone();
                async move { self.create_server(owner, &r, &spec, &req.run_token).await }
            })
            .buffer_unordered(self.cfg.parallelism.max(1))
            .collect()
            .await;
        let mut created = Vec::new();
        for r in results {
            created.push(r?);
        }
        let all = self
            .remove_duplicates(owner, self.list(owner).await?, &created)
            .await?;
        Ok(all
            .iter()
            .filter_map(|s| self.to_info(s, Some(&r.network_name)))
            .filter(|n| req.nodes.iter().any(|s| s.name == n.name))
            .collect())
    }

    async fn wait_running(
        &self,
        owner: &Ownership,
        ids: &[MachineId],
    ) -> Result<Vec<NodeInfo>, ProviderError> {
        let r = self.resolve().await?;
        // node name -> current server id (a server replaced after ERROR gets a new id)
        let mut current: HashMap<String, String> = HashMap::new();
        let mut retries: HashMap<String, u32> = HashMap::new();
        let first = self.list(owner).await?;
        for s in &first {
            if let (Some(id), Some(node)) = (s["id"].as_str(), s["metadata"][labels::NODE].as_str())
            {
                if ids.iter().any(|i| i.0 == id) {
                    current.insert(node.to_string(), id.to_string());
                }
            }
        }
        let mut wait = Backoff::new(WAIT_TIMEOUT);
        loop {
            let servers = self.list(owner).await?;
            let mut done = Vec::new();
            let mut pending = 0;
            for (node, id) in current.clone() {
                let Some(s) = servers.iter().find(|s| s["id"] == id.as_str()) else {
                    return Err(ProviderError::Api {
                        operation: "wait for ACTIVE".into(),
                        message: format!("{node}: server {id} disappeared"),
                        source: None,
                    });
                };
                let Some(info) = self.to_info(s, Some(&r.network_name)) else {
                    continue;
                };
                match &info.state {
                    NodeState::Running => {
                        if let Some(fip) = &r.fip_network_id {
                            if info.public_ip.is_none() && self.cfg.address != AddressMode::Fixed {
                                self.ensure_floating_ip(owner, fip, &id, &node).await?;
                                pending += 1;
                                continue;
                            }
                            if self.cfg.address == AddressMode::Fixed {
                                self.ensure_floating_ip(owner, fip, &id, &node).await?;
                            }
                        }
                        done.push(info);
                    }
                    NodeState::Error(fault) => {
                        let n = retries.entry(node.clone()).or_insert(0);
                        if *n >= self.cfg.error_retries {
                            return Err(ProviderError::Api {
                                operation: "create server".into(),
                                message: format!(
                                    "{node} went to ERROR {} times; last fault: {fault}",
                                    *n + 1
                                ),
                                source: None,
                            });
                        }
                        *n += 1;
                        warn!(node = %node, %fault, attempt = *n, "server went to ERROR; replacing it");
                        self.delete_server_and_wait(owner, std::slice::from_ref(&id))
                            .await?;
                        let spec = NodeSpec {
                            name: node.clone(),
                            group: info.group.clone(),
                            role: info.role,
                        };
                        let new_id = self
                            .create_server(owner, &r, &spec, &info.run_token)
                            .await?;
                        current.insert(node, new_id);
                        pending += 1;
                    }
                    _ => pending += 1,
                }
            }
            if pending == 0 {
                return Ok(done);
            }
            if !wait.wait().await {
                return Err(ProviderError::Api {
                    operation: "wait for ACTIVE".into(),
                    message: format!(
                        "{pending} servers not ACTIVE after {}s",
                        WAIT_TIMEOUT.as_secs()
                    ),
                    source: None,
                });
            }
        }
    }

    async fn describe(&self, owner: &Ownership) -> Result<Vec<NodeInfo>, ProviderError> {
        let net = self
            .resolved
            .lock()
            .await
            .as_ref()
            .map(|r| r.network_name.clone());
        let net = match net {
            Some(n) => Some(n),
            None => self.resolve().await.ok().map(|r| r.network_name),
        };
        Ok(self
            .list(owner)
            .await?
            .iter()
            .filter_map(|s| self.to_info(s, net.as_deref()))
            .collect())
    }

    async fn delete_nodes(
        &self,
        owner: &Ownership,
        ids: &[MachineId],
    ) -> Result<(), ProviderError> {
        let servers = self.list(owner).await?;
        let nodes: Vec<String> = servers
            .iter()
            .filter(|s| ids.iter().any(|i| s["id"] == i.0.as_str()))
            .filter_map(|s| s["metadata"][labels::NODE].as_str().map(String::from))
            .collect();
        let ids: Vec<String> = ids.iter().map(|i| i.0.clone()).collect();
        self.delete_server_and_wait(owner, &ids).await?;
        // Nova deletes the ports it made, not the floating IPs.
        for n in nodes {
            self.delete_floating_ips(owner, Some(&n)).await?;
        }
        Ok(())
    }

    async fn teardown(&self, owner: &Ownership) -> Result<(), ProviderError> {
        if !self.list(owner).await?.is_empty() {
            return Err(ProviderError::Api {
                operation: "teardown".into(),
                message: "servers of the deployment still exist".into(),
                source: None,
            });
        }
        self.delete_floating_ips(owner, None).await?;
        let name = self.sg_name(owner);
        let v = self
            .s
            .ok(
                Service::Network,
                Method::GET,
                &format!("/security-groups?name={}", enc(&name)),
                None,
            )
            .await?;
        for sg in v["security_groups"].as_array().into_iter().flatten() {
            // Only the group this deployment made (it says so in its description).
            if sg["description"] != sg_description(owner).as_str() {
                continue;
            }
            if let Some(id) = sg["id"].as_str() {
                self.delete_security_group(id).await?;
            }
        }
        // The key pair goes only when flotilla named it and it holds our key.
        if self.cfg.key_name.is_none() {
            let kn = self.key_name(owner);
            let r = self.get_key_pair(&kn).await?;
            if r.status.is_success()
                && r.body["keypair"]["public_key"].as_str().map(key_body)
                    == Some(key_body(&self.public_key))
            {
                let d = self
                    .s
                    .call(
                        Service::Compute,
                        Method::DELETE,
                        &format!("/os-keypairs/{}", enc(&kn)),
                        None,
                        false,
                    )
                    .await?;
                if !(d.status.is_success() || d.status == StatusCode::NOT_FOUND) {
                    return Err(api_error("DELETE os-keypairs", &d));
                }
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
    fn not_found_lists_close_names() {
        let e = not_found(
            "provider.flavor",
            "flavor",
            "m1.smal",
            &["m1.tiny".into(), "m1.small".into(), "x.large".into()],
        );
        let s = e.to_string();
        assert!(s.contains("did you mean `m1.small`"), "{s}");
        assert!(e.is_user_error());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(enc("flotilla:demo"), "flotilla%3Ademo");
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
    }
}
