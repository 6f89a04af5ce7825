//! The `ec2` kind: its `provider:` section and how it is built.

use crate::{Ec2Config, Ec2Provider};
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
        "ec2"
    }

    fn settings(
        &self,
        section: serde_json::Value,
    ) -> Result<Arc<dyn ProviderSettings>, SettingsError> {
        let cfg: Ec2Config = parse_section(section)?;
        let problems = cfg.check();
        if !problems.is_empty() {
            return Err(SettingsError::Invalid(problems));
        }
        Ok(Arc::new(cfg))
    }
}

#[async_trait]
impl ProviderSettings for Ec2Config {
    fn kind(&self) -> &'static str {
        "ec2"
    }

    fn gc_label(&self) -> String {
        let place = self
            .endpoint_url
            .clone()
            .or_else(|| self.region.clone())
            .unwrap_or_else(|| "default region".into());
        format!("ec2 ({place})")
    }

    async fn build(&self, cx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let p = Ec2Provider::new(
            self.clone(),
            cx.cluster_ports.clone(),
            cx.ssh_public_key.clone(),
        )
        .await?;
        Ok(Arc::new(p))
    }
}
