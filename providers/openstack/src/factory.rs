//! The `openstack` kind: its `provider:` section and how it is built.

use crate::{OpenStackConfig, OpenStackProvider};
use async_trait::async_trait;
use flotilla_provider_core::{
    parse_section, BuildContext, Provider, ProviderError, ProviderFactory, ProviderSettings,
    SettingsError,
};
use std::sync::Arc;

/// The factory flotilla's registry lists.
pub struct Factory;

impl ProviderFactory for Factory {
    fn kind(&self) -> &'static str {
        "openstack"
    }

    fn settings(
        &self,
        section: serde_json::Value,
    ) -> Result<Arc<dyn ProviderSettings>, SettingsError> {
        let cfg: OpenStackConfig = parse_section(section)?;
        let problems = cfg.check();
        if !problems.is_empty() {
            return Err(SettingsError::Invalid(problems));
        }
        Ok(Arc::new(cfg))
    }
}

#[async_trait]
impl ProviderSettings for OpenStackConfig {
    fn kind(&self) -> &'static str {
        "openstack"
    }

    /// One search per cloud: the token's project is what gc may see there.
    fn gc_scope(&self) -> String {
        format!("openstack {:?}", self.cloud)
    }

    async fn build(&self, cx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let p = OpenStackProvider::new(
            self.clone(),
            cx.cluster_ports.clone(),
            cx.ssh_public_key.clone(),
        )?;
        Ok(Arc::new(p))
    }
}
