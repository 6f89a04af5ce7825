//! TTLs and `flotilla gc`. On the docker provider, against the test bed's real dockerd: an expired
//! deployment is removed; a deployment whose state was deleted leaves labelled containers,
//! volumes and a network that `gc` removes only after the grace period; resources without
//! flotilla's labels survive; a running `up` (lock held) is never collected under; `--dry-run`
//! deletes nothing; an expiry label keeps a stateless deployment until it passes. The same rules
//! on EC2 (moto) and on the OpenStack test cloud, by their tags and metadata, with `extend`
//! rewriting them.
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

/// The same rules on EC2 (moto): expiry and creation tags on instances, security groups and key
/// pairs; `extend` rewrites the expiry tag; a deployment whose state is lost is collected by its
/// tags (expired: at once; no expiry: after the grace period); untagged and half-tagged
/// resources survive. Runs are killed right after RunInstances (`FLOTILLA_FAULT_AT`), which
/// leaves exactly what a crashed CI job leaves.
#[test]
fn ec2_gc_by_tags_after_the_state_is_lost() {
    use crate::ec2::{flotilla, inventory, seed, sets, tool, up_args, EC2, PROXY};
    require_docker();
    crate::static_hosts::ensure_node_image_pub();
    let _one = EC2.lock().unwrap_or_else(|p| p.into_inner());
    let cloud = seed();
    let home = Home::new();
    let bp = crate::ec2::blueprint();
    let provider = home.write(
        "ec2-provider.yaml",
        &format!(
            "provider:\n  kind: ec2\n  region: us-east-1\n  ami: {}\n  instance_type: t3.micro\n  endpoint_url: {PROXY}\n  max_attempts: 1\n",
            cloud.ami
        ),
    );
    let provider = provider.to_str().expect("utf8");
    let crashed_up = |name: &str, ttl: Option<&str>| {
        let s = sets(name, &cloud, &["workers=1"]);
        let mut args = up_args(&bp, &s);
        if let Some(t) = ttl {
            args.extend(["--ttl", t]);
        }
        let out = flotilla(&home, &args, &[("FLOTILLA_FAULT_AT", "after-create")]);
        assert_eq!(
            out.status.code(),
            None,
            "killed after RunInstances: {}",
            stderr(&out)
        );
        let inv = inventory(name);
        assert_eq!(inv["instances"].as_array().map(Vec::len), Some(2), "{inv}");
        assert_eq!(
            inv["security_groups"].as_array().map(Vec::len),
            Some(1),
            "{inv}"
        );
        assert_eq!(inv["key_pairs"].as_array().map(Vec::len), Some(1), "{inv}");
    };
    let tags = |name: &str, key: &str| -> serde_json::Value {
        serde_json::from_str(&tool(&["tags", name, key])).expect("tags JSON")
    };
    let gc_exit = |extra: &[&str], code: i32| {
        let mut args = vec![
            "gc",
            "--provider-config",
            provider,
            "--match",
            "gc-ec2-*",
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        let out = flotilla(&home, &args, &[]);
        assert_eq!(out.status.code(), Some(code), "gc: {}", stderr(&out));
        json(&out)
    };
    let gc = |extra: &[&str]| gc_exit(extra, 0);
    let empty = serde_json::json!({"instances": [], "security_groups": [], "key_pairs": []});

    // Every resource carries the expiry and (security group, key pair) its creation time.
    crashed_up("gc-ec2-exp", Some("1s"));
    crashed_up("gc-ec2-keep", Some("2h"));
    crashed_up("gc-ec2-orphan", None);
    for (id, v) in tags("gc-ec2-keep", "io.flotilla.expires-at")
        .as_object()
        .expect("map")
    {
        assert!(v.is_string(), "{id} has an expiry tag");
    }
    let created = tags("gc-ec2-orphan", "io.flotilla.created-at");
    assert_eq!(
        created
            .as_object()
            .map(|m| m.values().filter(|v| v.is_string()).count()),
        Some(2),
        "the security group and key pair carry their creation time: {created}"
    );

    // `extend` rewrites the tags (EC2 tags can change, unlike Docker labels).
    let ext = flotilla(&home, &["extend", "gc-ec2-keep", "1h", "-o", "json"], &[]);
    assert_eq!(ext.status.code(), Some(0), "extend: {}", stderr(&ext));
    let ext = json(&ext);
    assert_eq!(ext["labels_updated"], true, "{ext}");
    let after = tags("gc-ec2-keep", "io.flotilla.expires-at");
    let map = after.as_object().expect("map");
    assert_eq!(
        map.len(),
        4,
        "2 instances, a security group, a key pair: {after}"
    );
    assert!(
        map.values().all(|v| *v == ext["expires_at"]),
        "{after} vs {ext}"
    );

    // The operator's state is lost for all three.
    for d in ["gc-ec2-exp", "gc-ec2-keep", "gc-ec2-orphan"] {
        std::fs::remove_dir_all(home.path().join("deployments").join(d)).expect("lose the state");
    }
    let hand: serde_json::Value =
        serde_json::from_str(&tool(&["hand-made", "gc-ec2-orphan"])).expect("hand-made JSON");
    let mut hand_ids: Vec<String> = hand["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    hand_ids.push(hand["security_group"].as_str().expect("sg").into());
    hand_ids.push(hand["key_pair"].as_str().expect("kp").into());
    std::thread::sleep(std::time::Duration::from_secs(2));

    // --dry-run lists the expired one and deletes nothing.
    let dry = gc(&["--dry-run"]);
    let dry_deleted = names(&dry, "deleted");
    assert_eq!(dry_deleted.len(), 4, "{dry}");
    assert!(
        dry_deleted.iter().all(|d| d.ends_with(" gc-ec2-exp")),
        "{dry}"
    );
    assert_eq!(
        inventory("gc-ec2-exp")["instances"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Default grace: the expired deployment goes by its tags; the others stay.
    let first = gc(&["--yes"]);
    assert_eq!(names(&first, "deleted").len(), 4, "{first}");
    assert_eq!(
        inventory("gc-ec2-exp"),
        empty,
        "nothing of the expired deployment is left"
    );
    assert!(first["kept"].to_string().contains("grace"), "{first}");
    assert_eq!(
        inventory("gc-ec2-orphan")["instances"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "the orphan's two instances are too young; the half-tagged one is not flotilla's"
    );

    // No grace: the untagged-expiry orphan goes; the one whose tags say "not yet" stays; the
    // hand-made resources are never listed.
    // One delete refused (throttled, and the provider makes one attempt): exit 7, the rest is
    // deleted, and the next run finishes the job.
    tool(&["throttle", "DeleteKeyPair", "1"]);
    let last = gc_exit(&["--yes", "--grace", "0s"], 7);
    let deleted = names(&last, "deleted");
    assert_eq!(deleted.len(), 3, "{last}");
    assert_eq!(names(&last, "failed"), ["key-pair gc-ec2-orphan"], "{last}");
    let retry = gc(&["--yes", "--grace", "0s"]);
    assert_eq!(
        names(&retry, "deleted"),
        ["key-pair gc-ec2-orphan"],
        "{retry}"
    );
    let deleted: Vec<String> = deleted
        .into_iter()
        .chain(names(&retry, "deleted"))
        .collect();
    assert!(
        deleted.iter().all(|d| d.ends_with(" gc-ec2-orphan")),
        "{last}"
    );
    let left = inventory("gc-ec2-orphan");
    assert_eq!(
        left,
        serde_json::json!({"instances": [hand["instances"][1]], "security_groups": [], "key_pairs": []}),
        "only the hand-made instance with a deployment tag but no `managed` tag is left"
    );
    assert_eq!(
        inventory("gc-ec2-keep")["instances"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert!(last["kept"].to_string().contains("expires at"), "{last}");
    let alive: Vec<String> = serde_json::from_str(&tool(&{
        let mut a = vec!["exists"];
        a.extend(hand_ids.iter().map(String::as_str));
        a
    }))
    .expect("exists JSON");
    assert_eq!(
        alive, hand_ids,
        "resources without flotilla's tags were not touched"
    );
    assert!(!last.to_string().contains("hand-made"), "{last}");
}

/// The same rules on a real OpenStack (Nova, Neutron): expiry in server metadata and in Neutron
/// tags on security groups and floating IPs; `extend` rewrites both; with the state lost, the
/// expired deployment goes at once, the one without expiry after the grace period, and the one
/// whose labels say "not yet" stays; a security group, a floating IP and a key pair named like
/// flotilla's but holding someone else's key survive. Runs stop right after SSH reached the
/// nodes (`FLOTILLA_FAULT_AT=after-connect`), with servers, floating IPs, security group and
/// key pair made.
#[test]
fn openstack_gc_by_metadata_and_tags_after_the_state_is_lost() {
    use crate::openstack::{
        blueprint, empty, exclusive_cloud, flotilla, flotilla_env, inventory, inventory_py, sets,
        up_args,
    };
    require_docker();
    crate::static_hosts::ensure_node_image_pub();
    let _one = exclusive_cloud();
    let home = Home::new();
    // Floating IPs from the external network; SSH to the fixed IPs, where the hosts live.
    let bp = home.write(
        "os-fixed.yaml",
        &std::fs::read_to_string(blueprint())
            .expect("blueprint")
            .replace("  ssh_cidr:", "  address: fixed\n  ssh_cidr:"),
    );
    let bp = bp.to_str().expect("utf8").to_string();
    let provider = home.write(
        "os-provider.yaml",
        "provider:\n  kind: openstack\n  image: debian-12\n  flavor: m1.small\n  network: private\n",
    );
    let provider = provider.to_str().expect("utf8");
    let crashed_up = |name: &str, ttl: Option<&str>| {
        let s = sets(name, &["workers=0", "fip_pool=public"]);
        let mut extra = vec![];
        if let Some(t) = ttl {
            extra.extend(["--ttl", t]);
        }
        let out = flotilla_env(
            &home,
            &up_args(&bp, &s, &extra),
            "secret",
            &[("FLOTILLA_FAULT_AT", "after-connect")],
        );
        assert_eq!(
            out.status.code(),
            None,
            "stopped after connecting: {}",
            stderr(&out)
        );
        let inv = inventory(name);
        for (k, n) in [
            ("servers", 1),
            ("floating_ips", 1),
            ("security_groups", 1),
            ("key_pairs", 1),
        ] {
            assert_eq!(inv[k].as_array().map(Vec::len), Some(n), "{k}: {inv}");
        }
    };
    let gc = |extra: &[&str]| {
        let mut args = vec![
            "gc",
            "--provider-config",
            provider,
            "--match",
            "gc-os-*",
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        let out = flotilla(&home, &args, "secret");
        assert_eq!(out.status.code(), Some(0), "gc: {}", stderr(&out));
        json(&out)
    };

    crashed_up("gc-os-exp", Some("1s"));
    crashed_up("gc-os-keep", Some("2h"));
    crashed_up("gc-os-orphan", None);
    let before = inventory_py(&["tags", "gc-os-keep", "io.flotilla.expires-at"]);
    let before = before.as_object().expect("map");
    assert_eq!(
        before.len(),
        3,
        "server, security group, floating IP: {before:?}"
    );
    assert!(
        before.values().all(|v| v.is_string()),
        "all carry the expiry: {before:?}"
    );

    // `extend` rewrites server metadata and Neutron tags.
    let ext = flotilla(
        &home,
        &["extend", "gc-os-keep", "1h", "-o", "json"],
        "secret",
    );
    assert_eq!(ext.status.code(), Some(0), "extend: {}", stderr(&ext));
    let ext = json(&ext);
    assert_eq!(ext["labels_updated"], true, "{ext}");
    let after = inventory_py(&["tags", "gc-os-keep", "io.flotilla.expires-at"]);
    assert!(
        after
            .as_object()
            .expect("map")
            .values()
            .all(|v| *v == ext["expires_at"]),
        "{after} vs {ext}"
    );

    for d in ["gc-os-exp", "gc-os-keep", "gc-os-orphan"] {
        std::fs::remove_dir_all(home.path().join("deployments").join(d)).expect("lose the state");
    }
    let hand: Vec<String> = serde_json::from_value(inventory_py(&["hand-made"])).expect("ids");
    std::thread::sleep(std::time::Duration::from_secs(2));

    // The cloud's admin sees every project's security groups and floating IPs: its gc lists
    // none of the demo project's, although they carry flotilla's marks and have no state.
    let admin = flotilla_env(
        &home,
        &[
            "gc",
            "--provider-config",
            provider,
            "--match",
            "gc-os-*",
            "--grace",
            "0s",
            "--dry-run",
            "-o",
            "json",
        ],
        "secret",
        &[("OS_CLOUD", "admincloud")],
    );
    assert_eq!(admin.status.code(), Some(0), "admin gc: {}", stderr(&admin));
    let admin = json(&admin);
    assert_eq!(admin["deleted"], serde_json::json!([]), "{admin}");
    assert_eq!(admin["kept"], serde_json::json!([]), "{admin}");

    let dry = gc(&["--dry-run"]);
    let dry_deleted = names(&dry, "deleted");
    assert_eq!(dry_deleted.len(), 4, "{dry}");
    assert!(
        dry_deleted.iter().all(|d| d.ends_with(" gc-os-exp")),
        "{dry}"
    );
    assert_eq!(
        inventory("gc-os-exp")["servers"].as_array().map(Vec::len),
        Some(1)
    );

    let first = gc(&["--yes"]);
    assert_eq!(names(&first, "deleted").len(), 4, "{first}");
    assert_eq!(
        inventory("gc-os-exp"),
        empty(),
        "nothing of the expired deployment is left"
    );
    assert!(first["kept"].to_string().contains("grace"), "{first}");
    assert_eq!(
        inventory("gc-os-orphan")["servers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let last = gc(&["--yes", "--grace", "0s"]);
    let deleted = names(&last, "deleted");
    assert_eq!(deleted.len(), 4, "{last}");
    assert!(
        deleted.iter().all(|d| d.ends_with(" gc-os-orphan")),
        "{last}"
    );
    assert_eq!(inventory("gc-os-orphan"), empty());
    assert_eq!(
        inventory("gc-os-keep")["servers"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(last["kept"].to_string().contains("expires at"), "{last}");
    let mut args = vec!["exists"];
    args.extend(hand.iter().map(String::as_str));
    let alive: Vec<String> = serde_json::from_value(inventory_py(&args)).expect("ids");
    assert_eq!(
        alive, hand,
        "resources without flotilla's marks were not touched"
    );

    // Clean up what this test made and gc rightly kept.
    let mut args = vec!["exists", "--delete"];
    args.extend(hand.iter().map(String::as_str));
    inventory_py(&args);
    assert_eq!(inventory_py(&["purge", "gc-os-keep"]), empty());
}
