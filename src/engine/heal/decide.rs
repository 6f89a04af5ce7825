//! heal's decisions, without I/O: what one observation of a node means (like Cluster API's
//! MachineHealthCheck), and the guards that keep a run from making things worse — too many
//! unhealthy nodes (a partition looks like that), a lost quorum, more than one manager per run.

use crate::blueprint::{HealthConfig, MaxUnhealthy};
use crate::cluster::Quorum;
use crate::state::{NodePhase, NodeRecord};
use flotilla_provider_core::NodeState;
use serde::Serialize;
use std::time::Duration;

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
    /// (its cluster membership comes back from disk) before anything is replaced.
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

/// What SSH found on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    DockerUp,
    DockerDown,
    Failed(String),
    NoAddress,
}

/// What the cluster says about a node's member entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// No orchestrator, or no manager answered: the cluster's view is not part of the verdict.
    Unknown,
    NeverJoined,
    Missing,
    /// The member's status as the cluster reports it (`ready` is healthy).
    Status(String),
}

/// One observation of one node.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The machine's state as the provider reports it; `None`: the machine is gone.
    pub machine: Option<NodeState>,
    pub reach: Reach,
    pub membership: Membership,
}

/// The verdict on one node; records when it was first seen unhealthy and when a Docker restart
/// was tried (both cleared once it is healthy), so later runs know how long and what was done.
pub fn judge(
    r: &mut NodeRecord,
    obs: &Observation,
    cluster_kind: &str,
    health: &HealthConfig,
    now: &str,
) -> Verdict {
    let mut reasons = reasons(obs, cluster_kind);
    let only_docker_down =
        obs.machine == Some(NodeState::Running) && obs.reach == Reach::DockerDown;
    let decision = if reasons.is_empty() {
        r.unhealthy_since = None;
        r.docker_restart_tried_at = None;
        Decision::Healthy
    } else if only_docker_down && r.docker_restart_tried_at.is_none() {
        // Cheap and harmless, so no grace period: a crashed or stopped daemon is the commonest
        // failure and replacing a whole machine for it would be wasteful.
        r.unhealthy_since.get_or_insert_with(|| now.to_string());
        r.docker_restart_tried_at = Some(now.to_string());
        Decision::RestartDocker
    } else if r.phase < NodePhase::Ready
        && age_of(&r.created_at, now).is_some_and(|a| a < health.node_startup_timeout)
    {
        Decision::Starting
    } else {
        if let (true, Some(at)) = (only_docker_down, &r.docker_restart_tried_at) {
            reasons.push(format!("a Docker restart at {at} did not bring it back"));
        }
        let since = r
            .unhealthy_since
            .get_or_insert_with(|| now.to_string())
            .clone();
        if age_of(&since, now).is_some_and(|a| a >= health.unhealthy_grace) {
            Decision::Replace
        } else {
            Decision::Waiting
        }
    };
    Verdict {
        node: r.name.clone(),
        role: r.role.as_str().into(),
        decision,
        reasons,
    }
}

fn reasons(obs: &Observation, kind: &str) -> Vec<String> {
    let mut reasons = Vec::new();
    match &obs.machine {
        None => reasons.push("machine is gone".to_string()),
        Some(s) if *s != NodeState::Running => reasons.push(format!("machine is {}", s.as_str())),
        Some(_) => {}
    }
    match &obs.reach {
        Reach::DockerUp => {}
        Reach::DockerDown => reasons.push("Docker does not answer".into()),
        Reach::Failed(e) => reasons.push(format!("SSH: {e}")),
        Reach::NoAddress => reasons.push("no address".into()),
    }
    match &obs.membership {
        Membership::Unknown => {}
        Membership::NeverJoined => reasons.push(format!("never joined the {kind} cluster")),
        Membership::Missing => reasons.push(format!("not a {kind} member")),
        Membership::Status(s) if s == "ready" => {}
        Membership::Status(s) => reasons.push(format!("{kind} reports it {s}")),
    }
    reasons
}

/// The guards, applied to all verdicts: returns why nothing may be replaced (when a guard says
/// so) and holds all but the first manager to be replaced. `quorum` is `None` without a cluster.
pub fn guard(
    verdicts: &mut [Verdict],
    health: &HealthConfig,
    quorum: Option<&Quorum>,
) -> Option<String> {
    let total = verdicts.len();
    let unhealthy = verdicts
        .iter()
        .filter(|v| matches!(v.decision, Decision::Replace | Decision::Waiting))
        .count();
    let allowed = limit(health.max_unhealthy, total);
    let mut refused = (unhealthy > allowed).then(|| {
        format!(
            "{unhealthy} of {total} nodes are unhealthy, more than health.max_unhealthy allows ({allowed}); \
             that looks like a partition or an outage, so nothing is replaced"
        )
    });
    if let (None, Some(q)) = (&refused, quorum) {
        refused = quorum_lost(verdicts, q);
    }
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
    refused
}

/// A cluster whose managers lost their majority cannot remove or add managers.
fn quorum_lost(verdicts: &[Verdict], q: &Quorum) -> Option<String> {
    let managers = verdicts.iter().filter(|v| v.role == "manager").count();
    let dead = verdicts
        .iter()
        .filter(|v| {
            v.role == "manager" && !matches!(v.decision, Decision::Healthy | Decision::Starting)
        })
        .count();
    (managers > 0 && managers - dead < managers / 2 + 1).then(|| {
        format!(
            "{dead} of {managers} {} are down: the quorum is lost and no manager can be replaced \
             automatically; {}",
            q.managers_are, q.advice
        )
    })
}

/// The nodes to replace: those judged `Replace`, unless a guard refused.
pub fn victims(verdicts: &[Verdict], refused: &Option<String>) -> Vec<String> {
    if refused.is_some() {
        return vec![];
    }
    verdicts
        .iter()
        .filter(|v| v.decision == Decision::Replace)
        .map(|v| v.node.clone())
        .collect()
}

fn age_of(ts: &str, now: &str) -> Option<Duration> {
    let t: jiff::Timestamp = ts.parse().ok()?;
    let now: jiff::Timestamp = now.parse().ok()?;
    // Recorded times are rounded to the second, so "just now" can lie a fraction in the future.
    Some(Duration::try_from(now.duration_since(t)).unwrap_or(Duration::ZERO))
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

#[cfg(test)]
mod tests;
