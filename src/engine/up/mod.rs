//! `flotilla up`: converge a deployment to its blueprint, as an ordered list of stages
//! (`stages.rs`, one file each under `stage/`) over one run context (`context.rs`). `plan`
//! walks the same list in plan mode. Every side effect is journalled as intent before and result
//! after; a failure leaves a consistent state and a re-run continues from it.

mod context;
mod stage;
pub mod stages;

use crate::blueprint::Blueprint;
use crate::cluster::ConvergeReport;
use crate::engine::plan::MachinePlan;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::state::{Home, Phase, State};
use context::{prepare, Ctx, Mode};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub struct UpOptions {
    pub wait_lock: Option<Duration>,
    pub dry_run: bool,
    /// Deleting machines (scale-in, orphans, replacements) is allowed without asking (`--yes`).
    pub allow_delete: bool,
    /// The verb recorded in the journal and the run history (`up`, `scale`, `heal`).
    pub command: &'static str,
    /// Group sizes set by `scale` (kept in the state); `None` means the blueprint's own counts.
    pub overrides: Option<std::collections::BTreeMap<String, u32>>,
    /// `plan` only: SSH to existing nodes to tell which need Docker or cluster work.
    pub probe_nodes: bool,
    /// `up --ttl`: the deployment expires this long from now (replacing a recorded expiry).
    pub ttl: Option<Duration>,
}

impl UpOptions {
    pub fn new(command: &'static str) -> Self {
        Self {
            wait_lock: None,
            dry_run: false,
            allow_delete: false,
            command,
            overrides: None,
            probe_nodes: true,
            ttl: None,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct UpReport {
    pub deployment: String,
    pub changed: bool,
    pub machines: MachinePlan,
    pub docker_installed: Vec<String>,
    pub docker_started: Vec<String>,
    /// Image tags loaded per node from `docker.preload_images` (nodes that had them are absent).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub images_loaded: BTreeMap<String, Vec<String>>,
    /// `containers:` workloads per node: `name=started|unchanged|removed`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, Vec<String>>,
    pub cluster: Option<ConvergeReport>,
    /// `services:` entries: `name=deployed|removed`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// The containerized manager: installed by this run, or where it already runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<serde_json::Value>,
    pub failed: BTreeMap<String, String>,
    pub nodes: Vec<crate::engine::status::NodeSummary>,
    pub outputs: BTreeMap<String, String>,
    pub notes: Vec<String>,
    pub elapsed_seconds: f64,
    /// For `plan`: nodes whose Docker or cluster membership would be set up.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configure: Vec<String>,
}

/// `flotilla up` (and `plan` with `dry_run`).
pub async fn up(
    bp: &Blueprint,
    home: &Home,
    progress: &Progress,
    opts: &UpOptions,
) -> Result<UpReport> {
    let _lock = if opts.dry_run {
        None
    } else {
        home.ensure_deployment_dir(&bp.name)?;
        Some(home.lock(&bp.name, opts.command, opts.wait_lock)?)
    };
    up_locked(bp, home, progress, opts).await
}

/// The body of `up` for callers that already hold the deployment lock (`heal`).
pub async fn up_locked(
    bp: &Blueprint,
    home: &Home,
    progress: &Progress,
    opts: &UpOptions,
) -> Result<UpReport> {
    let started = Instant::now();
    let mode = if opts.dry_run {
        Mode::Plan {
            probe: opts.probe_nodes,
        }
    } else {
        Mode::Apply {
            allow_delete: opts.allow_delete,
        }
    };
    let mut cx = prepare(bp, home, progress, opts.command, mode).await?;
    cx.overrides = opts.overrides.clone();
    set_expiry(&mut cx, opts.ttl);
    let mut result = Ok(());
    for stage in stages::list(opts.command, mode.is_plan()) {
        result = stage.run(&mut cx).await;
        if result.is_err() {
            break;
        }
    }
    cx.pool.close_all().await;
    progress.finish();
    if mode.is_plan() {
        result?;
        cx.report.elapsed_seconds = started.elapsed().as_secs_f64();
        return Ok(cx.report);
    }
    finish(&mut cx, result)?;
    cx.report.elapsed_seconds = started.elapsed().as_secs_f64();
    if !cx.report.failed.is_empty() {
        let failed = &cx.report.failed;
        let details: Vec<String> = failed.iter().map(|(n, e)| format!("  {n}: {e}")).collect();
        return Err(Error::Partial {
            failed: failed.len(),
            total: cx.state.nodes.len().max(failed.len()),
            details: details.join("\n"),
        });
    }
    Ok(cx.report)
}

/// The expiry: `--ttl` sets it from now; a new deployment takes the blueprint's
/// `expires_after`; otherwise the recorded one stays (a re-run does not push it out).
fn set_expiry(cx: &mut Ctx<'_>, ttl: Option<Duration>) {
    let is_new = cx.state.nodes.is_empty() && cx.state.runs.is_empty();
    if let Some(ttl) = ttl {
        cx.state.expires_at = Some(crate::util::rfc3339_after(ttl));
    } else if is_new && cx.state.expires_at.is_none() {
        cx.state.expires_at = cx.bp.expires_after.map(crate::util::rfc3339_after);
    }
    cx.owner = cx.owner.clone().expiring(cx.state.expires_at.clone());
}

/// Records how the run ended (ok, partial or failed) in the state and the journal.
fn finish(cx: &mut Ctx<'_>, result: Result<()>) -> Result<()> {
    if let Err(e) = result {
        let end = json!({"outcome": "failed", "error": e.to_string()});
        let _ = cx.j(cx.command, "", Phase::RunEnd, end);
        cx.record_run("failed");
        let _ = cx.save_final();
        return Err(e);
    }
    let outcome = if cx.report.failed.is_empty() {
        "ok"
    } else {
        "partial"
    };
    cx.record_run(outcome);
    cx.save_final()?;
    cx.j(cx.command, "", Phase::RunEnd, json!({"outcome": outcome}))
}

/// Renders `outputs:` with the recorded nodes.
pub fn outputs_for(bp: &Blueprint, state: &State) -> Result<BTreeMap<String, String>> {
    let mut groups = serde_json::Map::new();
    for g in &bp.groups {
        let mut nodes: Vec<&crate::state::NodeRecord> = state.nodes_of_group(&g.name).collect();
        nodes.sort_by_key(|n| {
            n.name
                .rsplit_once('-')
                .and_then(|(_, i)| i.parse::<u32>().ok())
                .unwrap_or(0)
        });
        let list: Vec<serde_json::Value> = nodes
            .iter()
            .map(|n| {
                json!({
                    "name": n.name, "group": n.group, "role": n.role.as_str(),
                    "private_ip": n.private_ip.map(|i| i.to_string()).unwrap_or_default(),
                    "public_ip": n.public_ip.map(|i| i.to_string()).unwrap_or_default(),
                    "ssh_address": n.ssh_address().map(|i| i.to_string()).unwrap_or_default(),
                    "ssh_port": n.ssh_port, "ssh_user": if n.ssh_user.is_empty() { state.ssh_user.clone() } else { n.ssh_user.clone() },
                })
            })
            .collect();
        groups.insert(g.name.clone(), serde_json::Value::Array(list));
    }
    let ctx =
        crate::blueprint::outputs_context(&bp.name, &bp.inputs, &serde_json::Value::Object(groups));
    let mut out = BTreeMap::new();
    for (name, template) in &bp.outputs {
        match crate::blueprint::render_template(name, template, &ctx) {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err((_, msg)) => {
                // A group scaled to 0 makes `groups.x[0]` fail: say so instead of failing the run.
                out.insert(name.clone(), String::new());
                tracing::warn!(output = %name, error = %msg, "output could not be rendered");
            }
        }
    }
    Ok(out)
}
