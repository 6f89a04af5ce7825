//! `services:` through the cluster's managers (skipped, with a failure, when none answers);
//! entries no longer in the blueprint are removed.

use crate::engine::up::context::Ctx;
use crate::error::Result;
use crate::state::Phase;
use serde_json::json;

pub async fn run(cx: &mut Ctx<'_>) -> Result<()> {
    let (Some(orch), Some(wanted)) = (cx.orchestrator.as_deref(), cx.services.as_ref()) else {
        return Ok(());
    };
    if wanted.is_empty() && cx.state.services_deployed.is_empty() {
        return Ok(());
    }
    let managers = cx.managers();
    if managers.is_empty() {
        cx.report.failed.insert(
            "services".into(),
            "no reachable manager node to deploy them through".into(),
        );
        return Ok(());
    }
    cx.progress.stage(
        "services",
        (wanted.len() + cx.state.services_deployed.len()) as u64,
    );
    let mut deployed = cx.state.services_deployed.clone();
    let (done, failed) =
        crate::engine::services::converge(orch, &managers, cx.bp, wanted, &mut deployed).await;
    cx.state.services_deployed = deployed;
    cx.j(
        "services",
        "",
        Phase::Done,
        json!({"done": done, "failed": failed}),
    )?;
    for line in &done {
        cx.progress
            .node_done(line.split('=').next().unwrap_or(line), true, line);
    }
    cx.report.services = done;
    cx.report.failed.extend(failed);
    cx.save()
}
