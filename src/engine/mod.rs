//! The engine: runs `up`, `down` and `status` as journalled sequences of steps over a provider,
//! the SSH pool and an orchestrator.

pub mod containers;
pub mod down;
pub mod gc;
pub mod heal;
pub mod nodes;
pub mod plan;
pub mod ps;
pub mod scale;
pub mod services;
pub mod state_ops;
pub mod status;
pub mod transfer;
pub mod up;

use crate::blueprint::Blueprint;
use crate::error::{Error, Result};
use crate::state::{Journal, Phase, State};
use flotilla_provider_core::{Provider, Role};
use std::path::Path;
use std::sync::Arc;

/// Builds the provider a blueprint names, through its kind's settings.
pub async fn build_provider(bp: &Blueprint, public_key: &str) -> Result<Arc<dyn Provider>> {
    let cx = flotilla_provider_core::BuildContext {
        ssh_public_key: public_key.to_string(),
        cache_dir: crate::state::cache_dir(),
        cluster_ports: crate::cluster::ports(bp.cluster),
        hosts: bp
            .groups
            .iter()
            .map(|g| flotilla_provider_core::GroupHosts {
                group: g.name.clone(),
                role: g.role,
                hosts: g.hosts.clone(),
            })
            .collect(),
    };
    Ok(bp.provider.build(&cx).await?)
}

/// The public key of a recorded deployment (for providers that check their key pair).
pub fn recorded_public_key(state: &State) -> String {
    if state.ssh_private_key.is_empty() {
        return String::new();
    }
    crate::ssh::ensure_keypair(
        Some(Path::new(&state.ssh_private_key)),
        Path::new("/nonexistent"),
        "",
    )
    .map(|(_, k)| k)
    .unwrap_or_default()
}

/// Re-reads the blueprint recorded in the state (for `down`/`status` without the file).
pub fn recorded_blueprint(state: &State) -> Result<Blueprint> {
    let path = Path::new(&state.blueprint_path);
    let mut bp = crate::blueprint::load_recorded(&state.blueprint_rendered, path, &state.inputs)
        .map_err(|p| {
            Error::Other(format!(
                "the blueprint recorded in the state of `{}` no longer validates: {p}",
                state.deployment
            ))
        })?;
    if state.imported_from.is_some() {
        // `import` pointed blueprint_path into the deployment's own folder.
        let dir = path.parent().unwrap_or(Path::new("/nonexistent"));
        bp.confine = Some(dir.to_path_buf());
        if let Some(k) = bp.ssh.known_hosts.as_mut() {
            *k = dir.join("known_hosts").display().to_string();
        }
    }
    Ok(bp)
}

/// The recorded blueprint with the group sizes `flotilla scale` set.
pub fn effective_blueprint(state: &State) -> Result<Blueprint> {
    let mut bp = recorded_blueprint(state)?;
    for g in &mut bp.groups {
        if let Some(n) = state.count_overrides.get(&g.name) {
            g.count = *n;
        }
    }
    Ok(bp)
}

/// Journal helper that turns write failures into errors that stop the run.
pub fn journal(
    j: &Journal,
    step: &str,
    target: &str,
    phase: Phase,
    detail: serde_json::Value,
) -> Result<()> {
    j.record(step, target, phase, detail)
        .map_err(|source| Error::Journal {
            path: j.path().display().to_string(),
            source,
        })
}

/// Test hooks for the fault-injection suite: `FLOTILLA_FAULT_AT=<step>` makes the process exit
/// abruptly (abort: no cleanup, as with SIGKILL) when it reaches that step boundary.
pub fn fault_point(step: &str) {
    if std::env::var("FLOTILLA_FAULT_AT").ok().as_deref() == Some(step) {
        crate::tell!("FLOTILLA_FAULT_AT={step}: aborting here (test hook)");
        std::process::abort();
    }
    // `FLOTILLA_FAULT_PAUSE_AT=<step>`: stop there (at most 10 minutes) after creating the file
    // `FLOTILLA_FAULT_PAUSE_FILE`, so a test can SIGKILL a process mid-run at a known point.
    if std::env::var("FLOTILLA_FAULT_PAUSE_AT").ok().as_deref() == Some(step) {
        if let Ok(marker) = std::env::var("FLOTILLA_FAULT_PAUSE_FILE") {
            let _ = std::fs::write(marker, std::process::id().to_string());
        }
        crate::tell!("FLOTILLA_FAULT_PAUSE_AT={step}: paused here (test hook)");
        flotilla_provider_core::backoff::pause_blocking(std::time::Duration::from_secs(600));
    }
}

pub fn role_order(r: Role) -> u8 {
    match r {
        Role::Manager => 0,
        Role::Worker => 1,
    }
}

/// Takes the lock of an existing deployment. An `up` that holds the lock may not have written the
/// state yet: the caller then hears "locked", not "not found".
pub fn lock_existing(
    home: &crate::state::Home,
    name: &str,
    command: &str,
    wait: Option<std::time::Duration>,
) -> Result<crate::state::DeploymentLock> {
    if !home.exists(name)? && home.backend().lock_status(name)?.is_none() {
        return Err(crate::state::StoreError::NotFound(name.to_string()).into());
    }
    home.ensure_deployment_dir(name)?;
    let lock = home.lock(name, command, wait)?;
    if !home.exists(name)? {
        return Err(crate::state::StoreError::NotFound(name.to_string()).into());
    }
    Ok(lock)
}
