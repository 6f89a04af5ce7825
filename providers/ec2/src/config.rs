use serde::Deserialize;

/// How the AMI is chosen: an id, or the newest image matching a name pattern from an owner.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum AmiSpec {
    Id(String),
    Search {
        /// Name pattern (`debian-12-amd64-*`); the newest match wins.
        name: String,
        /// Owner account id or alias (`136693973` for Debian, `amazon`, `self`).
        owner: String,
    },
}

/// Which address flotilla connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AddressMode {
    /// The public IP when the instance has one, else the private IP.
    #[default]
    Auto,
    Public,
    Private,
}

fn default_ssh_cidr() -> String {
    "0.0.0.0/0".to_string()
}

fn default_attempts() -> u32 {
    10
}

/// The `provider:` section of a blueprint whose `kind` is `ec2`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2Config {
    /// Region; default `AWS_REGION` / `AWS_DEFAULT_REGION`, then the profile's `region`.
    pub region: Option<String>,
    /// Named profile in ~/.aws/config and ~/.aws/credentials; default `AWS_PROFILE`, then `default`.
    pub profile: Option<String>,
    /// API endpoint override (a test cloud, a VPC endpoint).
    pub endpoint_url: Option<String>,
    pub ami: AmiSpec,
    pub instance_type: String,
    /// Subnet id (`subnet-...`) or Name tag; default: the default subnet of the VPC.
    pub subnet: Option<String>,
    /// VPC id or Name tag; default: the default VPC.
    pub vpc: Option<String>,
    /// Key pair name; default `flotilla-<deployment>`.
    pub key_name: Option<String>,
    /// Security group name; default `flotilla-<deployment>`.
    pub security_group: Option<String>,
    /// Where SSH is allowed from (the operator's address range).
    #[serde(default = "default_ssh_cidr")]
    pub ssh_cidr: String,
    #[serde(default)]
    pub address: AddressMode,
    /// Ask for a public IP on launch (subnet default otherwise).
    pub associate_public_ip: Option<bool>,
    /// Root volume size in GiB (AMI default otherwise).
    pub root_volume_gb: Option<i32>,
    /// Also try the instance metadata service for credentials (when flotilla itself runs on EC2).
    #[serde(default)]
    pub use_instance_metadata: bool,
    /// Attempts per API call when AWS throttles or fails transiently.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

impl Ec2Config {
    pub fn check(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if let AmiSpec::Id(id) = &self.ami {
            if !id.starts_with("ami-") {
                p.push(("provider.ami".into(), format!("`{id}` is not an AMI id (ami-...); use {{name: PATTERN, owner: ACCOUNT}} to search by name")));
            }
        }
        if self.instance_type.trim().is_empty() || !self.instance_type.contains('.') {
            p.push((
                "provider.instance_type".into(),
                format!(
                    "`{}` is not an instance type like t3.small",
                    self.instance_type
                ),
            ));
        }
        if self.ssh_cidr.parse::<ipnet_lite::Cidr>().is_err() {
            p.push((
                "provider.ssh_cidr".into(),
                format!("`{}` is not a CIDR like 203.0.113.0/24", self.ssh_cidr),
            ));
        }
        if self.max_attempts == 0 {
            p.push(("provider.max_attempts".into(), "must be at least 1".into()));
        }
        p
    }
}

/// Minimal CIDR check without another dependency.
mod ipnet_lite {
    pub struct Cidr;
    impl std::str::FromStr for Cidr {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let (ip, len) = s.split_once('/').ok_or(())?;
            let ip: std::net::IpAddr = ip.parse().map_err(|_| ())?;
            let len: u8 = len.parse().map_err(|_| ())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            (len <= max).then_some(Cidr).ok_or(())
        }
    }
}
