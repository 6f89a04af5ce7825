//! Planning: desired (blueprint) vs recorded (state) vs observed (provider). Pure logic, so every
//! case is unit-tested without a cloud.

use crate::blueprint::Group;
use crate::state::State;
use flotilla_provider_core::{NodeInfo, NodeSpec, NodeState};
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MachinePlan {
    /// New machines (names allocated in the state copy the plan was computed on).
    pub create: Vec<PlannedNode>,
    /// Machines that exist but are stopped/pending: started through the provider.
    pub start: Vec<String>,
    /// Machines found with this deployment's labels that the state did not know and the
    /// blueprint still wants: recorded (a crashed run's creations).
    pub adopt: Vec<String>,
    /// Machines with the deployment's labels that nothing wants (crashed runs, removed groups).
    pub orphans: Vec<Orphan>,
    /// Recorded nodes whose machine is gone: dropped from the state (replacements are in `create`).
    pub lost: Vec<String>,
    /// Recorded nodes beyond the group's count or in removed groups (newest first).
    pub remove: Vec<String>,
    /// Machines in an error state: deleted and replaced.
    pub replace: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlannedNode {
    pub name: String,
    pub group: String,
    pub role: flotilla_provider_core::Role,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Orphan {
    pub name: String,
    pub machine_id: String,
    pub reason: String,
}

impl MachinePlan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.start.is_empty()
            && self.adopt.is_empty()
            && self.orphans.is_empty()
            && self.lost.is_empty()
            && self.remove.is_empty()
            && self.replace.is_empty()
    }

    pub fn specs(&self) -> Vec<NodeSpec> {
        self.create
            .iter()
            .map(|n| NodeSpec {
                name: n.name.clone(),
                group: n.group.clone(),
                role: n.role,
            })
            .collect()
    }
}

fn index_of(name: &str) -> u32 {
    name.rsplit_once('-')
        .and_then(|(_, i)| i.parse().ok())
        .unwrap_or(0)
}

/// Reconciles the state against what the provider reports, then sizes each group. Mutates `state`
/// (adopted records, lost records dropped, new names allocated) so the caller can persist it
/// *before* creating anything.
pub fn plan_machines(
    groups: &[Group],
    state: &mut State,
    observed: &[NodeInfo],
    owns_machines: bool,
    now: &str,
) -> MachinePlan {
    let mut plan = MachinePlan::default();
    let wanted_group = |g: &str| groups.iter().find(|x| x.name == g);

    // Observed machines: update known records, adopt or flag the others.
    for m in observed {
        if let Some(rec) = state.nodes.get_mut(&m.name) {
            if rec.machine_id.as_ref().is_some_and(|id| id != &m.id) && owns_machines {
                // Two machines claim the same name: keep the recorded one, the other is an orphan.
                plan.orphans.push(Orphan {
                    name: m.name.clone(),
                    machine_id: m.id.0.clone(),
                    reason: "duplicate of a recorded node".into(),
                });
                continue;
            }
            rec.machine_id = Some(m.id.clone());
            rec.private_ip = m.private_ip;
            rec.public_ip = m.public_ip;
            rec.ssh_port = m.ssh_port;
            if rec.phase < crate::state::NodePhase::Created {
                rec.phase = crate::state::NodePhase::Created;
            }
        } else if wanted_group(&m.group).is_some() {
            // A machine a crashed run created: recorded as created, with what the provider says.
            let spec = flotilla_provider_core::NodeSpec {
                name: m.name.clone(),
                group: m.group.clone(),
                role: m.role,
            };
            let mut rec = crate::state::NodeRecord::creating(&spec, &m.run_token, now);
            rec.machine_id = Some(m.id.clone());
            rec.phase = crate::state::NodePhase::Created;
            rec.private_ip = m.private_ip;
            rec.public_ip = m.public_ip;
            rec.ssh_port = m.ssh_port;
            rec.ssh_user = m.ssh_user.clone().unwrap_or_default();
            state.nodes.insert(m.name.clone(), rec);
            plan.adopt.push(m.name.clone());
        } else {
            plan.orphans.push(Orphan {
                name: m.name.clone(),
                machine_id: m.id.0.clone(),
                reason: format!("group `{}` is not in the blueprint", m.group),
            });
        }
        match &m.state {
            NodeState::Stopped | NodeState::Pending if wanted_group(&m.group).is_some() => {
                plan.start.push(m.name.clone())
            }
            NodeState::Error(_) if wanted_group(&m.group).is_some() && owns_machines => {
                plan.replace.push(m.name.clone())
            }
            _ => {}
        }
    }
    // Recorded nodes whose machine is gone.
    let observed_names: Vec<&str> = observed.iter().map(|m| m.name.as_str()).collect();
    let lost: Vec<String> = state
        .nodes
        .keys()
        .filter(|n| !observed_names.contains(&n.as_str()))
        .cloned()
        .collect();
    let mut retry: Vec<PlannedNode> = Vec::new();
    for name in lost {
        match state.nodes.get(&name) {
            // Recorded by a run that died before the create call answered: ask again under
            // the same name (the provider finds the machine if the call did go through).
            Some(rec)
                if rec.phase == crate::state::NodePhase::Creating
                    && rec.machine_id.is_none()
                    && wanted_group(&rec.group).is_some() =>
            {
                retry.push(PlannedNode {
                    name: name.clone(),
                    group: rec.group.clone(),
                    role: rec.role,
                });
            }
            _ => {
                state.nodes.remove(&name);
                plan.lost.push(name);
            }
        }
    }
    for name in &plan.replace {
        state.nodes.remove(name);
    }
    // Size each group: remove newest first, create with fresh names.
    for g in groups {
        let mut members: Vec<String> = state
            .nodes_of_group(&g.name)
            .map(|n| n.name.clone())
            .collect();
        members.sort_by_key(|n| index_of(n));
        let have = u32::try_from(members.len()).unwrap_or(u32::MAX);
        if have > g.count {
            let extra = (have - g.count) as usize;
            plan.remove
                .extend(members.iter().rev().take(extra).cloned());
        }
        for _ in have..g.count {
            let name = if g.hosts.is_empty() {
                state.allocate_name(&g.name)
            } else {
                // Static hosts have fixed names by position; take the first one without a record.
                (1..=g.count)
                    .map(|i| format!("{}-{i}", g.name))
                    .find(|n| {
                        !state.nodes.contains_key(n) && !plan.create.iter().any(|c| &c.name == n)
                    })
                    .unwrap_or_else(|| state.allocate_name(&g.name))
            };
            plan.create.push(PlannedNode {
                name,
                group: g.name.clone(),
                role: g.role,
            });
        }
    }
    let mut create = retry
        .into_iter()
        .filter(|r| !plan.remove.contains(&r.name))
        .collect::<Vec<_>>();
    create.append(&mut plan.create);
    plan.create = create;
    for rec in state.nodes.values() {
        if wanted_group(&rec.group).is_none() {
            plan.remove.push(rec.name.clone());
        }
    }
    plan.start.retain(|n| !plan.remove.contains(n));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{NodePhase, NodeRecord};
    use flotilla_provider_core::{MachineId, Role};
    use std::collections::BTreeMap;

    fn group(name: &str, role: Role, count: u32) -> Group {
        Group {
            name: name.into(),
            role,
            count,
            labels: BTreeMap::new(),
            hosts: vec![],
        }
    }

    fn machine(name: &str, group: &str, state: NodeState) -> NodeInfo {
        NodeInfo {
            id: MachineId(format!("id-{name}")),
            name: name.into(),
            group: group.into(),
            role: Role::Worker,
            run_token: "r1".into(),
            state,
            private_ip: None,
            public_ip: None,
            ssh_port: 22,
            ssh_user: None,
        }
    }

    fn record(name: &str, group: &str) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            group: group.into(),
            role: Role::Worker,
            machine_id: Some(MachineId(format!("id-{name}"))),
            run_token: "r1".into(),
            phase: NodePhase::Ready,
            private_ip: None,
            public_ip: None,
            ssh_port: 22,
            ssh_user: "root".into(),
            host_key: None,
            os: None,
            docker_version: None,
            cluster_id: None,
            created_at: "t".into(),
            unhealthy_since: None,
            docker_restart_tried_at: None,
        }
    }

    #[test]
    fn fresh_deployment_creates_every_node() {
        let mut s = State::new("d", "docker", "t");
        let p = plan_machines(
            &[
                group("managers", Role::Manager, 1),
                group("workers", Role::Worker, 2),
            ],
            &mut s,
            &[],
            true,
            "t",
        );
        let names: Vec<&str> = p.create.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["managers-1", "workers-1", "workers-2"]);
        assert!(p.remove.is_empty() && p.orphans.is_empty());
    }

    #[test]
    fn converged_deployment_plans_nothing() {
        let mut s = State::new("d", "docker", "t");
        s.nodes
            .insert("workers-1".into(), record("workers-1", "workers"));
        let p = plan_machines(
            &[group("workers", Role::Worker, 1)],
            &mut s,
            &[machine("workers-1", "workers", NodeState::Running)],
            true,
            "t",
        );
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn crashed_run_machines_are_adopted_not_recreated() {
        let mut s = State::new("d", "docker", "t");
        let observed = [
            machine("workers-1", "workers", NodeState::Running),
            machine("workers-2", "workers", NodeState::Running),
        ];
        let p = plan_machines(
            &[group("workers", Role::Worker, 2)],
            &mut s,
            &observed,
            true,
            "t",
        );
        assert_eq!(p.adopt, vec!["workers-1", "workers-2"]);
        assert!(p.create.is_empty());
        assert_eq!(s.nodes.len(), 2);
        // The next name is never one of the adopted ones.
        assert_eq!(s.allocate_name("workers"), "workers-3");
    }

    #[test]
    fn scale_in_removes_newest_and_orphans_are_flagged() {
        let mut s = State::new("d", "docker", "t");
        for n in ["workers-1", "workers-2", "workers-10"] {
            s.nodes.insert(n.into(), record(n, "workers"));
        }
        let observed = [
            machine("workers-1", "workers", NodeState::Running),
            machine("workers-2", "workers", NodeState::Running),
            machine("workers-10", "workers", NodeState::Running),
            machine("old-1", "old", NodeState::Running),
        ];
        let p = plan_machines(
            &[group("workers", Role::Worker, 1)],
            &mut s,
            &observed,
            true,
            "t",
        );
        assert_eq!(p.remove, vec!["workers-10", "workers-2"]);
        assert_eq!(p.orphans.len(), 1);
        assert_eq!(p.orphans[0].name, "old-1");
    }

    #[test]
    fn names_recorded_before_a_failed_create_are_asked_for_again() {
        let mut s = State::new("d", "ec2", "t");
        let mut r = record("workers-1", "workers");
        r.phase = NodePhase::Creating;
        r.machine_id = None;
        s.nodes.insert("workers-1".into(), r);
        s.next_index.insert("workers".into(), 2);
        let p = plan_machines(&[group("workers", Role::Worker, 2)], &mut s, &[], true, "t");
        let names: Vec<&str> = p.create.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["workers-1", "workers-2"]);
        assert!(p.lost.is_empty());
    }

    #[test]
    fn lost_and_broken_machines_are_replaced() {
        let mut s = State::new("d", "docker", "t");
        s.nodes
            .insert("workers-1".into(), record("workers-1", "workers"));
        s.nodes
            .insert("workers-2".into(), record("workers-2", "workers"));
        s.next_index.insert("workers".into(), 3);
        let observed = [machine(
            "workers-2",
            "workers",
            NodeState::Error("dead".into()),
        )];
        let p = plan_machines(
            &[group("workers", Role::Worker, 2)],
            &mut s,
            &observed,
            true,
            "t",
        );
        assert_eq!(p.lost, vec!["workers-1"]);
        assert_eq!(p.replace, vec!["workers-2"]);
        let names: Vec<&str> = p.create.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["workers-3", "workers-4"]);
    }

    /// Plan and provider together, as `up` uses them: the fake provider from providers/core
    /// stands in for a cloud (no I/O), the state is applied the way the machines stage does.
    mod against_the_fake_provider {
        use super::*;
        use flotilla_provider_core::fake::FakeProvider;
        use flotilla_provider_core::{CreateRequest, NodeSpec, Ownership, Provider};

        fn block_on<F: std::future::Future>(f: F) -> F::Output {
            match tokio::runtime::Builder::new_current_thread().build() {
                Ok(rt) => rt.block_on(f),
                Err(e) => panic!("a runtime for the test: {e}"),
            }
        }

        /// One `up`'s machine work: plan, record the names, create, record the ids.
        fn converge(
            p: &FakeProvider,
            owner: &Ownership,
            groups: &[Group],
            s: &mut State,
            run: &str,
        ) -> MachinePlan {
            let observed = block_on(p.describe(owner)).unwrap_or_default();
            let plan = plan_machines(groups, s, &observed, true, "t");
            let specs: Vec<NodeSpec> = plan.specs();
            for spec in &specs {
                s.nodes
                    .insert(spec.name.clone(), NodeRecord::creating(spec, run, "t"));
            }
            let doomed: Vec<MachineId> = plan
                .remove
                .iter()
                .filter_map(|n| s.nodes.get(n).and_then(|r| r.machine_id.clone()))
                .collect();
            let req = CreateRequest {
                owner: owner.clone(),
                run_token: run.into(),
                nodes: specs,
                ssh_public_key: String::new(),
            };
            for m in block_on(p.create_nodes(&req)).unwrap_or_default() {
                if let Some(r) = s.nodes.get_mut(&m.name) {
                    r.machine_id = Some(m.id.clone());
                    r.phase = NodePhase::Created;
                }
            }
            if block_on(p.delete_nodes(owner, &doomed)).is_ok() {
                for n in &plan.remove {
                    s.nodes.remove(n);
                }
            }
            plan
        }

        #[test]
        fn a_second_run_plans_nothing_and_creates_nothing() {
            let (p, owner) = (FakeProvider::new(), Ownership::new("d"));
            let groups = [
                group("managers", Role::Manager, 1),
                group("workers", Role::Worker, 2),
            ];
            let mut s = State::new("d", "fake", "t");
            let first = converge(&p, &owner, &groups, &mut s, "r1");
            assert_eq!(first.create.len(), 3);
            assert_eq!(p.machines("d").len(), 3);
            let second = converge(&p, &owner, &groups, &mut s, "r2");
            assert!(second.is_empty(), "{second:?}");
            assert_eq!(*p.create_calls.lock().unwrap_or_else(|e| e.into_inner()), 2);
            assert_eq!(p.machines("d").len(), 3, "nothing created twice");
        }

        #[test]
        fn a_lost_machine_is_dropped_and_replaced_under_a_new_name() {
            let (p, owner) = (FakeProvider::new(), Ownership::new("d"));
            let groups = [group("workers", Role::Worker, 2)];
            let mut s = State::new("d", "fake", "t");
            converge(&p, &owner, &groups, &mut s, "r1");
            let gone = s.nodes["workers-1"]
                .machine_id
                .clone()
                .into_iter()
                .collect::<Vec<_>>();
            assert!(block_on(p.delete_nodes(&owner, &gone)).is_ok());
            let plan = converge(&p, &owner, &groups, &mut s, "r2");
            assert_eq!(plan.lost, vec!["workers-1".to_string()]);
            assert_eq!(
                plan.create
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>(),
                vec!["workers-3"]
            );
            assert_eq!(p.machines("d").len(), 2);
        }

        #[test]
        fn a_run_that_died_after_create_is_adopted_not_created_again() {
            let (p, owner) = (FakeProvider::new(), Ownership::new("d"));
            let groups = [group("workers", Role::Worker, 2)];
            // The machines exist, but the state never learnt their ids (or even their names).
            let req = CreateRequest {
                owner: owner.clone(),
                run_token: "r1".into(),
                nodes: ["workers-1", "workers-2"]
                    .iter()
                    .map(|n| NodeSpec {
                        name: (*n).into(),
                        group: "workers".into(),
                        role: Role::Worker,
                    })
                    .collect(),
                ssh_public_key: String::new(),
            };
            assert!(block_on(p.create_nodes(&req)).is_ok());
            let mut s = State::new("d", "fake", "t");
            let plan = converge(&p, &owner, &groups, &mut s, "r2");
            assert_eq!(plan.adopt.len(), 2, "{plan:?}");
            assert!(
                plan.create.is_empty() && plan.orphans.is_empty(),
                "{plan:?}"
            );
            assert_eq!(p.machines("d").len(), 2);
        }

        #[test]
        fn scaling_in_removes_the_newest_and_deletes_its_machine() {
            let (p, owner) = (FakeProvider::new(), Ownership::new("d"));
            let mut s = State::new("d", "fake", "t");
            converge(
                &p,
                &owner,
                &[group("workers", Role::Worker, 3)],
                &mut s,
                "r1",
            );
            let plan = converge(
                &p,
                &owner,
                &[group("workers", Role::Worker, 1)],
                &mut s,
                "r2",
            );
            assert_eq!(
                plan.remove,
                vec!["workers-3".to_string(), "workers-2".to_string()]
            );
            let left: Vec<String> = p.machines("d").into_iter().map(|m| m.name).collect();
            assert_eq!(left, vec!["workers-1".to_string()]);
        }

        #[test]
        fn machines_of_a_removed_group_are_orphans() {
            let (p, owner) = (FakeProvider::new(), Ownership::new("d"));
            let mut s = State::new("d", "fake", "t");
            converge(&p, &owner, &[group("old", Role::Worker, 1)], &mut s, "r1");
            s.nodes.clear();
            let plan = converge(
                &p,
                &owner,
                &[group("workers", Role::Worker, 1)],
                &mut s,
                "r2",
            );
            assert_eq!(plan.orphans.len(), 1, "{plan:?}");
            assert!(plan.orphans[0].reason.contains("`old`"), "{plan:?}");
        }
    }
}
