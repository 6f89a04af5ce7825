use crate::blueprint;
use crate::cli::BlueprintArgs;
use crate::engine::up::{up, UpOptions};
use crate::error::Result;
use crate::progress::Progress;
use crate::state::Home;
use std::time::Duration;

pub async fn run(
    args: &BlueprintArgs,
    home: &Home,
    json: bool,
    quiet: bool,
    yes: bool,
    wait_lock: Option<Duration>,
    ttl: Option<Duration>,
) -> Result<i32> {
    let bp = blueprint::load(&args.blueprint, &args.set)?;
    let progress = Progress::new(quiet);
    let report = up(
        &bp,
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
        println!(
            "Deployment `{}` is up ({} nodes, {:.1}s).",
            report.deployment,
            report.nodes.len(),
            report.elapsed_seconds
        );
        for l in super::plan::describe(&report) {
            println!("  {l}");
        }
        for n in &report.docker_installed {
            println!("  ~ installed Docker on {n}");
        }
        for n in &report.docker_started {
            println!("  ~ started Docker on {n}");
        }
        if let Some(c) = &report.cluster {
            if let Some(first) = &c.initialized_on {
                println!("  + swarm initialised on {first}");
            }
            for n in &c.joined {
                println!("  + {n} joined the swarm");
            }
        }
    } else {
        println!(
            "No changes: deployment `{}` is up to date ({} nodes).",
            report.deployment,
            report.nodes.len()
        );
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    super::status::print_nodes(&report.nodes);
    if !report.outputs.is_empty() {
        println!("Outputs:");
        for (k, v) in &report.outputs {
            println!("  {k} = {v}");
        }
    }
    println!(
        "Reach it: flotilla ssh {} <node> [-- docker node ls]",
        report.deployment
    );
    Ok(0)
}
