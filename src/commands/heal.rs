use crate::engine::heal::{heal, Decision, HealOptions, HealReport, Restart};
use crate::error::{exit, Result};
use crate::progress::Progress;
use crate::state::Home;
use std::time::Duration;

fn print(r: &HealReport) {
    let bad: Vec<_> = r
        .verdicts
        .iter()
        .filter(|v| v.decision != Decision::Healthy)
        .collect();
    if bad.is_empty() {
        crate::say!(
            "Deployment `{}`: all {} nodes healthy.",
            r.deployment,
            r.verdicts.len()
        );
    }
    if !bad.is_empty() {
        let mut t = crate::table::Table::new(&["NODE", "ROLE", "DECISION", "WHY"]).indent(2);
        for v in &bad {
            t.row([
                v.node.clone(),
                v.role.to_string(),
                format!("{:?}", v.decision),
                v.reasons.join("; "),
            ]);
        }
        t.print();
    }
    if let Some(why) = &r.refused {
        crate::say!("Refused: {why}");
    } else if r.dry_run
        && bad
            .iter()
            .any(|v| matches!(v.decision, Decision::Replace | Decision::RestartDocker))
    {
        crate::say!("(dry run: nothing was changed)");
    }
    for (n, outcome) in &r.restarted {
        match outcome {
            Restart::Docker(v) => crate::say!("  restarted Docker on {n}: {v} answers"),
            Restart::Failed(e) => {
                crate::say!("  restarting Docker on {n} failed ({e}); the next heal replaces it")
            }
        }
    }
    for n in &r.replaced {
        crate::say!("  replaced {n}");
    }
    if let Some(m) = &r.manager {
        crate::say!("  manager: {m}");
    }
    if let Some(c) = &r.converge {
        for n in &c.machines.create {
            crate::say!("  + created {} in group {}", n.name, n.group);
        }
    }
}

fn code(r: &HealReport) -> i32 {
    if r.refused.is_some() {
        exit::HEAL_REFUSED
    } else {
        exit::OK
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    home: &Home,
    deployment: &str,
    dry_run: bool,
    watch: bool,
    interval: Duration,
    json: bool,
    quiet: bool,
    wait_lock: Option<Duration>,
) -> Result<i32> {
    let progress = Progress::new(quiet);
    let opts = HealOptions { dry_run, wait_lock };
    if !watch {
        let r = heal(home, deployment, &progress, &opts).await?;
        if json {
            super::print_json(&r)
        } else {
            print(&r)
        }
        return Ok(code(&r));
    }
    // Watch: one heal per interval; SIGTERM/SIGINT stop the loop between runs, never inside one.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| crate::error::Error::Other(e.to_string()))?;
    loop {
        match heal(home, deployment, &progress, &opts).await {
            Ok(r) => {
                if json {
                    super::print_json(&r)
                } else {
                    print(&r)
                }
            }
            // A busy lock or a failed attempt is reported; the next round tries again.
            Err(e) => crate::tell!("heal: {e}"),
        }
        tokio::select! {
            _ = flotilla_provider_core::backoff::pause(interval) => {}
            _ = term.recv() => { progress.info("SIGTERM: stopping after the finished round"); return Ok(0); }
            _ = tokio::signal::ctrl_c() => { progress.info("SIGINT: stopping after the finished round"); return Ok(0); }
        }
    }
}
