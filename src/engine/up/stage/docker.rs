//! Docker: installed (or started) on every reachable node where it does not answer; a node it
//! fails on drops out of the rest of the run. A plan lists those nodes instead.

use crate::docker::Probe;
use crate::engine::fault_point;
use crate::engine::nodes::{install_docker, probe};
use crate::engine::up::context::Ctx;
use crate::error::Result;
use crate::ssh::Target;
use crate::state::{NodePhase, Phase};
use serde_json::json;
use std::time::Duration;

pub async fn run(cx: &mut Ctx<'_>) -> Result<()> {
    let jobs: Vec<(String, Target, Probe)> = cx
        .probed
        .iter()
        .filter(|(_, (_, p))| p.docker_server.is_none())
        .map(|(n, (t, p))| (n.clone(), t.clone(), p.clone()))
        .collect();
    if cx.mode.is_plan() {
        for (name, _, _) in jobs {
            cx.report
                .configure
                .push(format!("{name}: install/start Docker"));
            cx.probed.remove(&name);
        }
        return Ok(());
    }
    if !jobs.is_empty() {
        install_where_missing(cx, jobs).await?;
    }
    for name in cx.probed.keys() {
        if let Some(rec) = cx.state.nodes.get_mut(name) {
            rec.phase = rec.phase.clone().max(NodePhase::DockerReady);
        }
    }
    fault_point("after-docker");
    Ok(())
}

async fn install_where_missing(cx: &mut Ctx<'_>, jobs: Vec<(String, Target, Probe)>) -> Result<()> {
    cx.progress.stage("docker", jobs.len() as u64);
    for (n, _, p) in &jobs {
        cx.j(
            "install-docker",
            n,
            Phase::Intent,
            json!({"os": p.os.pretty_name}),
        )?;
    }
    let pool = cx.pool.clone();
    let progress = cx.progress;
    let bp = cx.bp;
    let results: Vec<(String, bool, std::result::Result<String, String>)> = pool
        .fan_out(jobs, |(name, t, p)| {
            let pool = pool.clone();
            async move {
                let was_installed = p.docker_installed;
                let doing = if was_installed {
                    "starting Docker"
                } else {
                    "installing Docker"
                };
                progress.node(&name, doing);
                let r = install_docker(&pool, &t, &p, bp).await;
                (name, was_installed, r)
            }
        })
        .await;
    for (name, was_installed, r) in results {
        match r {
            Ok(version) => docker_ready(cx, name, was_installed, version).await?,
            Err(e) => {
                cx.progress.node_done(&name, false, &e);
                cx.j("install-docker", &name, Phase::Failed, json!({"error": e}))?;
                cx.report.failed.insert(name.clone(), e);
                cx.probed.remove(&name);
            }
        }
    }
    cx.save()
}

async fn docker_ready(
    cx: &mut Ctx<'_>,
    name: String,
    was_installed: bool,
    version: String,
) -> Result<()> {
    cx.progress
        .node_done(&name, true, &format!("Docker {version}"));
    cx.j(
        "install-docker",
        &name,
        Phase::Done,
        json!({"version": version}),
    )?;
    if let Some(rec) = cx.state.nodes.get_mut(&name) {
        rec.docker_version = Some(version.clone());
        rec.phase = rec.phase.clone().max(NodePhase::DockerReady);
    }
    if let Some((t, p)) = cx.probed.get_mut(&name) {
        p.docker_server = Some(version);
        // A restarted node's daemon brings its cluster membership back from disk: look again,
        // so the cluster stage sees it as a member, not a stranger.
        if was_installed {
            if let Ok(again) = probe(&cx.pool, t, Duration::from_secs(30)).await {
                *p = again;
            }
        }
    }
    if was_installed {
        cx.report.docker_started.push(name)
    } else {
        cx.report.docker_installed.push(name)
    }
    Ok(())
}
