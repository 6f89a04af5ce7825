//! `containers:` on every reachable node of the groups each names; workloads no longer wanted on
//! a node are removed. Runs on every `up` (a cheap `docker inspect` per workload when unchanged),
//! and also where the blueprint has none, so removed entries go away.

use crate::blueprint::ContainerSpec;
use crate::engine::containers::{converge_node, load_tarballs};
use crate::engine::up::context::Ctx;
use crate::error::{Error, Result};
use crate::ssh::Target;
use crate::state::Phase;
use serde_json::json;

/// One node, its SSH target and the workloads its group wants.
type NodeWorkloads<'a> = (String, Target, Vec<(&'a String, &'a ContainerSpec)>);

pub async fn run(cx: &mut Ctx<'_>) -> Result<()> {
    let bp = cx.bp;
    if bp.containers.is_empty() && !cx.state.containers_deployed {
        return Ok(());
    }
    let tarballs = load_tarballs(bp)
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    let jobs: Vec<NodeWorkloads> = cx
        .probed
        .iter()
        .filter(|(n, _)| cx.active.contains(n))
        .filter_map(|(n, (t, _))| {
            let group = cx.state.nodes.get(n)?.group.clone();
            let wanted = bp
                .containers
                .iter()
                .filter(|(_, c)| c.groups.contains(&group))
                .collect();
            Some((n.clone(), t.clone(), wanted))
        })
        .collect();
    if jobs.is_empty() {
        return Ok(());
    }
    cx.progress.stage("containers", jobs.len() as u64);
    let pool = cx.pool.clone();
    let tarballs = &tarballs;
    let deployment = &bp.name;
    let results: Vec<(String, std::result::Result<Vec<String>, String>)> = pool
        .fan_out(jobs, |(name, t, wanted)| {
            let pool = pool.clone();
            async move {
                let r = converge_node(&pool, &t, deployment, &wanted, tarballs).await;
                (name, r)
            }
        })
        .await;
    for (name, r) in results {
        match r {
            Ok(lines) => {
                cx.progress.node_done(&name, true, &lines.join(", "));
                if lines.iter().any(|l| !l.ends_with("=unchanged")) {
                    cx.j(
                        "containers",
                        &name,
                        Phase::Done,
                        json!({"containers": lines}),
                    )?;
                }
                if !lines.is_empty() {
                    cx.report.containers.insert(name, lines);
                }
            }
            Err(e) => {
                cx.progress.node_done(&name, false, &e);
                cx.j("containers", &name, Phase::Failed, json!({"error": e}))?;
                cx.report.failed.insert(name, e);
            }
        }
    }
    cx.state.containers_deployed = !bp.containers.is_empty();
    cx.save()
}
