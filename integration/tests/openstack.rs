//! The OpenStack provider against a real OpenStack control plane (keystone, nova with the fake
//! virt driver, neutron, glance, placement; `integration/openstack/testcloud.sh`) with real SSH hosts
//! behind the servers (its data plane): a Swarm forms, re-runs create nothing, a server that goes to
//! ERROR is replaced, floating IPs are allocated and released, and bad settings fail before anything
//! is created. The tests share one cloud, so they run one at a time.

use crate::common::{json, repo_root, require_docker, stderr, Home};
use std::process::{Command, Output};
use std::sync::Mutex;

static CLOUD: Mutex<()> = Mutex::new(());
static PRISTINE: std::sync::Once = std::sync::Once::new();

/// Serialises the OpenStack tests and starts the first one from the pristine cloud (a DB restore),
/// so leftovers of an earlier, interrupted run cannot interfere.
pub(crate) fn exclusive_cloud() -> std::sync::MutexGuard<'static, ()> {
    let guard = CLOUD.lock().unwrap_or_else(|p| p.into_inner());
    PRISTINE.call_once(|| testcloud(&["reset"]));
    guard
}

pub(crate) fn inventory(deployment: &str) -> serde_json::Value {
    inventory_py(&[deployment])
}

/// `integration/openstack/inventory.py ARGS...` (what the cloud holds, labels, hand-made
/// resources), its JSON answer.
pub(crate) fn inventory_py(args: &[&str]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(repo_root().join("integration/openstack/inventory.py"))
        .args(args)
        .output()
        .expect("inventory.py");
    assert!(
        out.status.success(),
        "inventory.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inventory.py JSON")
}

pub(crate) fn empty() -> serde_json::Value {
    serde_json::json!({"servers": [], "floating_ips": [], "security_groups": [], "key_pairs": []})
}

fn testcloud(args: &[&str]) {
    let out = Command::new("bash")
        .arg(repo_root().join("integration/openstack/testcloud.sh"))
        .args(args)
        .output()
        .expect("testcloud.sh");
    assert!(
        out.status.success(),
        "testcloud.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The demo project's credentials, the way users give them: a clouds.yaml entry (plus one naming a
/// project that does not exist).
fn write_clouds(home: &Home, password: &str) -> std::path::PathBuf {
    let entry = |name: &str, user: &str, project: &str| {
        format!("  {name}:\n    auth:\n      auth_url: http://127.0.0.1:15000\n      username: {user}\n      password: {password}\n      project_name: {project}\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n")
    };
    home.write(
        "clouds.yaml",
        &format!(
            "clouds:\n{}{}{}",
            entry("testcloud", "demo", "demo"),
            entry("badproject", "demo", "nosuchproject"),
            // The cloud's admin: its Neutron listings span every project.
            entry("admincloud", "admin", "admin")
        ),
    )
}

pub(crate) fn flotilla(home: &Home, args: &[&str], password: &str) -> Output {
    flotilla_env(home, args, password, &[])
}

pub(crate) fn flotilla_env(
    home: &Home,
    args: &[&str],
    password: &str,
    env: &[(&str, &str)],
) -> Output {
    let clouds = write_clouds(home, password);
    let mut c = home.cmd();
    c.env("HOME", home.path())
        .env("OS_CLIENT_CONFIG_FILE", &clouds)
        .env("OS_CLOUD", "testcloud");
    for k in [
        "OS_AUTH_URL",
        "OS_USERNAME",
        "OS_PASSWORD",
        "OS_PROJECT_NAME",
    ] {
        c.env_remove(k);
    }
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

pub(crate) fn up_args<'a>(bp: &'a str, sets: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["up", bp];
    for s in sets {
        v.push("--set");
        v.push(s);
    }
    v.extend_from_slice(extra);
    v
}

pub(crate) fn sets(name: &str, extra: &[&str]) -> Vec<String> {
    let mut v = vec![format!("name={name}"), "ssh_user=root".to_string()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

pub(crate) fn blueprint() -> String {
    repo_root()
        .join("blueprints/openstack-swarm.yaml")
        .display()
        .to_string()
}

#[test]
fn openstack_swarm_up_rerun_down_with_floating_ips() {
    require_docker();
    // The data plane starts hosts from flotilla's node image: build it first if no test has.
    crate::static_hosts::ensure_node_image_pub();
    let _one = exclusive_cloud();
    let home = Home::new();
    let bp = blueprint();
    // Floating IPs from the external network; SSH goes to the fixed IPs where the hosts live.
    let s = sets("os-it", &["fip_pool=public"]);
    let mut args = up_args(&bp, &s, &[]);
    let bp_with_fixed = home.write(
        "os-fixed.yaml",
        &std::fs::read_to_string(&bp)
            .expect("blueprint")
            .replace("  ssh_cidr:", "  address: fixed\n  ssh_cidr:"),
    );
    let bp_fixed = bp_with_fixed.to_str().expect("utf8").to_string();
    args[1] = &bp_fixed;
    let up = flotilla(&home, &args, "secret");
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let inv = inventory("os-it");
    assert_eq!(inv["servers"].as_array().map(Vec::len), Some(3), "{inv}");
    assert_eq!(
        inv["floating_ips"].as_array().map(Vec::len),
        Some(3),
        "one floating IP per server: {inv}"
    );

    let st = flotilla(&home, &["status", "os-it", "-o", "json"], "secret");
    assert_eq!(st.status.code(), Some(0), "status: {}", stderr(&st));
    let st = json(&st);
    assert_eq!(st["healthy"], true, "{st}");

    let mut again = args.clone();
    again.extend_from_slice(&["-o", "json"]);
    let r = flotilla(&home, &again, "secret");
    assert_eq!(r.status.code(), Some(0));
    let r = json(&r);
    assert_eq!(r["changed"], false, "{r}");
    assert_eq!(
        inventory("os-it")["servers"].as_array().map(Vec::len),
        Some(3),
        "nothing created twice"
    );

    let down = flotilla(&home, &["down", "os-it", "--yes"], "secret");
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    assert_eq!(
        inventory("os-it"),
        empty(),
        "servers, floating IPs, security group and key pair are gone"
    );
}

#[test]
fn openstack_server_in_error_is_replaced() {
    require_docker();
    // The data plane starts hosts from flotilla's node image: build it first if no test has.
    crate::static_hosts::ensure_node_image_pub();
    let _one = exclusive_cloud();
    let home = Home::new();
    let bp = blueprint();
    let s = sets("os-flaky", &["workers=1"]);
    testcloud(&["fail-next-spawns", "1"]);
    let up = flotilla(&home, &up_args(&bp, &s, &[]), "secret");
    assert_eq!(
        up.status.code(),
        Some(0),
        "up despite one hypervisor failure: {}",
        stderr(&up)
    );
    let err = stderr(&up);
    assert!(
        err.contains("injected hypervisor failure"),
        "the fault message is surfaced: {err}"
    );
    assert!(err.contains("replacing it"), "{err}");
    assert_eq!(
        inventory("os-flaky")["servers"].as_array().map(Vec::len),
        Some(2),
        "the ERROR server was replaced, not kept"
    );
    let down = flotilla(&home, &["down", "os-flaky", "--yes"], "secret");
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    assert_eq!(inventory("os-flaky"), empty());
}

#[test]
fn openstack_bad_settings_fail_before_anything_is_created() {
    let _one = exclusive_cloud();
    let bp = blueprint();
    let cases: Vec<(&str, Vec<String>, &str, &str)> = vec![
        (
            "unknown flavor",
            sets("os-bad", &["flavor=m1.smal"]),
            "secret",
            "did you mean `m1.small`",
        ),
        (
            "unknown image",
            sets("os-bad", &["image=debian-13"]),
            "secret",
            "provider.image",
        ),
        (
            "unknown network",
            sets("os-bad", &["network=privat"]),
            "secret",
            "provider.network",
        ),
        (
            "wrong password",
            sets("os-bad", &[]),
            "wrong",
            "Keystone refused the credentials",
        ),
        (
            "unknown project",
            sets("os-bad", &["cloud=badproject"]),
            "secret",
            "Keystone refused the credentials",
        ),
    ];
    for (what, s, password, expect) in cases {
        let home = Home::new();
        let out = flotilla(&home, &up_args(&bp, &s, &[]), password);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what}: exit 2 expected: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(err.contains(expect), "{what}: `{expect}` in {err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{what}: one-line cause: {err}"
        );
        assert_eq!(inventory("os-bad"), empty(), "{what}: nothing created");
    }
}

#[test]
fn openstack_run_killed_after_create_is_adopted_by_tag() {
    require_docker();
    // The data plane starts hosts from flotilla's node image: build it first if no test has.
    crate::static_hosts::ensure_node_image_pub();
    let _one = exclusive_cloud();
    let home = Home::new();
    let bp = blueprint();
    let s = sets("os-crash", &["workers=1"]);
    let crashed = flotilla_env(
        &home,
        &up_args(&bp, &s, &[]),
        "secret",
        &[("FLOTILLA_FAULT_AT", "after-create")],
    );
    assert_eq!(crashed.status.code(), None, "killed by the fault hook");
    assert_eq!(
        inventory("os-crash")["servers"].as_array().map(Vec::len),
        Some(2)
    );
    let rerun = flotilla(&home, &up_args(&bp, &s, &["-o", "json"]), "secret");
    assert_eq!(rerun.status.code(), Some(0), "rerun: {}", stderr(&rerun));
    let r = json(&rerun);
    assert_eq!(
        r["machines"]["create"].as_array().map(Vec::len),
        Some(0),
        "adopted, not created again: {r}"
    );
    assert_eq!(
        inventory("os-crash")["servers"].as_array().map(Vec::len),
        Some(2),
        "still 2 servers"
    );
    let down = flotilla(&home, &["down", "os-crash", "--yes"], "secret");
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    assert_eq!(inventory("os-crash"), empty());
}

#[test]
fn openstack_transient_503_is_retried() {
    require_docker();
    // The data plane starts hosts from flotilla's node image: build it first if no test has.
    crate::static_hosts::ensure_node_image_pub();
    let _one = exclusive_cloud();
    let home = Home::new();
    let bp = blueprint();
    let s = sets("os-503", &["workers=0"]);
    // nova-api answers 503 for the first seconds of the run, then recovers.
    testcloud(&["fault", "nova-api", "on"]);
    let healer = std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(3));
        testcloud(&["fault", "nova-api", "off"]);
    });
    let up = flotilla(&home, &up_args(&bp, &s, &[]), "secret");
    healer.join().expect("healer thread");
    assert_eq!(
        up.status.code(),
        Some(0),
        "up after transient 503s: {}",
        stderr(&up)
    );
    assert!(stderr(&up).contains("503"), "the retries are logged");
    let down = flotilla(&home, &["down", "os-503", "--yes"], "secret");
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    assert_eq!(inventory("os-503"), empty());
}

/// A create that went through but whose answer was lost (nova-api answers 504 after creating
/// the server, as a slow API behind a proxy does): the server is found and used, not created a
/// second time. Before this was handled, a loaded CI machine ended with two servers per node.
#[test]
fn openstack_lost_create_answer_does_not_make_a_second_server() {
    require_docker();
    crate::static_hosts::ensure_node_image_pub();
    let _one = exclusive_cloud();
    let home = Home::new();
    let bp = blueprint();
    let s = sets("os-lost", &["workers=1"]);
    testcloud(&["lose-next-creates", "2"]);
    let up = flotilla(&home, &up_args(&bp, &s, &[]), "secret");
    testcloud(&["lose-next-creates", "0"]);
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    assert!(
        stderr(&up).contains("the server exists; using it"),
        "the lost answers were noticed: {}",
        stderr(&up)
    );
    let inv = inventory("os-lost");
    assert_eq!(
        inv["servers"].as_array().map(Vec::len),
        Some(2),
        "one server per node: {inv}"
    );
    let down = flotilla(&home, &["down", "os-lost", "--yes"], "secret");
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    assert_eq!(inventory("os-lost"), empty());
}

/// Ten server creates in parallel through the provider itself (no SSH needed): all ACTIVE, no
/// failure, then all deleted.
#[test]
fn openstack_ten_parallel_creates() {
    let _one = exclusive_cloud();
    let home = Home::new();
    let clouds = write_clouds(&home, "secret");
    std::env::set_var("OS_CLIENT_CONFIG_FILE", &clouds);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        use flotilla_provider_core::{CreateRequest, NodeSpec, Ownership, Provider, Role};
        let cfg: flotilla_provider_openstack::OpenStackConfig = serde_json::from_value(serde_json::json!({
            "cloud": "testcloud", "image": "debian-12", "flavor": "m1.tiny", "network": "private", "parallelism": 10,
        }))
        .expect("config");
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqL2Fq3i0Ft8Yb8VY3tPzL7yQ1L1mJ5w9i7D0bYHqOz parallel";
        let p = flotilla_provider_openstack::OpenStackProvider::new(cfg, vec![], key.into()).expect("provider");
        let owner = Ownership::new("os-par");
        p.preflight(&owner).await.expect("preflight");
        let nodes: Vec<NodeSpec> = (1..=10).map(|i| NodeSpec { name: format!("w-{i}"), group: "w".into(), role: Role::Worker }).collect();
        let req = CreateRequest { owner: owner.clone(), run_token: "rpar".into(), nodes, ssh_public_key: key.into() };
        let created = p.create_nodes(&req).await.expect("10 creates");
        assert_eq!(created.len(), 10);
        let ids: Vec<_> = created.iter().map(|c| c.id.clone()).collect();
        let running = p.wait_running(&owner, &ids).await.expect("all ACTIVE");
        assert_eq!(running.len(), 10);
        assert!(running.iter().all(|n| n.private_ip.is_some()), "every server has a fixed IP");
        p.delete_nodes(&owner, &ids).await.expect("delete");
        p.teardown(&owner).await.expect("teardown");
    });
    std::env::remove_var("OS_CLIENT_CONFIG_FILE");
    assert_eq!(inventory("os-par"), empty());
}

#[test]
fn openstack_heal_replaces_a_dead_server() {
    require_docker();
    crate::static_hosts::ensure_node_image_pub();
    let _one = exclusive_cloud();
    let home = Home::new();
    let text = std::fs::read_to_string(blueprint()).expect("blueprint")
        + "\nhealth:\n  unhealthy_grace: 0s\n";
    let bp = home.write("os-heal.yaml", &text);
    let bp = bp.to_str().expect("utf8").to_string();
    let s = sets("os-heal", &["workers=1"]);
    let up = flotilla(&home, &up_args(&bp, &s, &[]), "secret");
    assert_eq!(up.status.code(), Some(0), "up: {}", stderr(&up));
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.path().join("deployments/os-heal/state.json")).expect("state"),
    )
    .expect("json");
    let server = state["nodes"]["workers-1"]["machine_id"]
        .as_str()
        .expect("server id")
        .to_string();
    // The host dies while Nova still reports the server ACTIVE: only SSH and the swarm notice.
    crate::common::docker_ok(&["stop", "-t", "0", &format!("osdp-{server}")]);
    let dry = json(&flotilla(
        &home,
        &["heal", "os-heal", "--dry-run", "-o", "json"],
        "secret",
    ));
    let verdict = dry["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .find(|v| v["node"] == "workers-1")
        .cloned()
        .expect("workers-1");
    assert_eq!(verdict["decision"], "replace", "{dry}");
    let heal = flotilla(&home, &["heal", "os-heal", "-o", "json"], "secret");
    assert_eq!(heal.status.code(), Some(0), "heal: {}", stderr(&heal));
    assert_eq!(json(&heal)["replaced"], serde_json::json!(["workers-1"]));
    let st = json(&flotilla(
        &home,
        &["status", "os-heal", "-o", "json"],
        "secret",
    ));
    assert_eq!(st["healthy"], true, "{st}");
    assert!(
        st["stray_members"].as_array().is_some_and(Vec::is_empty),
        "no stale swarm member: {st}"
    );
    let inv = inventory("os-heal");
    assert_eq!(inv["servers"].as_array().map(Vec::len), Some(2), "{inv}");
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.path().join("deployments/os-heal/state.json")).expect("state"),
    )
    .expect("json");
    assert_ne!(
        state["nodes"]["workers-1"]["machine_id"].as_str(),
        Some(server.as_str()),
        "a new server"
    );
    let down = flotilla(&home, &["down", "os-heal", "--yes"], "secret");
    assert_eq!(down.status.code(), Some(0), "down: {}", stderr(&down));
    assert_eq!(inventory("os-heal"), empty());
}

#[test]
fn openstack_kubernetes_and_mesos_blueprints_plan_against_the_cloud() {
    let _one = exclusive_cloud();
    let home = Home::new();
    for (file, nodes) in [
        ("openstack-kubernetes.yaml", 3),
        ("openstack-mesos.yaml", 6),
    ] {
        let bp = repo_root().join("blueprints").join(file);
        let s = sets("os-plan", &[]);
        let mut args = up_args(bp.to_str().expect("utf8"), &s, &["-o", "json"]);
        args[0] = "plan";
        let plan = flotilla(&home, &args, "secret");
        assert_eq!(
            plan.status.code(),
            Some(10),
            "plan {file}: {}",
            stderr(&plan)
        );
        assert_eq!(
            json(&plan)["machines"]["create"].as_array().map(Vec::len),
            Some(nodes),
            "{file}"
        );
        assert_eq!(inventory("os-plan"), empty(), "plan creates nothing");
    }
}
