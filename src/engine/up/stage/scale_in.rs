//! Scale in: the nodes beyond their group's count, newest first, leave the cluster and their
//! machines are deleted; then members of lost or replaced machines are dropped from the cluster
//! so its member list matches the state.

use crate::cluster::ClusterNode;
use crate::engine::fault_point;
use crate::engine::nodes::{default_user, target_of};
use crate::engine::up::context::Ctx;
use crate::error::Result;
use crate::state::Phase;
use flotilla_provider_core::Role;
use serde_json::json;

pub async fn run(cx: &mut Ctx<'_>) -> Result<()> {
    if !cx.plan.remove.is_empty() {
        remove_nodes(cx).await?;
    }
    if !(cx.plan.lost.is_empty() && cx.plan.replace.is_empty()) {
        remove_stale_members(cx).await;
    }
    Ok(())
}

async fn remove_nodes(cx: &mut Ctx<'_>) -> Result<()> {
    let remove = cx.plan.remove.clone();
    let user = default_user(cx.bp);
    let managers: Vec<ClusterNode> = cx
        .cluster_nodes
        .iter()
        .filter(|n| n.role == Role::Manager && !remove.contains(&n.name))
        .cloned()
        .collect();
    cx.progress.stage("scale-in", remove.len() as u64);
    for name in &remove {
        let Some(rec) = cx.state.nodes.get(name).cloned() else {
            continue;
        };
        cx.progress.node(name, "removing");
        cx.j(
            "remove-node",
            name,
            Phase::Intent,
            json!({"machine": rec.machine_id}),
        )?;
        if let (Some(orch), Some(t)) = (&cx.orchestrator, target_of(&rec, &user, cx.bp.ssh.port)) {
            let node = ClusterNode::bare(name, rec.role, t);
            orch.remove(&node, &managers, rec.cluster_id.as_deref())
                .await?;
        }
        fault_point("scale-in-after-leave");
        if let Some(id) = &rec.machine_id {
            cx.provider
                .delete_nodes(&cx.owner, std::slice::from_ref(id))
                .await?;
        }
        fault_point("scale-in-after-delete");
        cx.state.nodes.remove(name);
        cx.save()?;
        cx.j("remove-node", name, Phase::Done, json!(null))?;
        cx.progress.node_done(name, true, "removed");
    }
    Ok(())
}

/// Members that are down and belong to none of the deployment's nodes (their machine was lost or
/// replaced). Best effort: a failure is reported, the run goes on.
async fn remove_stale_members(cx: &mut Ctx<'_>) {
    let Some(orch) = cx.orchestrator.as_deref() else {
        return;
    };
    let managers = cx.managers();
    let Ok(members) = orch.members(&managers).await else {
        return;
    };
    let known: Vec<String> = cx
        .state
        .nodes
        .values()
        .filter_map(|r| r.cluster_id.clone())
        .collect();
    for m in members
        .iter()
        .filter(|m| m.status != "ready" && !known.contains(&m.id))
    {
        let kind = orch.kind();
        match orch
            .remove_member(&managers, &m.id, m.role == "manager")
            .await
        {
            Ok(()) => cx.progress.info(&format!(
                "removed stale {kind} member {} ({})",
                m.hostname, m.id
            )),
            Err(e) => cx.progress.info(&format!(
                "could not remove stale {kind} member {}: {e}",
                m.hostname
            )),
        }
    }
}
