//! What a cluster kind answers before any node exists: its version and options, what its
//! managers are called and what quorum they keep, the ports its members need, whether it has a
//! scheduler for `services:`, and how its orchestrator is built. One implementation per module
//! (swarm, kubernetes, mesos, none), listed in `crate::kinds`; the blueprint loader and the
//! engine ask these and never name a kind.

use super::Orchestrator;
use crate::blueprint::Blueprint;
use crate::ssh::SshPool;
use flotilla_provider_core::{PortRule, SettingsError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a kind's managers keep their quorum: the blueprint's manager-count checks use it, and
/// heal refuses to replace managers once it is lost and prints the advice.
#[derive(Debug, Clone, Copy)]
pub struct Quorum {
    /// What the kind calls its managers ("swarm managers").
    pub managers_are: &'static str,
    /// The quorum an even count puts at risk ("the raft quorum").
    pub quorum: &'static str,
    /// What an operator does to recover a cluster that lost it.
    pub advice: &'static str,
}

pub trait OrchestratorKind: Send + Sync {
    fn kind(&self) -> &'static str;
    /// The version to record (defaults applied; `None` for kinds without one), or what is
    /// wrong with `cluster.version`.
    fn version(&self, written: Option<&str>) -> Result<Option<String>, String>;
    /// Reads the kind's own section (`cluster.<kind>`, `None` when absent) with the checked
    /// version into its settings, or says what is wrong (fields under `cluster.<kind>`).
    fn settings(
        &self,
        version: Option<&str>,
        section: Option<serde_json::Value>,
    ) -> Result<Arc<dyn ClusterSettings>, SettingsError>;
    /// `None`: no cluster, no managers needed.
    fn managers(&self) -> Option<Quorum>;
    /// The ports its members reach each other on.
    fn ports(&self) -> Vec<PortRule>;
    /// Whether `services:` entries can go to its scheduler.
    fn takes_services(&self) -> bool {
        false
    }
    /// Whether `services.*.resolve_image` applies to it.
    fn resolves_images(&self) -> bool {
        false
    }
    /// Whether its scheduler made this container (by the labels and names it gives its
    /// containers): what `flotilla ps` shows as the detail (a service, a pod).
    fn container_detail(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<String> {
        let _ = (name, labels);
        None
    }
    /// What happens when one of its containers is stopped by hand (`flotilla ps --stop`).
    fn after_stop(&self) -> &'static str {
        ""
    }
}

/// A kind's checked options (its `cluster.<kind>` section and the version): what its
/// orchestrator is built from. Only the kind that made them reads their fields.
pub trait ClusterSettings: std::fmt::Debug + Send + Sync {
    /// What else an odd, non-zero manager count needs: (field, message) pairs.
    fn check_managers(&self, managers: u32) -> Vec<(String, String)> {
        let _ = managers;
        Vec::new()
    }
    /// Its orchestrator for this blueprint (`None` for no cluster).
    fn build(&self, bp: &Blueprint, pool: Arc<SshPool>) -> Option<Box<dyn Orchestrator>>;
}

/// A kind without options: any `cluster.<kind>` section is refused.
pub fn no_section(kind: &str, section: Option<serde_json::Value>) -> Result<(), SettingsError> {
    match section {
        None => Ok(()),
        Some(_) => Err(SettingsError::Invalid(vec![(
            format!("cluster.{kind}"),
            format!("`kind: {kind}` has no options; remove this section"),
        )])),
    }
}

/// A blueprint's cluster kind: a handle on its registry entry (compared by name).
#[derive(Clone, Copy)]
pub struct ClusterKind(&'static dyn OrchestratorKind);

impl ClusterKind {
    pub fn of(kind: &'static dyn OrchestratorKind) -> Self {
        Self(kind)
    }

    pub fn as_str(self) -> &'static str {
        self.0.kind()
    }

    pub fn spec(self) -> &'static dyn OrchestratorKind {
        self.0
    }
}

impl PartialEq for ClusterKind {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ClusterKind {}

impl std::fmt::Debug for ClusterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ClusterKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// `cluster.kind: none`: nodes with Docker and no cluster.
pub struct NoCluster;

impl OrchestratorKind for NoCluster {
    fn kind(&self) -> &'static str {
        "none"
    }

    fn version(&self, written: Option<&str>) -> Result<Option<String>, String> {
        match written {
            Some(_) => Err("there is no cluster to version with `kind: none`".into()),
            None => Ok(None),
        }
    }

    fn managers(&self) -> Option<Quorum> {
        None
    }

    fn ports(&self) -> Vec<PortRule> {
        Vec::new()
    }

    fn settings(
        &self,
        _version: Option<&str>,
        section: Option<serde_json::Value>,
    ) -> Result<Arc<dyn ClusterSettings>, SettingsError> {
        no_section(self.kind(), section)?;
        Ok(Arc::new(NoClusterSettings))
    }
}

#[derive(Debug)]
struct NoClusterSettings;

impl ClusterSettings for NoClusterSettings {
    fn build(&self, _bp: &Blueprint, _pool: Arc<SshPool>) -> Option<Box<dyn Orchestrator>> {
        None
    }
}
