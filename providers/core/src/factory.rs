//! How a provider kind introduces itself to flotilla: one [`ProviderFactory`] per crate, listed
//! in flotilla's registry. The factory reads the blueprint's `provider:` section into the kind's
//! own [`ProviderSettings`]; the settings build the provider and answer what the engine asks of
//! a kind (gc grouping, existing hosts) — so the engine never names a kind.

use crate::{PortRule, Provider, ProviderError, Role};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a `provider:` section was refused.
#[derive(Debug)]
pub enum SettingsError {
    /// It does not have the kind's shape (serde's error, with the path inside the section).
    Shape(serde_path_to_error::Error<serde_json::Error>),
    /// It has the shape but fails the kind's checks: (blueprint field, message) pairs.
    Invalid(Vec<(String, String)>),
}

/// Reads a section into a kind's config type, keeping the path of a mismatch.
pub fn parse_section<T: DeserializeOwned>(section: serde_json::Value) -> Result<T, SettingsError> {
    serde_path_to_error::deserialize(section).map_err(SettingsError::Shape)
}

/// One group's hosts, as the blueprint lists them (`groups.NAME.hosts`, `[user@]host[:port]`).
#[derive(Debug, Clone)]
pub struct GroupHosts {
    pub group: String,
    pub role: Role,
    pub hosts: Vec<String>,
}

/// What building a provider needs besides its own settings.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// The deployment's SSH public key (providers that install it on the machines they create).
    pub ssh_public_key: String,
    /// Where a provider may cache what is expensive to make (node images).
    pub cache_dir: PathBuf,
    /// The ports cluster members reach each other on (security groups open them).
    pub cluster_ports: Vec<PortRule>,
    /// The blueprint's host lists, for providers of existing hosts.
    pub hosts: Vec<GroupHosts>,
}

/// A provider kind's checked settings (the `provider:` section).
#[async_trait]
pub trait ProviderSettings: std::fmt::Debug + Send + Sync {
    fn kind(&self) -> &'static str;
    /// The hosts an inventory file assigns to each group (`resolve` turns a path written in
    /// the blueprint into one to read); `None` without one. The error names the file.
    fn inventory(
        &self,
        resolve: &dyn Fn(&str) -> PathBuf,
    ) -> Option<Result<BTreeMap<String, Vec<String>>, String>> {
        let _ = resolve;
        None
    }
    /// Checks one entry of a group's `hosts:` list.
    fn check_host(&self, host: &str) -> Result<(), String> {
        let _ = host;
        Ok(())
    }
    /// Where the provider's resources live, so `gc` searches each place once however many
    /// deployments name it (defaults to the label).
    fn gc_scope(&self) -> String {
        self.gc_label()
    }
    /// How `gc` names that place to a person (`docker (unix:///…)`, `ec2 (eu-west-1)`).
    fn gc_label(&self) -> String {
        self.kind().to_string()
    }
    async fn build(&self, cx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError>;
}

/// A provider kind: its name and how its `provider:` section is read.
pub trait ProviderFactory: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Providers of machines that already exist take their hosts from the groups (or an
    /// inventory) instead of creating machines; `scale` cannot change them.
    fn existing_hosts(&self) -> bool {
        false
    }
    /// The section (with `kind` removed) into the kind's settings.
    fn settings(
        &self,
        section: serde_json::Value,
    ) -> Result<Arc<dyn ProviderSettings>, SettingsError>;
}
