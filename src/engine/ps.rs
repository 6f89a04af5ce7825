//! `flotilla ps`: every container on every node of a deployment, with the tool that owns it —
//! flotilla (its labels), a Swarm service or stack, Kubernetes, Mesos — or "unmanaged"; and
//! `stop`/`kill` of one of them (flotilla only changes what it created unless told otherwise).

use super::{nodes, recorded_blueprint};
use crate::error::{Error, Result};
use crate::ssh::shell_quote;
use crate::state::Home;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContainerRow {
    pub node: String,
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub status: String,
    /// flotilla | swarm | kubernetes | mesos | unmanaged
    pub owner: String,
    /// What within the owner: the swarm service (and stack), the pod, flotilla's component.
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct PsReport {
    pub deployment: String,
    pub containers: Vec<ContainerRow>,
    /// Nodes that could not be asked, and why.
    pub unreachable: BTreeMap<String, String>,
}

/// `docker ps -a` with the labels, one JSON object per line.
const PS: &str = "docker ps -a --no-trunc --format '{{json .}}'";

#[derive(serde::Deserialize)]
struct DockerPsLine {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Names")]
    names: String,
    #[serde(rename = "Image")]
    image: String,
    #[serde(rename = "State", default)]
    state: String,
    #[serde(rename = "Status", default)]
    status: String,
    #[serde(rename = "Labels", default)]
    labels: String,
}

/// `k=v,k2=v2` as `docker ps` prints labels (values may not contain commas reliably; keys are
/// what matters here).
fn parse_labels(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// Who owns a container, judged by the labels and names each tool gives its containers.
pub fn owner_of(name: &str, labels: &BTreeMap<String, String>) -> (String, String) {
    if labels.keys().any(|k| k.starts_with("io.flotilla.")) {
        let what = labels
            .get("io.flotilla.component")
            .cloned()
            .unwrap_or_else(|| name.to_string());
        return ("flotilla".into(), what);
    }
    for kind in crate::kinds::clusters() {
        if let Some(detail) = kind.container_detail(name, labels) {
            return (kind.kind().into(), detail);
        }
    }
    ("unmanaged".into(), String::new())
}

pub fn parse_ps(node: &str, out: &str) -> Vec<ContainerRow> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<DockerPsLine>(l.trim()).ok())
        .map(|c| {
            let labels = parse_labels(&c.labels);
            let (owner, detail) = owner_of(&c.names, &labels);
            ContainerRow {
                node: node.to_string(),
                id: c.id.chars().take(12).collect(),
                name: c.names,
                image: c.image,
                state: c.state,
                status: c.status,
                owner,
                detail,
            }
        })
        .collect()
}

/// A deployment opened for read-only SSH: its state, a pool over its recorded nodes, and the
/// scratch folder that keeps the ssh files out of the deployment's own.
struct Opened {
    state: crate::state::State,
    pool: std::sync::Arc<crate::ssh::SshPool>,
    targets: Vec<crate::ssh::Target>,
    _scratch: tempfile::TempDir,
}

fn open(home: &Home, name: &str) -> Result<Opened> {
    let state = home.load_existing(name)?;
    let bp = recorded_blueprint(&state)?;
    let dir = home.deployment_dir(name)?;
    let scratch = tempfile::tempdir().map_err(|e| Error::Other(e.to_string()))?;
    let (pool, targets) = nodes::pool_for_recorded(
        &bp,
        &state,
        &dir,
        Duration::from_secs(5),
        Some(scratch.path()),
    )?;
    Ok(Opened {
        state,
        pool,
        targets,
        _scratch: scratch,
    })
}

async fn list(o: &Opened, name: &str, only_node: Option<&str>) -> Result<PsReport> {
    if let Some(n) = only_node {
        if !o.state.nodes.contains_key(n) {
            return Err(unknown_node(&o.state, name, n));
        }
    }
    let mut report = PsReport {
        deployment: name.to_string(),
        containers: Vec::new(),
        unreachable: BTreeMap::new(),
    };
    for t in o
        .targets
        .iter()
        .filter(|t| only_node.is_none_or(|n| n == t.node))
    {
        match o
            .pool
            .run_ok(t, "docker ps", PS, Some(Duration::from_secs(60)))
            .await
        {
            Ok(out) => report.containers.extend(parse_ps(&t.node, &out)),
            Err(e) => {
                report.unreachable.insert(t.node.clone(), e.to_string());
            }
        }
    }
    Ok(report)
}

pub async fn ps(home: &Home, name: &str, only_node: Option<&str>) -> Result<PsReport> {
    let o = open(home, name)?;
    let report = list(&o, name, only_node).await;
    o.pool.close_all().await;
    report
}

fn unknown_node(state: &crate::state::State, deployment: &str, node: &str) -> Error {
    let names: Vec<&str> = state.nodes.keys().map(String::as_str).collect();
    Error::Usage(format!(
        "deployment `{deployment}` has no node `{node}`; nodes: {}",
        names.join(", ")
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Stop,
    Kill,
}

impl Signal {
    /// The docker verb.
    pub fn verb(self) -> &'static str {
        match self {
            Signal::Stop => "stop",
            Signal::Kill => "kill",
        }
    }
}

/// Stops or kills one container on one node. Containers flotilla did not create need `force`
/// (the CLI's `--yes` or a confirmation), because their owner may restart or reschedule them.
pub async fn signal(
    home: &Home,
    deployment: &str,
    node: &str,
    container: &str,
    how: Signal,
    force: bool,
) -> Result<ContainerRow> {
    let o = open(home, deployment)?;
    let r = signal_opened(&o, deployment, node, container, how, force).await;
    o.pool.close_all().await;
    r
}

async fn signal_opened(
    o: &Opened,
    deployment: &str,
    node: &str,
    container: &str,
    how: Signal,
    force: bool,
) -> Result<ContainerRow> {
    let report = list(o, deployment, Some(node)).await?;
    if let Some(why) = report.unreachable.get(node) {
        return Err(Error::Other(format!("{node}: {why}")));
    }
    let row = report
        .containers
        .iter()
        .find(|c| c.name == container || c.id.starts_with(container))
        .cloned()
        .ok_or_else(|| {
            Error::Usage(format!(
                "no container `{container}` on {node}; `flotilla ps {deployment} --node {node}` lists them"
            ))
        })?;
    if row.owner != "flotilla" && !force {
        let hint = crate::kinds::cluster(&row.owner)
            .map(|k| k.spec().after_stop())
            .unwrap_or_default();
        return Err(Error::Usage(format!(
            "`{}` on {node} was not created by flotilla (owner: {}{}){hint}; pass --yes to {} it anyway",
            row.name,
            row.owner,
            if row.detail.is_empty() {
                String::new()
            } else {
                format!(", {}", row.detail)
            },
            how.verb()
        )));
    }
    let t = o
        .targets
        .iter()
        .find(|t| t.node == node)
        .ok_or_else(|| unknown_node(&o.state, deployment, node))?;
    let verb = how.verb();
    o.pool
        .run_ok(
            t,
            &format!("docker {verb}"),
            &format!("docker {verb} {} >/dev/null", shell_quote(&row.id)),
            Some(Duration::from_secs(60)),
        )
        .await?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_come_from_labels_and_names() {
        let out = concat!(
            r#"{"ID":"aaaaaaaaaaaaaaaa","Names":"flotilla-mesos-agent","Image":"m:1","State":"running","Status":"Up 2 minutes","Labels":"io.flotilla.spec=-e X m:1"}"#,
            "\n",
            r#"{"ID":"bbbbbbbbbbbbbbbb","Names":"web.1.xyz","Image":"tiny:1","State":"running","Status":"Up","Labels":"com.docker.swarm.service.name=web,com.docker.stack.namespace=shop,com.docker.swarm.task.id=t"}"#,
            "\n",
            r#"{"ID":"cccccccccccccccc","Names":"k8s_app_pod","Image":"x","State":"exited","Status":"Exited (0)","Labels":"io.kubernetes.pod.name=pod,io.kubernetes.pod.namespace=kube-system"}"#,
            "\n",
            r#"{"ID":"dddddddddddddddd","Names":"by-hand","Image":"tiny:1","State":"running","Status":"Up","Labels":""}"#,
            "\n",
            "not json\n"
        );
        let rows = parse_ps("n1", out);
        let owners: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.owner.as_str(), r.detail.as_str()))
            .collect();
        assert_eq!(
            owners,
            vec![
                ("flotilla", "flotilla-mesos-agent"),
                ("swarm", "service web (stack shop)"),
                ("kubernetes", "pod kube-system/pod"),
                ("unmanaged", ""),
            ]
        );
        assert_eq!(rows[0].id, "aaaaaaaaaaaa");
        assert_eq!(rows[3].node, "n1");
    }
}
