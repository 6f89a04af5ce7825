//! `groups:` (names, roles, counts, labels, static hosts) and `health:` of a blueprint.

use super::load::Ctx;
use super::model::*;
use super::yaml_index::Loc;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub(super) fn count_of(ctx: &mut Ctx, field: &str, v: &CountValue) -> Option<u32> {
    let n = match v {
        CountValue::Int(n) => Some(*n),
        CountValue::Text(t) => t.trim().parse::<i64>().ok(),
    };
    match n {
        Some(n) if n < 0 => {
            ctx.at(field, format!("must be 0 or more, found {n}"));
            None
        }
        Some(n) if n > 1000 => {
            ctx.at(
                field,
                format!("{n} nodes in one group is more than flotilla supports (1000)"),
            );
            None
        }
        Some(n) => u32::try_from(n).ok(),
        None => {
            let loc = ctx.index.value(field);
            let shown = match v {
                CountValue::Text(t) => t.clone(),
                CountValue::Int(n) => n.to_string(),
            };
            ctx.push(
                loc,
                field,
                format!("expected a whole number, found `{shown}`"),
            );
            None
        }
    }
}

pub(super) fn check_groups(
    ctx: &mut Ctx,
    value: Option<Value>,
    provider: Option<&ProviderConfig>,
    path: &Path,
) -> Option<Vec<Group>> {
    let map = match value {
        Some(Value::Object(m)) if !m.is_empty() => m,
        Some(Value::Object(_)) | None => {
            let loc = ctx.index.value("groups").or(Some(Loc { line: 1, col: 1 }));
            ctx.push(
                loc,
                "groups",
                "at least one group is required, e.g. `managers: {role: manager, count: 1}`",
            );
            return None;
        }
        Some(_) => {
            ctx.at("groups", "expected a map of group name -> {role, count}");
            return None;
        }
    };
    // Providers of existing hosts take them from the groups or an inventory file.
    let is_static = provider.is_some_and(|p| crate::kinds::existing_hosts(p.as_ref()));
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let inventory = match provider.and_then(|p| p.inventory(&|inv| resolve_relative(&base, inv))) {
        Some(Ok(groups)) => Some(groups),
        Some(Err(e)) => {
            ctx.at("provider.inventory", e);
            None
        }
        None => None,
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (gname, gval) in map {
        let field = format!("groups.{gname}");
        if !crate::names::is_valid(crate::names::NameKind::Group, &gname) {
            let loc = ctx.index.key(&field);
            ctx.push(
                loc,
                &field,
                "group names use 1-30 lowercase letters, digits and `-`, starting with a letter",
            );
            ok = false;
            continue;
        }
        let Some(raw) = ctx.section::<RawGroup>(gval, &field) else {
            ok = false;
            continue;
        };
        let role = match raw.role {
            Some(r) => r,
            None => {
                let loc = ctx.index.value(&field);
                ctx.push(
                    loc,
                    format!("{field}.role"),
                    "missing; expected one of manager, worker",
                );
                ok = false;
                continue;
            }
        };
        let mut hosts = raw.hosts.clone();
        if !hosts.is_empty() && !is_static {
            ctx.at(
                format!("{field}.hosts"),
                format!(
                    "host lists are only for {}",
                    crate::kinds::existing_host_kinds()
                ),
            );
            ok = false;
        }
        if is_static && hosts.is_empty() {
            if let Some(inv) = &inventory {
                hosts = inv.get(&gname).cloned().unwrap_or_default();
            }
        }
        for (i, h) in hosts.iter().enumerate() {
            if let Some(Err(e)) = provider.map(|p| p.check_host(h)) {
                ctx.at(format!("{field}.hosts[{i}]"), e);
                ok = false;
            }
        }
        let count = match &raw.count {
            Some(c) => count_of(ctx, &format!("{field}.count"), c),
            None if is_static => u32::try_from(hosts.len()).ok(),
            None => {
                let loc = ctx.index.value(&field);
                ctx.push(
                    loc,
                    format!("{field}.count"),
                    "missing; how many nodes this group has (0 or more)",
                );
                None
            }
        };
        let Some(count) = count else {
            ok = false;
            continue;
        };
        if is_static && count as usize != hosts.len() {
            let loc = ctx
                .index
                .value(&format!("{field}.count"))
                .or(ctx.index.value(&field));
            let msg = if hosts.is_empty() {
                "a static group needs hosts: list them under `hosts:` or in the inventory file's [group] section".to_string()
            } else {
                format!("count is {count} but the group lists {} hosts", hosts.len())
            };
            ctx.push(loc, format!("{field}.count"), msg);
            ok = false;
        }
        for key in raw.labels.keys() {
            if key.is_empty() || key.contains(char::is_whitespace) || key.contains('=') {
                let lf = format!("{field}.labels.{key}");
                let loc = ctx.index.key(&lf);
                ctx.push(
                    loc,
                    lf,
                    "label keys cannot be empty or contain spaces or `=`",
                );
                ok = false;
            }
        }
        out.push(Group {
            name: gname,
            role,
            count,
            labels: raw.labels,
            hosts,
        });
    }
    let total: u32 = out.iter().map(|g| g.count).sum();
    if ok && total == 0 {
        ctx.at(
            "groups",
            "the groups add up to 0 nodes; give at least one group a count of 1 or more",
        );
        ok = false;
    }
    ok.then_some(out)
}

pub(super) fn resolve_relative(base: &Path, p: &str) -> PathBuf {
    let expanded = crate::util::expand_tilde(p);
    if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    }
}

pub(super) fn check_health(ctx: &mut Ctx, raw: RawHealth) -> Option<HealthConfig> {
    let mut h = HealthConfig::default();
    if let Some(m) = raw.max_unhealthy {
        let parsed = match &m {
            CountValue::Int(n) if *n >= 0 => u32::try_from(*n).ok().map(MaxUnhealthy::Count),
            CountValue::Text(t) => match t.trim().strip_suffix('%') {
                Some(p) => p
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|p| *p <= 100)
                    .map(MaxUnhealthy::Percent),
                None => t.trim().parse::<u32>().ok().map(MaxUnhealthy::Count),
            },
            _ => None,
        };
        match parsed {
            Some(p) => h.max_unhealthy = p,
            None => {
                ctx.at(
                    "health.max_unhealthy",
                    "expected a node count (2) or a percentage (40%)",
                );
                return None;
            }
        }
    }
    if let Some(d) = raw.node_startup_timeout {
        h.node_startup_timeout = d;
    }
    if let Some(d) = raw.unhealthy_grace {
        h.unhealthy_grace = d;
    }
    if let Some(d) = raw.check_interval {
        h.check_interval = d;
    }
    if let Some(d) = raw.alert_cooldown {
        h.alert_cooldown = d;
    }
    Some(h)
}
