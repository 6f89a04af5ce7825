use crate::engine::down::down;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::state::Home;
use std::time::Duration;

pub async fn run(
    home: &Home,
    deployment: &str,
    yes: bool,
    json: bool,
    quiet: bool,
    wait_lock: Option<Duration>,
) -> Result<i32> {
    if !yes {
        return Err(Error::Usage(format!(
            "`down` deletes the machines of `{deployment}`; pass --yes to confirm"
        )));
    }
    let progress = Progress::new(quiet);
    let report = down(home, deployment, &progress, wait_lock).await?;
    if json {
        super::print_json(&report);
    } else {
        crate::say!(
            "Deployment `{deployment}` is down ({} machines deleted, {} existing hosts released).",
            report.deleted_machines.len(),
            report.released_hosts.len()
        );
    }
    Ok(0)
}
