//! `containers:` workloads on the docker provider: a repository image and an image tarball
//! (streamed to the nodes, sha256 checked), idempotent reruns, a changed spec replaced, a removed
//! entry removed, and `ps` naming flotilla as the owner.

use crate::common::{docker_ok, json, require_docker, stderr, stdout, Home};
use std::path::PathBuf;
use std::sync::OnceLock;

/// `flotilla-test/tiny:src` as a `docker save` archive (a tag no node has until it is loaded).
fn src_archive() -> &'static (PathBuf, String) {
    static ONCE: OnceLock<(PathBuf, String)> = OnceLock::new();
    ONCE.get_or_init(|| {
        let tiny = crate::common::tiny_image_archive();
        let dir = tiny.parent().expect("dir").to_path_buf();
        docker_ok(&["tag", "flotilla-test/tiny:1", "flotilla-test/tiny:src"]);
        let out = dir.join("tiny-src.tar");
        docker_ok(&[
            "save",
            "-o",
            out.to_str().expect("utf8"),
            "flotilla-test/tiny:src",
        ]);
        let sum = std::process::Command::new("sha256sum")
            .arg(&out)
            .output()
            .expect("sha256sum");
        let hex = stdout(&sum)
            .split_whitespace()
            .next()
            .expect("sum")
            .to_string();
        (out, hex)
    })
}

fn blueprint(home: &Home, greeting: &str, with_web: bool) -> String {
    let base = crate::heal_scale::blueprint_pub(home, "it-wl", "10.198.35.0/24", 1, "");
    let mut text = std::fs::read_to_string(&base).expect("blueprint");
    let (src, hex) = src_archive();
    text.push_str(&format!(
        "containers:\n  sidecar:\n    groups: [managers, workers]\n    image: {{src: {}, sha256: \"sha256:{hex}\"}}\n    command: [/bin/busybox, sleep, \"3600\"]\n",
        src.display()
    ));
    if with_web {
        text.push_str(&format!(
            "  web:\n    groups: [workers]\n    image: {{repository: flotilla-test/tiny, tag: \"1\"}}\n    command: [/bin/busybox, httpd, -f, -p, \"8080\"]\n    env: {{GREETING: {greeting}}}\n    ports: [\"18080:8080\"]\n    labels: {{team: web}}\n    restart: always\n"
        ));
    }
    std::fs::write(&base, text).expect("write");
    base
}

fn inspect(home: &Home, node: &str, format: &str) -> String {
    let o = home.run(&[
        "ssh",
        "it-wl",
        node,
        "--",
        "docker",
        "inspect",
        "-f",
        &format!("'{format}'"),
        "flotilla-web",
    ]);
    stdout(&o).trim().to_string()
}

#[test]
fn containers_run_idempotently_change_and_go_away() {
    require_docker();
    let home = Home::new();
    let _scrub = crate::common::Scrub::new("it-wl");
    let bp = blueprint(&home, "hello", true);
    let up = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let r = json(&up);
    assert_eq!(
        r["containers"]["workers-1"],
        serde_json::json!(["sidecar=started", "web=started"]),
        "{r}"
    );
    assert_eq!(
        r["containers"]["managers-1"],
        serde_json::json!(["sidecar=started"])
    );
    assert_eq!(inspect(&home, "workers-1", "{{.State.Running}}"), "true");
    assert!(inspect(&home, "workers-1", "{{json .Config.Env}}").contains("GREETING=hello"));
    assert_eq!(
        inspect(
            &home,
            "workers-1",
            "{{index .Config.Labels \"io.flotilla.deployment\"}} {{index .Config.Labels \"team\"}}"
        ),
        "it-wl web"
    );
    let first_id = inspect(&home, "workers-1", "{{.Id}}");

    // Rerun: nothing changes.
    let again = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(again.status.code(), Some(0), "rerun: {}", stderr(&again));
    let r = json(&again);
    assert_eq!(r["changed"], false, "{r}");
    assert_eq!(
        r["containers"]["workers-1"],
        serde_json::json!(["sidecar=unchanged", "web=unchanged"])
    );

    // A changed spec replaces the container.
    let bp = blueprint(&home, "bye", true);
    let changed = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(changed.status.code(), Some(0), "{}", stderr(&changed));
    assert_eq!(
        json(&changed)["containers"]["workers-1"],
        serde_json::json!(["sidecar=unchanged", "web=started"])
    );
    assert_ne!(inspect(&home, "workers-1", "{{.Id}}"), first_id, "replaced");
    assert!(inspect(&home, "workers-1", "{{json .Config.Env}}").contains("GREETING=bye"));

    // `ps` says flotilla owns them.
    let ps = json(&home.run(&["ps", "it-wl", "-o", "json"]));
    let owners: Vec<(String, String)> = ps["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("flotilla-"))
        })
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["owner"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(owners.len(), 3, "{ps}");
    assert!(owners.iter().all(|(_, o)| o == "flotilla"), "{owners:?}");

    // The entry goes: so does the container.
    let bp = blueprint(&home, "bye", false);
    let removed = home.run(&["up", &bp, "-o", "json"]);
    assert_eq!(removed.status.code(), Some(0), "{}", stderr(&removed));
    assert_eq!(
        json(&removed)["containers"]["workers-1"],
        serde_json::json!(["sidecar=unchanged", "web=removed"])
    );
    let down = home.run(&["down", "it-wl", "--yes"]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
}
