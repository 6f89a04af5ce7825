//! Crash safety: the process is killed (the `FLOTILLA_FAULT_AT` hook aborts like a SIGKILL would:
//! no destructors, no cleanup) at every step boundary of `up`, `scale` and `heal`; a plain re-run
//! must converge, nothing may be orphaned (no labelled container the state does not know, no
//! swarm member the state does not know), and one more run must change nothing.

use crate::common::{docker, docker_ok, json, require_docker, stderr, stdout, Home, Scrub};

struct Case {
    command: &'static str,
    step: &'static str,
}

const CASES: &[Case] = &[
    Case {
        command: "up",
        step: "after-plan",
    },
    Case {
        command: "up",
        step: "before-create",
    },
    Case {
        command: "up",
        step: "after-create",
    },
    Case {
        command: "up",
        step: "after-connect",
    },
    Case {
        command: "up",
        step: "after-docker",
    },
    Case {
        command: "up",
        step: "after-cluster",
    },
    Case {
        command: "scale",
        step: "scale-in-after-leave",
    },
    Case {
        command: "scale",
        step: "scale-in-after-delete",
    },
    Case {
        command: "heal",
        step: "heal-after-member-rm",
    },
    Case {
        command: "heal",
        step: "heal-after-delete",
    },
];

/// Containers with the deployment's label whose node the state does not list, plus swarm members
/// beyond the state's nodes.
fn orphans(home: &Home, deployment: &str) -> (usize, usize) {
    let st = home.run(&["status", deployment, "-o", "json"]);
    let st = json(&st);
    let nodes: Vec<String> = st["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str().map(String::from))
        .collect();
    let labelled = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.flotilla.deployment={deployment}"),
        "--format",
        "{{.Label \"io.flotilla.node\"}}",
    ]);
    let stray_machines = labelled
        .lines()
        .filter(|l| !l.is_empty() && !nodes.iter().any(|n| n == l))
        .count();
    let stray_members = st["stray_members"].as_array().map(Vec::len).unwrap_or(0);
    (stray_machines, stray_members)
}

#[test]
fn killed_at_every_step_then_rerun_converges_without_orphans() {
    require_docker();
    let mut table = vec!["| command | killed at | crash exit | re-run | nodes after | orphans (machines/members) | third run changed |".to_string(), "|---|---|---|---|---|---|---|".to_string()];
    let mut failures = Vec::new();
    for (i, c) in CASES.iter().enumerate() {
        let home = Home::new();
        let name: &'static str = Box::leak(format!("it-fault{i}").into_boxed_str());
        let _scrub = Scrub::new(name);
        let bp = crate::heal_scale::blueprint_pub(
            &home,
            name,
            &format!("10.198.{}.0/24", 40 + i),
            2,
            "",
        );
        // Setup for scale/heal cases: a converged deployment first.
        if c.command != "up" {
            let up = home.run(&["up", &bp]);
            assert_eq!(
                up.status.code(),
                Some(0),
                "{}: setup up: {}",
                c.step,
                stderr(&up)
            );
        }
        if c.command == "heal" {
            docker_ok(&["stop", "-t", "0", &format!("flotilla-{name}-workers-2")]);
            crate::heal_scale::wait_down_pub(&home, name, 1);
        }
        let args: Vec<&str> = match c.command {
            "up" => vec!["up", &bp],
            "scale" => vec!["scale", name, "workers=1", "--yes"],
            _ => vec!["heal", name],
        };
        let crashed = home
            .cmd()
            .args(&args)
            .env("FLOTILLA_FAULT_AT", c.step)
            .output()
            .expect("run");
        let crash_exit = crashed
            .status
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "killed".into());
        let rerun = home.run(&args);
        let rerun_ok = rerun.status.code() == Some(0);
        let st = json(&home.run(&["status", name, "-o", "json"]));
        let nodes = st["nodes"].as_array().map(Vec::len).unwrap_or(0);
        let want = if c.command == "scale" { 2 } else { 3 };
        let (om, os) = orphans(&home, name);
        let mut third_args = args.clone();
        third_args.extend_from_slice(&["-o", "json"]);
        let third = home.run(&third_args);
        let third_changed = match c.command {
            "heal" => json(&third)["replaced"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
            _ => json(&third)["changed"] == true,
        };
        table.push(format!(
            "| {} | {} | {} | {} | {nodes} | {om}/{os} | {} |",
            c.command,
            c.step,
            crash_exit,
            if rerun_ok { "ok" } else { "FAILED" },
            if third_changed { "yes" } else { "no" }
        ));
        if crash_exit != "killed"
            || !rerun_ok
            || nodes != want
            || om + os != 0
            || third_changed
            || st["healthy"] != true
        {
            failures.push(format!("{} at {}: rerun {:?} {}{} nodes {nodes}/{want} orphans {om}/{os} third changed {third_changed}", c.command, c.step, rerun.status.code(), stderr(&rerun), stdout(&rerun)));
        }
        let down = home.run(&["down", name, "--yes"]);
        assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
        assert!(
            docker(&["network", "inspect", &format!("flotilla-{name}")])
                .status
                .code()
                != Some(0)
        );
    }
    println!("{}", table.join("\n"));
    eprintln!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
