//! TTLs and `flotilla gc` on the docker provider, against the test bed's real dockerd: an expired
//! deployment is removed; a deployment whose state was deleted leaves labelled containers,
//! volumes and a network that `gc` removes only after the grace period; resources without
//! flotilla's labels survive; a running `up` (lock held) is never collected under; `--dry-run`
//! deletes nothing; an expiry label keeps a stateless deployment until it passes.
//!
//! Every `gc` here runs with `--match 'gc-*'`: the engine is shared with the other tests, whose
//! state lives in other homes.

use crate::common::{docker, docker_ok, json, labelled, require_docker, stderr, Home, Scrub};
use std::process::Stdio;

const MATCH: &str = "gc-*";

fn blueprint(home: &Home, name: &str, subnet: &str) -> String {
    let p = home.write(
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\nprovider:\n  kind: docker\n  image: {img}\n  subnet: {subnet}\ncluster:\n  kind: none\ndocker:\n  method: preinstalled\ngroups:\n  hosts:\n    role: worker\n    count: 1\n",
            img = crate::heal_scale::baked_image()
        ),
    );
    p.to_str().expect("utf8").to_string()
}

fn gc(home: &Home, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["gc", "--match", MATCH, "-o", "json"];
    args.extend_from_slice(extra);
    home.run(&args)
}

fn names(report: &serde_json::Value, list: &str) -> Vec<String> {
    report[list]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    format!(
                        "{} {}",
                        i["what"].as_str().unwrap_or(""),
                        i["deployment"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn count_of(deployment: &str) -> usize {
    let (c, v, n) = labelled(deployment);
    c.len() + v.len() + n.len()
}

#[test]
fn ttl_expiry_orphans_grace_and_untagged_resources() {
    require_docker();
    let _s1 = Scrub::new("gc-exp");
    let _s2 = Scrub::new("gc-orphan");
    let _s3 = Scrub::new("gc-keep");
    let _s4 = Scrub::new("gc-race");
    let home = Home::new();

    // An expired deployment (`up --ttl 1s`): listed by --dry-run, removed by gc like `down`.
    let exp = blueprint(&home, "gc-exp", "10.198.70.0/24");
    let up = home.run(&["up", &exp, "--ttl", "1s", "-q"]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let st = json(&home.run(&["status", "gc-exp", "--no-probe", "-o", "json"]));
    assert!(
        st["expires_at"].is_string(),
        "status shows the expiry: {st}"
    );
    let (containers, _, _) = labelled("gc-exp");
    let label = docker_ok(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"io.flotilla.expires-at\"}}",
        containers[0].as_str(),
    ]);
    assert_eq!(
        label.trim(),
        st["expires_at"].as_str().unwrap_or_default(),
        "the container carries the expiry label"
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let dry = gc(&home, &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let dry = json(&dry);
    assert_eq!(names(&dry, "deleted"), ["deployment gc-exp"], "{dry}");
    assert!(count_of("gc-exp") > 0, "--dry-run deleted nothing");
    assert_eq!(
        home.run(&["status", "gc-exp", "--no-probe"]).status.code(),
        Some(0)
    );

    // A live deployment with a TTL, extended; and one whose state is then lost.
    let keep = blueprint(&home, "gc-keep", "10.198.71.0/24");
    let up = home.run(&["up", &keep, "--ttl", "2h", "-q"]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let before = json(&home.run(&["status", "gc-keep", "--no-probe", "-o", "json"]));
    let ext = home.run(&["extend", "gc-keep", "1h", "-o", "json"]);
    assert_eq!(ext.status.code(), Some(0), "extend: {}", stderr(&ext));
    let after = json(&home.run(&["status", "gc-keep", "--no-probe", "-o", "json"]));
    let gained = after["expires_in_seconds"].as_i64().unwrap_or(0)
        - before["expires_in_seconds"].as_i64().unwrap_or(0);
    assert!(
        (3500..=3700).contains(&gained),
        "extend added an hour: {before} -> {after}"
    );

    let orphan = blueprint(&home, "gc-orphan", "10.198.72.0/24");
    let up = home.run(&["up", &orphan, "-q"]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    std::fs::remove_dir_all(home.path().join("deployments/gc-orphan")).expect("lose the state");
    std::fs::remove_dir_all(home.path().join("deployments/gc-keep")).expect("lose the state");

    // Resources without flotilla's labels: one with nothing, one with a deployment label only.
    let image = crate::heal_scale::baked_image();
    for (name, labels) in [
        ("gc-hand-made", vec![]),
        (
            "gc-half-labelled",
            vec!["--label", "io.flotilla.deployment=gc-orphan"],
        ),
    ] {
        let _ = docker(&["rm", "-f", name]);
        let mut args = vec!["create", "--name", name];
        args.extend(labels);
        args.extend([image, "true"]);
        docker_ok(&args);
    }

    // Default grace (1h): the expired deployment goes; the orphans are too young.
    let first = gc(&home, &["--yes"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let first = json(&first);
    assert_eq!(names(&first, "deleted"), ["deployment gc-exp"], "{first}");
    assert_eq!(
        count_of("gc-exp"),
        0,
        "nothing of the expired deployment is left"
    );
    assert!(
        !home.path().join("deployments/gc-exp").exists(),
        "its state is gone"
    );
    assert!(
        count_of("gc-orphan") > 2,
        "orphans younger than the grace period stay"
    );
    assert!(first["kept"].to_string().contains("grace"), "{first}");

    // No grace, while an `up` of another deployment is paused after creating its machine
    // (holding the lock): the stateless deployment goes; the running one and the one whose
    // labels say "not yet" stay; resources without flotilla's labels are not touched.
    let racing = blueprint(&home, "gc-race", "10.198.73.0/24");
    let marker = home.path().join("paused");
    let mut up = home
        .cmd()
        .args(["up", &racing, "-q"])
        .env("FLOTILLA_FAULT_PAUSE_AT", "after-create")
        .env("FLOTILLA_FAULT_PAUSE_FILE", &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn up");
    for _ in 0..600 {
        if marker.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let paused = marker.exists();
    let last = gc(&home, &["--yes", "--grace", "0s"]);
    let _ = up.kill();
    let _ = up.wait();
    assert!(paused, "up reached its pause point");
    assert_eq!(last.status.code(), Some(0), "{}", stderr(&last));
    let last = json(&last);
    let deleted = names(&last, "deleted");
    assert!(
        deleted.contains(&"container gc-orphan".to_string()),
        "{last}"
    );
    assert!(deleted.contains(&"network gc-orphan".to_string()), "{last}");
    assert!(
        !deleted.iter().any(|d| d.ends_with("gc-race")),
        "nothing deleted under a running up: {last}"
    );
    assert!(
        count_of("gc-race") >= 2,
        "the running up's machine and network are there"
    );
    assert!(last["kept"].to_string().contains("lock"), "{last}");
    assert_eq!(
        count_of("gc-orphan"),
        1,
        "only the half-labelled hand-made container is left"
    );
    assert!(
        count_of("gc-keep") >= 3,
        "the expiry label keeps gc-keep: {last}"
    );
    assert!(last["kept"].to_string().contains("expires at"), "{last}");
    for name in ["gc-hand-made", "gc-half-labelled"] {
        assert!(
            docker(&["inspect", name]).status.success(),
            "{name} was not touched"
        );
        let _ = docker(&["rm", "-f", name]);
    }
    // Nothing left to do (the killed run's machine is in its state): exit 0, nothing deleted.
    let again = gc(&home, &["--yes", "--grace", "0s"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let again = json(&again);
    assert!(names(&again, "deleted").is_empty(), "{again}");
}
