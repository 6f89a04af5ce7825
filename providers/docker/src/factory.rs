//! The `docker` kind: its `provider:` section and how it is built.

use crate::{DockerConfig, DockerProvider};
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
        "docker"
    }

    fn settings(
        &self,
        section: serde_json::Value,
    ) -> Result<Arc<dyn ProviderSettings>, SettingsError> {
        let cfg: DockerConfig = parse_section(section)?;
        let problems = cfg.check();
        if !problems.is_empty() {
            return Err(SettingsError::Invalid(problems));
        }
        Ok(Arc::new(cfg))
    }
}

#[async_trait]
impl ProviderSettings for DockerConfig {
    fn kind(&self) -> &'static str {
        "docker"
    }

    fn gc_label(&self) -> String {
        let engine = self
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "local engine".into());
        format!("docker ({engine})")
    }

    async fn build(&self, cx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let p = DockerProvider::connect(self.clone(), cx.cache_dir.clone()).await?;
        Ok(Arc::new(p))
    }
}
