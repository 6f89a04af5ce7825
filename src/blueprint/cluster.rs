//! `cluster:` of a blueprint: its kind, version and options, and the manager counts it needs —
//! each asked of the kind itself (`crate::cluster::OrchestratorKind`).

use super::load::Ctx;
use super::model::*;
use super::problem::expected_one_of;
use flotilla_provider_core::{Role, SettingsError};
use serde_json::{Map, Value};

/// `cluster.kind`, its version (defaults applied) and the kind's own section
/// (`cluster.<kind>`), which the kind reads into its settings.
pub(super) fn check_cluster(ctx: &mut Ctx, mut raw: Map<String, Value>) -> Option<ClusterConfig> {
    let kinds = crate::kinds::cluster_kinds();
    let Some(written) = raw.remove("kind") else {
        let loc = ctx.index.value("cluster");
        let msg = format!("missing; {}", expected_one_of("", &kinds));
        ctx.push(loc, "cluster.kind", msg);
        return None;
    };
    let written = written.as_str().unwrap_or_default();
    let Some(kind) = crate::kinds::cluster(written) else {
        let msg = format!(
            "unknown cluster kind `{written}`; {}",
            expected_one_of(written, &kinds)
        );
        ctx.at("cluster.kind", msg);
        return None;
    };
    let version = raw.remove("version").map(|v| match v {
        Value::String(s) => Ok(s),
        other => Err(other.to_string()),
    });
    let version = match version {
        None => kind.spec().version(None),
        Some(Ok(v)) => kind.spec().version(Some(&v)),
        Some(Err(v)) => Err(format!(
            "{v} is not a version; write it as a string (\"1.31\")"
        )),
    };
    let section = raw.remove(kind.as_str());
    let mut ok = true;
    for key in raw.keys() {
        let msg = misplaced(key, kind.as_str());
        let field = format!("cluster.{key}");
        let loc = ctx.index.key(&field);
        ctx.push(loc, field, msg);
        ok = false;
    }
    let version = match version {
        Ok(v) => v,
        Err(msg) => {
            ctx.at("cluster.version", msg);
            return None;
        }
    };
    match kind.spec().settings(version.as_deref(), section) {
        Ok(settings) => ok.then_some(ClusterConfig {
            kind,
            version,
            settings,
        }),
        Err(SettingsError::Shape(e)) => {
            ctx.serde_error(&format!("cluster.{}", kind.as_str()), &e);
            None
        }
        Err(SettingsError::Invalid(problems)) => {
            for (field, msg) in problems {
                ctx.at(field, msg);
            }
            None
        }
    }
}

/// Why a key of `cluster:` is refused: another kind's section, or no section at all.
fn misplaced(key: &str, kind: &str) -> String {
    if crate::kinds::cluster(key).is_some() {
        format!("options of `kind: {key}`, but this cluster is `kind: {kind}`; remove them")
    } else {
        let mut known = vec!["kind", "version", kind];
        known.sort_unstable();
        format!("unknown field `{key}`; {}", expected_one_of(key, &known))
    }
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
        for (field, msg) in cfg.settings.check_managers(managers) {
            let loc = ctx.index.value(&field).or(ctx.index.value("cluster"));
            ctx.push(loc, field, msg);
        }
    }
}
