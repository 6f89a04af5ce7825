//! The EC2 provider against moto (real EC2 API semantics on loopback) with real hosts behind the
//! instances (the data plane of `integration/ec2-testcloud.sh`): a Swarm forms over SSH, re-runs make
//! zero RunInstances calls, throttling is absorbed by the shared backoff, a run killed right after
//! RunInstances is adopted by the next one, and bad settings fail before anything is created.
//! The tests share one moto, so they run one at a time.

use crate::common::{json, repo_root, require_docker, stderr, Home};
use std::process::{Command, Output};
use std::sync::Mutex;

pub(crate) static EC2: Mutex<()> = Mutex::new(());
pub(crate) const PROXY: &str = "http://127.0.0.1:5056";

pub(crate) fn tool(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(repo_root().join("integration/ec2_testcloud.py"))
        .args(args)
        .output()
        .expect("run ec2_testcloud.py");
    assert!(
        out.status.success(),
        "ec2_testcloud.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) struct Cloud {
    pub subnet: String,
    pub ami: String,
}

/// A pristine moto with the test VPC/subnet and AMI; the proxy's counters reset.
pub(crate) fn seed() -> Cloud {
    let v: serde_json::Value = serde_json::from_str(&tool(&["seed"])).expect("seed JSON");
    tool(&["reset-counts"]);
    Cloud {
        subnet: v["subnet"].as_str().expect("subnet").into(),
        ami: v["ami"].as_str().expect("ami").into(),
    }
}

fn counts() -> serde_json::Value {
    serde_json::from_str(&tool(&["counts"])).expect("counts JSON")
}

fn count(c: &serde_json::Value, action: &str) -> u64 {
    c[action].as_u64().unwrap_or(0)
}

pub(crate) fn inventory(deployment: &str) -> serde_json::Value {
    serde_json::from_str(&tool(&["inventory", deployment])).expect("inventory JSON")
}

/// `flotilla` with test credentials and an empty HOME (the machine's ~/.aws never leaks in).
pub(crate) fn flotilla(home: &Home, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = home.cmd();
    c.env("HOME", home.path())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.args(args).output().expect("run flotilla");
    eprintln!(
        "$ flotilla {}\n-> {:?}\n{}\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

pub(crate) fn up_args<'a>(bp: &'a str, sets: &'a [String]) -> Vec<&'a str> {
    let mut v = vec!["up", bp];
    for s in sets {
        v.push("--set");
        v.push(s);
    }
    v
}

pub(crate) fn sets(name: &str, cloud: &Cloud, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        format!("name={name}"),
        format!("ami={}", cloud.ami),
        format!("subnet={}", cloud.subnet),
        format!("endpoint_url={PROXY}"),
        "ssh_user=root".to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

pub(crate) fn blueprint() -> String {
    repo_root()
        .join("blueprints/ec2-swarm.yaml")
        .display()
        .to_string()
}

fn down_and_check(home: &Home, name: &str) {
    let down = flotilla(home, &["down", name, "--yes"], &[]);
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    let inv = inventory(name);
    assert_eq!(
        inv,
        serde_json::json!({"instances": [], "security_groups": [], "key_pairs": []}),
        "nothing with the deployment's tag remains"
    );
}

#[test]
fn ec2_swarm_up_status_rerun_down() {
    require_docker();
    // The data plane starts hosts from flotilla's node image: build it first if no test has.
    crate::static_hosts::ensure_node_image_pub();
    let _one = EC2.lock().unwrap_or_else(|p| p.into_inner());
    let cloud = seed();
    let home = Home::new();
    let bp = blueprint();
    let s = sets("ec2-it", &cloud, &[]);
    let up = flotilla(&home, &up_args(&bp, &s), &[]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let c = counts();
    assert_eq!(
        count(&c, "RunInstances"),
        2,
        "one RunInstances per group wave: {c}"
    );
    assert_eq!(
        inventory("ec2-it")["instances"].as_array().map(Vec::len),
        Some(3)
    );

    let st = flotilla(&home, &["status", "ec2-it", "-o", "json"], &[]);
    assert_eq!(st.status.code(), Some(0), "status: {}", stderr(&st));
    let st = json(&st);
    assert_eq!(st["healthy"], true, "{st}");
    for n in st["nodes"].as_array().expect("nodes") {
        assert_eq!(n["machine"], "running");
        assert_eq!(n["cluster"], "ready/active", "{n}");
    }

    tool(&["reset-counts"]);
    let mut again_args = up_args(&bp, &s);
    again_args.extend_from_slice(&["-o", "json"]);
    let again = flotilla(&home, &again_args, &[]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(json(&again)["changed"], false);
    let c = counts();
    assert_eq!(
        count(&c, "RunInstances"),
        0,
        "a converged re-run launches nothing: {c}"
    );
    assert!(
        count(&c, "DescribeInstances") <= 1,
        "one batched describe: {c}"
    );

    down_and_check(&home, "ec2-it");
}

#[test]
fn ec2_throttling_is_absorbed_by_the_shared_backoff() {
    require_docker();
    // The data plane starts hosts from flotilla's node image: build it first if no test has.
    crate::static_hosts::ensure_node_image_pub();
    let _one = EC2.lock().unwrap_or_else(|p| p.into_inner());
    let cloud = seed();
    let home = Home::new();
    let bp = blueprint();
    let s = sets("ec2-throttle", &cloud, &["workers=1"]);
    tool(&["throttle", "DescribeInstances", "3"]);
    tool(&["throttle", "RunInstances", "2"]);
    let up = flotilla(&home, &up_args(&bp, &s), &[]);
    assert_eq!(
        up.status.code(),
        Some(0),
        "up under throttling: {}",
        stderr(&up)
    );
    let err = stderr(&up);
    assert!(
        err.matches("shared backoff").count() >= 5,
        "every throttled call shows in the log: {err}"
    );
    assert_eq!(
        inventory("ec2-throttle")["instances"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "throttled RunInstances did not create twice"
    );
    down_and_check(&home, "ec2-throttle");
}

#[test]
fn ec2_run_killed_after_run_instances_is_adopted() {
    require_docker();
    // The data plane starts hosts from flotilla's node image: build it first if no test has.
    crate::static_hosts::ensure_node_image_pub();
    let _one = EC2.lock().unwrap_or_else(|p| p.into_inner());
    let cloud = seed();
    let home = Home::new();
    let bp = blueprint();
    let s = sets("ec2-crash", &cloud, &[]);
    let crashed = flotilla(
        &home,
        &up_args(&bp, &s),
        &[("FLOTILLA_FAULT_AT", "after-create")],
    );
    assert_eq!(crashed.status.code(), None, "killed by the fault hook");
    assert_eq!(
        inventory("ec2-crash")["instances"].as_array().map(Vec::len),
        Some(3)
    );
    tool(&["reset-counts"]);
    let rerun = flotilla(&home, &up_args(&bp, &s), &[]);
    assert_eq!(rerun.status.code(), Some(0), "rerun: {}", stderr(&rerun));
    assert_eq!(
        count(&counts(), "RunInstances"),
        0,
        "the tagged instances were adopted, not launched again"
    );
    assert_eq!(
        inventory("ec2-crash")["instances"].as_array().map(Vec::len),
        Some(3),
        "still 3 instances in moto"
    );
    down_and_check(&home, "ec2-crash");
}

#[test]
fn ec2_bad_settings_fail_before_anything_is_created() {
    let _one = EC2.lock().unwrap_or_else(|p| p.into_inner());
    let cloud = seed();
    let bp = blueprint();
    type Case<'a> = (&'a str, Vec<String>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "unknown AMI",
            sets("ec2-bad", &cloud, &["ami=ami-0000000000000dead"]),
            vec![],
            "provider.ami",
        ),
        (
            "unknown instance type",
            sets("ec2-bad", &cloud, &["instance_type=t9.nope"]),
            vec![],
            "provider.instance_type",
        ),
        (
            "unknown subnet",
            sets("ec2-bad", &cloud, &["subnet=subnet-0000000000000dead"]),
            vec![],
            "provider.subnet",
        ),
        (
            "no credentials",
            sets("ec2-bad", &cloud, &[]),
            vec![
                ("AWS_ACCESS_KEY_ID", ""),
                ("AWS_SECRET_ACCESS_KEY", ""),
                ("AWS_PROFILE", "nobody"),
            ],
            "credentials",
        ),
    ];
    for (what, s, env, field) in cases {
        let home = Home::new();
        let out = flotilla(&home, &up_args(&bp, &s), &env);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what}: exit 2 expected: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(err.contains(field), "{what}: names {field}: {err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{what}: a one-line cause: {err}"
        );
        assert_eq!(
            inventory("ec2-bad"),
            serde_json::json!({"instances": [], "security_groups": [], "key_pairs": []}),
            "{what}: nothing created"
        );
    }
    assert_eq!(count(&counts(), "RunInstances"), 0);
}

#[test]
fn ec2_heal_replaces_a_terminated_instance() {
    require_docker();
    crate::static_hosts::ensure_node_image_pub();
    let _one = EC2.lock().unwrap_or_else(|p| p.into_inner());
    let cloud = seed();
    let home = Home::new();
    // The shipped blueprint plus an immediate grace, so one heal run acts.
    let text = std::fs::read_to_string(blueprint()).expect("blueprint")
        + "\nhealth:\n  unhealthy_grace: 0s\n";
    let bp = home.write("ec2-heal.yaml", &text);
    let bp = bp.to_str().expect("utf8").to_string();
    let s = sets("ec2-heal", &cloud, &["workers=1"]);
    let up = flotilla(&home, &up_args(&bp, &s), &[]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let st = json(&flotilla(&home, &["status", "ec2-heal", "-o", "json"], &[]));
    let victim = st["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == "workers-1")
        .cloned()
        .expect("workers-1");
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.path().join("deployments/ec2-heal/state.json")).expect("state"),
    )
    .expect("json");
    let instance = state["nodes"]["workers-1"]["machine_id"]
        .as_str()
        .expect("instance id")
        .to_string();
    assert_eq!(victim["machine"], "running");
    // The instance dies out of band (the data plane removes its host).
    tool(&["terminate", &instance]);
    tool(&["reset-counts"]);
    let heal = flotilla(&home, &["heal", "ec2-heal", "-o", "json"], &[]);
    assert_eq!(heal.status.code(), Some(0), "heal: {}", stderr(&heal));
    assert_eq!(json(&heal)["replaced"], serde_json::json!(["workers-1"]));
    assert_eq!(
        count(&counts(), "RunInstances"),
        1,
        "one replacement launched"
    );
    let st = json(&flotilla(&home, &["status", "ec2-heal", "-o", "json"], &[]));
    assert_eq!(st["healthy"], true, "{st}");
    assert!(
        st["stray_members"].as_array().is_some_and(Vec::is_empty),
        "no stale swarm member: {st}"
    );
    assert_eq!(
        inventory("ec2-heal")["instances"].as_array().map(Vec::len),
        Some(2)
    );
    down_and_check(&home, "ec2-heal");
}

#[test]
fn ec2_kubernetes_blueprint_plans_against_the_cloud() {
    let _one = EC2.lock().unwrap_or_else(|p| p.into_inner());
    let cloud = seed();
    let home = Home::new();
    let bp = repo_root().join("blueprints/ec2-kubernetes.yaml");
    let s = sets("ec2-k8s-plan", &cloud, &[]);
    let mut args = up_args(bp.to_str().expect("utf8"), &s);
    args[0] = "plan";
    args.extend_from_slice(&["-o", "json"]);
    let plan = flotilla(&home, &args, &[]);
    assert_eq!(plan.status.code(), Some(10), "plan: {}", stderr(&plan));
    let p = json(&plan);
    let mut names: Vec<&str> = p["machines"]["create"]
        .as_array()
        .expect("create")
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, vec!["control-plane-1", "workers-1", "workers-2"]);
    assert_eq!(count(&counts(), "RunInstances"), 0, "plan creates nothing");
}
