//! `flotilla up`: converge a deployment to its blueprint.
//!
//! Steps (each journalled as intent before and result after its side effect):
//! preflight -> observe -> delete orphans -> create machines (names recorded first) -> connect,
//! pin host keys, probe -> install Docker where missing -> form/extend the cluster -> scale in
//! -> outputs. A failure leaves a consistent state; a re-run continues from it.

use super::nodes::{self, default_user, install_docker, probe, target_of};
use super::plan::{plan_machines, MachinePlan};
use super::{build_provider, fault_point, journal};
use crate::blueprint::{Blueprint, ClusterKind};
use crate::cluster::{ClusterNode, ConvergeReport};
use crate::docker::Probe;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::ssh::{SshPool, Target};
use crate::state::{Home, Journal, NodePhase, Phase, RunRecord, State, RUNS_KEPT};
use crate::util::now_rfc3339;
use flotilla_provider_core::{CreateRequest, MachineId, Ownership, Provider, Role};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
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

/// Asks on a terminal before deleting machines; refuses without one unless `--yes` was given.
fn confirm_deletions(names: &[String]) -> Result<()> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        eprint!(
            "`up` will delete {} machine(s): {}. Continue? [y/N] ",
            names.len(),
            names.join(", ")
        );
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if matches!(answer.trim(), "y" | "yes" | "Y") {
            return Ok(());
        }
        return Err(Error::Usage("cancelled; nothing was deleted".into()));
    }
    Err(Error::Usage(format!(
        "`up` would delete {} machine(s) ({}); pass --yes to allow deletions when not on a terminal",
        names.len(),
        names.join(", ")
    )))
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

struct Run<'a> {
    bp: &'a Blueprint,
    home: &'a Home,
    provider: Arc<dyn Provider>,
    owner: Ownership,
    progress: &'a Progress,
    journal: Option<Journal>,
    run: String,
    state: State,
    pool: Arc<SshPool>,
    public_key: String,
    command: &'static str,
    /// `plan`'s own folder for the ssh files it must not write into the deployment's (a fresh
    /// one per run: two plans at once, e.g. under `serve`, never share it); removed at the end.
    _scratch: Option<tempfile::TempDir>,
}

impl Run<'_> {
    fn j(&self, step: &str, target: &str, phase: Phase, detail: serde_json::Value) -> Result<()> {
        match &self.journal {
            Some(j) => journal(j, step, target, phase, detail),
            None => Ok(()),
        }
    }

    fn save(&mut self) -> Result<()> {
        if self.journal.is_none() {
            return Ok(()); // plan: never writes
        }
        self.state.updated_at = now_rfc3339();
        self.home.save(&self.state)?;
        Ok(())
    }
}

/// Prepares everything both `up` and `plan` need. `plan` passes `lock = None` and never writes.
async fn prepare<'a>(
    bp: &'a Blueprint,
    home: &'a Home,
    progress: &'a Progress,
    write: bool,
) -> Result<Run<'a>> {
    let dir = if write {
        home.ensure_deployment_dir(&bp.name)?
    } else {
        home.deployment_dir(&bp.name)?
    };
    let now = now_rfc3339();
    let mut state = home
        .load(&bp.name)?
        .unwrap_or_else(|| State::new(&bp.name, bp.provider.kind(), &now));
    if state.provider != bp.provider.kind() {
        return Err(Error::Usage(format!(
            "{}: provider.kind: deployment `{}` was created with the {} provider; the provider cannot change \
             (run `flotilla down {}` first, or rename the deployment)",
            bp.source.display(),
            bp.name,
            state.provider,
            bp.name
        )));
    }
    let run = crate::util::new_run_token();
    let journal = if write {
        if let Some(prev) = Journal::last_interrupted(&dir) {
            let open: Vec<String> = prev
                .open_steps
                .iter()
                .map(|(s, t)| {
                    if t.is_empty() {
                        s.clone()
                    } else {
                        format!("{s} {t}")
                    }
                })
                .collect();
            progress.info(&format!(
                "previous run {} (`{}`) did not finish{}; converging from what the provider and the nodes report",
                prev.run,
                prev.command,
                if open.is_empty() { String::new() } else { format!(" (interrupted in: {})", open.join(", ")) }
            ));
        }
        Some(Journal::open(&dir, &run).map_err(|source| Error::Journal {
            path: dir.join("journal.jsonl").display().to_string(),
            source,
        })?)
    } else {
        None
    };
    let scratch = if write {
        None
    } else {
        Some(
            tempfile::Builder::new()
                .prefix("flotilla-plan-")
                .tempdir()
                .map_err(|e| Error::Other(format!("a scratch folder for plan: {e}")))?,
        )
    };
    let key_dir = match &scratch {
        Some(s) => s.path().to_path_buf(),
        None => dir.clone(),
    };
    let key_path = bp.ssh.private_key.as_deref().map(crate::util::expand_tilde);
    let key_path = match (&key_path, state.ssh_private_key.is_empty(), write) {
        // plan without a state: nothing to connect to anyway
        (None, true, false) => None,
        (None, false, false) => Some(std::path::PathBuf::from(&state.ssh_private_key)),
        _ => key_path,
    };
    let (key, public_key) = match key_path {
        Some(k) if !write => (k, String::new()),
        k => crate::ssh::ensure_keypair(k.as_deref(), &key_dir, &format!("flotilla@{}", bp.name))?,
    };
    let provider = build_provider(bp, &public_key).await?;
    let settings = nodes::ssh_settings(bp, if write { &dir } else { &key_dir }, &key);
    let pool = Arc::new(SshPool::new(settings)?);
    state.ssh_private_key = key.display().to_string();
    state.ssh_user = default_user(bp);
    Ok(Run {
        bp,
        home,
        provider,
        owner: Ownership::new(&bp.name),
        progress,
        journal,
        run,
        state,
        pool,
        public_key,
        command: "up",
        _scratch: scratch,
    })
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
    let mut run = prepare(bp, home, progress, !opts.dry_run).await?;
    run.command = opts.command;
    // The expiry: `--ttl` sets it from now; a new deployment takes the blueprint's
    // `expires_after`; otherwise the recorded one stays (a re-run does not push it out).
    let is_new = run.state.nodes.is_empty() && run.state.runs.is_empty();
    if let Some(ttl) = opts.ttl {
        run.state.expires_at = Some(crate::util::rfc3339_after(ttl));
    } else if is_new && run.state.expires_at.is_none() {
        run.state.expires_at = bp.expires_after.map(crate::util::rfc3339_after);
    }
    run.owner = run.owner.clone().expiring(run.state.expires_at.clone());
    let result = converge(
        &mut run,
        opts.dry_run,
        opts.allow_delete,
        opts.overrides.clone(),
        opts.probe_nodes,
    )
    .await;
    run.pool.close_all().await;
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = run.j(
                run.command,
                "",
                Phase::RunEnd,
                json!({"outcome": "failed", "error": e.to_string()}),
            );
            record_run(&mut run, "failed");
            let _ = run.save();
            progress.finish();
            return Err(e);
        }
    };
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    let outcome = if report.failed.is_empty() {
        "ok"
    } else {
        "partial"
    };
    if !opts.dry_run {
        record_run(&mut run, outcome);
        run.save()?;
        run.j(run.command, "", Phase::RunEnd, json!({"outcome": outcome}))?;
    }
    progress.finish();
    if !report.failed.is_empty() && !opts.dry_run {
        let total = run.state.nodes.len().max(report.failed.len());
        let details = report
            .failed
            .iter()
            .map(|(n, e)| format!("  {n}: {e}"))
            .collect::<Vec<_>>()
            .join("\n");
        return Err(Error::Partial {
            failed: report.failed.len(),
            total,
            details,
        });
    }
    Ok(report)
}

fn record_run(run: &mut Run, outcome: &str) {
    let now = now_rfc3339();
    if let Some(r) = run.state.runs.iter_mut().find(|r| r.token == run.run) {
        r.finished_at = Some(now);
        r.outcome = Some(outcome.to_string());
    } else {
        run.state.runs.push(RunRecord {
            token: run.run.clone(),
            command: run.command.into(),
            started_at: now.clone(),
            finished_at: Some(now),
            outcome: Some(outcome.into()),
        });
    }
    let excess = run.state.runs.len().saturating_sub(RUNS_KEPT);
    run.state.runs.drain(..excess);
}

async fn converge(
    run: &mut Run<'_>,
    dry_run: bool,
    allow_delete: bool,
    overrides: Option<std::collections::BTreeMap<String, u32>>,
    probe_nodes: bool,
) -> Result<UpReport> {
    let bp = run.bp;
    let mut report = UpReport {
        deployment: bp.name.clone(),
        ..Default::default()
    };
    run.j(
        run.command,
        "",
        Phase::RunStart,
        json!({"blueprint": bp.source.display().to_string(), "pid": std::process::id()}),
    )?;
    if !dry_run {
        run.state.runs.push(RunRecord {
            token: run.run.clone(),
            command: run.command.into(),
            started_at: now_rfc3339(),
            finished_at: None,
            outcome: None,
        });
        run.state.blueprint_path = bp
            .source
            .canonicalize()
            .unwrap_or_else(|_| bp.source.clone())
            .display()
            .to_string();
        run.state.blueprint_rendered = bp.rendered.clone();
        if !bp.recorded {
            // The operator's own blueprint file: its paths are theirs again.
            run.state.imported_from = None;
        }
        run.state.inputs = bp.inputs.clone();
        run.state.cluster.kind = bp.cluster.as_str().to_string();
        match overrides {
            Some(o) => run.state.count_overrides = o,
            None => {
                if !run.state.count_overrides.is_empty() {
                    report.notes.push(format!(
                        "group sizes set by `flotilla scale` ({}) were replaced by the blueprint's counts",
                        run.state.count_overrides.iter().map(|(g, n)| format!("{g}={n}")).collect::<Vec<_>>().join(", ")
                    ));
                    run.state.count_overrides.clear();
                }
            }
        }
        run.save()?;
    }

    // `services:` files are read and rendered before anything changes (a typo stops the run here).
    let services = if run.command == "up" {
        Some(super::services::render_all(bp).map_err(|p| Error::Usage(p.join("\n")))?)
    } else {
        None
    };

    // Preflight + observe.
    run.progress.stage("preflight", 1);
    run.j("preflight", "", Phase::Intent, json!(null))?;
    if !dry_run {
        run.progress.info(&format!(
            "checking the {} provider (builds the node image on first use)",
            run.provider.kind()
        ));
        run.provider.preflight(&run.owner).await?;
    }
    run.j("preflight", "", Phase::Done, json!(null))?;
    let observed = run.provider.describe(&run.owner).await?;
    let now = now_rfc3339();
    let plan = plan_machines(
        &bp.groups,
        &mut run.state,
        &observed,
        run.provider.owns_machines(),
        &now,
    );
    report.machines = plan.clone();
    fault_point("after-plan");

    if dry_run {
        // Probe what exists (read-only, in parallel) to tell which nodes need Docker or cluster
        // work; `--no-probe` leaves SSH out.
        let existing: Vec<Target> = run
            .state
            .nodes
            .values()
            .filter(|r| probe_nodes && !plan.remove.contains(&r.name) && r.host_key.is_some())
            .filter_map(|r| target_of(r, &default_user(bp), bp.ssh.port))
            .collect();
        run.pool.write_known_hosts(&existing)?;
        let pool = run.pool.clone();
        let probed: Vec<_> = pool
            .fan_out(existing, |t| {
                let pool = pool.clone();
                async move {
                    let r = probe(&pool, &t, Duration::from_secs(5)).await;
                    (t, r)
                }
            })
            .await;
        for (t, probed) in probed {
            match probed {
                Ok(p) if p.docker_server.is_none() => report
                    .configure
                    .push(format!("{}: install/start Docker", t.node)),
                Ok(p) if bp.cluster == ClusterKind::Swarm && p.swarm.state != "active" => {
                    report.configure.push(format!("{}: join the swarm", t.node))
                }
                Ok(_) => {}
                Err(e) => report
                    .configure
                    .push(format!("{}: unreachable ({e})", t.node)),
            }
        }
        report.changed = !plan.is_empty() || !report.configure.is_empty();
        return Ok(report);
    }
    let deletions: Vec<String> = plan
        .remove
        .iter()
        .cloned()
        .chain(plan.orphans.iter().map(|o| o.name.clone()))
        .chain(plan.replace.iter().cloned())
        .collect();
    if !deletions.is_empty() && !allow_delete && run.provider.owns_machines() {
        confirm_deletions(&deletions)?;
    }
    run.save()?;

    // Orphans and broken machines go first.
    let doomed: Vec<MachineId> = plan
        .orphans
        .iter()
        .map(|o| MachineId(o.machine_id.clone()))
        .chain(
            observed
                .iter()
                .filter(|m| plan.replace.contains(&m.name))
                .map(|m| m.id.clone()),
        )
        .collect();
    if !doomed.is_empty() && run.provider.owns_machines() {
        for o in &plan.orphans {
            run.progress.info(&format!(
                "deleting orphaned machine {} ({}): {}",
                o.name, o.machine_id, o.reason
            ));
        }
        run.j(
            "delete-orphans",
            "",
            Phase::Intent,
            json!({"machines": doomed}),
        )?;
        run.provider.delete_nodes(&run.owner, &doomed).await?;
        run.j("delete-orphans", "", Phase::Done, json!(null))?;
    }

    // Create: record the names first, then one batched create call.
    if !plan.create.is_empty() || !plan.start.is_empty() {
        let specs = plan.specs();
        let mut all_specs = specs.clone();
        for name in &plan.start {
            if let Some(r) = run.state.nodes.get(name) {
                all_specs.push(flotilla_provider_core::NodeSpec {
                    name: r.name.clone(),
                    group: r.group.clone(),
                    role: r.role,
                });
            }
        }
        for s in &specs {
            run.state.nodes.insert(
                s.name.clone(),
                crate::state::NodeRecord {
                    name: s.name.clone(),
                    group: s.group.clone(),
                    role: s.role,
                    machine_id: None,
                    run_token: run.run.clone(),
                    phase: NodePhase::Creating,
                    private_ip: None,
                    public_ip: None,
                    ssh_port: 22,
                    ssh_user: String::new(),
                    host_key: None,
                    os: None,
                    docker_version: None,
                    cluster_id: None,
                    created_at: now_rfc3339(),
                    unhealthy_since: None,
                    docker_restart_tried_at: None,
                },
            );
        }
        run.save()?;
        let names: Vec<&str> = all_specs.iter().map(|s| s.name.as_str()).collect();
        run.progress.stage("machines", all_specs.len() as u64);
        for n in &names {
            run.progress.node(n, "creating machine");
        }
        run.j(
            "create-machines",
            "",
            Phase::Intent,
            json!({"nodes": names, "run": run.run}),
        )?;
        fault_point("before-create");
        let req = CreateRequest {
            owner: run.owner.clone(),
            run_token: run.run.clone(),
            nodes: all_specs.clone(),
            ssh_public_key: run.public_key.clone(),
        };
        let created = run.provider.create_nodes(&req).await;
        fault_point("after-create");
        let created = match created {
            Ok(c) => c,
            Err(e) => {
                run.j(
                    "create-machines",
                    "",
                    Phase::Failed,
                    json!({"error": e.to_string()}),
                )?;
                return Err(e.into());
            }
        };
        apply_machines(&mut run.state, &created);
        // The ids are recorded before waiting, so a crash while machines boot loses nothing.
        run.save()?;
        run.j(
            "create-machines",
            "",
            Phase::Done,
            json!({"machines": created.iter().map(|m| (&m.name, &m.id)).collect::<Vec<_>>()}),
        )?;
        let ids: Vec<MachineId> = created.iter().map(|m| m.id.clone()).collect();
        run.j("wait-running", "", Phase::Intent, json!({"machines": ids}))?;
        let running = run.provider.wait_running(&run.owner, &ids).await?;
        apply_machines(&mut run.state, &running);
        for m in &running {
            run.progress.node_done(
                &m.name,
                true,
                &format!(
                    "machine {} at {}",
                    short(&m.id.0),
                    m.ssh_address().map(|i| i.to_string()).unwrap_or_default()
                ),
            );
        }
        run.save()?;
        run.j("wait-running", "", Phase::Done, json!(null))?;
    }

    // Scale-in candidates stay out of the install/join work.
    let active: Vec<String> = run
        .state
        .nodes
        .keys()
        .filter(|n| !plan.remove.contains(n))
        .cloned()
        .collect();

    // Connect, pin host keys, probe: one SSH command per node.
    let user = default_user(bp);
    let targets: Vec<Target> = run
        .state
        .nodes
        .values()
        .filter_map(|r| target_of(r, &user, bp.ssh.port))
        .collect();
    run.pool.write_known_hosts(&targets)?;
    run.progress.stage("connect", active.len() as u64);
    let probes = probe_all(run, &targets, &active).await;
    let mut probed: BTreeMap<String, (Target, Probe)> = BTreeMap::new();
    for (name, t, res) in probes {
        match res {
            Ok(p) => {
                if let Some(rec) = run.state.nodes.get_mut(&name) {
                    if rec.host_key.is_none() {
                        rec.host_key = run.pool.observed_host_key(&t);
                    }
                    rec.os = Some(p.os.clone());
                    rec.docker_version = p.docker_server.clone();
                    rec.phase = rec.phase.clone().max(NodePhase::Reachable);
                }
                let pinned = run.state.nodes.get(&name).and_then(|r| r.host_key.clone());
                probed.insert(
                    name,
                    (
                        Target {
                            pinned_key: pinned,
                            ..t
                        },
                        p,
                    ),
                );
            }
            Err(e) => {
                run.progress.node_done(&name, false, &e.to_string());
                report.failed.insert(name, e.to_string());
            }
        }
    }
    run.save()?;
    fault_point("after-connect");

    // Docker where it does not answer.
    let need_docker: Vec<String> = probed
        .iter()
        .filter(|(_, (_, p))| p.docker_server.is_none())
        .map(|(n, _)| n.clone())
        .collect();
    if !need_docker.is_empty() {
        run.progress.stage("docker", need_docker.len() as u64);
        let pool = run.pool.clone();
        let jobs: Vec<(String, Target, Probe)> = need_docker
            .iter()
            .filter_map(|n| {
                probed
                    .get(n)
                    .map(|(t, p)| (n.clone(), t.clone(), p.clone()))
            })
            .collect();
        for (n, _, p) in &jobs {
            run.j(
                "install-docker",
                n,
                Phase::Intent,
                json!({"os": p.os.pretty_name}),
            )?;
        }
        let progress = run.progress;
        let results: Vec<(String, bool, std::result::Result<String, String>)> = pool
            .fan_out(jobs, |(name, t, p)| {
                let pool = pool.clone();
                async move {
                    let was_installed = p.docker_installed;
                    progress.node(
                        &name,
                        if was_installed {
                            "starting Docker"
                        } else {
                            "installing Docker"
                        },
                    );
                    let r = install_docker(&pool, &t, &p, bp).await;
                    (name, was_installed, r)
                }
            })
            .await;
        for (name, was_installed, r) in results {
            match r {
                Ok(version) => {
                    run.progress
                        .node_done(&name, true, &format!("Docker {version}"));
                    run.j(
                        "install-docker",
                        &name,
                        Phase::Done,
                        json!({"version": version}),
                    )?;
                    if let Some(rec) = run.state.nodes.get_mut(&name) {
                        rec.docker_version = Some(version.clone());
                        rec.phase = rec.phase.clone().max(NodePhase::DockerReady);
                    }
                    if let Some((t, p)) = probed.get_mut(&name) {
                        p.docker_server = Some(version);
                        // A restarted node's daemon brings its swarm membership back from disk:
                        // look again, so the cluster step sees it as a member, not a stranger.
                        if was_installed {
                            if let Ok(again) = probe(&run.pool, t, Duration::from_secs(30)).await {
                                *p = again;
                            }
                        }
                    }
                    if was_installed {
                        report.docker_started.push(name)
                    } else {
                        report.docker_installed.push(name)
                    }
                }
                Err(e) => {
                    run.progress.node_done(&name, false, &e);
                    run.j("install-docker", &name, Phase::Failed, json!({"error": e}))?;
                    report.failed.insert(name.clone(), e);
                    probed.remove(&name);
                }
            }
        }
        run.save()?;
    }
    for (name, _) in probed.iter() {
        if let Some(rec) = run.state.nodes.get_mut(name) {
            rec.phase = rec.phase.clone().max(NodePhase::DockerReady);
        }
    }
    preload_stage(run, &mut probed, &mut report).await?;
    fault_point("after-docker");

    // Cluster.
    let cluster_nodes: Vec<ClusterNode> = cluster_view(run, &probed, &active);
    let orchestrator = crate::cluster::for_blueprint(bp, run.pool.clone());
    if let (Some(orch), false) = (&orchestrator, cluster_nodes.is_empty()) {
        if !cluster_nodes.iter().any(|n| n.role == Role::Manager) {
            report.failed.insert(
                "cluster".into(),
                format!("no reachable manager node: the {} cluster cannot be formed or extended this run", orch.kind()),
            );
        } else {
            run.progress.stage(orch.kind(), 1);
            run.progress
                .info(&format!("forming / checking the {} cluster", orch.kind()));
            run.j(
                "cluster-converge",
                "",
                Phase::Intent,
                json!({"nodes": cluster_nodes.iter().map(|n| &n.name).collect::<Vec<_>>()}),
            )?;
            match orch.converge(&cluster_nodes).await {
                Ok(mut r) => {
                    run.j(
                        "cluster-converge",
                        "",
                        Phase::Done,
                        json!({"joined": r.joined, "initialized_on": r.initialized_on}),
                    )?;
                    for (name, id) in &r.member_ids {
                        if let Some(rec) = run.state.nodes.get_mut(name) {
                            rec.cluster_id = Some(id.clone());
                            rec.phase = NodePhase::Ready;
                        }
                    }
                    if let Some(first) = &r.initialized_on {
                        run.state.cluster.bootstrap_node = Some(first.clone());
                    }
                    if r.cluster_id.is_some() {
                        run.state.cluster.cluster_id = r.cluster_id.clone();
                    }
                    if let Some(k) = r.kubeconfig.take() {
                        let path = run.home.deployment_dir(&bp.name)?.join("kubeconfig");
                        crate::state::write_atomic(&path, k.as_bytes()).map_err(|e| {
                            Error::Other(format!("writing {}: {e}", path.display()))
                        })?;
                        report.notes.push(format!(
                            "kubeconfig: {} (export KUBECONFIG=$(flotilla kubeconfig {}))",
                            path.display(),
                            bp.name
                        ));
                    }
                    run.state.cluster.routing_mesh = r.routing_mesh;
                    if r.routing_mesh == Some(false) {
                        report.notes.push(
                            "this kernel has no IPVS: Swarm's routing mesh and VIP load balancing do not work here; \
                             publish services with `--endpoint-mode dnsrr --publish mode=host,...`"
                                .into(),
                        );
                    }
                    report.cluster = Some(r);
                }
                Err(e) => {
                    run.j(
                        "cluster-converge",
                        "",
                        Phase::Failed,
                        json!({"error": e.to_string()}),
                    )?;
                    run.save()?;
                    return Err(e.into());
                }
            }
            run.save()?;
        }
    } else if bp.cluster == ClusterKind::None {
        for name in probed.keys() {
            if let Some(rec) = run.state.nodes.get_mut(name) {
                rec.phase = NodePhase::Ready;
            }
        }
    }
    fault_point("after-cluster");
    containers_stage(run, &probed, &active, &mut report).await?;
    if let (Some(orch), Some(wanted)) = (&orchestrator, &services) {
        services_stage(run, orch.as_ref(), &cluster_nodes, wanted, &mut report).await?;
    }
    if run.command == "up" {
        manager_stage(run, &probed, &mut report).await?;
    }

    // Scale in: newest first, out of the cluster, then the machine.
    if !plan.remove.is_empty() {
        scale_in(run, &plan.remove, &cluster_nodes).await?;
    }

    // Stale members of lost/replaced machines.
    if let (Some(orch), false) = (
        &orchestrator,
        plan.lost.is_empty() && plan.replace.is_empty(),
    ) {
        remove_stale_members(run, orch.as_ref(), &cluster_nodes).await;
    }

    report.outputs = render_outputs(run)?;
    run.state.outputs = report.outputs.clone();
    report.nodes = crate::engine::status::summaries(&run.state);
    report.changed = !plan.is_empty()
        || !report.docker_installed.is_empty()
        || !report.docker_started.is_empty()
        || !report.images_loaded.is_empty()
        || report
            .containers
            .values()
            .flatten()
            .any(|c| !c.ends_with("=unchanged"))
        || report.cluster.as_ref().is_some_and(ConvergeReport::changed)
        || report.services.iter().any(|s| s.ends_with("=removed"))
        || report
            .manager
            .as_ref()
            .is_some_and(|m| m["action"] == "installed");
    run.save()?;
    Ok(report)
}

/// `services:` through the cluster's managers (skipped, with a failure, when none answers).
async fn services_stage(
    run: &mut Run<'_>,
    orch: &dyn crate::cluster::Orchestrator,
    cluster_nodes: &[ClusterNode],
    wanted: &BTreeMap<String, String>,
    report: &mut UpReport,
) -> Result<()> {
    if wanted.is_empty() && run.state.services_deployed.is_empty() {
        return Ok(());
    }
    let managers: Vec<ClusterNode> = cluster_nodes
        .iter()
        .filter(|n| n.role == Role::Manager)
        .cloned()
        .collect();
    if managers.is_empty() {
        report.failed.insert(
            "services".into(),
            "no reachable manager node to deploy them through".into(),
        );
        return Ok(());
    }
    run.progress.stage(
        "services",
        (wanted.len() + run.state.services_deployed.len()) as u64,
    );
    let mut deployed = run.state.services_deployed.clone();
    let (done, failed) =
        super::services::converge(orch, &managers, run.bp, wanted, &mut deployed).await;
    run.state.services_deployed = deployed;
    run.j(
        "services",
        "",
        Phase::Done,
        json!({"done": done, "failed": failed}),
    )?;
    for line in &done {
        run.progress
            .node_done(line.split('=').next().unwrap_or(line), true, line);
    }
    report.services = done;
    report.failed.extend(failed);
    run.save()?;
    Ok(())
}

/// Installs the manager when the blueprint has a `manager:` section and none is installed;
/// an installed one is left alone (`flotilla manager upgrade|recover` change it).
async fn manager_stage(
    run: &mut Run<'_>,
    probed: &BTreeMap<String, (Target, Probe)>,
    report: &mut UpReport,
) -> Result<()> {
    if run.bp.manager.is_none() {
        return Ok(());
    }
    if let Some(m) = &run.state.manager {
        if run.state.nodes.contains_key(&m.node) {
            report.manager = Some(json!({"action": "present", "node": m.node, "image": m.image}));
            return Ok(());
        }
    }
    run.progress.stage("manager", 1);
    run.progress.info("installing the flotilla manager (image build on first use, then docker save | ssh docker load)");
    let targets: Vec<Target> = probed.values().map(|(t, _)| t.clone()).collect();
    let opts = crate::manager::InstallOptions::default();
    let pool = run.pool.clone();
    match crate::manager::install_locked(run.home, &mut run.state, run.bp, &pool, &targets, &opts)
        .await
    {
        Ok(r) => {
            run.j("manager", &r.node, Phase::Done, json!({"image": r.image}))?;
            run.progress.node_done(&r.node, true, "manager installed");
            report.manager = serde_json::to_value(&r).ok();
        }
        Err(e) => {
            run.j(
                "manager",
                "",
                Phase::Failed,
                json!({"error": e.to_string()}),
            )?;
            report.failed.insert("manager".into(), e.to_string());
        }
    }
    Ok(())
}

/// Copies what the provider reports about machines into their records.
fn apply_machines(state: &mut State, machines: &[flotilla_provider_core::NodeInfo]) {
    for m in machines {
        if let Some(rec) = state.nodes.get_mut(&m.name) {
            rec.machine_id = Some(m.id.clone());
            rec.private_ip = m.private_ip;
            rec.public_ip = m.public_ip;
            rec.ssh_port = m.ssh_port;
            rec.ssh_user = m.ssh_user.clone().unwrap_or_default();
            rec.phase = rec.phase.clone().max(NodePhase::Created);
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

async fn probe_all(
    run: &Run<'_>,
    targets: &[Target],
    active: &[String],
) -> Vec<(String, Target, std::result::Result<Probe, String>)> {
    let pool = run.pool.clone();
    let progress = run.progress;
    let boot = pool.settings().boot_timeout;
    pool.fan_out(
        targets.iter().filter(|t| active.contains(&t.node)).cloned(),
        |t| {
            let pool = pool.clone();
            async move {
                progress.node(&t.node, "connecting over SSH");
                let r = probe(&pool, &t, boot).await.map_err(|e| e.to_string());
                if let Ok(p) = &r {
                    progress.node_done(&t.node, true, &format!("{} reachable", p.os.pretty_name));
                }
                (t.node.clone(), t, r)
            }
        },
    )
    .await
}

fn cluster_view(
    run: &Run<'_>,
    probed: &BTreeMap<String, (Target, Probe)>,
    active: &[String],
) -> Vec<ClusterNode> {
    let mut v: Vec<ClusterNode> = probed
        .iter()
        .filter(|(n, (_, p))| active.contains(n) && p.docker_server.is_some())
        .filter_map(|(name, (t, p))| {
            let rec = run.state.nodes.get(name)?;
            let group = run.bp.group(&rec.group)?;
            Some(ClusterNode {
                name: name.clone(),
                role: rec.role,
                target: t.clone(),
                ip: rec
                    .private_ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| t.address.clone()),
                labels: group.labels.clone(),
                local: p.swarm.clone(),
            })
        })
        .collect();
    // Managers first (bootstrap on the oldest manager), then by name index.
    v.sort_by_key(|n| {
        (
            super::role_order(n.role),
            n.name
                .rsplit_once('-')
                .and_then(|(_, i)| i.parse::<u32>().ok())
                .unwrap_or(0),
            n.name.clone(),
        )
    });
    v
}

async fn scale_in(run: &mut Run<'_>, remove: &[String], cluster: &[ClusterNode]) -> Result<()> {
    let bp = run.bp;
    let user = default_user(bp);
    let managers: Vec<ClusterNode> = cluster
        .iter()
        .filter(|n| n.role == Role::Manager && !remove.contains(&n.name))
        .cloned()
        .collect();
    run.progress.stage("scale-in", remove.len() as u64);
    for name in remove {
        let Some(rec) = run.state.nodes.get(name).cloned() else {
            continue;
        };
        run.progress.node(name, "removing");
        run.j(
            "remove-node",
            name,
            Phase::Intent,
            json!({"machine": rec.machine_id}),
        )?;
        if let Some(orch) = crate::cluster::for_blueprint(bp, run.pool.clone()) {
            if let Some(t) = target_of(&rec, &user, bp.ssh.port) {
                let node = ClusterNode::bare(name, rec.role, t);
                orch.remove(&node, &managers, rec.cluster_id.as_deref())
                    .await?;
            }
        }
        fault_point("scale-in-after-leave");
        if let Some(id) = &rec.machine_id {
            run.provider
                .delete_nodes(&run.owner, std::slice::from_ref(id))
                .await?;
        }
        fault_point("scale-in-after-delete");
        run.state.nodes.remove(name);
        run.save()?;
        run.j("remove-node", name, Phase::Done, json!(null))?;
        run.progress.node_done(name, true, "removed");
    }
    Ok(())
}

/// Members that are down and belong to none of the deployment's nodes (their machine was lost or
/// replaced) are removed so the cluster's member list matches the state.
async fn remove_stale_members(
    run: &mut Run<'_>,
    orch: &dyn crate::cluster::Orchestrator,
    cluster: &[ClusterNode],
) {
    let managers: Vec<ClusterNode> = cluster
        .iter()
        .filter(|n| n.role == Role::Manager)
        .cloned()
        .collect();
    let Ok(members) = orch.members(&managers).await else {
        return;
    };
    let known: Vec<String> = run
        .state
        .nodes
        .values()
        .filter_map(|r| r.cluster_id.clone())
        .collect();
    for m in members
        .iter()
        .filter(|m| m.status != "ready" && !known.contains(&m.id))
    {
        match orch
            .remove_member(&managers, &m.id, m.role == "manager")
            .await
        {
            Ok(()) => run.progress.info(&format!(
                "removed stale {} member {} ({})",
                orch.kind(),
                m.hostname,
                m.id
            )),
            Err(e) => run.progress.info(&format!(
                "could not remove stale {} member {}: {e}",
                orch.kind(),
                m.hostname
            )),
        }
    }
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

fn render_outputs(run: &Run<'_>) -> Result<BTreeMap<String, String>> {
    outputs_for(run.bp, &run.state)
}

/// `docker.preload_images` on every reachable node, before any of them joins: a node that cannot
/// get the images is not joined (the cluster would schedule tasks there that cannot start).
async fn preload_stage(
    run: &mut Run<'_>,
    probed: &mut BTreeMap<String, (Target, Probe)>,
    report: &mut UpReport,
) -> Result<()> {
    if run.bp.docker.preload_images.is_empty() || probed.is_empty() {
        return Ok(());
    }
    let archives: Vec<Arc<nodes::LoadedArchive>> = nodes::read_preload_archives(run.bp)
        .map_err(Error::Other)?
        .into_iter()
        .map(Arc::new)
        .collect();
    run.progress.stage("images", probed.len() as u64);
    let pool = run.pool.clone();
    let progress = run.progress;
    let archives = &archives;
    let results: Vec<(String, std::result::Result<Vec<String>, String>)> = pool
        .fan_out(
            probed.iter().map(|(n, (t, _))| (n.clone(), t.clone())),
            |(name, t)| {
                let pool = pool.clone();
                async move {
                    let r = nodes::preload_images(&pool, &t, archives).await;
                    (name, r)
                }
            },
        )
        .await;
    for (name, r) in results {
        match r {
            Ok(tags) if tags.is_empty() => progress.node_done(&name, true, "images present"),
            Ok(tags) => {
                progress.node_done(&name, true, &format!("loaded {}", tags.join(", ")));
                run.j("preload-images", &name, Phase::Done, json!({"tags": tags}))?;
                report.images_loaded.insert(name, tags);
            }
            Err(e) => {
                progress.node_done(&name, false, &e);
                run.j("preload-images", &name, Phase::Failed, json!({"error": e}))?;
                report.failed.insert(name.clone(), e);
                probed.remove(&name);
            }
        }
    }
    Ok(())
}

/// One node, its SSH target and the workloads its group wants.
type NodeWorkloads<'a> = (
    String,
    Target,
    Vec<(&'a String, &'a crate::blueprint::ContainerSpec)>,
);

/// `containers:` on every reachable node of the groups each names; workloads no longer wanted on
/// a node are removed. Runs on every `up` (a cheap `docker inspect` per workload when unchanged),
/// and also where the blueprint has none, so removed entries go away.
async fn containers_stage(
    run: &mut Run<'_>,
    probed: &BTreeMap<String, (Target, Probe)>,
    active: &[String],
    report: &mut UpReport,
) -> Result<()> {
    let bp = run.bp;
    let had_any = run.state.containers_deployed;
    if bp.containers.is_empty() && !had_any {
        return Ok(());
    }
    let tarballs = super::containers::load_tarballs(bp)
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    let jobs: Vec<NodeWorkloads> = probed
        .iter()
        .filter(|(n, _)| active.contains(n))
        .filter_map(|(n, (t, _))| {
            let group = run.state.nodes.get(n)?.group.clone();
            let wanted = bp
                .containers
                .iter()
                .filter(|(_, c)| c.groups.contains(&group))
                .collect();
            Some((n.clone(), t.clone(), wanted))
        })
        .collect();
    if jobs.is_empty() {
        return Ok(());
    }
    run.progress.stage("containers", jobs.len() as u64);
    let pool = run.pool.clone();
    let progress = run.progress;
    let tarballs = &tarballs;
    let deployment = bp.name.clone();
    let deployment = &deployment;
    let results: Vec<(String, std::result::Result<Vec<String>, String>)> = pool
        .fan_out(jobs, |(name, t, wanted)| {
            let pool = pool.clone();
            async move {
                let r = super::containers::converge_node(&pool, &t, deployment, &wanted, tarballs)
                    .await;
                (name, r)
            }
        })
        .await;
    for (name, r) in results {
        match r {
            Ok(lines) => {
                progress.node_done(&name, true, &lines.join(", "));
                if lines.iter().any(|l| !l.ends_with("=unchanged")) {
                    run.j(
                        "containers",
                        &name,
                        Phase::Done,
                        json!({"containers": lines}),
                    )?;
                }
                if !lines.is_empty() {
                    report.containers.insert(name, lines);
                }
            }
            Err(e) => {
                progress.node_done(&name, false, &e);
                run.j("containers", &name, Phase::Failed, json!({"error": e}))?;
                report.failed.insert(name, e);
            }
        }
    }
    run.state.containers_deployed = !bp.containers.is_empty();
    run.save()?;
    Ok(())
}
