//! `scale`: new group sizes for an existing deployment, checked (groups exist, manager counts stay
//! odd), kept in the state as overrides, and converged like `up`. Shared by the CLI and the API.

use super::effective_blueprint;
use super::up::{up, UpOptions, UpReport};
use crate::blueprint::problem::suggest_public as suggest;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::state::Home;
use flotilla_provider_core::Role;
use std::time::Duration;

/// `GROUP=N` → (group, N), N from 0 to 1000.
pub fn parse_count(c: &str) -> Result<(String, u32)> {
    let (group, n) = c
        .split_once('=')
        .ok_or_else(|| Error::Usage(format!("`{c}`: expected GROUP=N, e.g. workers=5")))?;
    let n: u32 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| *n <= 1000)
        .ok_or_else(|| Error::Usage(format!("`{c}`: N must be a whole number from 0 to 1000")))?;
    Ok((group.trim().to_string(), n))
}

pub struct ScaleOptions {
    pub allow_delete: bool,
    pub wait_lock: Option<Duration>,
}

pub async fn scale(
    home: &Home,
    deployment: &str,
    counts: &[(String, u32)],
    progress: &Progress,
    opts: &ScaleOptions,
) -> Result<UpReport> {
    let state = home.load_existing(deployment)?;
    let mut bp = effective_blueprint(&state)?;
    if crate::kinds::existing_hosts(bp.provider.as_ref()) {
        return Err(Error::Usage(format!("`{deployment}` uses existing hosts ({} provider): change the host lists in the blueprint and run `flotilla up`", bp.provider.kind())));
    }
    let mut overrides = state.count_overrides.clone();
    for (group, n) in counts {
        if *n > 1000 {
            return Err(Error::Usage(format!(
                "`{group}={n}`: N must be a whole number from 0 to 1000"
            )));
        }
        let names: Vec<String> = bp.groups.iter().map(|g| g.name.clone()).collect();
        let Some(g) = bp.groups.iter_mut().find(|g| &g.name == group) else {
            let hint = suggest(group, names.iter().map(String::as_str))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(Error::Usage(format!(
                "deployment `{deployment}` has no group `{group}`{hint}; groups: {}",
                names.join(", ")
            )));
        };
        g.count = *n;
        overrides.insert(group.clone(), *n);
    }
    if bp.has_cluster() {
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
    let mut up_opts = UpOptions::new("scale");
    up_opts.allow_delete = opts.allow_delete;
    up_opts.wait_lock = opts.wait_lock;
    up_opts.overrides = Some(overrides);
    up(&bp, home, progress, &up_opts).await
}
