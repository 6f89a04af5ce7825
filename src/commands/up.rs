use crate::blueprint::Blueprint;
use crate::engine::up::{up, UpOptions};
use crate::error::Result;
use crate::progress::Progress;
use crate::state::Home;
use std::time::Duration;

pub async fn run(
    bp: &Blueprint,
    home: &Home,
    json: bool,
    quiet: bool,
    yes: bool,
    wait_lock: Option<Duration>,
    ttl: Option<Duration>,
) -> Result<i32> {
    let progress = Progress::new(quiet);
    let report = up(
        bp,
        home,
        &progress,
        &UpOptions {
            wait_lock,
            dry_run: false,
            allow_delete: yes,
            command: "up",
            overrides: None,
            probe_nodes: true,
            ttl,
        },
    )
    .await?;
    if json {
        super::print_json(&report);
        return Ok(0);
    }
    if report.changed {
        crate::say!(
            "Deployment `{}` is up ({} nodes, {:.1}s).",
            report.deployment,
            report.nodes.len(),
            report.elapsed_seconds
        );
        for l in super::plan::describe(&report) {
            crate::say!("  {l}");
        }
        for n in &report.docker_installed {
            crate::say!("  ~ installed Docker on {n}");
        }
        for n in &report.docker_started {
            crate::say!("  ~ started Docker on {n}");
        }
        if let Some(c) = &report.cluster {
            if let Some(first) = &c.initialized_on {
                crate::say!("  + swarm initialised on {first}");
            }
            for n in &c.joined {
                crate::say!("  + {n} joined the swarm");
            }
        }
    } else {
        crate::say!(
            "No changes: deployment `{}` is up to date ({} nodes).",
            report.deployment,
            report.nodes.len()
        );
    }
    for n in &report.notes {
        crate::say!("note: {n}");
    }
    super::status::print_nodes(&report.nodes);
    if !report.outputs.is_empty() {
        crate::say!("Outputs:");
        for (k, v) in &report.outputs {
            crate::say!("  {k} = {v}");
        }
    }
    crate::say!(
        "Reach it: flotilla ssh {} <node> [-- docker node ls]",
        report.deployment
    );
    Ok(0)
}
