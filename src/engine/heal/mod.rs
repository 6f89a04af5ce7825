//! `flotilla heal`: observe once (one batched provider describe, parallel SSH probes, the cluster's
//! own member list), decide like Cluster API's MachineHealthCheck, then replace what is broken by
//! removing it (stale member, machine, record) and converging like `up`.
//!
//! Guards: nodes still booting (`health.node_startup_timeout`) and nodes unhealthy for less than
//! `health.unhealthy_grace` are left alone; more unhealthy nodes than `health.max_unhealthy`
//! (a partition looks like that) means nothing is replaced; at most one manager per run, and never
//! when the cluster has already lost its managers' quorum (that needs an operator). The
//! decisions live in `decide.rs` (no I/O, unit-tested); this file observes and acts.

mod decide;

pub use decide::{Decision, Verdict};

use super::up::{up_locked, UpOptions, UpReport};
use super::{build_provider, effective_blueprint, journal, recorded_public_key};
use crate::blueprint::Blueprint;
use crate::cluster::{ClusterNode, Member, Orchestrator};
use crate::docker::Probe;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::ssh::{SshPool, Target};
use crate::state::{Home, Journal, Phase, State};
use crate::util::now_rfc3339;
use decide::{Membership, Observation, Reach};
use flotilla_provider_core::{NodeInfo, Ownership, Provider};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct HealReport {
    pub deployment: String,
    pub dry_run: bool,
    pub verdicts: Vec<Verdict>,
    /// Why nothing was replaced, when a guard stopped the run.
    pub refused: Option<String>,
    pub replaced: Vec<String>,
    /// Nodes whose Docker daemon was restarted in place, and whether it answers again.
    pub restarted: BTreeMap<String, Restart>,
    pub converge: Option<UpReport>,
    /// The containerized manager's app container re-created (or why it could not be).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
}

/// What a Docker restart in place gave: the server version that answers now, or the failure.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    Docker(String),
    Failed(String),
}

pub struct HealOptions {
    pub dry_run: bool,
    pub wait_lock: Option<Duration>,
}

/// Everything one observation of the deployment saw, and the means to act on it.
struct Observed {
    provider: Arc<dyn Provider>,
    owner: Ownership,
    machines: Vec<NodeInfo>,
    pool: Arc<SshPool>,
    targets: Vec<Target>,
    probes: BTreeMap<String, std::result::Result<Probe, String>>,
    live_managers: Vec<ClusterNode>,
    orchestrator: Option<Box<dyn Orchestrator>>,
    members: Option<Vec<Member>>,
    /// heal's own folder for the ssh files of this observation (removed when dropped).
    _scratch: tempfile::TempDir,
}

pub async fn heal(
    home: &Home,
    name: &str,
    progress: &Progress,
    opts: &HealOptions,
) -> Result<HealReport> {
    let dir = home.deployment_dir(name)?;
    let _lock = if opts.dry_run {
        if !home.exists(name)? {
            return Err(crate::state::StoreError::NotFound(name.to_string()).into());
        }
        None
    } else {
        Some(super::lock_existing(home, name, "heal", opts.wait_lock)?)
    };
    let mut state = home.load_existing(name)?;
    let bp = effective_blueprint(&state)?;
    let seen = observe(&bp, &state, &dir).await?;
    let mut report = decide(&bp, &mut state, &seen, opts.dry_run);
    for v in report
        .verdicts
        .iter()
        .filter(|v| v.decision != Decision::Healthy)
    {
        progress.info(&format!(
            "{}: {:?} ({})",
            v.node,
            v.decision,
            v.reasons.join("; ")
        ));
    }
    if opts.dry_run {
        seen.pool.close_all().await;
        return Ok(report);
    }
    let victims = decide::victims(&report.verdicts, &report.refused);
    if victims.is_empty() {
        // The whole run: what it saw is its final state (with victims, the convergence that
        // replaces them ends the run).
        home.save_final(&state)?;
    } else {
        home.save(&state)?;
    }
    // Repairs in place come first and are not held back by max_unhealthy: SSH reaching the node
    // rules out a partition, and restarting a daemon deletes nothing.
    restart_docker(&bp, &seen, progress, &mut report).await;
    revive_manager(&state, &seen, progress, &mut report).await;
    if victims.is_empty() {
        seen.pool.close_all().await;
        return Ok(report);
    }
    let removed = remove_victims(home, &dir, &mut state, &seen, &victims, progress).await;
    seen.pool.close_all().await;
    report.replaced = removed?;
    // Replacements: the same convergence as `up`, under the lock we hold.
    let mut up_opts = UpOptions::new("heal");
    up_opts.allow_delete = true;
    up_opts.overrides = Some(state.count_overrides.clone());
    report.converge = Some(up_locked(&bp, home, progress, &up_opts).await?);
    Ok(report)
}

/// One batched provider describe, parallel SSH probes, the cluster's own member list.
async fn observe(bp: &Blueprint, state: &State, dir: &Path) -> Result<Observed> {
    let provider = build_provider(bp, &recorded_public_key(state)).await?;
    let owner = Ownership::new(&state.deployment).expiring(state.expires_at.clone());
    let machines = provider.describe(&owner).await?;
    let scratch = tempfile::tempdir().map_err(|e| Error::Other(e.to_string()))?;
    let window = Duration::from_secs(5);
    let (pool, targets) =
        super::nodes::pool_for_recorded(bp, state, dir, window, Some(scratch.path()))?;
    let probes = super::nodes::probe_all(&pool, &targets, window).await;
    let orchestrator = crate::cluster::for_blueprint(bp, pool.clone());
    let live_managers = super::nodes::live_managers(state, bp, orchestrator.as_deref(), &probes);
    let members = match &orchestrator {
        Some(orch) if !live_managers.is_empty() => orch.members(&live_managers).await.ok(),
        _ => None,
    };
    Ok(Observed {
        provider,
        owner,
        machines,
        pool,
        targets,
        probes,
        live_managers,
        orchestrator,
        members,
        _scratch: scratch,
    })
}

/// The verdicts on every node and the guards over them (records the unhealthy marks in `state`).
fn decide(bp: &Blueprint, state: &mut State, seen: &Observed, dry_run: bool) -> HealReport {
    let now = now_rfc3339();
    let kind = seen.orchestrator.as_ref().map(|o| o.kind()).unwrap_or("");
    let mut verdicts: Vec<Verdict> = state
        .nodes
        .values_mut()
        .map(|r| {
            let obs = observation(seen, r);
            decide::judge(r, &obs, kind, &bp.health, &now)
        })
        .collect();
    let quorum = seen.orchestrator.as_ref().and(bp.cluster.spec().managers());
    let refused = decide::guard(&mut verdicts, &bp.health, quorum.as_ref());
    HealReport {
        deployment: state.deployment.clone(),
        dry_run,
        verdicts,
        refused,
        replaced: vec![],
        restarted: BTreeMap::new(),
        converge: None,
        manager: None,
    }
}

/// What the provider, SSH and the cluster said about one node.
fn observation(seen: &Observed, r: &crate::state::NodeRecord) -> Observation {
    let machine = seen
        .machines
        .iter()
        .find(|m| Some(&m.id) == r.machine_id.as_ref())
        .map(|m| m.state.clone());
    let reach = match seen.probes.get(&r.name) {
        Some(Ok(p)) if p.docker_server.is_none() => Reach::DockerDown,
        Some(Ok(_)) => Reach::DockerUp,
        Some(Err(e)) => Reach::Failed(e.clone()),
        None => Reach::NoAddress,
    };
    let membership = match (&seen.orchestrator, &seen.members, &r.cluster_id) {
        (Some(_), Some(ms), Some(id)) => match ms.iter().find(|m| &m.id == id) {
            Some(m) => Membership::Status(m.status.clone()),
            None => Membership::Missing,
        },
        (Some(_), Some(_), None) => Membership::NeverJoined,
        _ => Membership::Unknown,
    };
    Observation {
        machine,
        reach,
        membership,
    }
}

/// Docker restarted in place where only the daemon was down.
async fn restart_docker(
    bp: &Blueprint,
    seen: &Observed,
    progress: &Progress,
    report: &mut HealReport,
) {
    let restarts: Vec<String> = report
        .verdicts
        .iter()
        .filter(|v| v.decision == Decision::RestartDocker)
        .map(|v| v.node.clone())
        .collect();
    for node in restarts {
        let Some(t) = seen.targets.iter().find(|t| t.node == node) else {
            continue;
        };
        let Some(Ok(p)) = seen.probes.get(&node) else {
            continue;
        };
        progress.node(&node, "restarting Docker");
        let outcome = match super::nodes::install_docker(&seen.pool, t, p, bp).await {
            Ok(v) => {
                progress.node_done(&node, true, &format!("Docker {v} answers again"));
                Restart::Docker(v)
            }
            Err(e) => {
                progress.node_done(&node, false, &e);
                Restart::Failed(e)
            }
        };
        report.restarted.insert(node, outcome);
    }
}

/// The manager's app container, when its node is not being replaced.
async fn revive_manager(
    state: &State,
    seen: &Observed,
    progress: &Progress,
    report: &mut HealReport,
) {
    let Some(m) = &state.manager else {
        return;
    };
    let node_stays = report.verdicts.iter().any(|v| {
        v.node == m.node && matches!(v.decision, Decision::Healthy | Decision::RestartDocker)
    });
    if !node_stays {
        return;
    }
    report.manager = match crate::manager::revive(&seen.pool, &seen.targets, state).await {
        Ok(r) => r,
        Err(e) => Some(format!("not recovered: {e}")),
    };
    if let Some(r) = &report.manager {
        progress.node_done(&m.node, r == "recovered", &format!("manager: {r}"));
    }
}

/// Removes each victim — its member entry (through a live manager), its machine, its record —
/// journalled, so an interrupted heal is finished by the next run. Returns the removed names.
async fn remove_victims(
    home: &Home,
    dir: &Path,
    state: &mut State,
    seen: &Observed,
    victims: &[String],
    progress: &Progress,
) -> Result<Vec<String>> {
    let j = Journal::open(dir, &crate::util::new_run_token()).map_err(|source| Error::Journal {
        path: dir.join("journal.jsonl").display().to_string(),
        source,
    })?;
    journal(&j, "heal", "", Phase::RunStart, json!({"victims": victims}))?;
    let mut removed = Vec::new();
    for name in victims {
        let Some(rec) = state.nodes.get(name).cloned() else {
            continue;
        };
        let intent = json!({"machine": rec.machine_id, "member": rec.cluster_id});
        journal(&j, "replace-node", name, Phase::Intent, intent)?;
        progress.node(name, "removing the broken node");
        if let (Some(orch), Some(id)) = (&seen.orchestrator, &rec.cluster_id) {
            let via: Vec<_> = seen
                .live_managers
                .iter()
                .filter(|m| &m.name != name)
                .cloned()
                .collect();
            if !via.is_empty() {
                let was_manager = rec.role == flotilla_provider_core::Role::Manager;
                orch.remove_member(&via, id, was_manager).await?;
            }
        }
        super::fault_point("heal-after-member-rm");
        if let Some(id) = &rec.machine_id {
            seen.provider
                .delete_nodes(&seen.owner, std::slice::from_ref(id))
                .await?;
        }
        super::fault_point("heal-after-delete");
        state.nodes.remove(name);
        home.save(state)?;
        journal(&j, "replace-node", name, Phase::Done, json!(null))?;
        progress.node_done(name, true, "removed; a replacement follows");
        removed.push(name.clone());
    }
    journal(&j, "heal", "", Phase::RunEnd, json!({"replaced": removed}))?;
    Ok(removed)
}
