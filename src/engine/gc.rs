//! `flotilla gc`: the safety net for throwaway environments. Deletes deployments past their
//! expiry (through `down`, under the deployment lock), then searches providers for resources that
//! carry flotilla's labels but that no state accounts for (a killed CI job, a lost state file) and
//! deletes those once they are older than the grace period. Nothing without flotilla's `managed`
//! label is ever listed, so nothing else can be deleted.

use super::{build_provider, recorded_blueprint};
use crate::blueprint::Blueprint;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::state::{Home, LockError, State};
use flotilla_provider_core::{ManagedResource, Provider, ResourceScope};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Deletes of one scope in flight at once, per deployment.
const DELETE_PARALLELISM: usize = 8;

pub struct GcOptions {
    pub dry_run: bool,
    pub grace: Duration,
    /// Deployment-name globs (`*` only); empty: every deployment.
    pub matches: Vec<String>,
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

impl GcOptions {
    fn wants(&self, deployment: &str) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| glob_match(m, deployment))
    }
}

/// One thing `gc` deleted, would delete, kept or failed to delete, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GcItem {
    /// `deployment`, or the provider's kind of resource (`container`, `instance`, ...).
    pub what: String,
    pub name: String,
    pub deployment: String,
    pub provider: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Deleted (or, with `--dry-run`, what would be).
    pub deleted: Vec<GcItem>,
    /// Labelled resources left alone on purpose (young, locked, not yet expired).
    pub kept: Vec<GcItem>,
    /// What could not be deleted this time; the next run tries again.
    pub failed: Vec<GcItem>,
    /// Providers searched for orphans (kind and where).
    pub searched: Vec<String>,
}

fn item(what: &str, name: &str, deployment: &str, provider: &str, reason: String) -> GcItem {
    GcItem {
        what: what.into(),
        name: name.into(),
        deployment: deployment.into(),
        provider: provider.into(),
        reason,
        error: None,
    }
}

fn ago(secs: i64) -> String {
    crate::util::human_duration(Duration::from_secs(secs.unsigned_abs()))
}

/// A `--provider-config` file: a `provider:` section (as in a blueprint), loaded through the
/// blueprint checks so its errors name the file and field.
pub fn provider_only_blueprint(path: &std::path::Path) -> Result<Blueprint> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let wrapped = format!(
        "{text}\nname: gc\ncluster:\n  kind: none\ngroups:\n  gc:\n    role: worker\n    count: 1\n"
    );
    Ok(crate::blueprint::load_str(&wrapped, path, &[])?)
}

/// What the recorded state says about a deployment, for telling its resources from orphans.
struct Known {
    nodes: BTreeSet<String>,
    machines: BTreeSet<String>,
    /// Runs that started and did not finish (a crashed or a running one).
    unfinished_runs: BTreeSet<String>,
}

impl Known {
    fn of(s: &State) -> Self {
        Self {
            nodes: s.nodes.keys().cloned().collect(),
            machines: s
                .nodes
                .values()
                .filter_map(|n| n.machine_id.as_ref().map(|m| m.0.clone()))
                .collect(),
            unfinished_runs: s
                .runs
                .iter()
                .filter(|r| r.finished_at.is_none())
                .map(|r| r.token.clone())
                .collect(),
        }
    }
}

/// Decides, for one deployment's resources on one provider, which are orphans. Pure: the unit
/// tests below cover every rule.
fn classify(
    deployment: &str,
    resources: &[ManagedResource],
    known: Option<&Known>,
    lock_holder: Option<String>,
    grace: Duration,
    provider: &str,
) -> (Vec<(ManagedResource, GcItem)>, Vec<GcItem>) {
    let keep =
        |r: &ManagedResource, reason: String| item(&r.kind, &r.name, deployment, provider, reason);
    let grace_secs = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    let age = |r: &ManagedResource| {
        r.created_at
            .as_deref()
            .and_then(crate::util::seconds_until)
            .map(|s| -s)
    };
    if let Some(h) = lock_holder {
        let kept = resources
            .iter()
            .map(|r| keep(r, format!("a run holds the deployment's lock ({h})")))
            .collect();
        return (Vec::new(), kept);
    }
    let mut delete = Vec::new();
    let mut kept = Vec::new();
    match known {
        Some(k) => {
            for r in resources {
                let belongs = match r.scope {
                    ResourceScope::Deployment => true,
                    ResourceScope::Machine => {
                        k.machines.contains(&r.id)
                            || r.node.as_ref().is_some_and(|n| k.nodes.contains(n))
                    }
                    ResourceScope::NodeAttached => {
                        r.node.as_ref().is_none_or(|n| k.nodes.contains(n))
                    }
                };
                if belongs {
                    continue;
                }
                let run = r.run_token.clone().unwrap_or_default();
                if k.unfinished_runs.contains(&run) {
                    kept.push(keep(
                        r,
                        format!("created by run {run}, which has not finished"),
                    ));
                    continue;
                }
                match age(r) {
                    Some(a) if a >= grace_secs => delete.push((
                        r.clone(),
                        keep(
                            r,
                            format!(
                                "the state of `{deployment}` has no node {} (run {run}); created {} ago",
                                r.node.as_deref().unwrap_or("?"),
                                ago(a)
                            ),
                        ),
                    )),
                    Some(a) => kept.push(keep(
                        r,
                        format!("not in the state, but only {} old (grace {})", ago(a), ago(grace_secs)),
                    )),
                    None => kept.push(keep(r, "not in the state; its age is unknown".into())),
                }
            }
        }
        None => {
            // No state: the resources' own expiry labels speak for the deployment (the latest
            // one, as `extend` may have pushed it after some were made).
            let expiry = resources
                .iter()
                .filter_map(|r| r.expires_at.clone())
                .filter_map(|e| crate::util::seconds_until(&e).map(|s| (s, e)))
                .max_by_key(|(s, _)| *s);
            match expiry {
                Some((left, at)) if left > 0 => {
                    for r in resources {
                        kept.push(keep(
                            r,
                            format!(
                                "no state, but its labels say it expires at {at} (in {})",
                                ago(left)
                            ),
                        ));
                    }
                }
                Some((left, at)) => {
                    for r in resources {
                        delete.push((
                            r.clone(),
                            keep(
                                r,
                                format!(
                                    "no state, and its labels say it expired at {at} ({} ago)",
                                    ago(left)
                                ),
                            ),
                        ));
                    }
                }
                None => {
                    for r in resources {
                        match age(r) {
                            Some(a) if a >= grace_secs => delete.push((
                                r.clone(),
                                keep(
                                    r,
                                    format!(
                                        "no state for deployment `{deployment}`; created {} ago",
                                        ago(a)
                                    ),
                                ),
                            )),
                            Some(a) => kept.push(keep(
                                r,
                                format!(
                                    "no state, but only {} old (grace {})",
                                    ago(a),
                                    ago(grace_secs)
                                ),
                            )),
                            None => kept.push(keep(r, "no state; its age is unknown".into())),
                        }
                    }
                    // A network or security group stays while anything of the deployment does.
                    if !kept.is_empty() {
                        let (stay, go): (Vec<_>, Vec<_>) = delete
                            .into_iter()
                            .partition(|(r, _)| r.scope == ResourceScope::Deployment);
                        delete = go;
                        kept.extend(stay.into_iter().map(|(r, _)| {
                            keep(&r, "shared by resources of the deployment that stay".into())
                        }));
                    }
                }
            }
        }
    }
    delete.sort_by_key(|(r, _)| r.scope);
    (delete, kept)
}

/// Runs the collection. `extra` are blueprints whose providers are searched besides the ones of
/// recorded deployments.
pub async fn gc(home: &Home, extra: &[Blueprint], opts: &GcOptions) -> Result<GcReport> {
    let mut report = GcReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut seen = gather(home, extra, opts, &mut report)?;
    collect_expired(home, &mut seen.states, opts, &mut report).await;
    for bp in seen.providers.values() {
        collect_orphans(home, bp, &seen, opts, &mut report).await?;
    }
    Ok(report)
}

/// What gc looks at: the providers to search (every recorded deployment's, and the ones named
/// on the command line, each place once), the readable states, and the deployments whose state
/// exists but cannot be read (their resources are never orphans).
struct Gathered {
    providers: BTreeMap<String, Blueprint>,
    states: BTreeMap<String, State>,
    unreadable: std::collections::BTreeSet<String>,
}

fn gather(
    home: &Home,
    extra: &[Blueprint],
    opts: &GcOptions,
    report: &mut GcReport,
) -> Result<Gathered> {
    let mut seen = Gathered {
        providers: BTreeMap::new(),
        states: BTreeMap::new(),
        unreadable: Default::default(),
    };
    for bp in extra {
        seen.providers
            .entry(bp.provider.gc_scope())
            .or_insert_with(|| bp.clone());
    }
    for name in home.list()? {
        if !opts.wants(&name) {
            continue;
        }
        match home.load_existing(&name) {
            Ok(s) => {
                if let Ok(bp) = recorded_blueprint(&s) {
                    seen.providers.entry(bp.provider.gc_scope()).or_insert(bp);
                }
                seen.states.insert(name, s);
            }
            Err(e) => {
                seen.unreadable.insert(name.clone());
                report.failed.push(GcItem {
                    error: Some(e.to_string()),
                    ..item(
                        "deployment",
                        &name,
                        &name,
                        "",
                        "its state cannot be read".into(),
                    )
                });
            }
        }
    }
    Ok(seen)
}

/// Expired deployments go the same path as `down`.
async fn collect_expired(
    home: &Home,
    states: &mut BTreeMap<String, State>,
    opts: &GcOptions,
    report: &mut GcReport,
) {
    for (name, s) in states.clone() {
        let Some(at) = s.expires_at.clone() else {
            continue;
        };
        let Some(left) = crate::util::seconds_until(&at).filter(|l| *l <= 0) else {
            continue;
        };
        let why = format!("expired at {at} ({} ago)", ago(left));
        let it = item("deployment", &name, &name, &s.provider, why);
        if opts.dry_run {
            report.deleted.push(it);
            continue;
        }
        match super::down::down(home, &name, &Progress::new(true), None).await {
            Ok(_) => {
                states.remove(&name);
                report.deleted.push(it);
            }
            Err(Error::Locked(LockError::Held { holder, .. })) => {
                let holder = holder
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "holder unknown".into());
                report.failed.push(GcItem {
                    error: Some(format!(
                        "a run holds its lock ({holder}); the next gc tries again"
                    )),
                    ..it
                })
            }
            Err(e) => report.failed.push(GcItem {
                error: Some(e.to_string()),
                ..it
            }),
        }
    }
}

/// Orphans on one provider: what it lists with flotilla's labels, judged per deployment.
async fn collect_orphans(
    home: &Home,
    bp: &Blueprint,
    seen: &Gathered,
    opts: &GcOptions,
    report: &mut GcReport,
) -> Result<()> {
    let label = bp.provider.gc_label();
    let unsearchable = |e: String| GcItem {
        error: Some(e),
        ..item("provider", &label, "", &label, "cannot be searched".into())
    };
    let provider: Arc<dyn Provider> = match build_provider(bp, "").await {
        Ok(p) => p,
        Err(e) => {
            report.failed.push(unsearchable(e.to_string()));
            return Ok(());
        }
    };
    let listed = match provider.managed_resources().await {
        Ok(Some(l)) => l,
        Ok(None) => return Ok(()),
        Err(e) => {
            report.failed.push(unsearchable(e.to_string()));
            return Ok(());
        }
    };
    report.searched.push(label.clone());
    let mut by_deployment: BTreeMap<String, Vec<ManagedResource>> = BTreeMap::new();
    for r in listed.into_iter().filter(|r| opts.wants(&r.deployment)) {
        by_deployment
            .entry(r.deployment.clone())
            .or_default()
            .push(r);
    }
    for (dep, resources) in by_deployment {
        let kept_because = if seen.unreadable.contains(&dep) {
            Some("its deployment's state exists but cannot be read (fix or restore it; gc never treats it as orphaned)")
        } else if !crate::names::is_valid(crate::names::NameKind::Deployment, &dep) {
            Some("its deployment label is not a valid deployment name")
        } else {
            None
        };
        if let Some(why) = kept_because {
            let kept = resources
                .iter()
                .map(|r| item(&r.kind, &r.name, &dep, &label, why.to_string()));
            report.kept.extend(kept);
            continue;
        }
        let known = seen.states.get(&dep).map(Known::of);
        let holder = home
            .backend()
            .lock_status(&dep)
            .ok()
            .flatten()
            .map(|l| l.holder.to_string());
        let (delete, kept) = classify(&dep, &resources, known.as_ref(), holder, opts.grace, &label);
        report.kept.extend(kept);
        if delete.is_empty() {
            continue;
        }
        if opts.dry_run {
            report.deleted.extend(delete.into_iter().map(|(_, it)| it));
            continue;
        }
        delete_locked(home, &dep, &provider, delete, report).await?;
    }
    Ok(())
}

/// Deletes one deployment's orphans under its lock (a run that starts now waits for gc, and gc
/// never deletes under a run): scope by scope (machines, what hangs on them, then what they
/// share), each scope's deletes in parallel — a cloud takes tens of seconds per terminate.
async fn delete_locked(
    home: &Home,
    dep: &str,
    provider: &Arc<dyn Provider>,
    delete: Vec<(ManagedResource, GcItem)>,
    report: &mut GcReport,
) -> Result<()> {
    let had_state = home.exists(dep)?;
    let lock = match home.lock(dep, "gc", None) {
        Ok(l) => l,
        Err(e) => {
            for (_, it) in delete {
                report.failed.push(GcItem {
                    error: Some(format!("{e}; the next gc tries again")),
                    ..it
                });
            }
            return Ok(());
        }
    };
    let mut delete = delete.into_iter().peekable();
    while let Some(scope) = delete.peek().map(|(r, _)| r.scope) {
        let mut batch = Vec::new();
        while let Some(next) = delete.next_if(|(r, _)| r.scope == scope) {
            batch.push(next);
        }
        let results: Vec<_> = stream::iter(batch)
            .map(|(r, it)| async move { (provider.delete_managed(&r).await, it) })
            .buffer_unordered(DELETE_PARALLELISM)
            .collect()
            .await;
        for (result, it) in results {
            match result {
                Ok(()) => report.deleted.push(it),
                Err(e) => report.failed.push(GcItem {
                    error: Some(e.to_string()),
                    ..it
                }),
            }
        }
    }
    drop(lock);
    if !had_state && !home.exists(dep)? {
        // The lock left a folder for a deployment that has no state: tidy it.
        if let Ok(dir) = home.deployment_dir(dep) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_config_file_loads_and_its_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = dir.path().join("docker.yaml");
        std::fs::write(&ok, "provider:\n  kind: docker\n  subnet: 10.198.9.0/24\n").expect("write");
        let bp = provider_only_blueprint(&ok).expect("a provider section is enough");
        assert_eq!(bp.provider.kind(), "docker");
        let bad = dir.path().join("ec2.yaml");
        std::fs::write(&bad, "provider:\n  kind: ec2\n  region: us-east-1\n").expect("write");
        let e = provider_only_blueprint(&bad)
            .expect_err("ec2 needs an ami")
            .to_string();
        assert!(e.contains("ec2.yaml") && e.contains("ami"), "{e}");
    }

    fn res(
        kind: &str,
        node: Option<&str>,
        scope: ResourceScope,
        age_secs: i64,
        expires: Option<i64>,
    ) -> ManagedResource {
        let at = |offset: i64| {
            jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + offset)
                .expect("time")
                .to_string()
        };
        ManagedResource {
            kind: kind.into(),
            id: format!("{kind}-{}", node.unwrap_or("shared")),
            name: format!("{kind}-{}", node.unwrap_or("shared")),
            deployment: "d".into(),
            scope,
            node: node.map(String::from),
            run_token: Some("run-1".into()),
            created_at: Some(at(-age_secs)),
            expires_at: expires.map(at),
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn globs_match_prefixes_suffixes_and_middles() {
        assert!(glob_match("ci-*", "ci-nightly"));
        assert!(!glob_match("ci-*", "prod"));
        assert!(glob_match("*-tmp", "pr-12-tmp"));
        assert!(glob_match("a*b*c", "a-x-b-y-c"));
        assert!(!glob_match("a*b*c", "a-x-c"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("*", "anything"));
    }

    #[test]
    fn no_state_old_resources_go_and_young_ones_stay_with_their_network() {
        let rs = vec![
            res("container", Some("a"), ResourceScope::Machine, 7200, None),
            res("container", Some("b"), ResourceScope::Machine, 60, None),
            res("network", None, ResourceScope::Deployment, 7200, None),
        ];
        let (delete, kept) = classify("d", &rs, None, None, HOUR, "docker");
        assert_eq!(
            delete
                .iter()
                .map(|(r, _)| r.name.as_str())
                .collect::<Vec<_>>(),
            ["container-a"]
        );
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept
            .iter()
            .any(|k| k.name == "network-shared" && k.reason.contains("shared")));
    }

    #[test]
    fn no_state_and_all_old_deletes_machines_before_the_network() {
        let rs = vec![
            res("network", None, ResourceScope::Deployment, 7200, None),
            res("volume", Some("a"), ResourceScope::NodeAttached, 7200, None),
            res("container", Some("a"), ResourceScope::Machine, 7200, None),
        ];
        let (delete, kept) = classify("d", &rs, None, None, HOUR, "docker");
        assert!(kept.is_empty());
        let order: Vec<&str> = delete.iter().map(|(r, _)| r.kind.as_str()).collect();
        assert_eq!(order, ["container", "volume", "network"]);
    }

    #[test]
    fn expiry_labels_decide_without_state_the_latest_one_wins() {
        let future = vec![
            res(
                "container",
                Some("a"),
                ResourceScope::Machine,
                7200,
                Some(-60),
            ),
            res(
                "container",
                Some("b"),
                ResourceScope::Machine,
                7200,
                Some(600),
            ),
        ];
        let (delete, kept) = classify("d", &future, None, None, HOUR, "docker");
        assert!(delete.is_empty(), "extended: the later expiry counts");
        assert_eq!(kept.len(), 2);
        let past = vec![res(
            "container",
            Some("a"),
            ResourceScope::Machine,
            30,
            Some(-5),
        )];
        let (delete, _) = classify("d", &past, None, None, HOUR, "docker");
        assert_eq!(
            delete.len(),
            1,
            "expired by label: gone even inside the grace period"
        );
        assert!(delete[0].1.reason.contains("expired"));
    }

    #[test]
    fn a_held_lock_keeps_everything() {
        let rs = vec![res(
            "container",
            Some("a"),
            ResourceScope::Machine,
            7200,
            Some(-60),
        )];
        let (delete, kept) = classify("d", &rs, None, Some("pid 7 on h".into()), HOUR, "docker");
        assert!(delete.is_empty());
        assert!(kept[0].reason.contains("lock"));
    }

    #[test]
    fn with_state_only_unrecorded_old_machines_of_finished_runs_go() {
        let known = Known {
            nodes: ["a".to_string()].into(),
            machines: BTreeSet::new(),
            unfinished_runs: BTreeSet::new(),
        };
        let rs = vec![
            res("container", Some("a"), ResourceScope::Machine, 7200, None),
            res("volume", Some("a"), ResourceScope::NodeAttached, 7200, None),
            res("container", Some("z"), ResourceScope::Machine, 7200, None),
            res("container", Some("y"), ResourceScope::Machine, 10, None),
            res("network", None, ResourceScope::Deployment, 7200, None),
        ];
        let (delete, kept) = classify("d", &rs, Some(&known), None, HOUR, "docker");
        assert_eq!(
            delete
                .iter()
                .map(|(r, _)| r.name.as_str())
                .collect::<Vec<_>>(),
            ["container-z"]
        );
        assert_eq!(
            kept.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
            ["container-y"]
        );
        let running = Known {
            unfinished_runs: ["run-1".to_string()].into(),
            ..known
        };
        let (delete, kept) = classify("d", &rs, Some(&running), None, HOUR, "docker");
        assert!(delete.is_empty(), "a run in progress owns what it made");
        assert_eq!(kept.len(), 2);
    }
}
