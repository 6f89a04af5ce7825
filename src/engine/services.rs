//! `services:`: Swarm stacks and Kubernetes manifests handed to the cluster's own scheduler by
//! `up` (deployed every run: `docker stack deploy` and `kubectl apply` only change what
//! differs), removed when their entry goes, and removed by `down` on hosts that stay.

use crate::blueprint::{render_document, Blueprint, ServiceSpec};
use crate::cluster::{ClusterNode, Orchestrator};
use std::collections::BTreeMap;

/// The text handed to the scheduler: the file rendered with tera (`inputs.*`, `deployment`)
/// — parsed as YAML documents with placeholders, the values filled into the parsed tree (so a
/// value can never add a key to a compose file or a manifest) and written back as JSON
/// documents — or the inline definition as JSON (which YAML readers, compose and kubectl,
/// accept).
pub fn render(bp: &Blueprint, name: &str, s: &ServiceSpec) -> Result<String, String> {
    let at = format!("services.{name}");
    if let Some(def) = &s.definition {
        return serde_json::to_string_pretty(def).map_err(|e| format!("{at}.definition: {e}"));
    }
    let file = s
        .file
        .as_deref()
        .ok_or_else(|| format!("{at}: needs `file` or `definition`"))?;
    let path = bp
        .resolve_path(file)
        .map_err(|e| format!("{at}.file: {e}"))?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{at}.file: cannot read {}: {e}", path.display()))?;
    let mut ctx = tera::Context::new();
    ctx.insert("inputs", &bp.inputs);
    ctx.insert("deployment", &bp.name);
    let shown = path.display().to_string();
    let rendered = render_document(&shown, &text, &ctx).map_err(|(loc, msg)| {
        let at_line = loc.map(|l| format!(" line {}", l.line)).unwrap_or_default();
        format!("{at}.file {shown}{at_line}: {msg}")
    })?;
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&rendered.text)
        .map_err(|e| format!("{at}.file {shown}: not YAML once rendered: {e}"))?;
    let mut out = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let doc = rendered
            .fill(doc)
            .map_err(|e| format!("{at}.file {shown}: {e}"))?;
        out.push(serde_json::to_string_pretty(&doc).map_err(|e| format!("{at}: {e}"))?);
    }
    // The leading comment also makes kubectl read the stream as YAML documents.
    Ok(format!(
        "# {at} of {}, rendered by flotilla\n{}\n",
        bp.name,
        out.join("\n---\n")
    ))
}

/// Every entry rendered, or every problem (for `validate` and before `up` touches anything).
pub fn render_all(bp: &Blueprint) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut ok = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, s) in &bp.services {
        match render(bp, name, s) {
            Ok(t) => {
                ok.insert(name.clone(), t);
            }
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(ok)
    } else {
        Err(problems)
    }
}

/// Deploys the wanted entries and removes the ones deployed before that are no longer wanted.
/// `deployed` is updated as each step succeeds; returns `name=deployed|removed` lines and the
/// failures by entry.
pub async fn converge(
    orch: &dyn Orchestrator,
    managers: &[ClusterNode],
    bp: &Blueprint,
    wanted: &BTreeMap<String, String>,
    deployed: &mut BTreeMap<String, String>,
) -> (Vec<String>, BTreeMap<String, String>) {
    let mut done = Vec::new();
    let mut failed = BTreeMap::new();
    for (name, text) in wanted {
        let resolve = bp
            .services
            .get(name)
            .and_then(|s| s.resolve_image.as_deref());
        match orch.deploy_services(managers, name, text, resolve).await {
            Ok(()) => {
                deployed.insert(name.clone(), text.clone());
                done.push(format!("{name}=deployed"));
            }
            Err(e) => {
                failed.insert(format!("services.{name}"), e.to_string());
            }
        }
    }
    let gone: Vec<(String, String)> = deployed
        .iter()
        .filter(|(n, _)| !wanted.contains_key(*n))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    for (name, text) in gone {
        match orch.remove_services(managers, &name, &text).await {
            Ok(()) => {
                deployed.remove(&name);
                done.push(format!("{name}=removed"));
            }
            Err(e) => {
                failed.insert(format!("services.{name}"), e.to_string());
            }
        }
    }
    (done, failed)
}
