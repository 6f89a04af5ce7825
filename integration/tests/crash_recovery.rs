//! A run killed right after the provider created the machines, before the state recorded them:
//! the next run takes over the dead run's lock, reports the interrupted run, adopts the machines
//! (no duplicates) and converges.

use crate::common::{json, labelled, require_docker, stderr, Home};

const DEPLOYMENT: &str = "it-crash";

#[test]
fn killed_after_create_then_rerun_adopts_and_converges() {
    require_docker();
    let _scrub = crate::common::Scrub::new(DEPLOYMENT);
    let home = Home::new();
    let bp = home.write(
        "crash.yaml",
        &format!(
            "name: {DEPLOYMENT}\nprovider:\n  kind: docker\n  subnet: 10.198.12.0/24\ncluster:\n  kind: none\ngroups:\n  hosts:\n    role: worker\n    count: 2\n"
        ),
    );
    let bp = bp.to_str().expect("utf8").to_string();

    // 1. Abort (as a crash would: no destructors run) right after the create call returned.
    let crashed = home
        .cmd()
        .args(["up", &bp])
        .env("FLOTILLA_FAULT_AT", "after-create")
        .output()
        .expect("run");
    eprintln!("crashed run stderr:\n{}", stderr(&crashed));
    assert_eq!(
        crashed.status.code(),
        None,
        "the run must have died from the fault hook"
    );
    let (containers, _, _) = labelled(DEPLOYMENT);
    assert_eq!(
        containers.len(),
        2,
        "the machines exist although the state never recorded them"
    );
    let lock = std::fs::read_to_string(
        home.path()
            .join("deployments")
            .join(DEPLOYMENT)
            .join("lock"),
    )
    .expect("lock file");
    assert!(
        lock.contains("\"pid\""),
        "the dead run's holder record is still there: {lock}"
    );

    // 2. A plain re-run: takes the lock over, says what happened, adopts, converges.
    let rerun = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(rerun.status.code(), Some(0), "rerun: {}", stderr(&rerun));
    let err = stderr(&rerun);
    assert!(
        err.contains("took over the lock"),
        "lock takeover is reported: {err}"
    );
    assert!(
        err.contains("did not finish"),
        "the interrupted run is reported: {err}"
    );
    let r = json(&rerun);
    assert_eq!(
        r["machines"]["create"].as_array().map(Vec::len),
        Some(0),
        "nothing created twice: {r}"
    );
    let (containers, _, _) = labelled(DEPLOYMENT);
    assert_eq!(containers.len(), 2, "still exactly 2 machines");
    let nodes = r["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2);
    for n in nodes {
        assert_eq!(n["phase"], "ready", "{n}");
        assert!(
            n["docker_version"].as_str().is_some_and(|v| !v.is_empty()),
            "{n}"
        );
    }
    // Host keys were pinned and recorded in the state.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            home.path()
                .join("deployments")
                .join(DEPLOYMENT)
                .join("state.json"),
        )
        .expect("state"),
    )
    .expect("json");
    for (name, rec) in state["nodes"].as_object().expect("nodes") {
        assert!(
            rec["host_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("ssh-ed25519 ")),
            "{name} has a pinned host key: {rec}"
        );
    }

    // 3. Converged: a third run is a no-op.
    let third = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(third.status.code(), Some(0));
    assert_eq!(json(&third)["changed"], false);

    let down = home.run(&["down", DEPLOYMENT, "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    let (c, v, n) = labelled(DEPLOYMENT);
    assert!(c.is_empty() && v.is_empty() && n.is_empty());
}

#[test]
fn export_then_import_in_another_home_keeps_control() {
    crate::common::require_docker();
    let a = Home::new();
    let name = "it-move";
    let _scrub = crate::common::Scrub::new(name);
    let bp = crate::heal_scale::blueprint_pub(&a, name, "10.198.34.0/24", 1, "");
    let up = a.run(&["up", &bp]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let archive = a.path().join("it-move.tar");
    let out = a.run(&["export", name, "--file", archive.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0), "export: {}", stderr(&out));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&archive)
            .expect("archive")
            .permissions()
            .mode()
            & 0o777,
        0o600,
        "the archive holds the private key"
    );

    // Another operator machine: a fresh home takes the deployment over.
    let b = Home::new();
    let imp = b.run(&["import", archive.to_str().expect("utf8"), "-o", "json"]);
    assert_eq!(imp.status.code(), Some(0), "import: {}", stderr(&imp));
    assert_eq!(crate::common::json(&imp)["nodes"], 2);
    let st = b.run(&["status", name, "-o", "json"]);
    assert_eq!(
        st.status.code(),
        Some(0),
        "status from the new home: {}",
        stderr(&st)
    );
    assert_eq!(crate::common::json(&st)["healthy"], true);
    let again = b.run(&["import", archive.to_str().expect("utf8")]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing deployment is not overwritten"
    );
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    let forced = b.run(&["import", archive.to_str().expect("utf8"), "--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    // Full control moved: the new home takes it down.
    let down = b.run(&["down", name, "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    let (c, v, n) = crate::common::labelled(name);
    assert!(c.is_empty() && v.is_empty() && n.is_empty());
}
