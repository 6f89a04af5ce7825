//! Machines: provider preflight, observe, plan; then (apply only) orphans and broken machines are
//! deleted and the missing ones created — names recorded first, one batched create call, ids
//! recorded before waiting for them to run, so a crash at any point loses nothing.

use crate::engine::fault_point;
use crate::engine::plan::plan_machines;
use crate::engine::up::context::{Ctx, Mode};
use crate::error::{Error, Result};
use crate::state::{NodePhase, NodeRecord, Phase, State};
use crate::util::now_rfc3339;
use flotilla_provider_core::{CreateRequest, MachineId, NodeInfo, NodeSpec};
use serde_json::json;

pub async fn run(cx: &mut Ctx<'_>) -> Result<()> {
    cx.progress.stage("preflight", 1);
    cx.j("preflight", "", Phase::Intent, json!(null))?;
    if !cx.mode.is_plan() {
        cx.progress.info(&format!(
            "checking the {} provider (builds the node image on first use)",
            cx.provider.kind()
        ));
        cx.provider.preflight(&cx.owner).await?;
    }
    cx.j("preflight", "", Phase::Done, json!(null))?;
    cx.observed = cx.provider.describe(&cx.owner).await?;
    let owns = cx.provider.owns_machines();
    cx.plan = plan_machines(
        &cx.bp.groups,
        &mut cx.state,
        &cx.observed,
        owns,
        &now_rfc3339(),
    );
    cx.report.machines = cx.plan.clone();
    fault_point("after-plan");
    let Mode::Apply { allow_delete } = cx.mode else {
        return Ok(());
    };
    let deletions: Vec<String> = cx
        .plan
        .remove
        .iter()
        .cloned()
        .chain(cx.plan.orphans.iter().map(|o| o.name.clone()))
        .chain(cx.plan.replace.iter().cloned())
        .collect();
    if !deletions.is_empty() && !allow_delete && owns {
        confirm_deletions(&deletions)?;
    }
    cx.save()?;
    delete_doomed(cx).await?;
    if !cx.plan.create.is_empty() || !cx.plan.start.is_empty() {
        create(cx).await?;
    }
    Ok(())
}

/// Asks on a terminal before deleting machines; refuses without one unless `--yes` was given.
fn confirm_deletions(names: &[String]) -> Result<()> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        eprint!(
            "`up` will delete {} machine(s): {}. Continue? [y/N] ",
            names.len(),
            names.join(", ")
        );
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if matches!(answer.trim(), "y" | "yes" | "Y") {
            return Ok(());
        }
        return Err(Error::Usage("cancelled; nothing was deleted".into()));
    }
    Err(Error::Usage(format!(
        "`up` would delete {} machine(s) ({}); pass --yes to allow deletions when not on a terminal",
        names.len(),
        names.join(", ")
    )))
}

/// Orphans and machines in an error state go first.
async fn delete_doomed(cx: &mut Ctx<'_>) -> Result<()> {
    let doomed: Vec<MachineId> = cx
        .plan
        .orphans
        .iter()
        .map(|o| MachineId(o.machine_id.clone()))
        .chain(
            cx.observed
                .iter()
                .filter(|m| cx.plan.replace.contains(&m.name))
                .map(|m| m.id.clone()),
        )
        .collect();
    if doomed.is_empty() || !cx.provider.owns_machines() {
        return Ok(());
    }
    for o in &cx.plan.orphans {
        cx.progress.info(&format!(
            "deleting orphaned machine {} ({}): {}",
            o.name, o.machine_id, o.reason
        ));
    }
    cx.j(
        "delete-orphans",
        "",
        Phase::Intent,
        json!({"machines": doomed}),
    )?;
    cx.provider.delete_nodes(&cx.owner, &doomed).await?;
    cx.j("delete-orphans", "", Phase::Done, json!(null))
}

/// Records the new names, creates (and starts) the machines in one call, waits until they run.
async fn create(cx: &mut Ctx<'_>) -> Result<()> {
    let specs = cx.plan.specs();
    let mut all_specs = specs.clone();
    for name in &cx.plan.start {
        if let Some(r) = cx.state.nodes.get(name) {
            all_specs.push(NodeSpec {
                name: r.name.clone(),
                group: r.group.clone(),
                role: r.role,
            });
        }
    }
    for s in &specs {
        cx.state.nodes.insert(
            s.name.clone(),
            NodeRecord::creating(s, &cx.run, &now_rfc3339()),
        );
    }
    cx.save()?;
    let names: Vec<&str> = all_specs.iter().map(|s| s.name.as_str()).collect();
    cx.progress.stage("machines", all_specs.len() as u64);
    for n in &names {
        cx.progress.node(n, "creating machine");
    }
    cx.j(
        "create-machines",
        "",
        Phase::Intent,
        json!({"nodes": names, "run": cx.run}),
    )?;
    fault_point("before-create");
    let req = CreateRequest {
        owner: cx.owner.clone(),
        run_token: cx.run.clone(),
        nodes: all_specs.clone(),
        ssh_public_key: cx.public_key.clone(),
    };
    let created = cx.provider.create_nodes(&req).await;
    fault_point("after-create");
    let created = match created {
        Ok(c) => c,
        Err(e) => {
            cx.j(
                "create-machines",
                "",
                Phase::Failed,
                json!({"error": e.to_string()}),
            )?;
            return Err(e.into());
        }
    };
    apply_machines(&mut cx.state, &created);
    // The ids are recorded before waiting, so a crash while machines boot loses nothing.
    cx.save()?;
    cx.j(
        "create-machines",
        "",
        Phase::Done,
        json!({"machines": created.iter().map(|m| (&m.name, &m.id)).collect::<Vec<_>>()}),
    )?;
    let ids: Vec<MachineId> = created.iter().map(|m| m.id.clone()).collect();
    cx.j("wait-running", "", Phase::Intent, json!({"machines": ids}))?;
    let running = cx.provider.wait_running(&cx.owner, &ids).await?;
    apply_machines(&mut cx.state, &running);
    for m in &running {
        let at = m.ssh_address().map(|i| i.to_string()).unwrap_or_default();
        cx.progress.node_done(
            &m.name,
            true,
            &format!("machine {} at {at}", short(&m.id.0)),
        );
    }
    cx.save()?;
    cx.j("wait-running", "", Phase::Done, json!(null))
}

/// Copies what the provider reports about machines into their records.
fn apply_machines(state: &mut State, machines: &[NodeInfo]) {
    for m in machines {
        if let Some(rec) = state.nodes.get_mut(&m.name) {
            rec.machine_id = Some(m.id.clone());
            rec.private_ip = m.private_ip;
            rec.public_ip = m.public_ip;
            rec.ssh_port = m.ssh_port;
            rec.ssh_user = m.ssh_user.clone().unwrap_or_default();
            rec.phase = rec.phase.clone().max(NodePhase::Created);
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
