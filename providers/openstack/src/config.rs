use serde::Deserialize;
use std::collections::BTreeMap;

fn default_ssh_cidr() -> String {
    "0.0.0.0/0".to_string()
}

fn default_interface() -> String {
    "public".to_string()
}

fn default_error_retries() -> u32 {
    2
}

fn default_parallelism() -> usize {
    8
}

/// Which address flotilla connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AddressMode {
    /// The floating IP when there is one, else the fixed IP.
    #[default]
    Auto,
    Floating,
    Fixed,
}

/// The `provider:` section of a blueprint whose `kind` is `openstack`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenStackConfig {
    /// clouds.yaml entry; default `OS_CLOUD`, else the OS_* environment.
    pub cloud: Option<String>,
    /// Region (overrides the cloud's `region_name` / `OS_REGION_NAME`).
    pub region: Option<String>,
    /// Catalog interface: public, internal or admin.
    pub interface: Option<String>,
    /// Image name or id.
    pub image: String,
    /// Flavor name or id.
    pub flavor: String,
    /// Network name or id the servers' ports live on.
    pub network: String,
    /// External network to allocate floating IPs from (none: fixed IPs only).
    pub floating_ip_pool: Option<String>,
    #[serde(default)]
    pub address: AddressMode,
    /// Key pair name; default `flotilla-<deployment>`.
    pub key_name: Option<String>,
    /// Security group name; default `flotilla-<deployment>`.
    pub security_group: Option<String>,
    #[serde(default = "default_ssh_cidr")]
    pub ssh_cidr: String,
    pub availability_zone: Option<String>,
    /// Extra server metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// How often a server that goes to ERROR is replaced before giving up.
    #[serde(default = "default_error_retries")]
    pub error_retries: u32,
    /// Server creates in flight at once.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
}

impl OpenStackConfig {
    pub fn interface(&self, from_cloud: Option<&str>) -> String {
        self.interface
            .clone()
            .or_else(|| from_cloud.map(String::from))
            .unwrap_or_else(default_interface)
    }

    pub fn check(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        for (field, v) in [
            ("provider.image", &self.image),
            ("provider.flavor", &self.flavor),
            ("provider.network", &self.network),
        ] {
            if v.trim().is_empty() {
                p.push((field.to_string(), "must not be empty".to_string()));
            }
        }
        if let Some(i) = &self.interface {
            if !matches!(i.as_str(), "public" | "internal" | "admin") {
                p.push((
                    "provider.interface".into(),
                    format!("`{i}`: expected public, internal or admin"),
                ));
            }
        }
        if self.parallelism == 0 {
            p.push(("provider.parallelism".into(), "must be at least 1".into()));
        }
        p
    }
}
