//! Cluster: the reachable nodes with Docker, managers first, handed to the blueprint's
//! orchestrator to form or extend the cluster; member ids and the cluster's id are recorded.
//! A plan lists the nodes that are not members yet.

use crate::cluster::{ClusterNode, ConvergeReport};
use crate::engine::fault_point;
use crate::engine::up::context::Ctx;
use crate::error::{Error, Result};
use crate::state::{NodePhase, Phase};
use flotilla_provider_core::Role;
use serde_json::json;

pub async fn run(cx: &mut Ctx<'_>) -> Result<()> {
    cx.cluster_nodes = cluster_view(cx);
    cx.orchestrator = crate::cluster::for_blueprint(cx.bp, cx.pool.clone());
    if cx.mode.is_plan() {
        if let Some(orch) = &cx.orchestrator {
            for (name, (_, p)) in &cx.probed {
                if orch.needs_join(p) {
                    let kind = orch.kind();
                    cx.report
                        .configure
                        .push(format!("{name}: join the {kind} cluster"));
                }
            }
        }
        return Ok(());
    }
    if cx.orchestrator.is_none() {
        for name in cx.probed.keys() {
            if let Some(rec) = cx.state.nodes.get_mut(name) {
                rec.phase = NodePhase::Ready;
            }
        }
    } else if !cx.cluster_nodes.is_empty() {
        converge(cx).await?;
    }
    fault_point("after-cluster");
    Ok(())
}

async fn converge(cx: &mut Ctx<'_>) -> Result<()> {
    let Some(orch) = cx.orchestrator.as_ref() else {
        return Ok(());
    };
    let kind = orch.kind();
    if !cx.cluster_nodes.iter().any(|n| n.role == Role::Manager) {
        cx.report.failed.insert(
            "cluster".into(),
            format!("no reachable manager node: the {kind} cluster cannot be formed or extended this run"),
        );
        return Ok(());
    }
    cx.progress.stage(kind, 1);
    cx.progress
        .info(&format!("forming / checking the {kind} cluster"));
    let names: Vec<&String> = cx.cluster_nodes.iter().map(|n| &n.name).collect();
    cx.j(
        "cluster-converge",
        "",
        Phase::Intent,
        json!({"nodes": names}),
    )?;
    let result = orch.converge(&cx.cluster_nodes).await;
    match result {
        Ok(r) => {
            cx.j(
                "cluster-converge",
                "",
                Phase::Done,
                json!({"joined": r.joined, "initialized_on": r.initialized_on}),
            )?;
            record(cx, r)?;
            cx.save()
        }
        Err(e) => {
            cx.j(
                "cluster-converge",
                "",
                Phase::Failed,
                json!({"error": e.to_string()}),
            )?;
            cx.save()?;
            Err(e.into())
        }
    }
}

/// Member ids, the bootstrap node, the cluster id and its facts into the state; the driver's
/// secret files (a kubeconfig) into 0600 files; what the operator should know into the notes.
fn record(cx: &mut Ctx<'_>, mut r: ConvergeReport) -> Result<()> {
    for (name, id) in &r.member_ids {
        if let Some(rec) = cx.state.nodes.get_mut(name) {
            rec.cluster_id = Some(id.clone());
            rec.phase = NodePhase::Ready;
        }
    }
    if let Some(first) = &r.initialized_on {
        cx.state.cluster.bootstrap_node = Some(first.clone());
    }
    if r.cluster_id.is_some() {
        cx.state.cluster.cluster_id = r.cluster_id.clone();
    }
    for (file, contents) in std::mem::take(&mut r.secret_files) {
        let path = cx.home.deployment_dir(&cx.bp.name)?.join(&file);
        crate::state::write_atomic(&path, contents.as_bytes())
            .map_err(|e| Error::Other(format!("writing {}: {e}", path.display())))?;
        let how = format!("`flotilla {file} {}` prints its path", cx.bp.name);
        cx.report
            .notes
            .push(format!("{file}: {} ({how})", path.display()));
    }
    cx.state.cluster.facts = r.facts.clone();
    cx.report.notes.append(&mut r.notes);
    cx.report.cluster = Some(r);
    Ok(())
}

/// The nodes the orchestrator works on: reachable, with Docker, not being scaled in; managers
/// first (bootstrap on the oldest manager), then by name index.
fn cluster_view(cx: &Ctx<'_>) -> Vec<ClusterNode> {
    let mut v: Vec<ClusterNode> = cx
        .probed
        .iter()
        .filter(|(n, (_, p))| cx.active.contains(n) && p.docker_server.is_some())
        .filter_map(|(name, (t, p))| {
            let rec = cx.state.nodes.get(name)?;
            let group = cx.bp.group(&rec.group)?;
            Some(ClusterNode {
                name: name.clone(),
                role: rec.role,
                target: t.clone(),
                ip: rec
                    .private_ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| t.address.clone()),
                labels: group.labels.clone(),
                probe: Some(p.clone()),
            })
        })
        .collect();
    v.sort_by_key(|n| {
        (
            crate::engine::role_order(n.role),
            n.name
                .rsplit_once('-')
                .and_then(|(_, i)| i.parse::<u32>().ok())
                .unwrap_or(0),
            n.name.clone(),
        )
    });
    v
}
