use super::*;
use flotilla_provider_core::{NodeSpec, Role};

const NOW: &str = "2026-12-03T12:00:00Z";
const LONG_AGO: &str = "2026-12-03T10:00:00Z";

fn record(name: &str, role: Role) -> NodeRecord {
    let spec = NodeSpec {
        name: name.into(),
        group: "g".into(),
        role,
    };
    let mut r = NodeRecord::creating(&spec, "run", LONG_AGO);
    r.phase = NodePhase::Ready;
    r
}

fn healthy() -> Observation {
    Observation {
        machine: Some(NodeState::Running),
        reach: Reach::DockerUp,
        membership: Membership::Status("ready".into()),
    }
}

fn gone() -> Observation {
    Observation {
        machine: None,
        reach: Reach::Failed("connection refused".into()),
        membership: Membership::Status("down".into()),
    }
}

fn health() -> HealthConfig {
    HealthConfig::default()
}

fn verdict(name: &str, role: &str, decision: Decision) -> Verdict {
    Verdict {
        node: name.into(),
        role: role.into(),
        decision,
        reasons: vec![],
    }
}

fn swarm() -> Quorum {
    Quorum {
        managers_are: "swarm managers",
        quorum: "the raft quorum",
        advice: "recover by hand",
    }
}

#[test]
fn a_healthy_node_is_healthy_and_its_marks_are_cleared() {
    let mut r = record("w-1", Role::Worker);
    r.unhealthy_since = Some(LONG_AGO.into());
    r.docker_restart_tried_at = Some(LONG_AGO.into());
    let v = judge(&mut r, &healthy(), "swarm", &health(), NOW);
    assert_eq!(v.decision, Decision::Healthy);
    assert!(v.reasons.is_empty());
    assert_eq!((r.unhealthy_since, r.docker_restart_tried_at), (None, None));
}

#[test]
fn a_gone_machine_waits_out_the_grace_then_is_replaced() {
    let mut r = record("w-1", Role::Worker);
    let v = judge(&mut r, &gone(), "swarm", &health(), NOW);
    assert_eq!(
        v.decision,
        Decision::Waiting,
        "first sight: within unhealthy_grace"
    );
    assert_eq!(r.unhealthy_since.as_deref(), Some(NOW));
    assert!(
        v.reasons.iter().any(|x| x == "machine is gone"),
        "{:?}",
        v.reasons
    );
    assert!(
        v.reasons.iter().any(|x| x == "swarm reports it down"),
        "{:?}",
        v.reasons
    );
    let later = "2026-12-03T12:01:00Z";
    let v = judge(&mut r, &gone(), "swarm", &health(), later);
    assert_eq!(v.decision, Decision::Replace);
    assert_eq!(r.unhealthy_since.as_deref(), Some(NOW), "first sight kept");
}

#[test]
fn docker_down_on_a_running_machine_is_restarted_once_then_replaced() {
    let mut r = record("w-1", Role::Worker);
    let obs = Observation {
        reach: Reach::DockerDown,
        ..healthy()
    };
    let v = judge(&mut r, &obs, "swarm", &health(), NOW);
    assert_eq!(
        v.decision,
        Decision::RestartDocker,
        "no grace for a restart"
    );
    assert_eq!(r.docker_restart_tried_at.as_deref(), Some(NOW));
    let later = "2026-12-03T12:05:00Z";
    let v = judge(&mut r, &obs, "swarm", &health(), later);
    assert_eq!(v.decision, Decision::Replace, "the restart did not help");
    assert!(
        v.reasons.iter().any(|x| x.contains("Docker restart at")),
        "{:?}",
        v.reasons
    );
}

#[test]
fn a_stopped_machine_is_never_just_restarted() {
    let mut r = record("w-1", Role::Worker);
    let obs = Observation {
        machine: Some(NodeState::Stopped),
        reach: Reach::DockerDown,
        membership: Membership::Unknown,
    };
    let v = judge(&mut r, &obs, "swarm", &health(), NOW);
    assert_eq!(v.decision, Decision::Waiting);
    assert!(v.reasons.iter().any(|x| x == "machine is stopped"));
}

#[test]
fn a_booting_node_is_left_alone_within_the_startup_timeout() {
    let mut r = record("w-1", Role::Worker);
    r.phase = NodePhase::Created;
    r.created_at = "2026-12-03T11:58:00Z".into();
    let obs = Observation {
        reach: Reach::Failed("timeout".into()),
        membership: Membership::NeverJoined,
        ..healthy()
    };
    let v = judge(&mut r, &obs, "kubernetes", &health(), NOW);
    assert_eq!(v.decision, Decision::Starting);
    assert!(v
        .reasons
        .iter()
        .any(|x| x == "never joined the kubernetes cluster"));
    r.created_at = LONG_AGO.into();
    let v = judge(&mut r, &obs, "kubernetes", &health(), NOW);
    assert_eq!(v.decision, Decision::Waiting, "past node_startup_timeout");
}

#[test]
fn more_unhealthy_than_max_unhealthy_replaces_nothing() {
    let mut vs = vec![
        verdict("w-1", "worker", Decision::Replace),
        verdict("w-2", "worker", Decision::Waiting),
        verdict("w-3", "worker", Decision::Healthy),
    ];
    // 40 % of 3 is 1 (rounded down): two unhealthy nodes look like a partition.
    let refused = guard(&mut vs, &health(), Some(&swarm()));
    assert!(
        refused
            .as_deref()
            .is_some_and(|r| r.contains("2 of 3 nodes are unhealthy")),
        "{refused:?}"
    );
    assert!(victims(&vs, &refused).is_empty());
}

#[test]
fn max_unhealthy_limits() {
    assert_eq!(limit(MaxUnhealthy::Percent(40), 3), 1);
    assert_eq!(limit(MaxUnhealthy::Percent(40), 2), 1, "at least one node");
    assert_eq!(limit(MaxUnhealthy::Percent(40), 10), 4);
    assert_eq!(limit(MaxUnhealthy::Percent(0), 10), 0);
    assert_eq!(limit(MaxUnhealthy::Count(2), 10), 2);
}

#[test]
fn a_lost_quorum_replaces_nothing_and_says_what_to_do() {
    let mut h = health();
    h.max_unhealthy = MaxUnhealthy::Percent(100);
    let mut vs = vec![
        verdict("m-1", "manager", Decision::Replace),
        verdict("m-2", "manager", Decision::Replace),
        verdict("m-3", "manager", Decision::Healthy),
    ];
    let refused = guard(&mut vs, &h, Some(&swarm()));
    let r = refused.clone().unwrap_or_default();
    assert!(
        r.contains("2 of 3 swarm managers are down") && r.ends_with("recover by hand"),
        "{r}"
    );
    assert!(victims(&vs, &refused).is_empty());
    // Without a cluster there is no quorum to lose.
    let mut vs = vec![
        verdict("m-1", "manager", Decision::Replace),
        verdict("m-2", "manager", Decision::Replace),
    ];
    assert_eq!(guard(&mut vs, &h, None), None);
}

#[test]
fn one_manager_per_run_the_rest_are_held() {
    let mut h = health();
    h.max_unhealthy = MaxUnhealthy::Percent(100);
    let mut vs = vec![
        verdict("m-1", "manager", Decision::Replace),
        verdict("m-2", "manager", Decision::Healthy),
        verdict("m-3", "manager", Decision::Healthy),
        verdict("m-4", "manager", Decision::Healthy),
        verdict("m-5", "manager", Decision::Replace),
        verdict("w-1", "worker", Decision::Replace),
    ];
    let refused = guard(&mut vs, &h, Some(&swarm()));
    assert_eq!(refused, None, "3 of 5 managers still form a majority");
    assert_eq!(vs[4].decision, Decision::Held);
    assert_eq!(
        victims(&vs, &refused),
        vec!["m-1".to_string(), "w-1".to_string()]
    );
}

#[test]
fn a_time_recorded_just_now_has_age_zero_not_none() {
    assert_eq!(age_of(NOW, NOW), Some(Duration::ZERO));
    assert_eq!(
        age_of("2026-12-03T12:00:01Z", NOW),
        Some(Duration::ZERO),
        "a second ahead"
    );
    assert_eq!(age_of("not a time", NOW), None);
}
