//! `flotilla state rollback` and `flotilla state migrate`: both under the deployment lock.

use crate::error::{Error, Result};
use crate::state::{Home, StoreError};
use std::time::Duration;

/// Writes stored version `to` again as the newest version. Returns the new version number.
pub fn rollback(home: &Home, name: &str, to: u64, wait: Option<Duration>) -> Result<u64> {
    let _lock = super::lock_existing(home, name, "state rollback", wait)?;
    let body = home.backend().read_version(name, to)?.ok_or_else(|| {
        Error::Usage(format!(
            "`{name}` has no stored version {to}; `flotilla state history {name}` lists them"
        ))
    })?;
    let mut state = home.parse_state(name, &body)?;
    // Read the current one first: the write compares against it, and the carried files of a
    // shared backend come from the local folder it fills in.
    let current = home.load_existing(name)?;
    state.ssh_private_key = current.ssh_private_key;
    state.updated_at = crate::util::now_rfc3339();
    home.save_final(&state)?;
    let latest = home
        .backend()
        .read(name)?
        .map(|r| r.version)
        .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
    Ok(latest)
}

#[derive(Debug, serde::Serialize)]
pub struct MigrateReport {
    pub deployment: String,
    pub from: String,
    pub to: String,
    pub version: u64,
    pub source_removed: bool,
}

/// Copies a deployment to another backend under both locks and checks the copy reads back the
/// same; refuses when the target already has it.
pub fn migrate(
    home: &Home,
    name: &str,
    to: &str,
    remove_source: bool,
    wait: Option<Duration>,
) -> Result<MigrateReport> {
    let target = Home::open(home.root.clone(), Some(to))?;
    if target.backend().url() == home.backend().url() {
        return Err(Error::Usage(format!(
            "`{name}` is already in {}",
            home.backend().url()
        )));
    }
    let _source_lock = super::lock_existing(home, name, "state migrate", wait)?;
    let state = home.load_existing(name)?;
    if target.exists(name)? {
        return Err(Error::Usage(format!(
            "{} already holds a deployment `{name}`; remove it there first (nothing was copied)",
            target.backend().url()
        )));
    }
    let _target_lock = target.lock(name, "state migrate", wait)?;
    target.save_final(&state)?;
    let back = target.load_existing(name)?;
    let same = serde_json::to_value(&back).ok() == serde_json::to_value(&state).ok();
    if !same {
        return Err(Error::Other(format!(
            "the copy of `{name}` in {} does not read back the same; the source is unchanged",
            target.backend().url()
        )));
    }
    let version = target.backend().read(name)?.map(|r| r.version).unwrap_or(0);
    if remove_source {
        // Only the stored state: the local folder (key, host keys) serves the new backend too.
        home.backend().delete(name)?;
    }
    Ok(MigrateReport {
        deployment: name.to_string(),
        from: home.backend().url(),
        to: target.backend().url(),
        version,
        source_removed: remove_source,
    })
}
