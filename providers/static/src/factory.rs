//! The `static` kind: machines that already exist, listed in the groups or an inventory file.

use crate::{parse_inventory, HostEntry, StaticConfig, StaticHost, StaticProvider};
use async_trait::async_trait;
use flotilla_provider_core::{
    parse_section, BuildContext, Provider, ProviderError, ProviderFactory, ProviderSettings,
    SettingsError,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The factory flotilla's registry lists.
pub struct Factory;

impl ProviderFactory for Factory {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn existing_hosts(&self) -> bool {
        true
    }

    fn settings(
        &self,
        section: serde_json::Value,
    ) -> Result<Arc<dyn ProviderSettings>, SettingsError> {
        let cfg: StaticConfig = parse_section(section)?;
        Ok(Arc::new(cfg))
    }
}

#[async_trait]
impl ProviderSettings for StaticConfig {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn inventory(
        &self,
        resolve: &dyn Fn(&str) -> PathBuf,
    ) -> Option<Result<BTreeMap<String, Vec<String>>, String>> {
        let path = resolve(self.inventory.as_deref()?);
        let read = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| {
                parse_inventory(&text).map_err(|e| format!("{}: {e}", path.display()))
            });
        Some(read.map(|groups| {
            groups
                .into_iter()
                .map(|(g, hosts)| (g, hosts.iter().map(HostEntry::written).collect()))
                .collect()
        }))
    }

    fn check_host(&self, host: &str) -> Result<(), String> {
        HostEntry::parse(host)
            .map(|_| ())
            .map_err(|e| format!("{e}; expected [user@]host[:port]"))
    }

    async fn build(&self, cx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let mut hosts = Vec::new();
        for g in &cx.hosts {
            for (i, h) in g.hosts.iter().enumerate() {
                let entry = HostEntry::parse(h).map_err(|e| ProviderError::Config {
                    field: format!("groups.{}.hosts[{i}]", g.group),
                    message: e.to_string(),
                })?;
                hosts.push(StaticHost {
                    name: format!("{}-{}", g.group, i + 1),
                    group: g.group.clone(),
                    role: g.role,
                    entry,
                });
            }
        }
        Ok(Arc::new(StaticProvider::new(hosts)))
    }
}
