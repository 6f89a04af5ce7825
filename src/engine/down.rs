//! `flotilla down`: delete the machines the deployment created (or, for existing hosts, undo
//! what flotilla set up on them), then the deployment-wide resources, then the state.

use super::nodes::{default_user, target_of};
use super::{build_provider, journal, recorded_blueprint};
use crate::cluster::ClusterNode;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::state::{Home, Journal, Phase};
use flotilla_provider_core::{MachineId, Ownership};
use serde::Serialize;
use serde_json::json;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct DownReport {
    pub deployment: String,
    pub deleted_machines: Vec<String>,
    pub released_hosts: Vec<String>,
    pub warnings: Vec<String>,
}

pub async fn down(
    home: &Home,
    name: &str,
    progress: &Progress,
    wait_lock: Option<Duration>,
) -> Result<DownReport> {
    let dir = home.deployment_dir(name)?;
    let _lock = super::lock_existing(home, name, "down", wait_lock)?;
    let state = home.load_existing(name)?;
    let bp = recorded_blueprint(&state)?;
    let run = crate::util::new_run_token();
    let j = Journal::open(&dir, &run).map_err(|source| Error::Journal {
        path: dir.join("journal.jsonl").display().to_string(),
        source,
    })?;
    journal(
        &j,
        "down",
        "",
        Phase::RunStart,
        json!({"pid": std::process::id()}),
    )?;
    let provider = build_provider(&bp, &super::recorded_public_key(&state)).await?;
    let owner = Ownership::new(name);
    let mut report = DownReport {
        deployment: name.into(),
        deleted_machines: vec![],
        released_hosts: vec![],
        warnings: vec![],
    };

    if provider.owns_machines() {
        // Everything carrying the deployment's labels goes, recorded or not (a crashed run's too).
        let observed = provider.describe(&owner).await?;
        let ids: Vec<MachineId> = observed.iter().map(|m| m.id.clone()).collect();
        progress.stage("down", ids.len() as u64 + 1);
        for m in &observed {
            progress.node(&m.name, "deleting machine");
        }
        journal(
            &j,
            "delete-machines",
            "",
            Phase::Intent,
            json!({"machines": ids}),
        )?;
        provider.delete_nodes(&owner, &ids).await?;
        journal(&j, "delete-machines", "", Phase::Done, json!(null))?;
        for m in &observed {
            progress.node_done(&m.name, true, "deleted");
            report.deleted_machines.push(m.name.clone());
        }
    } else {
        // Existing hosts stay; flotilla only takes them out of the cluster it formed.
        let (pool, targets) =
            super::nodes::pool_for_recorded(&bp, &state, &dir, Duration::from_secs(15), None)?;
        let user = default_user(&bp);
        progress.stage("release", targets.len() as u64);
        // Workers first, managers last, so the swarm never loses quorum while others leave.
        let mut ordered: Vec<_> = state.nodes.values().collect();
        ordered.sort_by_key(|r| std::cmp::Reverse(super::role_order(r.role)));
        for r in ordered {
            let Some(t) = target_of(r, &user, bp.ssh.port) else {
                continue;
            };
            journal(&j, "release-host", &r.name, Phase::Intent, json!(null))?;
            if state.containers_deployed {
                progress.node(&r.name, "removing the deployment's containers");
                if let Err(e) = pool
                    .run_ok(
                        &t,
                        "remove containers",
                        &super::containers::remove_all_script(name),
                        Some(Duration::from_secs(120)),
                    )
                    .await
                {
                    report.warnings.push(format!("{}: {e}", r.name));
                }
            }
            if state.manager.as_ref().is_some_and(|m| m.node == r.name) {
                progress.node(&r.name, "removing the manager and its data");
                if let Err(e) = pool
                    .run_ok(
                        &t,
                        "remove the manager",
                        &crate::manager::remove_all_script(name),
                        Some(Duration::from_secs(120)),
                    )
                    .await
                {
                    report.warnings.push(format!("{}: {e}", r.name));
                }
            }
            if let Some(orch) = crate::cluster::for_blueprint(&bp, pool.clone()) {
                let node = ClusterNode::bare(&r.name, r.role, t);
                progress.node(&r.name, &format!("leaving the {} cluster", orch.kind()));
                if let Err(e) = orch.leave(&node).await {
                    report.warnings.push(format!("{}: {e}", r.name));
                    progress.node_done(&r.name, false, &e.to_string());
                    continue;
                }
            }
            journal(&j, "release-host", &r.name, Phase::Done, json!(null))?;
            progress.node_done(&r.name, true, "released (machine left running)");
            report.released_hosts.push(r.name.clone());
        }
        pool.close_all().await;
        if !report.warnings.is_empty() {
            journal(&j, "down", "", Phase::RunEnd, json!({"outcome": "partial"}))?;
            progress.finish();
            return Err(Error::Partial {
                failed: report.warnings.len(),
                total: state.nodes.len(),
                details: format!("{}\nthe state is kept; run `flotilla down {name} --yes` again when the hosts are reachable", report.warnings.join("\n")),
            });
        }
    }
    journal(&j, "teardown", "", Phase::Intent, json!(null))?;
    provider.teardown(&owner).await?;
    journal(&j, "teardown", "", Phase::Done, json!(null))?;
    journal(&j, "down", "", Phase::RunEnd, json!({"outcome": "ok"}))?;
    progress.finish();
    home.remove(name)?;
    Ok(report)
}
