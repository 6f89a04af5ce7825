//! `flotilla heal`: observe once (one batched provider describe, parallel SSH probes, the cluster's
//! own member list), decide like Cluster API's MachineHealthCheck, then replace what is broken by
//! removing it (stale member, machine, record) and converging like `up`.
//!
//! Guards: nodes still booting (`health.node_startup_timeout`) and nodes unhealthy for less than
//! `health.unhealthy_grace` are left alone; more unhealthy nodes than `health.max_unhealthy`
//! (a partition looks like that) means nothing is replaced; at most one manager per run, and never
//! when the swarm has already lost its raft quorum (that needs an operator).

use super::up::{up_locked, UpOptions, UpReport};
use super::{build_provider, effective_blueprint, journal, recorded_public_key};
use crate::blueprint::MaxUnhealthy;
use crate::cluster::Member;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::state::{Home, Journal, NodePhase, Phase};
use crate::util::now_rfc3339;
use flotilla_provider_core::{NodeState, Ownership};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_recorded_just_now_has_age_zero_not_none() {
        let now = crate::util::now_rfc3339();
        assert!(age_of(&now).is_some_and(|a| a < Duration::from_secs(2)));
        assert_eq!(limit(MaxUnhealthy::Percent(40), 3), 1);
        assert_eq!(limit(MaxUnhealthy::Percent(40), 2), 1, "at least one node");
        assert_eq!(limit(MaxUnhealthy::Percent(40), 10), 4);
        assert_eq!(limit(MaxUnhealthy::Percent(0), 10), 0);
        assert_eq!(limit(MaxUnhealthy::Count(2), 10), 2);
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Healthy,
    /// Still booting within node_startup_timeout.
    Starting,
    /// Unhealthy, but not for longer than unhealthy_grace yet.
    Waiting,
    Replace,
    /// The machine runs and answers SSH but its Docker daemon does not: restart Docker in place
    /// (its swarm membership comes back from disk) before anything is replaced.
    RestartDocker,
    /// Unhealthy, but a guard keeps it (one manager per run, quorum).
    Held,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub node: String,
    pub role: String,
    pub decision: Decision,
    pub reasons: Vec<String>,
}

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

fn age_of(ts: &str) -> Option<Duration> {
    let t: jiff::Timestamp = ts.parse().ok()?;
    let d = jiff::Timestamp::now().duration_since(t);
    // Recorded times are rounded to the second, so "just now" can lie a fraction in the future.
    Some(Duration::try_from(d).unwrap_or(Duration::ZERO))
}

fn limit(max: MaxUnhealthy, total: usize) -> usize {
    match max {
        MaxUnhealthy::Count(n) => n as usize,
        // Rounded down like Cluster API, but never below one node for a non-zero percentage:
        // 40 % of a 2-node deployment would otherwise forbid every repair.
        MaxUnhealthy::Percent(0) => 0,
        MaxUnhealthy::Percent(p) => ((total * p as usize) / 100).max(1),
    }
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
    let provider = build_provider(&bp, &recorded_public_key(&state)).await?;
    let owner = Ownership::new(name).expiring(state.expires_at.clone());

    // Observe once.
    let observed = provider.describe(&owner).await?;
    let scratch = tempfile::tempdir().map_err(|e| Error::Other(e.to_string()))?;
    let (pool, targets) = super::nodes::pool_for_recorded(
        &bp,
        &state,
        &dir,
        Duration::from_secs(5),
        Some(scratch.path()),
    )?;
    let probes = super::nodes::probe_all(&pool, &targets, Duration::from_secs(5)).await;
    let live_managers = super::nodes::live_managers(&state, &bp, &probes);
    let orchestrator = crate::cluster::for_blueprint(&bp, pool.clone());
    let members: Option<Vec<Member>> = match &orchestrator {
        Some(orch) if !live_managers.is_empty() => orch.members(&live_managers).await.ok(),
        _ => None,
    };

    // Decide.
    let now = now_rfc3339();
    let mut verdicts = Vec::new();
    for r in state.nodes.values_mut() {
        let mut reasons = Vec::new();
        let machine = observed
            .iter()
            .find(|m| Some(&m.id) == r.machine_id.as_ref());
        let only_docker_down = machine.is_some_and(|m| m.state == NodeState::Running)
            && matches!(probes.get(&r.name), Some(Ok(p)) if p.docker_server.is_none());
        match machine {
            None => reasons.push("machine is gone".to_string()),
            Some(m) if m.state != NodeState::Running => {
                reasons.push(format!("machine is {}", m.state.as_str()))
            }
            _ => {}
        }
        match probes.get(&r.name) {
            Some(Ok(p)) if p.docker_server.is_none() => {
                reasons.push("Docker does not answer".into())
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => reasons.push(format!("SSH: {e}")),
            None => reasons.push("no address".into()),
        }
        if let Some(orch) = &orchestrator {
            let kind = orch.kind();
            match (&members, &r.cluster_id) {
                (Some(ms), Some(id)) => match ms.iter().find(|m| &m.id == id) {
                    Some(m) if m.status == "ready" => {}
                    Some(m) => reasons.push(format!("{kind} reports it {}", m.status)),
                    None => reasons.push(format!("not a {kind} member")),
                },
                (Some(_), None) => reasons.push(format!("never joined the {kind} cluster")),
                (None, _) => {}
            }
        }
        let decision = if reasons.is_empty() {
            r.unhealthy_since = None;
            r.docker_restart_tried_at = None;
            Decision::Healthy
        } else if only_docker_down && r.docker_restart_tried_at.is_none() {
            // Cheap and harmless, so no grace period: a crashed or stopped daemon is the
            // commonest failure and replacing a whole machine for it would be wasteful.
            r.unhealthy_since.get_or_insert_with(|| now.clone());
            r.docker_restart_tried_at = Some(now.clone());
            Decision::RestartDocker
        } else if r.phase < NodePhase::Ready
            && age_of(&r.created_at).is_some_and(|a| a < bp.health.node_startup_timeout)
        {
            Decision::Starting
        } else {
            if let (true, Some(at)) = (only_docker_down, &r.docker_restart_tried_at) {
                reasons.push(format!("a Docker restart at {at} did not bring it back"));
            }
            let since = r.unhealthy_since.get_or_insert_with(|| now.clone()).clone();
            if age_of(&since).is_some_and(|a| a >= bp.health.unhealthy_grace) {
                Decision::Replace
            } else {
                Decision::Waiting
            }
        };
        verdicts.push(Verdict {
            node: r.name.clone(),
            role: r.role.as_str().into(),
            decision,
            reasons,
        });
    }

    let total = state.nodes.len();
    let unhealthy = verdicts
        .iter()
        .filter(|v| matches!(v.decision, Decision::Replace | Decision::Waiting))
        .count();
    let allowed = limit(bp.health.max_unhealthy, total);
    let mut refused = None;
    if unhealthy > allowed {
        refused = Some(format!(
            "{unhealthy} of {total} nodes are unhealthy, more than health.max_unhealthy allows ({allowed}); \
             that looks like a partition or an outage, so nothing is replaced"
        ));
    }
    // Quorum: a swarm whose raft majority is gone cannot remove or add managers.
    let managers = verdicts.iter().filter(|v| v.role == "manager").count();
    let dead_managers = verdicts
        .iter()
        .filter(|v| {
            v.role == "manager"
                && v.decision != Decision::Healthy
                && v.decision != Decision::Starting
        })
        .count();
    if refused.is_none()
        && orchestrator.is_some()
        && managers > 0
        && (managers - dead_managers) < managers / 2 + 1
    {
        refused = Some(format!(
            "{dead_managers} of {managers} swarm managers are down: the raft quorum is lost and no manager can be replaced \
             automatically; recover by hand (`docker swarm init --force-new-cluster` on a surviving manager)"
        ));
    }
    // One manager per run.
    let mut manager_taken = false;
    for v in verdicts
        .iter_mut()
        .filter(|v| v.decision == Decision::Replace && v.role == "manager")
    {
        if manager_taken {
            v.decision = Decision::Held;
            v.reasons.push("one manager is replaced per run".into());
        }
        manager_taken = true;
    }
    let victims: Vec<String> = if refused.is_some() {
        vec![]
    } else {
        verdicts
            .iter()
            .filter(|v| v.decision == Decision::Replace)
            .map(|v| v.node.clone())
            .collect()
    };
    let mut report = HealReport {
        deployment: name.into(),
        dry_run: opts.dry_run,
        verdicts,
        refused,
        replaced: vec![],
        restarted: BTreeMap::new(),
        converge: None,
        manager: None,
    };
    for v in &report.verdicts {
        if v.decision != Decision::Healthy {
            progress.info(&format!(
                "{}: {:?} ({})",
                v.node,
                v.decision,
                v.reasons.join("; ")
            ));
        }
    }
    if opts.dry_run {
        pool.close_all().await;
        return Ok(report);
    }
    home.save(&state)?;

    // Repairs in place come first and are not held back by max_unhealthy: SSH reaching the node
    // rules out a partition, and restarting a daemon deletes nothing.
    let restarts: Vec<String> = report
        .verdicts
        .iter()
        .filter(|v| v.decision == Decision::RestartDocker)
        .map(|v| v.node.clone())
        .collect();
    for node in restarts {
        let Some(t) = targets.iter().find(|t| t.node == node) else {
            continue;
        };
        let Some(Ok(p)) = probes.get(&node) else {
            continue;
        };
        progress.node(&node, "restarting Docker");
        let outcome = match super::nodes::install_docker(&pool, t, p, &bp).await {
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

    // The manager's app container, when its node is not being replaced.
    if let Some(m) = &state.manager {
        let node_stays = report.verdicts.iter().any(|v| {
            v.node == m.node && matches!(v.decision, Decision::Healthy | Decision::RestartDocker)
        });
        if node_stays {
            report.manager = match crate::manager::revive(&pool, &targets, &state).await {
                Ok(r) => r,
                Err(e) => Some(format!("not recovered: {e}")),
            };
            if let Some(r) = &report.manager {
                progress.node_done(&m.node, r == "recovered", &format!("manager: {r}"));
            }
        }
    }

    if report.refused.is_some() || victims.is_empty() {
        pool.close_all().await;
        return Ok(report);
    }

    // Remove each victim: stale member (through a live manager), machine, record.
    let j =
        Journal::open(&dir, &crate::util::new_run_token()).map_err(|source| Error::Journal {
            path: dir.join("journal.jsonl").display().to_string(),
            source,
        })?;
    journal(&j, "heal", "", Phase::RunStart, json!({"victims": victims}))?;
    for name in &victims {
        let Some(rec) = state.nodes.get(name).cloned() else {
            continue;
        };
        journal(
            &j,
            "replace-node",
            name,
            Phase::Intent,
            json!({"machine": rec.machine_id, "member": rec.cluster_id}),
        )?;
        progress.node(name, "removing the broken node");
        if let (Some(orch), Some(id)) = (&orchestrator, &rec.cluster_id) {
            let via: Vec<_> = live_managers
                .iter()
                .filter(|m| &m.name != name)
                .cloned()
                .collect();
            if !via.is_empty() {
                orch.remove_member(&via, id, rec.role == flotilla_provider_core::Role::Manager)
                    .await?;
            }
        }
        super::fault_point("heal-after-member-rm");
        if let Some(id) = &rec.machine_id {
            provider
                .delete_nodes(&owner, std::slice::from_ref(id))
                .await?;
        }
        super::fault_point("heal-after-delete");
        state.nodes.remove(name);
        home.save(&state)?;
        journal(&j, "replace-node", name, Phase::Done, json!(null))?;
        progress.node_done(name, true, "removed; a replacement follows");
        report.replaced.push(name.clone());
    }
    journal(
        &j,
        "heal",
        "",
        Phase::RunEnd,
        json!({"replaced": report.replaced}),
    )?;
    pool.close_all().await;

    // Replacements: the same convergence as `up`, under the lock we hold.
    let mut up_opts = UpOptions::new("heal");
    up_opts.allow_delete = true;
    up_opts.overrides = Some(state.count_overrides.clone());
    report.converge = Some(up_locked(&bp, home, progress, &up_opts).await?);
    Ok(report)
}
