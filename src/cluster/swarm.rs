//! Docker Swarm: `swarm init` on the first manager, fresh join tokens every run, managers joined
//! one at a time (each waits until it is Reachable, so quorum is never at risk), workers in
//! parallel, labels from the blueprint, and a final check that every node is Ready/Active.

use super::{ClusterError, ClusterNode, ConvergeReport, Member, Orchestrator};
use crate::ssh::{shell_quote, SshPool};
use async_trait::async_trait;
use flotilla_provider_core::backoff::Backoff;
use flotilla_provider_core::Role;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// `cluster.swarm`: options of `docker swarm init`.
#[derive(Debug, Clone, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SwarmOptions {
    /// `docker swarm init --default-addr-pool` (keep overlay networks inside your own range).
    pub default_addr_pool: Option<ipnet::Ipv4Net>,
    pub default_addr_pool_mask_length: Option<u8>,
    /// `docker swarm init --dispatcher-heartbeat` (how fast a dead node shows Down).
    #[serde(default, deserialize_with = "crate::blueprint::model::de_duration")]
    pub dispatcher_heartbeat: Option<Duration>,
}

impl super::kind::ClusterSettings for SwarmOptions {
    fn build(
        &self,
        _bp: &crate::blueprint::Blueprint,
        pool: Arc<SshPool>,
    ) -> Option<Box<dyn Orchestrator>> {
        Some(Box::new(Swarm::new(pool, self.clone())))
    }
}

pub struct Swarm {
    pool: Arc<SshPool>,
    options: SwarmOptions,
    /// Bound on waiting for a node to show Ready / Reachable.
    settle_timeout: Duration,
}

const NODE_LS: &str = r#"docker node ls -q | xargs -r docker node inspect --format '{{.ID}}|{{.Description.Hostname}}|{{.Spec.Role}}|{{.Status.State}}|{{.Spec.Availability}}|{{if .ManagerStatus}}{{.ManagerStatus.Reachability}}|{{.ManagerStatus.Leader}}{{else}}|false{{end}}|{{.Status.Addr}}|{{json .Spec.Labels}}'"#;

fn parse_members(out: &str) -> Vec<Member> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(9, '|').collect();
            if f.len() < 9 {
                return None;
            }
            let labels: BTreeMap<String, String> =
                serde_json::from_str(f[8].trim()).unwrap_or_default();
            // A line whose ID is not one is dropped: IDs are reused in scripts.
            Some(Member {
                id: super::answers::member_id(f[0])?,
                hostname: f[1].to_string(),
                role: f[2].to_string(),
                status: f[3].to_string(),
                availability: f[4].to_string(),
                reachability: f[5].to_string(),
                leader: f[6] == "true",
                addr: f[7].to_string(),
                labels,
            })
        })
        .collect()
}

/// The join, through the Engine API (`docker system dial-stdio`, Docker >= 18.09) so that the
/// token travels only on stdin — inside this script, itself sent on stdin — and never as an
/// argument a process list would show (`docker swarm join --token` would put it there).
/// A busy manager answers "will continue in the background" after ~20 s (seen with 30 nodes
/// on 2 cores): the join is then still going on, so the script waits (bounded) for the node to
/// become an active member. Prints the node's ID.
fn join_script(token: &str, advertise: &str, leader_ip: &str) -> String {
    let body = serde_json::json!({
        "ListenAddr": "0.0.0.0:2377",
        "AdvertiseAddr": advertise,
        "RemoteAddrs": [format!("{leader_ip}:2377")],
        "JoinToken": token,
    })
    .to_string();
    format!(
        "resp=$(docker system dial-stdio 2>/dev/null <<'FLOTILLA_JOIN'\n\
         POST /v1.24/swarm/join HTTP/1.0\n\
         Host: docker\n\
         Content-Type: application/json\n\
         Content-Length: {len}\n\
         \n\
         {body}\n\
         FLOTILLA_JOIN\n\
         ) || true\n\
         case \"$resp\" in\n\
         \x20 'HTTP/1.'?' 200'*) ;;\n\
         \x20 *'continue in the background'*) ;;\n\
         \x20 '') echo 'docker system dial-stdio gave no answer (Docker 18.09 or later is needed)' >&2; exit 1 ;;\n\
         \x20 *) printf '%s\\n' \"$resp\" | tail -n 1 >&2; exit 1 ;;\n\
         esac\n\
         i=0\n\
         until [ \"$(docker info --format '{{{{.Swarm.LocalNodeState}}}}')\" = active ]; do\n\
         \x20 i=$((i + 1)); [ \"$i\" -lt 280 ] || {{ echo 'the node did not become an active swarm member within 140 s' >&2; exit 1; }}\n\
         \x20 sleep 0.5\n\
         done\n\
         docker info --format '{{{{.Swarm.NodeID}}}}'\n",
        len = body.len(),
    )
}

/// The node ID a node printed, or why it is not one.
fn node_id(node: &ClusterNode, out: &str) -> Result<String, ClusterError> {
    super::answers::member_id(out).ok_or_else(|| ClusterError::Node {
        node: node.name.clone(),
        message: format!(
            "answered {} where a swarm node ID was expected",
            crate::names::shown(out.trim())
        ),
    })
}

/// Every wanted member listed, Ready and Active (or why not).
fn all_ready(want: &[String], ms: &[Member]) -> Result<(), String> {
    for id in want {
        match ms.iter().find(|m| &m.id == id) {
            Some(m) if m.status == "ready" && m.availability == "active" => {}
            Some(m) => {
                return Err(format!(
                    "{} ({}) is {}/{}",
                    m.hostname, m.id, m.status, m.availability
                ))
            }
            None => return Err(format!("member {id} not listed")),
        }
    }
    Ok(())
}

impl Swarm {
    pub fn new(pool: Arc<SshPool>, options: SwarmOptions) -> Self {
        Self {
            pool,
            options,
            settle_timeout: Duration::from_secs(90),
        }
    }

    async fn members_via(&self, via: &ClusterNode) -> Result<Vec<Member>, ClusterError> {
        let out = self
            .pool
            .run_ok(
                &via.target,
                "docker node ls",
                NODE_LS,
                Some(Duration::from_secs(60)),
            )
            .await?;
        Ok(parse_members(&out))
    }

    async fn init(&self, node: &ClusterNode) -> Result<(), ClusterError> {
        let mut cmd = format!(
            "docker swarm init --advertise-addr {}",
            shell_quote(&node.ip)
        );
        if let Some(pool) = &self.options.default_addr_pool {
            cmd.push_str(&format!(" --default-addr-pool {pool}"));
            if let Some(mask) = self.options.default_addr_pool_mask_length {
                cmd.push_str(&format!(" --default-addr-pool-mask-length {mask}"));
            }
        }
        if let Some(hb) = self.options.dispatcher_heartbeat {
            cmd.push_str(&format!(" --dispatcher-heartbeat {}s", hb.as_secs().max(1)));
        }
        cmd.push_str(" >/dev/null");
        self.pool
            .run_ok(
                &node.target,
                "docker swarm init",
                &cmd,
                Some(Duration::from_secs(120)),
            )
            .await?;
        info!(node = %node.name, "swarm initialised");
        Ok(())
    }

    /// Fresh tokens, read from a manager at the moment they are needed, never stored or logged.
    async fn tokens(&self, leader: &ClusterNode) -> Result<(String, String), ClusterError> {
        let out = self
            .pool
            .run_ok(
                &leader.target,
                "docker swarm join-token",
                "docker swarm join-token -q worker && docker swarm join-token -q manager",
                Some(Duration::from_secs(60)),
            )
            .await?;
        let mut lines = out
            .lines()
            .map(super::answers::swarm_join_token)
            .filter(Option::is_some)
            .flatten();
        match (lines.next(), lines.next()) {
            (Some(w), Some(m)) => Ok((w, m)),
            _ => Err(ClusterError::Node {
                node: leader.name.clone(),
                message: "could not read the swarm join tokens".into(),
            }),
        }
    }

    async fn join(
        &self,
        node: &ClusterNode,
        token: &str,
        leader_ip: &str,
    ) -> Result<String, ClusterError> {
        let script = join_script(token, &node.ip, leader_ip);
        let out = self
            .pool
            .run_ok(
                &node.target,
                "docker swarm join",
                &script,
                Some(Duration::from_secs(180)),
            )
            .await?;
        info!(node = %node.name, role = %node.role, "joined the swarm");
        node_id(node, &out)
    }

    /// Waits until `check` holds for the member list, bounded by `settle_timeout`.
    async fn wait_members<F>(
        &self,
        via: &ClusterNode,
        what: &str,
        check: F,
    ) -> Result<Vec<Member>, ClusterError>
    where
        F: Fn(&[Member]) -> Result<(), String>,
    {
        self.wait_members_for(via, what, self.settle_timeout, check)
            .await
    }

    async fn wait_members_for<F>(
        &self,
        via: &ClusterNode,
        what: &str,
        timeout: Duration,
        check: F,
    ) -> Result<Vec<Member>, ClusterError>
    where
        F: Fn(&[Member]) -> Result<(), String>,
    {
        let mut backoff = Backoff::new(timeout)
            .first(Duration::from_millis(300))
            .cap(Duration::from_secs(3));
        loop {
            let members = self.members_via(via).await?;
            match check(&members) {
                Ok(()) => return Ok(members),
                Err(why) => {
                    if !backoff.wait().await {
                        return Err(ClusterError::Cluster(format!(
                            "{what}: still not true after {}s: {why}",
                            timeout.as_secs()
                        )));
                    }
                }
            }
        }
    }

    /// Nodes the swarm still reports Down although their engine runs: nudge each engine (a
    /// daemon call makes a stalled agent reconnect), wait a little, and make a worker that is
    /// still Down leave and join again as a new member (its old entry removed). Managers are not
    /// re-joined automatically: that touches the raft membership and is left to the operator.
    async fn recover_stuck(
        &self,
        nodes: &[ClusterNode],
        leader: &ClusterNode,
        ids: &mut BTreeMap<String, String>,
        report: &mut ConvergeReport,
    ) -> Result<(), ClusterError> {
        let down = |ms: &[Member], ids: &BTreeMap<String, String>| -> Vec<String> {
            nodes
                .iter()
                .filter(|n| n.name != leader.name)
                .filter(|n| {
                    ids.get(&n.name)
                        .is_some_and(|id| ms.iter().any(|m| &m.id == id && m.status != "ready"))
                })
                .map(|n| n.name.clone())
                .collect()
        };
        let members = self.members_via(leader).await?;
        let stuck = down(&members, ids);
        for name in &stuck {
            let Some(n) = nodes.iter().find(|n| &n.name == name) else {
                continue;
            };
            tracing::warn!(node = %name, "the swarm reports the node Down although its engine runs; nudging it");
            let _ = self
                .pool
                .run(
                    &n.target,
                    "nudge swarm agent",
                    "docker ps >/dev/null 2>&1; docker info >/dev/null 2>&1; true",
                    Some(Duration::from_secs(30)),
                )
                .await;
        }
        if stuck.is_empty() {
            return Ok(());
        }
        // Give the nudged agents time to report in.
        flotilla_provider_core::backoff::pause(Duration::from_secs(10)).await;
        let members = self.members_via(leader).await?;
        let still = down(&members, ids);
        let workers: Vec<&ClusterNode> = nodes
            .iter()
            .filter(|n| still.contains(&n.name) && n.role == Role::Worker)
            .collect();
        if workers.is_empty() {
            return Ok(());
        }
        let (worker_token, _) = self.tokens(leader).await?;
        for n in workers {
            tracing::warn!(node = %n.name, "still Down: leaving and joining the swarm again");
            let _ = self
                .pool
                .run(
                    &n.target,
                    "docker swarm leave",
                    "docker swarm leave --force >/dev/null 2>&1 || true",
                    Some(Duration::from_secs(60)),
                )
                .await;
            if let Some(old) = ids.get(&n.name) {
                self.pool
                    .run_ok(
                        &leader.target,
                        "docker node rm",
                        &format!(
                            "docker node rm --force {} >/dev/null 2>&1 || true",
                            shell_quote(old)
                        ),
                        Some(Duration::from_secs(60)),
                    )
                    .await?;
            }
            let id = self.join(n, &worker_token, &leader.ip).await?;
            ids.insert(n.name.clone(), id);
            report.joined.push(n.name.clone());
        }
        Ok(())
    }

    async fn detect_ipvs(&self, node: &ClusterNode) -> Option<bool> {
        let out = self
            .pool
            .run(
                &node.target,
                "ipvs check",
                "[ -d /proc/sys/net/ipv4/vs ] && echo yes || echo no",
                Some(Duration::from_secs(30)),
            )
            .await
            .ok()?;
        Some(out.stdout.trim() == "yes")
    }
}

/// The node's own view of its swarm membership (`docker info`), as its probe found it; an
/// unprobed node is no member.
fn local(n: &ClusterNode) -> &crate::docker::SwarmLocal {
    static NOT_PROBED: crate::docker::SwarmLocal = crate::docker::SwarmLocal {
        state: String::new(),
        node_id: String::new(),
        control: false,
        cluster_id: String::new(),
        managers: Vec::new(),
    };
    n.probe.as_ref().map_or(&NOT_PROBED, |p| &p.swarm)
}

/// The `swarm` kind (registered in `crate::kinds`).
pub struct Kind;

impl super::kind::OrchestratorKind for Kind {
    fn kind(&self) -> &'static str {
        "swarm"
    }

    fn version(&self, written: Option<&str>) -> Result<Option<String>, String> {
        match written {
            Some(_) => Err("only used with kinds that install their own release; Swarm comes with the installed Docker (`docker.version`)".into()),
            None => Ok(None),
        }
    }

    fn managers(&self) -> Option<super::kind::Quorum> {
        Some(super::kind::Quorum {
            managers_are: "swarm managers",
            quorum: "the raft quorum",
            advice:
                "recover by hand (`docker swarm init --force-new-cluster` on a surviving manager)",
        })
    }

    /// 2377/tcp (managers), 7946/tcp+udp (gossip), 4789/udp (VXLAN).
    fn ports(&self) -> Vec<flotilla_provider_core::PortRule> {
        let r = |proto, from, to| flotilla_provider_core::PortRule { proto, from, to };
        vec![
            r("tcp", 2377, 2377),
            r("tcp", 7946, 7946),
            r("udp", 7946, 7946),
            r("udp", 4789, 4789),
        ]
    }

    fn takes_services(&self) -> bool {
        true
    }

    fn resolves_images(&self) -> bool {
        true
    }

    fn container_detail(&self, _name: &str, labels: &BTreeMap<String, String>) -> Option<String> {
        let svc = labels.get("com.docker.swarm.service.name")?;
        Some(match labels.get("com.docker.stack.namespace") {
            Some(stack) => format!("service {svc} (stack {stack})"),
            None => format!("service {svc}"),
        })
    }

    fn after_stop(&self) -> &'static str {
        " (the swarm will start a new task for it)"
    }

    fn settings(
        &self,
        _version: Option<&str>,
        section: Option<serde_json::Value>,
    ) -> Result<Arc<dyn super::kind::ClusterSettings>, flotilla_provider_core::SettingsError> {
        let options: SwarmOptions = match section {
            Some(v) => flotilla_provider_core::parse_section(v)?,
            None => SwarmOptions::default(),
        };
        Ok(Arc::new(options))
    }
}

#[async_trait]
impl Orchestrator for Swarm {
    fn kind(&self) -> &'static str {
        "swarm"
    }

    fn needs_join(&self, probe: &crate::docker::Probe) -> bool {
        probe.swarm.state != "active"
    }

    /// Only a manager whose engine says ControlAvailable can answer for the swarm.
    fn can_answer(&self, probe: &crate::docker::Probe) -> bool {
        probe.swarm.control
    }

    async fn converge(&self, nodes: &[ClusterNode]) -> Result<ConvergeReport, ClusterError> {
        let mut report = ConvergeReport::default();
        // 1. Which swarm, if any, do the nodes already belong to?
        let active_managers: Vec<&ClusterNode> = nodes
            .iter()
            .filter(|n| local(n).state == "active" && local(n).control)
            .collect();
        let clusters: std::collections::BTreeSet<&str> = nodes
            .iter()
            .filter(|n| local(n).state == "active" && !local(n).cluster_id.is_empty())
            .map(|n| local(n).cluster_id.as_str())
            .collect();
        if clusters.len() > 1 {
            return Err(ClusterError::Cluster(format!(
                "the nodes belong to {} different swarms ({}); make the odd ones `docker swarm leave --force` first",
                clusters.len(),
                clusters.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        for n in nodes {
            if matches!(local(n).state.as_str(), "error" | "locked") {
                return Err(ClusterError::Node { node: n.name.clone(), message: format!("swarm state is `{}`; fix it on the node (docker swarm leave --force, or unlock)", local(n).state) });
            }
        }
        let leader: ClusterNode = match active_managers.first() {
            Some(m) => (*m).clone(),
            None => {
                if let Some(n) = nodes.iter().find(|n| local(n).state == "active") {
                    return Err(ClusterError::Node {
                        node: n.name.clone(),
                        message: "is a swarm worker but none of the deployment's managers is in its swarm; \
                                  `docker swarm leave` it or add its managers"
                            .into(),
                    });
                }
                let first = nodes
                    .iter()
                    .find(|n| n.role == Role::Manager)
                    .ok_or_else(|| {
                        ClusterError::Cluster("no manager node to initialise the swarm on".into())
                    })?;
                self.init(first).await?;
                report.initialized_on = Some(first.name.clone());
                first.clone()
            }
        };
        let routing_mesh = self.detect_ipvs(&leader).await;
        report
            .facts
            .insert("routing_mesh".into(), serde_json::json!(routing_mesh));
        if routing_mesh == Some(false) {
            report.notes.push(
                "this kernel has no IPVS: Swarm's routing mesh and VIP load balancing do not work here; \
                 publish services with `--endpoint-mode dnsrr --publish mode=host,...`"
                    .into(),
            );
        }

        let members = self.members_via(&leader).await?;
        let known: std::collections::BTreeSet<&str> =
            members.iter().map(|m| m.id.as_str()).collect();
        let needs_join = |n: &&ClusterNode| {
            n.name != leader.name
                && !(local(n).state == "active" && known.contains(local(n).node_id.as_str()))
        };
        let pending_managers: Vec<&ClusterNode> = nodes
            .iter()
            .filter(|n| n.role == Role::Manager)
            .filter(needs_join)
            .collect();
        let pending_workers: Vec<&ClusterNode> = nodes
            .iter()
            .filter(|n| n.role == Role::Worker)
            .filter(needs_join)
            .collect();

        let mut ids: BTreeMap<String, String> = nodes
            .iter()
            .filter(|n| local(n).state == "active" && !local(n).node_id.is_empty())
            .map(|n| (n.name.clone(), local(n).node_id.clone()))
            .collect();
        if !pending_managers.is_empty() || !pending_workers.is_empty() {
            let (worker_token, manager_token) = self.tokens(&leader).await?;
            // 2. Managers one at a time, each Reachable before the next (quorum safety).
            for m in pending_managers {
                let id = self.join(m, &manager_token, &leader.ip).await?;
                let want = id.clone();
                self.wait_members(
                    &leader,
                    &format!("manager {} reachable", m.name),
                    move |ms| match ms.iter().find(|x| x.id == want) {
                        Some(x) if x.reachability == "reachable" => Ok(()),
                        Some(x) => Err(format!("reachability is `{}`", x.reachability)),
                        None => Err("not listed yet".into()),
                    },
                )
                .await?;
                ids.insert(m.name.clone(), id);
                report.joined.push(m.name.clone());
            }
            // 3. Workers in parallel; one failing does not stop the others.
            let owned: Vec<ClusterNode> = pending_workers.into_iter().cloned().collect();
            let results: Vec<(String, Result<String, ClusterError>)> = self
                .pool
                .fan_out(owned, |w| {
                    let token = worker_token.clone();
                    let leader_ip = leader.ip.clone();
                    async move {
                        let r = self.join(&w, &token, &leader_ip).await;
                        (w.name.clone(), r)
                    }
                })
                .await;
            let mut failures = Vec::new();
            for (name, r) in results {
                match r {
                    Ok(id) => {
                        ids.insert(name.clone(), id);
                        report.joined.push(name);
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
            if !failures.is_empty() {
                return Err(ClusterError::Cluster(format!(
                    "{} node(s) could not join: {}",
                    failures.len(),
                    failures.join("; ")
                )));
            }
        }
        if !ids.contains_key(&leader.name) {
            let out = self
                .pool
                .run_ok(
                    &leader.target,
                    "docker info",
                    "docker info --format '{{.Swarm.NodeID}}'",
                    Some(Duration::from_secs(30)),
                )
                .await?;
            ids.insert(leader.name.clone(), node_id(&leader, &out)?);
        }

        // 4. Every node Ready/Active. A restarted node's engine sometimes does not reconnect to
        //    the managers by itself (moby/swarmkit#2868): after a first bounded wait, such nodes
        //    are nudged once, and a worker still Down after that leaves and joins afresh.
        let want: Vec<String> = ids.values().cloned().collect();
        let first_wait = self.settle_timeout / 3;
        let members = match self
            .wait_members_for(&leader, "all nodes Ready and Active", first_wait, |ms| {
                all_ready(&want, ms)
            })
            .await
        {
            Ok(ms) => ms,
            Err(_) => {
                self.recover_stuck(nodes, &leader, &mut ids, &mut report)
                    .await?;
                let want: Vec<String> = ids.values().cloned().collect();
                self.wait_members(&leader, "all nodes Ready and Active", |ms| {
                    all_ready(&want, ms)
                })
                .await?
            }
        };

        // 5. Labels from the blueprint (only missing or different ones are written).
        for n in nodes {
            let Some(id) = ids.get(&n.name) else { continue };
            let Some(m) = members.iter().find(|m| &m.id == id) else {
                continue;
            };
            let mut args = String::new();
            for (k, v) in &n.labels {
                if m.labels.get(k) != Some(v) {
                    args.push_str(&format!(
                        " --label-add {}",
                        shell_quote(&format!("{k}={v}"))
                    ));
                }
            }
            if !args.is_empty() {
                self.pool
                    .run_ok(
                        &leader.target,
                        "docker node update",
                        &format!("docker node update{args} {} >/dev/null", shell_quote(id)),
                        Some(Duration::from_secs(60)),
                    )
                    .await?;
                report.labelled.push(n.name.clone());
            }
        }
        report.cluster_id = self
            .pool
            .run_ok(
                &leader.target,
                "docker info",
                "docker info --format '{{.Swarm.Cluster.ID}}'",
                Some(Duration::from_secs(30)),
            )
            .await
            .ok()
            .map(|s| s.trim().to_string());
        report.member_ids = ids;
        Ok(report)
    }

    async fn members(&self, managers: &[ClusterNode]) -> Result<Vec<Member>, ClusterError> {
        super::ask_managers(managers, |m| self.members_via(m)).await
    }

    async fn remove(
        &self,
        node: &ClusterNode,
        managers: &[ClusterNode],
        member_id: Option<&str>,
    ) -> Result<(), ClusterError> {
        let via: Vec<ClusterNode> = managers
            .iter()
            .filter(|m| m.name != node.name)
            .cloned()
            .collect();
        // Drain first so tasks move before the node goes (best effort: the node may be dead).
        if let (Some(id), Some(m)) = (member_id, via.first()) {
            let id = shell_quote(id);
            let _ = self
                .pool
                .run(
                    &m.target,
                    "docker node update --availability drain",
                    &format!(
                        "docker node update --availability drain {id} >/dev/null 2>&1 || true"
                    ),
                    Some(Duration::from_secs(60)),
                )
                .await;
            // Wait (bounded) until the node's tasks have moved elsewhere.
            let wait = format!(
                "for i in $(seq 1 120); do [ -z \"$(docker node ps {id} --filter desired-state=running -q 2>/dev/null)\" ] && exit 0; sleep 1; done; exit 1"
            );
            if self
                .pool
                .run_ok(
                    &m.target,
                    "wait for tasks to move",
                    &wait,
                    Some(Duration::from_secs(150)),
                )
                .await
                .is_err()
            {
                tracing::warn!(node = %node.name, "tasks did not move off the drained node within 120 s; removing it anyway");
            }
            if node.role == Role::Manager {
                let _ = self
                    .pool
                    .run(
                        &m.target,
                        "docker node demote",
                        &format!("docker node demote {id} >/dev/null 2>&1 || true"),
                        Some(Duration::from_secs(60)),
                    )
                    .await;
            }
        }
        let _ = self
            .pool
            .run(
                &node.target,
                "docker swarm leave",
                "docker swarm leave --force >/dev/null 2>&1 || true",
                Some(Duration::from_secs(60)),
            )
            .await;
        if let (Some(id), Some(m)) = (member_id, via.first()) {
            let id = shell_quote(id);
            self.pool
                .run_ok(&m.target, "docker node rm", &format!("if ! docker node rm --force {id} >/dev/null 2>&1; then docker node inspect {id} >/dev/null 2>&1 && exit 1; fi; exit 0"), Some(Duration::from_secs(60)))
                .await?;
        }
        Ok(())
    }

    async fn remove_member(
        &self,
        via: &[ClusterNode],
        member_id: &str,
        _was_manager: bool,
    ) -> Result<(), ClusterError> {
        let Some(m) = via.first() else {
            return Ok(());
        };
        let id = shell_quote(member_id);
        let cmd = format!("docker node demote {id} >/dev/null 2>&1; docker node rm --force {id} >/dev/null 2>&1 || ! docker node inspect {id} >/dev/null 2>&1");
        self.pool
            .run_ok(
                &m.target,
                "remove stale swarm member",
                &cmd,
                Some(Duration::from_secs(60)),
            )
            .await?;
        Ok(())
    }

    async fn deploy_services(
        &self,
        managers: &[ClusterNode],
        name: &str,
        definition: &str,
        resolve_image: Option<&str>,
    ) -> Result<(), ClusterError> {
        let script = format!(
            "docker stack deploy --prune{} --compose-file - {}",
            resolve_image
                .map(|r| format!(" --resolve-image {}", shell_quote(r)))
                .unwrap_or_default(),
            shell_quote(name)
        );
        super::pipe_to_manager(
            &self.pool,
            managers,
            "docker stack deploy",
            &script,
            definition,
        )
        .await
    }

    async fn remove_services(
        &self,
        managers: &[ClusterNode],
        name: &str,
        _definition: &str,
    ) -> Result<(), ClusterError> {
        let script = format!(
            "cat >/dev/null; docker stack rm {} >/dev/null",
            shell_quote(name)
        );
        super::pipe_to_manager(&self.pool, managers, "docker stack rm", &script, "").await
    }

    async fn leave(&self, node: &ClusterNode) -> Result<(), ClusterError> {
        self.pool
            .run_ok(&node.target, "docker swarm leave", "docker info --format '{{.Swarm.LocalNodeState}}' | grep -q inactive || docker swarm leave --force >/dev/null", Some(Duration::from_secs(60)))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_token_never_reaches_an_argument_list() {
        let token =
            "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx";
        let s = join_script(token, "10.198.0.3", "10.198.0.2");
        crate::util::assert_sh_syntax(&s);
        // The token is only in the here-document, the request's body.
        let (before, rest) = s.split_once("<<'FLOTILLA_JOIN'\n").expect("heredoc");
        let (heredoc, after) = rest.split_once("\nFLOTILLA_JOIN\n").expect("end");
        assert!(!before.contains(token) && !after.contains(token));
        let (head, body) = heredoc.split_once("\n\n").expect("request");
        assert!(head.starts_with("POST /v1.24/swarm/join HTTP/1.0"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["JoinToken"], token);
        assert_eq!(v["RemoteAddrs"][0], "10.198.0.2:2377");
    }

    #[test]
    fn member_lines_with_hostile_ids_are_dropped() {
        let out = "x; rm -rf /|w|worker|ready|active||false|10.0.0.1|{}\nabc|w2|worker|ready|active||false|10.0.0.2|{}\n";
        let ms = parse_members(out);
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].id, "abc");
    }

    #[test]
    fn parses_node_inspect_lines() {
        let out = "abc|managers-1|manager|ready|active|reachable|true|10.198.0.10|{\"zone\":\"a\"}\nxyz|workers-1|worker|down|active||false|10.198.0.11|{}\n";
        let ms = parse_members(out);
        assert_eq!(ms.len(), 2);
        assert!(ms[0].leader);
        assert_eq!(ms[0].labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(ms[1].status, "down");
        assert_eq!(ms[1].reachability, "");
    }
}
