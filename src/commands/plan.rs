use crate::blueprint::Blueprint;
use crate::engine::up::{up, UpOptions, UpReport};
use crate::error::{exit, Result};
use crate::progress::Progress;
use crate::state::Home;

pub fn describe(report: &UpReport) -> Vec<String> {
    let m = &report.machines;
    let mut lines = Vec::new();
    for c in &m.create {
        lines.push(format!(
            "+ create {} ({} in group {})",
            c.name, c.role, c.group
        ));
    }
    for n in &m.start {
        lines.push(format!("~ start {n} (machine is stopped)"));
    }
    for n in &m.adopt {
        lines.push(format!("~ adopt {n} (created by an interrupted run)"));
    }
    for n in &m.replace {
        lines.push(format!("-/+ replace {n} (machine in error state)"));
    }
    for n in &m.lost {
        lines.push(format!("-/+ recreate {n} (machine is gone)"));
    }
    for n in &m.remove {
        lines.push(format!("- remove {n} (scale in)"));
    }
    for o in &m.orphans {
        lines.push(format!(
            "- delete orphan {} ({}): {}",
            o.name, o.machine_id, o.reason
        ));
    }
    for c in &report.configure {
        lines.push(format!("~ configure {c}"));
    }
    lines
}

pub async fn run(
    bp: &Blueprint,
    home: &Home,
    json: bool,
    quiet: bool,
    probe_nodes: bool,
) -> Result<i32> {
    // plan prints its result on stdout; progress lines would only repeat it.
    let _ = quiet;
    let progress = Progress::new(true);
    let report = up(
        bp,
        home,
        &progress,
        &UpOptions {
            wait_lock: None,
            dry_run: true,
            allow_delete: false,
            command: "plan",
            overrides: None,
            probe_nodes,
            ttl: None,
        },
    )
    .await?;
    if json {
        super::print_json(&report);
    } else {
        let lines = describe(&report);
        if lines.is_empty() {
            crate::say!(
                "No changes: deployment `{}` matches {}.",
                bp.name,
                bp.source.display()
            );
        } else {
            crate::say!(
                "Deployment `{}`: {} change(s) pending:",
                bp.name,
                lines.len()
            );
            for l in lines {
                crate::say!("  {l}");
            }
        }
    }
    Ok(if report.changed {
        exit::CHANGES_PENDING
    } else {
        exit::OK
    })
}
