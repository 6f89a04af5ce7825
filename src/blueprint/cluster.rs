//! `cluster:` of a blueprint: its kind, version and options, and the manager counts it needs —
//! each asked of the kind itself (`crate::cluster::OrchestratorKind`).

use super::load::Ctx;
use super::model::*;
use super::problem::expected_one_of;
use flotilla_provider_core::Role;

/// `cluster.kind`, its version (defaults applied) and the options that belong to it.
pub(super) fn check_cluster(ctx: &mut Ctx, raw: RawCluster) -> Option<ClusterConfig> {
    let kinds = crate::kinds::cluster_kinds();
    let Some(written) = raw.kind.as_deref() else {
        let loc = ctx.index.value("cluster");
        ctx.push(
            loc,
            "cluster.kind",
            format!("missing; {}", expected_one_of("", &kinds)),
        );
        return None;
    };
    let Some(kind) = crate::kinds::cluster(written) else {
        let msg = format!(
            "unknown cluster kind `{written}`; {}",
            expected_one_of(written, &kinds)
        );
        ctx.at("cluster.kind", msg);
        return None;
    };
    let version = kind.spec().version(raw.version.as_deref());
    let cfg = ClusterConfig {
        kind,
        version: version.clone().unwrap_or_default(),
        swarm: raw.swarm,
        kubernetes: raw.kubernetes,
        mesos: raw.mesos,
    };
    let mut ok = true;
    if let Err(msg) = version {
        ctx.at("cluster.version", msg);
        ok = false;
    }
    for (field, msg) in kind.spec().check_options(&cfg) {
        ctx.at(field, msg);
        ok = false;
    }
    ok.then_some(cfg)
}

/// Manager (control-plane, master) counts: at least one, odd so the kind's quorum survives a
/// failure; then the kind's own checks of its options and counts.
pub(super) fn check_managers(ctx: &mut Ctx, groups: &[Group], cfg: &ClusterConfig) {
    let Some(words) = cfg.kind.spec().managers() else {
        return;
    };
    let managers: u32 = groups
        .iter()
        .filter(|g| g.role == Role::Manager)
        .map(|g| g.count)
        .sum();
    let loc = ctx.index.value("groups");
    let what = words.managers_are;
    if managers == 0 {
        let msg = format!(
            "a {} cluster needs at least one manager node (its {what}): a group with `role: manager` and count >= 1",
            cfg.kind.as_str()
        );
        ctx.push(loc, "groups", msg);
    } else if managers.is_multiple_of(2) {
        let msg = format!(
            "{managers} {what}: use an odd number so {} survives a failure",
            words.quorum
        );
        ctx.push(loc, "groups", msg);
    } else {
        for (field, msg) in cfg.kind.spec().check_managers(cfg, managers) {
            let loc = ctx.index.value(&field).or(ctx.index.value("cluster"));
            ctx.push(loc, field, msg);
        }
    }
}
