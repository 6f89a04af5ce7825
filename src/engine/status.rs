//! `flotilla status`: the provider's view, SSH reachability, the Docker daemon and the cluster's
//! own view of every node, side by side.

use super::{build_provider, recorded_blueprint};
use crate::cluster::Member;
use crate::error::Result;
use crate::state::{Home, State};
use flotilla_provider_core::Ownership;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct NodeSummary {
    pub name: String,
    pub group: String,
    pub role: String,
    pub machine_id: Option<String>,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub phase: String,
    pub os: Option<String>,
    pub docker_version: Option<String>,
    pub cluster_id: Option<String>,
}

pub fn summaries(state: &State) -> Vec<NodeSummary> {
    state
        .nodes
        .values()
        .map(|n| NodeSummary {
            name: n.name.clone(),
            group: n.group.clone(),
            role: n.role.as_str().into(),
            machine_id: n.machine_id.as_ref().map(|m| m.0.clone()),
            private_ip: n.private_ip.map(|i| i.to_string()),
            public_ip: n.public_ip.map(|i| i.to_string()),
            phase: serde_json::to_value(&n.phase)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            os: n.os.as_ref().map(|o| o.pretty_name.clone()),
            docker_version: n.docker_version.clone(),
            cluster_id: n.cluster_id.clone(),
        })
        .collect()
}

/// One node's health signals.
#[derive(Debug, Clone, Serialize)]
pub struct NodeHealth {
    pub name: String,
    pub group: String,
    pub role: String,
    pub address: Option<String>,
    /// running | stopped | pending | error | gone
    pub machine: String,
    /// ok | unreachable: <why>
    pub ssh: String,
    /// the server version, or "down"
    pub docker: String,
    /// ready/active, down, not-member, n/a
    pub cluster: String,
    pub healthy: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub deployment: String,
    pub provider: String,
    pub cluster: String,
    pub healthy: bool,
    pub nodes: Vec<NodeHealth>,
    pub outputs: BTreeMap<String, String>,
    /// Cluster members that no node of the deployment accounts for.
    pub stray_members: Vec<Member>,
    /// What the orchestrator reported about the cluster (`routing_mesh` for Swarm).
    #[serde(flatten)]
    pub cluster_facts: BTreeMap<String, serde_json::Value>,
    /// Why machine states are unknown (the provider API could not be asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_error: Option<String>,
    /// When `gc` may delete the deployment (RFC 3339), and the seconds left (negative: past).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<i64>,
}

/// `probe: false` leaves SSH out: machines from the provider, the rest from the state.
pub async fn status(home: &Home, name: &str, probe: bool) -> Result<StatusReport> {
    let state = home.load_existing(name)?;
    let bp = recorded_blueprint(&state)?;
    // A provider API that cannot be reached does not blank out the rest: SSH, Docker and the
    // cluster are still asked, and machines show as unknown.
    let observed = match build_provider(&bp, &super::recorded_public_key(&state)).await {
        Ok(provider) => provider
            .describe(&Ownership::new(name))
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (observed, provider_error) = match observed {
        Ok(o) => (Some(o), None),
        Err(e) => (None, Some(e)),
    };
    // Without probes no SSH pool is built at all (on a large fleet, writing the known_hosts of
    // every node is most of the cost).
    let mut probes = BTreeMap::new();
    let mut members: Option<Vec<Member>> = None;
    if probe {
        let dir = home.deployment_dir(name)?;
        // status never changes the pinned keys: the ssh files go to a scratch folder.
        let scratch = tempfile::tempdir().map_err(|e| crate::error::Error::Other(e.to_string()))?;
        let (pool, targets) = super::nodes::pool_for_recorded(
            &bp,
            &state,
            &dir,
            Duration::from_secs(3),
            Some(scratch.path()),
        )?;
        probes = super::nodes::probe_all(&pool, &targets, Duration::from_secs(3)).await;
        let orchestrator = crate::cluster::for_blueprint(&bp, pool.clone());
        let managers = super::nodes::live_managers(&state, &bp, orchestrator.as_deref(), &probes);
        members = match orchestrator {
            Some(orch) if !managers.is_empty() => orch.members(&managers).await.ok(),
            _ => None,
        };
        pool.close_all().await;
    }

    let mut nodes = Vec::new();
    for r in state.nodes.values() {
        let machine = match &observed {
            None => "unknown (provider unreachable)".to_string(),
            Some(observed) => observed
                .iter()
                .find(|m| Some(&m.id) == r.machine_id.as_ref())
                .map(|m| m.state.as_str().to_string())
                .unwrap_or_else(|| "gone".into()),
        };
        let (ssh, docker) = match probes.get(&r.name) {
            Some(Ok(p)) => (
                "ok".to_string(),
                p.docker_server.clone().unwrap_or_else(|| "down".into()),
            ),
            Some(Err(e)) => (format!("unreachable: {e}"), "unknown".into()),
            None if !probe => ("not probed".into(), "not probed".into()),
            None => ("no address".into(), "unknown".into()),
        };
        let cluster = match (bp.has_cluster(), &members, &r.cluster_id) {
            (false, _, _) => "n/a".to_string(),
            _ if !probe => "not probed".to_string(),
            (_, None, _) => "unknown (no manager answers)".to_string(),
            (_, Some(ms), Some(id)) => match ms.iter().find(|m| &m.id == id) {
                Some(m) => format!("{}/{}", m.status, m.availability),
                None => "not-member".into(),
            },
            (_, Some(_), None) => "not-member".into(),
        };
        // Unprobed, a node is as healthy as its machine.
        let healthy = machine == "running"
            && (!probe || ssh == "ok")
            && docker != "down"
            && docker != "unknown"
            && (!probe || cluster == "n/a" || cluster == "ready/active");
        nodes.push(NodeHealth {
            name: r.name.clone(),
            group: r.group.clone(),
            role: r.role.as_str().into(),
            address: r.ssh_address().map(|a| a.to_string()),
            machine,
            ssh,
            docker,
            cluster,
            healthy,
        });
    }
    let known: Vec<&str> = state
        .nodes
        .values()
        .filter_map(|r| r.cluster_id.as_deref())
        .collect();
    let stray_members = members
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !known.contains(&m.id.as_str()))
        .collect();
    Ok(StatusReport {
        deployment: name.to_string(),
        provider: state.provider.clone(),
        cluster: state.cluster.kind.clone(),
        healthy: nodes.iter().all(|n| n.healthy),
        nodes,
        outputs: state.outputs.clone(),
        stray_members,
        cluster_facts: state.cluster.facts.clone(),
        provider_error,
        expires_in_seconds: state
            .expires_at
            .as_deref()
            .and_then(crate::util::seconds_until),
        expires_at: state.expires_at.clone(),
    })
}

/// One row per deployment under the home: name, provider, cluster, node count, last run.
/// One row per stored deployment; one whose state cannot be read (damaged, or stored under
/// a name that is not one) is a row with `error`, not the end of the list.
pub fn deployments(home: &Home) -> Result<Vec<serde_json::Value>> {
    let mut rows = Vec::new();
    for name in home.list()? {
        let s = match home.load_existing(&name) {
            Ok(s) => s,
            Err(e) => {
                rows.push(serde_json::json!({
                    "deployment": crate::names::shown(&name).trim_matches('"'),
                    "error": e.to_string(),
                }));
                continue;
            }
        };
        let last = s.runs.last();
        rows.push(serde_json::json!({
            "deployment": name,
            "provider": s.provider,
            "cluster": s.cluster.kind,
            "nodes": s.nodes.len(),
            "updated_at": s.updated_at,
            "expires_at": s.expires_at,
            "expires_in_seconds": s.expires_at.as_deref().and_then(crate::util::seconds_until),
            "last_run": last.map(|r| serde_json::json!({"command": r.command, "started_at": r.started_at, "outcome": r.outcome})),
        }));
    }
    Ok(rows)
}
