//! Records the run, the blueprint and the group sizes in the state before anything changes, and
//! renders `services:` (a typo stops the run here, not halfway).

use crate::engine::up::context::Ctx;
use crate::error::{Error, Result};
use crate::state::{Phase, RunRecord};
use crate::util::now_rfc3339;
use serde_json::json;

pub async fn run(cx: &mut Ctx<'_>) -> Result<()> {
    let bp = cx.bp;
    cx.j(
        cx.command,
        "",
        Phase::RunStart,
        json!({"blueprint": bp.source.display().to_string(), "pid": std::process::id()}),
    )?;
    if cx.command == "up" {
        let rendered =
            crate::engine::services::render_all(bp).map_err(|p| Error::Usage(p.join("\n")))?;
        cx.services = Some(rendered);
    }
    if cx.mode.is_plan() {
        return Ok(());
    }
    cx.state.runs.push(RunRecord {
        token: cx.run.clone(),
        command: cx.command.into(),
        started_at: now_rfc3339(),
        finished_at: None,
        outcome: None,
    });
    cx.state.blueprint_path = bp
        .source
        .canonicalize()
        .unwrap_or_else(|_| bp.source.clone())
        .display()
        .to_string();
    cx.state.blueprint_rendered = bp.rendered.clone();
    if !bp.recorded {
        // The operator's own blueprint file: its paths are theirs again.
        cx.state.imported_from = None;
    }
    cx.state.inputs = bp.inputs.clone();
    cx.state.cluster.kind = bp.cluster.as_str().to_string();
    apply_overrides(cx);
    cx.save()
}

/// `scale`'s sizes replace the recorded ones; a run of `up` goes back to the blueprint's counts
/// (and says so).
fn apply_overrides(cx: &mut Ctx<'_>) {
    match cx.overrides.take() {
        Some(o) => cx.state.count_overrides = o,
        None if !cx.state.count_overrides.is_empty() => {
            let sizes: Vec<String> = cx
                .state
                .count_overrides
                .iter()
                .map(|(g, n)| format!("{g}={n}"))
                .collect();
            cx.report.notes.push(format!(
                "group sizes set by `flotilla scale` ({}) were replaced by the blueprint's counts",
                sizes.join(", ")
            ));
            cx.state.count_overrides.clear();
        }
        None => {}
    }
}
