//! `flotilla gc` and `flotilla extend`.

use crate::cli::GcArgs;
use crate::engine::gc::{gc, provider_only_blueprint, GcItem, GcOptions, GcReport};
use crate::engine::{build_provider, lock_existing, recorded_blueprint, recorded_public_key};
use crate::error::{Error, Result};
use crate::state::Home;
use flotilla_provider_core::Ownership;
use std::time::Duration;

use crate::error::exit::GC_INCOMPLETE as EXIT_GC_INCOMPLETE;

fn print_items(title: &str, items: &[GcItem]) {
    if items.is_empty() {
        return;
    }
    crate::say!("{title}:");
    for i in items {
        let dep = if i.what == "deployment" || i.deployment.is_empty() {
            String::new()
        } else {
            format!(" of `{}`", i.deployment)
        };
        crate::say!(
            "  {} {}{dep} [{}]: {}",
            i.what,
            i.name,
            i.provider,
            i.reason
        );
        if let Some(e) = &i.error {
            crate::say!("    error: {e}");
        }
    }
}

fn print_report(r: &GcReport) {
    if r.searched.is_empty() {
        crate::say!("No provider was searched for orphans (no recorded deployment and no blueprint or --provider-config given).");
    } else {
        crate::say!("Searched: {}.", r.searched.join(", "));
    }
    let title = if r.dry_run { "Would delete" } else { "Deleted" };
    print_items(title, &r.deleted);
    print_items("Could not delete (the next gc tries again)", &r.failed);
    print_items("Kept", &r.kept);
    if r.deleted.is_empty() && r.failed.is_empty() {
        crate::say!("Nothing to collect.");
    }
}

pub async fn run(home: &Home, args: &GcArgs, json: bool, quiet: bool) -> Result<i32> {
    let mut extra = Vec::new();
    for b in &args.blueprints {
        extra.push(crate::blueprint::load(b, &[])?);
    }
    for p in &args.provider_config {
        extra.push(provider_only_blueprint(p)?);
    }
    let mut opts = GcOptions {
        dry_run: true,
        grace: args.grace,
        matches: args.matches.clone(),
    };
    if !args.dry_run && !args.yes {
        // Show what would go, then ask; off a terminal only --yes deletes.
        let preview = gc(home, &extra, &opts).await?;
        if preview.deleted.is_empty() {
            if json {
                super::print_json(&preview);
            } else if !quiet {
                print_report(&preview);
            }
            return Ok(if preview.failed.is_empty() {
                0
            } else {
                EXIT_GC_INCOMPLETE
            });
        }
        print_report(&preview);
        if !super::confirm(&format!("Delete these {} items?", preview.deleted.len())) {
            return Err(Error::Usage(
                "nothing deleted: confirm on a terminal, or pass --yes (or --dry-run to only look)"
                    .into(),
            ));
        }
    }
    opts.dry_run = args.dry_run;
    let report = gc(home, &extra, &opts).await?;
    if json {
        super::print_json(&report);
    } else if !quiet || !report.failed.is_empty() {
        print_report(&report);
    }
    Ok(if report.failed.is_empty() {
        0
    } else {
        EXIT_GC_INCOMPLETE
    })
}

pub async fn extend(
    home: &Home,
    name: &str,
    by: Duration,
    json: bool,
    wait_lock: Option<Duration>,
) -> Result<i32> {
    let _lock = lock_existing(home, name, "extend", wait_lock)?;
    let mut state = home.load_existing(name)?;
    // From the current expiry when it is still ahead, else from now.
    let ahead = state
        .expires_at
        .as_deref()
        .and_then(crate::util::seconds_until)
        .filter(|s| *s > 0)
        .unwrap_or(0);
    let new = crate::util::rfc3339_after(Duration::from_secs(ahead.unsigned_abs()) + by);
    let previous = state.expires_at.replace(new.clone());
    state.updated_at = crate::util::now_rfc3339();
    home.save_final(&state)?;
    // The labels on the resources, where the provider can rewrite them.
    let relabelled = match recorded_blueprint(&state) {
        Ok(bp) => match build_provider(&bp, &recorded_public_key(&state)).await {
            Ok(p) => p
                .relabel_expiry(&Ownership::new(name), &new)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let note = match &relabelled {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "the {} provider cannot change labels on existing resources: the new expiry is in the state; \
             should the state be lost, gc goes by the labels ({})",
            state.provider,
            previous.as_deref().unwrap_or("none")
        )),
        Err(e) => Some(format!("the state has the new expiry, but the resource labels were not updated: {e}")),
    };
    if json {
        super::print_json(&serde_json::json!({
            "deployment": name,
            "expires_at": new,
            "previous": previous,
            "labels_updated": relabelled.as_ref().is_ok_and(|b| *b),
            "note": note,
        }));
    } else {
        crate::say!(
            "Deployment `{name}` now {} ({new}).",
            crate::util::time_left(&new)
        );
        if let Some(n) = note {
            crate::say!("  note: {n}");
        }
    }
    Ok(0)
}
