//! The ordered list of stages a run walks. `plan` and `up` (and `scale`/`heal`, which run `up`)
//! share it; which stages a command runs is decided here and only here.

use super::context::Ctx;
use super::stage;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Records the run and the blueprint in the state; renders `services:` (a typo stops here).
    Start,
    /// Provider preflight, observe, plan; delete orphans and broken machines; create and start.
    Machines,
    /// SSH to every node that stays, pin host keys, probe what runs there.
    Connect,
    /// Install or start Docker where it does not answer.
    Docker,
    /// `docker.preload_images` on every reachable node before any joins.
    Preload,
    /// Form or extend the cluster.
    Cluster,
    /// `containers:` per group.
    Containers,
    /// `services:` through the cluster's scheduler.
    Services,
    /// The flotilla manager, when the blueprint has one and none is installed.
    Manager,
    /// Nodes beyond their group's count leave the cluster and are deleted; stale members go.
    ScaleIn,
    /// `outputs:` rendered and recorded; the report's summary.
    Outputs,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Start => "start",
            Stage::Machines => "machines",
            Stage::Connect => "connect",
            Stage::Docker => "docker",
            Stage::Preload => "preload",
            Stage::Cluster => "cluster",
            Stage::Containers => "containers",
            Stage::Services => "services",
            Stage::Manager => "manager",
            Stage::ScaleIn => "scale-in",
            Stage::Outputs => "outputs",
        }
    }

    pub async fn run(self, cx: &mut Ctx<'_>) -> Result<()> {
        match self {
            Stage::Start => stage::start::run(cx).await,
            Stage::Machines => stage::machines::run(cx).await,
            Stage::Connect => stage::connect::run(cx).await,
            Stage::Docker => stage::docker::run(cx).await,
            Stage::Preload => stage::preload::run(cx).await,
            Stage::Cluster => stage::cluster::run(cx).await,
            Stage::Containers => stage::containers::run(cx).await,
            Stage::Services => stage::services::run(cx).await,
            Stage::Manager => stage::manager::run(cx).await,
            Stage::ScaleIn => stage::scale_in::run(cx).await,
            Stage::Outputs => stage::outputs::run(cx).await,
        }
    }
}

/// The stages `command` runs, in order. A plan looks at machines, reachability, Docker and
/// cluster membership; it changes nothing, so workloads, the manager and scale-in (whose
/// effects the machine plan already lists) are not walked. `services:` and the manager belong
/// to `up` itself: `scale` and `heal` change machines, not workloads.
pub fn list(command: &str, plan: bool) -> Vec<Stage> {
    use Stage::*;
    if plan {
        return vec![Start, Machines, Connect, Docker, Cluster, Outputs];
    }
    let mut stages = vec![
        Start, Machines, Connect, Docker, Preload, Cluster, Containers,
    ];
    if command == "up" {
        stages.extend([Services, Manager]);
    }
    stages.extend([ScaleIn, Outputs]);
    stages
}

#[cfg(test)]
mod tests {
    use super::*;
    use Stage::*;

    #[test]
    fn up_walks_every_stage_in_order() {
        assert_eq!(
            list("up", false),
            vec![
                Start, Machines, Connect, Docker, Preload, Cluster, Containers, Services, Manager,
                ScaleIn, Outputs
            ]
        );
    }

    #[test]
    fn scale_and_heal_leave_services_and_the_manager_alone() {
        for cmd in ["scale", "heal"] {
            let l = list(cmd, false);
            assert!(
                !l.contains(&Services) && !l.contains(&Manager),
                "{cmd}: {l:?}"
            );
            assert!(
                l.contains(&ScaleIn) && l.contains(&Containers),
                "{cmd}: {l:?}"
            );
        }
    }

    #[test]
    fn plan_only_looks() {
        let l = list("plan", true);
        for changing in [Preload, Containers, Services, Manager, ScaleIn] {
            assert!(!l.contains(&changing), "plan must not walk {changing:?}");
        }
        assert_eq!(l.first(), Some(&Start));
        assert_eq!(l.last(), Some(&Outputs));
    }

    #[test]
    fn machines_before_connect_before_cluster_before_workloads() {
        let l = list("up", false);
        let at = |s| l.iter().position(|x| *x == s).unwrap_or(usize::MAX);
        assert!(at(Machines) < at(Connect));
        assert!(at(Connect) < at(Docker));
        assert!(at(Preload) < at(Cluster), "images before any node joins");
        assert!(at(Cluster) < at(Containers));
        assert!(
            at(ScaleIn) > at(Manager),
            "scale-in last, after the wanted nodes are served"
        );
        let names: std::collections::BTreeSet<_> = l.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), l.len(), "stage names are unique");
    }
}
