use crate::error::Result;
use crate::state::Home;

pub fn run(home: &Home, json: bool) -> Result<i32> {
    let rows = crate::engine::status::deployments(home)?;
    if json {
        super::print_json(&rows);
    } else if rows.is_empty() {
        crate::say!("No deployments in {}.", home.backend().url());
    } else {
        crate::say!(
            "{:<24} {:<9} {:<8} {:<6} {:<22} {:<24} LAST RUN",
            "DEPLOYMENT",
            "PROVIDER",
            "CLUSTER",
            "NODES",
            "UPDATED",
            "EXPIRY"
        );
        for r in rows {
            if let Some(e) = r["error"].as_str() {
                crate::say!(
                    "{:<24} cannot be read: {e}",
                    r["deployment"].as_str().unwrap_or("")
                );
                continue;
            }
            crate::say!(
                "{:<24} {:<9} {:<8} {:<6} {:<22} {:<24} {}",
                r["deployment"].as_str().unwrap_or(""),
                r["provider"].as_str().unwrap_or(""),
                r["cluster"].as_str().unwrap_or(""),
                r["nodes"],
                r["updated_at"].as_str().unwrap_or(""),
                r["expires_at"]
                    .as_str()
                    .map(crate::util::time_left)
                    .unwrap_or_else(|| "-".into()),
                r["last_run"]["outcome"]
                    .as_str()
                    .unwrap_or("running or interrupted")
            );
        }
    }
    Ok(0)
}
