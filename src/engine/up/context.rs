//! The run context every stage works on: the blueprint, the provider, the SSH pool, the state
//! being converged, the mode (plan or apply), and what earlier stages hand to later ones.

use super::UpReport;
use crate::blueprint::Blueprint;
use crate::cluster::{ClusterNode, Orchestrator};
use crate::docker::Probe;
use crate::engine::plan::MachinePlan;
use crate::engine::{build_provider, journal, nodes};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::ssh::{SshPool, Target};
use crate::state::{Home, Journal, Phase, RunRecord, State, RUNS_KEPT};
use crate::util::now_rfc3339;
use flotilla_provider_core::{NodeInfo, Ownership, Provider};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a run may do. `plan` and `up` walk the same stages; a plan stage only looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read-only: no journal, no state writes, no provider or node changes. `probe` asks the
    /// existing nodes over SSH which of them need Docker or cluster work.
    Plan { probe: bool },
    /// Converge. `allow_delete`: machines may be deleted without asking (`--yes`).
    Apply { allow_delete: bool },
}

impl Mode {
    pub fn is_plan(self) -> bool {
        matches!(self, Mode::Plan { .. })
    }
}

/// Everything a stage reads and writes.
pub struct Ctx<'a> {
    pub bp: &'a Blueprint,
    pub home: &'a Home,
    pub provider: Arc<dyn Provider>,
    pub owner: Ownership,
    pub progress: &'a Progress,
    pub journal: Option<Journal>,
    /// This run's token (journal, run history, machine labels).
    pub run: String,
    pub state: State,
    pub pool: Arc<SshPool>,
    pub public_key: String,
    /// The verb recorded in the journal and the run history (`up`, `plan`, `scale`, `heal`).
    pub command: &'static str,
    pub mode: Mode,
    /// Group sizes set by `scale` (kept in the state); `None`: the blueprint's own counts.
    pub overrides: Option<BTreeMap<String, u32>>,
    pub report: UpReport,
    /// The stages' hand-over: what the provider reported, the machine plan, the nodes that stay
    /// (not being scaled in), the reachable ones with their probe, and the cluster's view.
    pub observed: Vec<NodeInfo>,
    pub plan: MachinePlan,
    pub active: Vec<String>,
    pub probed: BTreeMap<String, (Target, Probe)>,
    pub cluster_nodes: Vec<ClusterNode>,
    pub orchestrator: Option<Box<dyn Orchestrator>>,
    /// The rendered `services:` files (read before anything changes; `None` when this command
    /// does not deploy them).
    pub services: Option<BTreeMap<String, String>>,
    /// `plan`'s own folder for the ssh files it must not write into the deployment's (a fresh
    /// one per run: two plans at once, e.g. under `serve`, never share it); removed at the end.
    _scratch: Option<tempfile::TempDir>,
}

impl Ctx<'_> {
    /// Journals a step (a no-op in plan mode, which has no journal).
    pub fn j(
        &self,
        step: &str,
        target: &str,
        phase: Phase,
        detail: serde_json::Value,
    ) -> Result<()> {
        match &self.journal {
            Some(j) => journal(j, step, target, phase, detail),
            None => Ok(()),
        }
    }

    /// Saves the state (never in plan mode).
    pub fn save(&mut self) -> Result<()> {
        if self.mode.is_plan() {
            return Ok(());
        }
        self.state.updated_at = now_rfc3339();
        self.home.save(&self.state)?;
        Ok(())
    }

    /// Saves the state this run ends with: one entry in the deployment's history.
    pub fn save_final(&mut self) -> Result<()> {
        if self.mode.is_plan() {
            return Ok(());
        }
        self.state.updated_at = now_rfc3339();
        self.home.save_final(&self.state)?;
        Ok(())
    }

    /// Marks this run finished in the state's run history (kept to the last `RUNS_KEPT`).
    pub fn record_run(&mut self, outcome: &str) {
        let now = now_rfc3339();
        if let Some(r) = self.state.runs.iter_mut().find(|r| r.token == self.run) {
            r.finished_at = Some(now);
            r.outcome = Some(outcome.to_string());
        } else {
            self.state.runs.push(RunRecord {
                token: self.run.clone(),
                command: self.command.into(),
                started_at: now.clone(),
                finished_at: Some(now),
                outcome: Some(outcome.into()),
            });
        }
        let excess = self.state.runs.len().saturating_sub(RUNS_KEPT);
        self.state.runs.drain(..excess);
    }

    /// The members of `cluster_nodes` with the manager role.
    pub fn managers(&self) -> Vec<ClusterNode> {
        self.cluster_nodes
            .iter()
            .filter(|n| n.role == flotilla_provider_core::Role::Manager)
            .cloned()
            .collect()
    }
}

/// Loads (or starts) the state, opens the journal, finds or makes the SSH key and builds the
/// provider and the SSH pool — everything both modes need before the first stage.
pub async fn prepare<'a>(
    bp: &'a Blueprint,
    home: &'a Home,
    progress: &'a Progress,
    command: &'static str,
    mode: Mode,
) -> Result<Ctx<'a>> {
    let write = !mode.is_plan();
    let dir = if write {
        home.ensure_deployment_dir(&bp.name)?
    } else {
        home.deployment_dir(&bp.name)?
    };
    let mut state = load_state(bp, home)?;
    let run = crate::util::new_run_token();
    let journal = if write {
        Some(open_journal(&dir, &run, progress)?)
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
    let settings = nodes::ssh_settings(bp, &key_dir, &key);
    let pool = Arc::new(SshPool::new(settings)?);
    state.ssh_private_key = key.display().to_string();
    state.ssh_user = nodes::default_user(bp);
    Ok(Ctx {
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
        command,
        mode,
        overrides: None,
        report: UpReport {
            deployment: bp.name.clone(),
            ..Default::default()
        },
        observed: Vec::new(),
        plan: MachinePlan::default(),
        active: Vec::new(),
        probed: BTreeMap::new(),
        cluster_nodes: Vec::new(),
        orchestrator: None,
        services: None,
        _scratch: scratch,
    })
}

/// The recorded state, or a new one; the provider kind of a deployment never changes.
fn load_state(bp: &Blueprint, home: &Home) -> Result<State> {
    let state = home
        .load(&bp.name)?
        .unwrap_or_else(|| State::new(&bp.name, bp.provider.kind(), &now_rfc3339()));
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
    Ok(state)
}

/// Opens this run's journal, first telling what an earlier run left unfinished.
fn open_journal(dir: &std::path::Path, run: &str, progress: &Progress) -> Result<Journal> {
    if let Some(prev) = Journal::last_interrupted(dir) {
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
    Journal::open(dir, run).map_err(|source| Error::Journal {
        path: dir.join("journal.jsonl").display().to_string(),
        source,
    })
}
