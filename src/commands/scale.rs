use crate::blueprint::{problem::suggest_public as suggest, ClusterKind, ProviderConfig};
use crate::engine::effective_blueprint;
use crate::engine::up::{up, UpOptions};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::state::Home;
use flotilla_provider_core::Role;
use std::time::Duration;

pub async fn run(
    home: &Home,
    deployment: &str,
    counts: &[String],
    yes: bool,
    json: bool,
    quiet: bool,
    wait_lock: Option<Duration>,
) -> Result<i32> {
    let state = home.load_existing(deployment)?;
    let mut bp = effective_blueprint(&state)?;
    if matches!(bp.provider, ProviderConfig::Static(_)) {
        return Err(Error::Usage(format!("`{deployment}` uses existing hosts (static provider): change the host lists in the blueprint and run `flotilla up`")));
    }
    let mut overrides = state.count_overrides.clone();
    for c in counts {
        let (group, n) = c
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("`{c}`: expected GROUP=N, e.g. workers=5")))?;
        let n: u32 = n
            .trim()
            .parse()
            .ok()
            .filter(|n| *n <= 1000)
            .ok_or_else(|| {
                Error::Usage(format!("`{c}`: N must be a whole number from 0 to 1000"))
            })?;
        let names: Vec<String> = bp.groups.iter().map(|g| g.name.clone()).collect();
        let Some(g) = bp.groups.iter_mut().find(|g| g.name == group) else {
            let hint = suggest(group, names.iter().map(String::as_str))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(Error::Usage(format!(
                "deployment `{deployment}` has no group `{group}`{hint}; groups: {}",
                names.join(", ")
            )));
        };
        g.count = n;
        overrides.insert(group.to_string(), n);
    }
    if bp.cluster != ClusterKind::None {
        let managers: u32 = bp
            .groups
            .iter()
            .filter(|g| g.role == Role::Manager)
            .map(|g| g.count)
            .sum();
        if managers == 0 || managers.is_multiple_of(2) {
            return Err(Error::Usage(format!(
                "that leaves {managers} manager nodes of the {} cluster; keep an odd number (at least 1) so its quorum survives a failure",
                bp.cluster.as_str()
            )));
        }
    }
    let progress = Progress::new(quiet);
    let mut opts = UpOptions::new("scale");
    opts.allow_delete = yes;
    opts.wait_lock = wait_lock;
    opts.overrides = Some(overrides);
    let report = up(&bp, home, &progress, &opts).await?;
    if json {
        super::print_json(&report);
    } else if report.changed {
        println!(
            "Deployment `{deployment}` scaled ({} nodes, {:.1}s).",
            report.nodes.len(),
            report.elapsed_seconds
        );
        for l in super::plan::describe(&report) {
            println!("  {l}");
        }
    } else {
        println!(
            "No changes: deployment `{deployment}` already has those sizes ({} nodes).",
            report.nodes.len()
        );
    }
    Ok(0)
}
