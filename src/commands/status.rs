use crate::engine::status::{status, NodeSummary};
use crate::error::Result;
use crate::state::Home;

pub fn print_nodes(nodes: &[NodeSummary]) {
    if nodes.is_empty() {
        return;
    }
    let mut t = crate::table::Table::new(&["NODE", "ROLE", "ADDRESS", "PHASE", "DOCKER"]).indent(2);
    for n in nodes {
        t.row([
            n.name.clone(),
            n.role.to_string(),
            n.public_ip
                .clone()
                .or(n.private_ip.clone())
                .unwrap_or_default(),
            n.phase.to_string(),
            n.docker_version.clone().unwrap_or_default(),
        ]);
    }
    t.print();
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
            let mut t = crate::table::Table::new(&[
                "NODE", "ROLE", "ADDRESS", "MACHINE", "SSH", "DOCKER", "CLUSTER",
            ])
            .indent(2);
            for n in &r.nodes {
                let ssh = if n.ssh == "ok" { "ok" } else { "unreachable" };
                t.row([
                    n.name.clone(),
                    n.role.to_string(),
                    n.address.clone().unwrap_or_default(),
                    n.machine.to_string(),
                    ssh.to_string(),
                    n.docker.to_string(),
                    n.cluster.to_string(),
                ]);
            }
            t.print();
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
