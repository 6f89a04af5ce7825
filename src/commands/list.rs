use crate::error::Result;
use crate::state::Home;
use serde_json::json;

pub fn run(home: &Home, json: bool) -> Result<i32> {
    let mut rows = Vec::new();
    for name in home.list()? {
        let s = home.load_existing(&name)?;
        let last = s.runs.last();
        rows.push(json!({
            "deployment": name,
            "provider": s.provider,
            "cluster": s.cluster.kind,
            "nodes": s.nodes.len(),
            "updated_at": s.updated_at,
            "last_run": last.map(|r| json!({"command": r.command, "started_at": r.started_at, "outcome": r.outcome})),
        }));
    }
    if json {
        super::print_json(&rows);
    } else if rows.is_empty() {
        println!("No deployments under {}.", home.root.display());
    } else {
        println!(
            "{:<24} {:<9} {:<8} {:<6} {:<22} LAST RUN",
            "DEPLOYMENT", "PROVIDER", "CLUSTER", "NODES", "UPDATED"
        );
        for r in rows {
            println!(
                "{:<24} {:<9} {:<8} {:<6} {:<22} {}",
                r["deployment"].as_str().unwrap_or(""),
                r["provider"].as_str().unwrap_or(""),
                r["cluster"].as_str().unwrap_or(""),
                r["nodes"],
                r["updated_at"].as_str().unwrap_or(""),
                r["last_run"]["outcome"]
                    .as_str()
                    .unwrap_or("running or interrupted")
            );
        }
    }
    Ok(0)
}
