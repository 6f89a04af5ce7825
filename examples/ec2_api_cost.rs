//! API-cost figure for the EC2 provider: bring up N nodes (1 manager + N-1 workers) against moto,
//! observe once more (what a converged re-run costs), then tear down; print EC2 calls by operation.
//!
//! Run with `scripts/bench-ec2-api.sh` (starts moto when needed and writes the table). The data
//! plane is not needed: this measures the provider's API calls, not SSH.

use flotilla_provider_core::{CreateRequest, NodeSpec, Ownership, Provider, Role};
use flotilla_provider_ec2::{AmiSpec, Ec2Config, Ec2Provider};
use std::collections::BTreeMap;
use std::process::Command;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqL2Fq3i0Ft8Yb8VY3tPzL7yQ1L1mJ5w9i7D0bYHqOz bench";

fn seed(moto: &str) -> (String, String) {
    let out = Command::new("python3")
        .args(["integration/ec2_testcloud.py", "seed", "--moto", moto])
        .output()
        .expect("seed");
    assert!(
        out.status.success(),
        "seed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    (
        v["subnet"].as_str().unwrap_or_default().to_string(),
        v["ami"].as_str().unwrap_or_default().to_string(),
    )
}

fn diff(
    after: &BTreeMap<&'static str, u64>,
    before: &BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    after
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

#[tokio::main]
async fn main() {
    let moto = std::env::var("MOTO_URL").unwrap_or_else(|_| "http://127.0.0.1:5055".into());
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1, 10, 50]
    } else {
        sizes
    };
    std::env::set_var("AWS_ACCESS_KEY_ID", "bench");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench");
    let mut rows = Vec::new();
    for n in sizes {
        let (subnet, ami) = seed(&moto);
        let cfg: Ec2Config = serde_json::from_value(serde_json::json!({
            "region": "us-east-1", "endpoint_url": moto, "ami": ami, "instance_type": "t3.small", "subnet": subnet,
        }))
        .expect("config");
        assert!(matches!(cfg.ami, AmiSpec::Id(_)));
        let p = Ec2Provider::new(
            cfg,
            flotilla::kinds::cluster("swarm")
                .map(flotilla::cluster::ports)
                .unwrap_or_default(),
            KEY.into(),
        )
        .await
        .expect("provider");
        let owner = Ownership::new(format!("bench-{n}"));
        let mut nodes = vec![NodeSpec {
            name: "managers-1".into(),
            group: "managers".into(),
            role: Role::Manager,
        }];
        nodes.extend((1..n).map(|i| NodeSpec {
            name: format!("workers-{i}"),
            group: "workers".into(),
            role: Role::Worker,
        }));
        let t = std::time::Instant::now();
        p.preflight(&owner).await.expect("preflight");
        let req = CreateRequest {
            owner: owner.clone(),
            run_token: format!("rbench-{n}"),
            nodes,
            ssh_public_key: KEY.into(),
        };
        let created = p.create_nodes(&req).await.expect("create");
        let ids: Vec<_> = created.iter().map(|c| c.id.clone()).collect();
        let running = p.wait_running(&owner, &ids).await.expect("wait");
        assert_eq!(running.len(), n, "all {n} running");
        let up = p.stats();
        let up_secs = t.elapsed().as_secs_f64();
        let seen = p.describe(&owner).await.expect("describe");
        assert_eq!(seen.len(), n);
        let rerun = diff(&p.stats(), &up);
        let before_down = p.stats();
        p.delete_nodes(&owner, &ids).await.expect("delete");
        p.teardown(&owner).await.expect("teardown");
        let down = diff(&p.stats(), &before_down);
        rows.push((n, up, up_secs, rerun, down));
    }
    println!("| N | bring-up calls by operation | bring-up total | DescribeInstances | re-run observe | down calls by operation | down total |");
    println!("|---|---|---|---|---|---|---|");
    for (n, up, secs, rerun, down) in rows {
        let fmt = |m: &BTreeMap<&'static str, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let total = |m: &BTreeMap<&'static str, u64>| m.values().sum::<u64>();
        println!(
            "| {n} | {} | {} ({secs:.1}s) | {} | {} | {} | {} |",
            fmt(&up),
            total(&up),
            up.get("DescribeInstances").copied().unwrap_or(0),
            total(&rerun),
            fmt(&down),
            total(&down)
        );
    }
}
