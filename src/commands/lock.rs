//! `flotilla lock status|force-unlock` and `flotilla state history|show|rollback|migrate`.

use crate::cli::{LockCommand, StateCommand};
use crate::error::{exit, Error, Result};
use crate::state::{Home, StoreError};

pub fn run_lock(home: &Home, cmd: LockCommand, json: bool) -> Result<i32> {
    match cmd {
        LockCommand::Status { deployment } => {
            let info = home.backend().lock_status(&deployment)?;
            if json {
                super::print_json(&serde_json::json!({
                    "deployment": deployment,
                    "backend": home.backend().url(),
                    "locked": info.is_some(),
                    "holder": info.as_ref().map(|i| &i.holder),
                    "expires_at": info.as_ref().and_then(|i| i.expires_at.clone()),
                }));
            } else {
                match &info {
                    None => crate::say!("`{deployment}` is not locked ({})", home.backend().url()),
                    Some(i) => crate::say!(
                        "`{deployment}` is locked by {}{} ({})",
                        i.holder,
                        i.expires_at
                            .as_ref()
                            .map(|e| format!(", lease until {e}"))
                            .unwrap_or_default(),
                        home.backend().url()
                    ),
                }
            }
            Ok(if info.is_some() {
                exit::LOCKED
            } else {
                exit::OK
            })
        }
        LockCommand::ForceUnlock { deployment, yes } => {
            let info = home.backend().lock_status(&deployment)?;
            let Some(i) = info else {
                crate::say!("`{deployment}` is not locked; nothing to do");
                return Ok(exit::OK);
            };
            let question = format!(
                "`{deployment}` is locked by {}. Removing the lock lets another run start while that one may still be working (its state writes will be refused). Remove it?",
                i.holder
            );
            if !yes && !super::confirm(&question) {
                return Err(Error::Usage(format!(
                    "`{deployment}` is locked by {}; pass --yes to remove the lock anyway",
                    i.holder
                )));
            }
            let removed = home.backend().force_unlock(&deployment)?;
            if json {
                super::print_json(
                    &serde_json::json!({"deployment": deployment, "removed": removed, "holder": i.holder}),
                );
            } else {
                crate::say!("Removed the lock of `{deployment}` (held by {}).", i.holder);
            }
            Ok(exit::OK)
        }
    }
}

pub fn run_state(home: &Home, cmd: StateCommand, json: bool) -> Result<i32> {
    match cmd {
        StateCommand::History { deployment } => {
            let h = home.backend().history(&deployment)?;
            if h.is_empty() && !home.exists(&deployment)? {
                return Err(StoreError::NotFound(deployment).into());
            }
            if json {
                super::print_json(&h);
            } else {
                let mut t = crate::table::Table::new(&["VERSION", "WRITTEN", "BY", "BYTES"]);
                for e in &h {
                    t.row([
                        e.version.to_string(),
                        e.written_at.clone(),
                        e.written_by.clone(),
                        e.bytes.to_string(),
                    ]);
                }
                t.print();
            }
            Ok(exit::OK)
        }
        StateCommand::Show {
            deployment,
            version,
        } => {
            let state = match version {
                None => home.load_existing(&deployment)?,
                Some(v) => {
                    let body = home.backend().read_version(&deployment, v)?.ok_or_else(|| {
                        Error::Usage(format!(
                            "`{deployment}` has no stored version {v}; `flotilla state history {deployment}` lists them"
                        ))
                    })?;
                    home.parse_state(&deployment, &body)?
                }
            };
            super::print_json(&state);
            Ok(exit::OK)
        }
        StateCommand::Rollback {
            deployment,
            to,
            yes,
            lock,
        } => {
            let question = format!(
                "Write version {to} of `{deployment}` back as its newest state? Machines created since then are no longer recorded (a later `up` adopts or deletes them by their labels)."
            );
            if !yes && !super::confirm(&question) {
                return Err(Error::Usage(format!(
                    "rolling back `{deployment}` needs --yes (or a confirmation on a terminal)"
                )));
            }
            let v = crate::engine::state_ops::rollback(home, &deployment, to, lock.wait_lock)?;
            if json {
                super::print_json(
                    &serde_json::json!({"deployment": deployment, "restored": to, "version": v}),
                );
            } else {
                crate::say!("`{deployment}`: version {to} is the current state again (stored as version {v}).");
            }
            Ok(exit::OK)
        }
        StateCommand::Migrate {
            deployment,
            to,
            remove_source,
            lock,
        } => {
            let r = crate::engine::state_ops::migrate(
                home,
                &deployment,
                &to,
                remove_source,
                lock.wait_lock,
            )?;
            if json {
                super::print_json(&r);
            } else {
                crate::say!(
                    "Copied `{deployment}` from {} to {} (version {} there, read back and compared){}.",
                    r.from,
                    r.to,
                    r.version,
                    if r.source_removed {
                        "; removed from the source"
                    } else {
                        "; the source still has it: use --backend/FLOTILLA_BACKEND for the new one from now on"
                    }
                );
            }
            Ok(exit::OK)
        }
    }
}
