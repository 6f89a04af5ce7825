//! Connect: one SSH command per node that stays — pins its host key on first contact and probes
//! the OS, Docker and the node's cluster membership. A plan probes only nodes whose key is
//! already pinned (read-only, short timeout), and only when asked to.

use crate::docker::Probe;
use crate::engine::fault_point;
use crate::engine::nodes::{default_user, probe, target_of};
use crate::engine::up::context::{Ctx, Mode};
use crate::error::Result;
use crate::ssh::Target;
use crate::state::NodePhase;
use std::time::Duration;

pub async fn run(cx: &mut Ctx<'_>) -> Result<()> {
    // Scale-in candidates stay out of the install/join work.
    cx.active = cx
        .state
        .nodes
        .keys()
        .filter(|n| !cx.plan.remove.contains(n))
        .cloned()
        .collect();
    let user = default_user(cx.bp);
    let plan_probe = match cx.mode {
        Mode::Plan { probe } => Some(probe),
        Mode::Apply { .. } => None,
    };
    let targets: Vec<Target> = cx
        .state
        .nodes
        .values()
        .filter(|r| plan_probe.is_none_or(|probe| probe && r.host_key.is_some()))
        .filter_map(|r| target_of(r, &user, cx.bp.ssh.port))
        .filter(|t| plan_probe.is_none() || cx.active.contains(&t.node))
        .collect();
    cx.pool.write_known_hosts(&targets)?;
    if plan_probe.is_none() {
        cx.progress.stage("connect", cx.active.len() as u64);
    }
    let timeout = match plan_probe {
        Some(_) => Duration::from_secs(5),
        None => cx.pool.settings().boot_timeout,
    };
    for (name, t, res) in probe_all(cx, targets, timeout).await {
        match res {
            Ok(p) => record_probe(cx, name, t, p),
            Err(e) if cx.mode.is_plan() => cx
                .report
                .configure
                .push(format!("{name}: unreachable ({e})")),
            Err(e) => {
                cx.progress.node_done(&name, false, &e);
                cx.report.failed.insert(name, e);
            }
        }
    }
    cx.save()?;
    fault_point("after-connect");
    Ok(())
}

/// Notes what the probe found on the node's record (host key pinned on first contact).
fn record_probe(cx: &mut Ctx<'_>, name: String, t: Target, p: Probe) {
    if let (Some(rec), false) = (cx.state.nodes.get_mut(&name), cx.mode.is_plan()) {
        if rec.host_key.is_none() {
            rec.host_key = cx.pool.observed_host_key(&t);
        }
        rec.os = Some(p.os.clone());
        rec.docker_version = p.docker_server.clone();
        rec.phase = rec.phase.clone().max(NodePhase::Reachable);
    }
    let pinned = cx.state.nodes.get(&name).and_then(|r| r.host_key.clone());
    let t = Target {
        pinned_key: pinned,
        ..t
    };
    cx.probed.insert(name, (t, p));
}

async fn probe_all(
    cx: &Ctx<'_>,
    targets: Vec<Target>,
    timeout: Duration,
) -> Vec<(String, Target, std::result::Result<Probe, String>)> {
    let pool = cx.pool.clone();
    let progress = cx.progress;
    let active = &cx.active;
    let quiet = cx.mode.is_plan();
    pool.fan_out(
        targets.into_iter().filter(|t| active.contains(&t.node)),
        |t| {
            let pool = pool.clone();
            async move {
                if !quiet {
                    progress.node(&t.node, "connecting over SSH");
                }
                let r = probe(&pool, &t, timeout).await.map_err(|e| e.to_string());
                if let (Ok(p), false) = (&r, quiet) {
                    progress.node_done(&t.node, true, &format!("{} reachable", p.os.pretty_name));
                }
                (t.node.clone(), t, r)
            }
        },
    )
    .await
}
