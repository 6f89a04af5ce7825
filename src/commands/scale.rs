use crate::engine::scale::{parse_count, scale, ScaleOptions};
use crate::error::Result;
use crate::progress::Progress;
use crate::state::Home;
use std::time::Duration;

pub async fn run(
    home: &Home,
    deployment: &str,
    counts: &[String],
    yes: bool,
    json: bool,
    quiet: bool,
    wait_lock: Option<Duration>,
) -> Result<i32> {
    let counts = counts
        .iter()
        .map(|c| parse_count(c))
        .collect::<Result<Vec<_>>>()?;
    let progress = Progress::new(quiet);
    let opts = ScaleOptions {
        allow_delete: yes,
        wait_lock,
    };
    let report = scale(home, deployment, &counts, &progress, &opts).await?;
    if json {
        super::print_json(&report);
    } else if report.changed {
        crate::say!(
            "Deployment `{deployment}` scaled ({} nodes, {:.1}s).",
            report.nodes.len(),
            report.elapsed_seconds
        );
        for l in super::plan::describe(&report) {
            crate::say!("  {l}");
        }
    } else {
        crate::say!(
            "No changes: deployment `{deployment}` already has those sizes ({} nodes).",
            report.nodes.len()
        );
    }
    Ok(0)
}
