//! Outputs: `outputs:` rendered with the recorded nodes and recorded; the report's node summary
//! and whether the run changed anything.

use crate::cluster::ConvergeReport;
use crate::engine::up::context::Ctx;
use crate::engine::up::{outputs_for, UpReport};
use crate::error::Result;

pub async fn run(cx: &mut Ctx<'_>) -> Result<()> {
    if cx.mode.is_plan() {
        cx.report.changed = !cx.plan.is_empty() || !cx.report.configure.is_empty();
        return Ok(());
    }
    cx.report.outputs = outputs_for(cx.bp, &cx.state)?;
    cx.state.outputs = cx.report.outputs.clone();
    cx.report.nodes = crate::engine::status::summaries(&cx.state);
    cx.report.changed = !cx.plan.is_empty() || work_done(&cx.report);
    cx.save()
}

/// Whether the stages after the machine plan changed anything on the nodes or the cluster.
fn work_done(r: &UpReport) -> bool {
    !r.docker_installed.is_empty()
        || !r.docker_started.is_empty()
        || !r.images_loaded.is_empty()
        || r.containers
            .values()
            .flatten()
            .any(|c| !c.ends_with("=unchanged"))
        || r.cluster.as_ref().is_some_and(ConvergeReport::changed)
        || r.services.iter().any(|s| s.ends_with("=removed"))
        || r.manager
            .as_ref()
            .is_some_and(|m| m["action"] == "installed")
}
