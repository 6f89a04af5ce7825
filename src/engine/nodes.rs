//! Per-node work shared by `up`, `status` and `down`: SSH targets, probing, Docker install.

use crate::blueprint::{Blueprint, InstallMethod};
use crate::docker::{install_script, offline_bundle, parse_probe, Family, Probe, PROBE_SCRIPT};
use crate::ssh::{SshError, SshPool, SshSettings, Target};
use crate::state::{NodeRecord, State};
use std::path::Path;
use std::time::Duration;

/// SSH settings for a deployment directory and blueprint.
pub fn ssh_settings(bp: &Blueprint, dir: &Path, key: &Path) -> SshSettings {
    SshSettings {
        private_key: key.to_path_buf(),
        config_file: dir.join("ssh_config"),
        known_hosts: match (&bp.ssh.host_key_policy, &bp.ssh.known_hosts) {
            (crate::blueprint::HostKeyPolicy::Strict, Some(k)) => crate::util::expand_tilde(k),
            _ => dir.join("known_hosts"),
        },
        // Short: ssh limits the whole socket path (sun_path) to 108 bytes.
        control_dir: std::env::temp_dir(),
        policy: bp.ssh.host_key_policy,
        connect_timeout: bp.ssh.connect_timeout.unwrap_or(Duration::from_secs(10)),
        boot_timeout: bp.ssh.boot_timeout.unwrap_or(Duration::from_secs(300)),
        command_timeout: bp.ssh.command_timeout.unwrap_or(Duration::from_secs(900)),
        parallelism: bp.ssh.parallelism.unwrap_or(16),
        jump: bp.ssh.jump.clone(),
    }
}

pub fn default_user(bp: &Blueprint) -> String {
    bp.ssh.user.clone().unwrap_or_else(|| "root".to_string())
}

pub fn target_of(rec: &NodeRecord, bp_user: &str, bp_port: Option<u16>) -> Option<Target> {
    let addr = rec.ssh_address()?;
    Some(Target {
        node: rec.name.clone(),
        user: if rec.ssh_user.is_empty() {
            bp_user.to_string()
        } else {
            rec.ssh_user.clone()
        },
        address: addr.to_string(),
        port: bp_port
            .filter(|_| rec.ssh_port == 22)
            .unwrap_or(rec.ssh_port),
        pinned_key: rec.host_key.clone(),
    })
}

pub fn targets(state: &State, bp: &Blueprint) -> Vec<Target> {
    let user = default_user(bp);
    state
        .nodes
        .values()
        .filter_map(|r| target_of(r, &user, bp.ssh.port))
        .collect()
}

/// Connects (waiting for boot within `window`) and probes the node in one command.
pub async fn probe(pool: &SshPool, t: &Target, window: Duration) -> Result<Probe, SshError> {
    pool.session_within(t, window).await?;
    let out = pool
        .run_ok(t, "probe", PROBE_SCRIPT, Some(Duration::from_secs(60)))
        .await?;
    Ok(parse_probe(&out))
}

/// Installs, configures and starts Docker; returns the server version.
pub async fn install_docker(
    pool: &SshPool,
    t: &Target,
    probe: &Probe,
    bp: &Blueprint,
) -> Result<String, String> {
    let family = Family::detect(&probe.os).ok_or_else(|| {
        format!(
            "unsupported operating system `{}` ({})",
            probe.os.id, probe.os.pretty_name
        )
    })?;
    if bp.docker.method == InstallMethod::Offline && !probe.docker_installed {
        let path = bp.resolve_path(bp.docker.packages.as_deref().unwrap_or_default())?;
        let bundle = offline_bundle(&path).map_err(|e| e.to_string())?;
        let script = format!(
            "mkdir -p {dir} && tar -x -C {dir}",
            dir = crate::docker::install::OFFLINE_DIR
        );
        let out = pool
            .run_with_input(
                t,
                "upload offline packages",
                &script,
                Some(bundle),
                Some(Duration::from_secs(600)),
            )
            .await
            .map_err(|e| e.to_string())?;
        if out.status != 0 {
            return Err(format!(
                "upload of offline packages failed: {}",
                crate::ssh::failure_tail_pub(&out)
            ));
        }
    }
    let script = install_script(family, &bp.docker).map_err(|e| e.to_string())?;
    let out = pool
        .run(t, "docker install", &script, None)
        .await
        .map_err(|e| e.to_string())?;
    if out.status != 0 {
        return Err(format!(
            "docker install failed: {}",
            crate::ssh::failure_tail_pub(&out)
        ));
    }
    let version = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("docker_server="))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    Ok(version)
}

/// An SSH pool for the recorded nodes of an existing deployment, with their pinned host keys
/// written out. `scratch` (for read-only commands) keeps the ssh files out of the deployment dir.
pub fn pool_for_recorded(
    bp: &Blueprint,
    state: &State,
    dir: &Path,
    boot_timeout: Duration,
    scratch: Option<&Path>,
) -> Result<(std::sync::Arc<SshPool>, Vec<Target>), SshError> {
    let key = std::path::PathBuf::from(&state.ssh_private_key);
    let mut settings = ssh_settings(bp, dir, &key);
    settings.boot_timeout = boot_timeout;
    settings.connect_timeout = settings
        .connect_timeout
        .min(boot_timeout.max(Duration::from_secs(5)));
    if let Some(s) = scratch {
        settings.known_hosts = s.join("known_hosts");
        settings.config_file = s.join("ssh_config");
    }
    let pool = std::sync::Arc::new(SshPool::new(settings)?);
    let targets = targets(state, bp);
    pool.write_known_hosts(&targets)?;
    Ok((pool, targets))
}

/// Probes every target in parallel (each bounded by `window`), keyed by node name.
pub async fn probe_all(
    pool: &std::sync::Arc<SshPool>,
    targets: &[Target],
    window: Duration,
) -> std::collections::BTreeMap<String, Result<Probe, String>> {
    pool.fan_out(targets.to_vec(), |t| {
        let pool = pool.clone();
        async move {
            (
                t.node.clone(),
                probe(&pool, &t, window).await.map_err(|e| e.to_string()),
            )
        }
    })
    .await
    .into_iter()
    .collect()
}

/// Reachable managers that can answer for the cluster, as its orchestrator judges their probes
/// (none without a cluster).
pub fn live_managers(
    state: &State,
    bp: &Blueprint,
    orchestrator: Option<&dyn crate::cluster::Orchestrator>,
    probes: &std::collections::BTreeMap<String, Result<Probe, String>>,
) -> Vec<crate::cluster::ClusterNode> {
    let Some(orch) = orchestrator else {
        return Vec::new();
    };
    let user = default_user(bp);
    state
        .nodes
        .values()
        .filter(|r| r.role == flotilla_provider_core::Role::Manager)
        .filter(|r| {
            probes
                .get(&r.name)
                .is_some_and(|p| p.as_ref().is_ok_and(|p| orch.can_answer(p)))
        })
        .filter_map(|r| {
            let target = target_of(r, &user, bp.ssh.port)?;
            let mut node = crate::cluster::ClusterNode::bare(&r.name, r.role, target);
            // The address the cluster knows it by (Mesos masters are asked over HTTP on it).
            node.ip = r
                .private_ip
                .map(|i| i.to_string())
                .unwrap_or_else(|| node.target.address.clone());
            Some(node)
        })
        .collect()
}

/// One image archive read for loading: its tags and its bytes.
pub struct LoadedArchive {
    pub archive: crate::docker::preload::ImageArchive,
    pub bytes: Vec<u8>,
}

/// Reads the blueprint's `docker.preload_images` archives.
pub fn read_preload_archives(bp: &Blueprint) -> Result<Vec<LoadedArchive>, String> {
    bp.docker
        .preload_images
        .iter()
        .map(|p| {
            let path = bp.resolve_path(p)?;
            let archive = crate::docker::preload::read_archive(&path).map_err(|e| e.to_string())?;
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("cannot read the image archive {}: {e}", path.display()))?;
            Ok(LoadedArchive { archive, bytes })
        })
        .collect()
}

/// Loads each archive whose tags the node lacks (`docker load` over SSH); returns the tags loaded.
pub async fn preload_images(
    pool: &SshPool,
    t: &Target,
    archives: &[std::sync::Arc<LoadedArchive>],
) -> Result<Vec<String>, String> {
    let mut loaded = Vec::new();
    for a in archives {
        let check = crate::docker::preload::present_check(&a.archive.tags);
        let present = pool
            .run(t, "image check", &check, Some(Duration::from_secs(60)))
            .await
            .map_err(|e| e.to_string())?;
        if present.status == 0 {
            continue;
        }
        let out = pool
            .run_with_input(
                t,
                "docker load",
                "docker load -q",
                Some(a.bytes.clone()),
                Some(Duration::from_secs(600)),
            )
            .await
            .map_err(|e| e.to_string())?;
        if out.status != 0 {
            return Err(format!(
                "docker load of {} failed: {}",
                a.archive.path.display(),
                crate::ssh::failure_tail_pub(&out)
            ));
        }
        loaded.extend(a.archive.tags.iter().cloned());
    }
    Ok(loaded)
}
