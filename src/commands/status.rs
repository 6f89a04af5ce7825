use crate::engine::status::{status, NodeSummary};
use crate::error::Result;
use crate::state::Home;

pub fn print_nodes(nodes: &[NodeSummary]) {
    if nodes.is_empty() {
        return;
    }
    crate::say!(
        "  {:<16} {:<8} {:<16} {:<12} {:<10}",
        "NODE",
        "ROLE",
        "ADDRESS",
        "PHASE",
        "DOCKER"
    );
    for n in nodes {
        crate::say!(
            "  {:<16} {:<8} {:<16} {:<12} {:<10}",
            n.name,
            n.role,
            n.public_ip
                .clone()
                .or(n.private_ip.clone())
                .unwrap_or_default(),
            n.phase,
            n.docker_version.clone().unwrap_or_default()
        );
    }
}

pub async fn run(home: &Home, deployment: Option<&str>, json: bool, probe: bool) -> Result<i32> {
    let names = match deployment {
        Some(d) => vec![d.to_string()],
        None => home.list()?,
    };
    let mut reports = Vec::new();
    for n in &names {
        reports.push(status(home, n, probe).await?);
    }
    if json {
        if deployment.is_some() {
            if let Some(r) = reports.first() {
                super::print_json(r);
            }
        } else {
            super::print_json(&reports);
        }
    } else {
        if reports.is_empty() {
            crate::say!("No deployments in {}.", home.backend().url());
        }
        for r in &reports {
            crate::say!(
                "Deployment `{}` ({} provider, {} cluster): {}",
                r.deployment,
                r.provider,
                r.cluster,
                if r.healthy { "healthy" } else { "DEGRADED" }
            );
            if let Some(e) = &r.provider_error {
                crate::say!("  machine states unknown: {e}");
            }
            if let Some(at) = &r.expires_at {
                crate::say!(
                    "  {} ({at}); `flotilla extend` to keep it",
                    crate::util::time_left(at)
                );
            }
            crate::say!(
                "  {:<16} {:<8} {:<16} {:<9} {:<12} {:<10} CLUSTER",
                "NODE",
                "ROLE",
                "ADDRESS",
                "MACHINE",
                "SSH",
                "DOCKER"
            );
            for n in &r.nodes {
                let ssh = if n.ssh == "ok" { "ok" } else { "unreachable" };
                crate::say!(
                    "  {:<16} {:<8} {:<16} {:<9} {:<12} {:<10} {}",
                    n.name,
                    n.role,
                    n.address.clone().unwrap_or_default(),
                    n.machine,
                    ssh,
                    n.docker,
                    n.cluster
                );
            }
            for m in &r.stray_members {
                crate::say!(
                    "  stray cluster member {} ({}) is {}: not one of the deployment's nodes",
                    m.hostname,
                    m.id,
                    m.status
                );
            }
        }
    }
    let all_healthy = reports.iter().all(|r| r.healthy);
    Ok(if all_healthy {
        0
    } else {
        crate::error::exit::PARTIAL
    })
}
