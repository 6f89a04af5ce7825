//! A synthetic large deployment for the large-state benchmark (`bench/run`): writes, under a
//! flotilla home, the state of an N-node EC2 Swarm deployment (as a converged `up` would have
//! left it) and the EC2 `DescribeInstances` answer for the same N instances, which
//! `bench/replay_ec2.py` serves on loopback. So `status`, `plan` and `list` run their real code
//! paths (state read, blueprint re-render, the provider's describe and parse, the plan) on 1,000
//! nodes without 1,000 machines.
//!
//! usage: synthetic_fleet HOME_DIR WORK_DIR NODES ENDPOINT_URL SSH_KEY

use flotilla::state::model::{NodePhase, NodeRecord, OsInfo};
use flotilla::state::{Home, State};
use flotilla_provider_core::{labels, MachineId, Role};
use std::fmt::Write as _;
use std::path::PathBuf;

const DEPLOYMENT: &str = "big";
const MANAGERS: usize = 3;

fn blueprint(endpoint: &str, key: &str, workers: usize) -> String {
    format!(
        r#"name: {DEPLOYMENT}
description: synthetic {n}-node fleet for the large-state benchmark
provider:
  kind: ec2
  region: us-east-1
  endpoint_url: "{endpoint}"
  ami: ami-00000000000000000
  instance_type: t3.small
ssh:
  user: admin
  private_key: {key}
cluster:
  kind: swarm
groups:
  managers:
    role: manager
    count: {MANAGERS}
  workers:
    role: worker
    count: {workers}
outputs:
  manager: "{{{{ groups.managers[0].private_ip }}}}"
"#,
        n = workers + MANAGERS
    )
}

fn ip_of(i: usize) -> std::net::IpAddr {
    // 10.198.64.0/18: inside the test range, never dialled (the benchmark runs without probes).
    let n = 64 * 256 + 10 + i;
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(
        10,
        198,
        (n / 256) as u8,
        (n % 256) as u8,
    ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, home, work, nodes, endpoint, key] = args.as_slice() else {
        return Err("usage: synthetic_fleet HOME_DIR WORK_DIR NODES ENDPOINT_URL SSH_KEY".into());
    };
    let n: usize = nodes.parse()?;
    if n <= MANAGERS {
        return Err(format!("NODES must be more than {MANAGERS}").into());
    }
    let work = PathBuf::from(work);
    std::fs::create_dir_all(&work)?;
    let bp_path = work.join("big.yaml");
    std::fs::write(&bp_path, blueprint(endpoint, key, n - MANAGERS))?;
    let bp = flotilla::blueprint::load(&bp_path, &[]).map_err(|p| p.to_string())?;

    let now = "2026-11-28T12:00:00Z";
    let mut state = State::new(DEPLOYMENT, "ec2", now);
    state.blueprint_path = bp_path.display().to_string();
    state.blueprint_rendered = bp.rendered.clone();
    state.cluster.kind = "swarm".into();
    state.cluster.bootstrap_node = Some("managers-1".into());
    state.ssh_user = "admin".into();
    state.ssh_private_key = key.clone();
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>synthetic</requestId><reservationSet><item><reservationId>r-synthetic</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet>"#,
    );
    let mut i = 0;
    for (group, role, count) in [
        ("managers", Role::Manager, MANAGERS),
        ("workers", Role::Worker, n - MANAGERS),
    ] {
        for k in 1..=count {
            let name = format!("{group}-{k}");
            let id = format!("i-{:017x}", 0x1000 + i);
            let ip = ip_of(i);
            state.nodes.insert(
                name.clone(),
                NodeRecord {
                    name: name.clone(),
                    group: group.into(),
                    role,
                    machine_id: Some(MachineId(id.clone())),
                    run_token: "synthetic".into(),
                    phase: NodePhase::Ready,
                    private_ip: Some(ip),
                    public_ip: None,
                    ssh_port: 22,
                    ssh_user: "admin".into(),
                    host_key: Some(
                        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqL2Fq3i0Ft8Yb8VY3tPzL7yQ1L1mJ5w9i7D0bYHqOz"
                            .into(),
                    ),
                    os: Some(OsInfo {
                        id: "debian".into(),
                        id_like: Vec::new(),
                        version_id: "12".into(),
                        pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
                        systemd: false,
                    }),
                    docker_version: Some("20.10.24".into()),
                    cluster_id: Some(format!("node{i:021}")),
                    created_at: now.into(),
                    unhealthy_since: None,
                    docker_restart_tried_at: None,
                },
            );
            write!(
                xml,
                "<item><instanceId>{id}</instanceId><imageId>ami-00000000000000000</imageId>\
                 <instanceState><code>16</code><name>running</name></instanceState>\
                 <privateIpAddress>{ip}</privateIpAddress><instanceType>t3.small</instanceType>\
                 <amiLaunchIndex>0</amiLaunchIndex><launchTime>{now}</launchTime>\
                 <tagSet>\
                 <item><key>{d}</key><value>{DEPLOYMENT}</value></item>\
                 <item><key>{g}</key><value>{group}</value></item>\
                 <item><key>{nd}</key><value>{name}</value></item>\
                 <item><key>{r}</key><value>{role}</value></item>\
                 <item><key>{run}</key><value>synthetic</value></item>\
                 <item><key>{m}</key><value>true</value></item>\
                 </tagSet></item>",
                d = labels::DEPLOYMENT,
                g = labels::GROUP,
                nd = labels::NODE,
                r = labels::ROLE,
                role = role.as_str(),
                run = labels::RUN,
                m = labels::MANAGED,
            )?;
            i += 1;
        }
    }
    xml.push_str("</instancesSet></item></reservationSet></DescribeInstancesResponse>");
    state
        .next_index
        .insert("managers".into(), MANAGERS as u32 + 1);
    state
        .next_index
        .insert("workers".into(), (n - MANAGERS) as u32 + 1);
    std::fs::write(work.join("describe-instances.xml"), xml)?;
    Home::new(PathBuf::from(home)).save(&state)?;
    println!("{n} nodes written to deployment `{DEPLOYMENT}` under {home}");
    Ok(())
}
