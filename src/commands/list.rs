use crate::error::Result;
use crate::state::Home;

pub fn run(home: &Home, json: bool) -> Result<i32> {
    let rows = crate::engine::status::deployments(home)?;
    if json {
        super::print_json(&rows);
    } else if rows.is_empty() {
        crate::say!("No deployments in {}.", home.backend().url());
    } else {
        let mut t = crate::table::Table::new(&[
            "DEPLOYMENT",
            "PROVIDER",
            "CLUSTER",
            "NODES",
            "UPDATED",
            "EXPIRY",
            "LAST RUN",
        ]);
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        let mut unreadable = Vec::new();
        for r in &rows {
            if let Some(e) = r["error"].as_str() {
                unreadable.push(format!("{}: cannot be read: {e}", text(&r["deployment"])));
                continue;
            }
            t.row([
                text(&r["deployment"]),
                text(&r["provider"]),
                text(&r["cluster"]),
                r["nodes"].to_string(),
                text(&r["updated_at"]),
                r["expires_at"]
                    .as_str()
                    .map(crate::util::time_left)
                    .unwrap_or_else(|| "-".into()),
                r["last_run"]["outcome"]
                    .as_str()
                    .unwrap_or("running or interrupted")
                    .to_string(),
            ]);
        }
        if unreadable.len() < rows.len() {
            t.print();
        }
        for u in unreadable {
            crate::say!("{u}");
        }
    }
    Ok(0)
}
