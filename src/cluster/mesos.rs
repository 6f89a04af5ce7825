//! Apache Mesos: a ZooKeeper ensemble on the master group (the distribution's `zookeeperd`, myid
//! from the node's index, restarted only when the ensemble changes), mesos-master on every master
//! and mesos-agent (`--containerizers=docker,mesos`) on every worker as Docker containers with host
//! networking, optionally Marathon on the masters. Members come from the leading master's
//! `/master/slaves` and each master's `/health`.
//!
//! Containers rather than packages: Mesos is in the Apache Attic and the vendor package
//! repositories are gone, while the published `mesosphere/*` images still run anywhere Docker does.

use super::{ClusterError, ClusterNode, ConvergeReport, Member, Orchestrator};
use crate::ssh::{shell_quote, SshPool};
use async_trait::async_trait;
use flotilla_provider_core::backoff::Backoff;
use flotilla_provider_core::Role;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const ZOOKEEPER: &str = include_str!("../../templates/mesos/zookeeper.sh");
pub const MASTER_CONTAINER: &str = "flotilla-mesos-master";
pub const AGENT_CONTAINER: &str = "flotilla-mesos-agent";
pub const MARATHON_CONTAINER: &str = "flotilla-marathon";
const DEFAULT_MARATHON: &str = "mesosphere/marathon:v1.5.2";

/// The ZooKeeper id of a master: its node index (`masters-3` → 3). Node names are never reused
/// within a deployment, so ids stay unique across replacements.
pub fn zk_id(node: &str) -> Option<u32> {
    node.rsplit_once('-').and_then(|(_, i)| i.parse().ok())
}

/// `zk://ip1:2181,ip2:2181/<path>` over the masters.
pub fn zk_url(masters: &[&ClusterNode], path: &str) -> String {
    let hosts: Vec<String> = masters.iter().map(|m| format!("{}:2181", m.ip)).collect();
    format!("zk://{}/{path}", hosts.join(","))
}

/// Mesos `--attributes` from node labels (`k:v;k2:v2`).
fn attributes(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Agents as `/master/slaves` reports them.
pub fn parse_slaves(json: &str) -> Result<Vec<Member>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let slaves = v["slaves"].as_array().ok_or("no `slaves` in the answer")?;
    Ok(slaves
        .iter()
        .map(|s| {
            let labels: BTreeMap<String, String> = s["attributes"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let v = v
                                .as_str()
                                .map(String::from)
                                .unwrap_or_else(|| v.to_string());
                            (k.clone(), v)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let active = s["active"].as_bool().unwrap_or(false);
            Member {
                id: s["hostname"].as_str().unwrap_or_default().to_string(),
                hostname: s["hostname"].as_str().unwrap_or_default().to_string(),
                role: "worker".into(),
                status: if active { "ready" } else { "down" }.into(),
                availability: "active".into(),
                reachability: s["id"].as_str().unwrap_or_default().to_string(),
                leader: false,
                addr: s["hostname"].as_str().unwrap_or_default().to_string(),
                labels,
            }
        })
        .collect())
}

/// `cluster.mesos`: ZooKeeper, masters, agents (and optionally Marathon).
#[derive(Debug, Clone, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MesosOptions {
    /// Image of mesos-master (default `mesosphere/mesos-master:<version>`).
    pub master_image: Option<String>,
    /// Image of mesos-agent (default `mesosphere/mesos-slave:<version>`).
    pub agent_image: Option<String>,
    /// Run Marathon on the masters.
    #[serde(default)]
    pub marathon: bool,
    /// Image of Marathon (default `mesosphere/marathon:v1.5.2`).
    pub marathon_image: Option<String>,
    /// Run the agent container `--privileged` (default true: the Mesos containerizer manages
    /// cgroups). `false` runs it with Docker's default capabilities (Docker containerizer only),
    /// for hosts that cannot grant privileged containers (nested container hosts, like the test
    /// bed's).
    pub agent_privileged: Option<bool>,
}

impl MesosOptions {
    /// The image names, which reach `docker run` on the nodes, against their pattern.
    fn problems(&self) -> Vec<(String, String)> {
        use crate::blueprint::values::{is_image, mismatch, IMAGE};
        [
            ("cluster.mesos.master_image", &self.master_image),
            ("cluster.mesos.agent_image", &self.agent_image),
            ("cluster.mesos.marathon_image", &self.marathon_image),
        ]
        .into_iter()
        .filter_map(|(field, v)| v.as_deref().map(|v| (field, v)))
        .filter(|(_, v)| !is_image(v))
        .map(|(field, v)| mismatch(field, v, IMAGE))
        .collect()
    }
}

/// The kind's checked settings: the release and `cluster.mesos`.
#[derive(Debug)]
struct Settings {
    version: String,
    options: MesosOptions,
}

impl super::kind::ClusterSettings for Settings {
    fn build(
        &self,
        bp: &crate::blueprint::Blueprint,
        pool: Arc<SshPool>,
    ) -> Option<Box<dyn Orchestrator>> {
        let m = Mesos::new(pool, &bp.name, &self.version, self.options.clone());
        Some(Box::new(m))
    }
}

pub struct Mesos {
    pool: Arc<SshPool>,
    deployment: String,
    version: String,
    options: MesosOptions,
    settle_timeout: Duration,
}

impl Mesos {
    pub fn new(pool: Arc<SshPool>, deployment: &str, version: &str, options: MesosOptions) -> Self {
        Self {
            pool,
            deployment: deployment.to_string(),
            version: version.to_string(),
            options,
            settle_timeout: Duration::from_secs(180),
        }
    }

    fn master_image(&self) -> String {
        self.options
            .master_image
            .clone()
            .unwrap_or_else(|| format!("mesosphere/mesos-master:{}", self.version))
    }

    fn agent_image(&self) -> String {
        self.options
            .agent_image
            .clone()
            .unwrap_or_else(|| format!("mesosphere/mesos-slave:{}", self.version))
    }

    /// ZooKeeper on one master, with the whole ensemble in its configuration.
    async fn zookeeper(
        &self,
        node: &ClusterNode,
        masters: &[&ClusterNode],
    ) -> Result<bool, ClusterError> {
        let myid = zk_id(&node.name).ok_or_else(|| ClusterError::Node {
            node: node.name.clone(),
            message: "the node name has no index for a ZooKeeper id".into(),
        })?;
        let servers: Vec<serde_json::Value> = masters
            .iter()
            .filter_map(|m| Some(serde_json::json!({"id": zk_id(&m.name)?, "ip": m.ip})))
            .collect();
        let mut ctx = tera::Context::new();
        ctx.insert("myid", &myid);
        ctx.insert("servers", &servers);
        let script = super::render_script("zookeeper.sh", ZOOKEEPER, &ctx)?;
        let out = self
            .pool
            .run_ok(
                &node.target,
                "zookeeper",
                &script,
                Some(Duration::from_secs(900)),
            )
            .await?;
        Ok(out.contains("zookeeper=started"))
    }

    fn master_args(&self, node: &ClusterNode, masters: &[&ClusterNode]) -> Vec<String> {
        let quorum = masters.len() / 2 + 1;
        vec![
            "--net=host".into(),
            "--restart=always".into(),
            "-e".into(),
            format!("MESOS_ZK={}", zk_url(masters, "mesos")),
            "-e".into(),
            format!("MESOS_QUORUM={quorum}"),
            "-e".into(),
            format!("MESOS_IP={}", node.ip),
            "-e".into(),
            format!("MESOS_HOSTNAME={}", node.ip),
            "-e".into(),
            format!("MESOS_CLUSTER={}", self.deployment),
            "-e".into(),
            "MESOS_WORK_DIR=/var/lib/mesos".into(),
            "-e".into(),
            "MESOS_LOG_DIR=/var/log/mesos".into(),
            "-v".into(),
            "/var/lib/mesos:/var/lib/mesos".into(),
        ]
    }

    fn agent_args(&self, node: &ClusterNode, masters: &[&ClusterNode]) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--net=host".into(),
            "--pid=host".into(),
            "--restart=always".into(),
        ];
        if self.options.agent_privileged.unwrap_or(true) {
            a.push("--privileged".into());
        }
        a.extend([
            "-e".into(),
            format!("MESOS_MASTER={}", zk_url(masters, "mesos")),
            "-e".into(),
            "MESOS_CONTAINERIZERS=docker,mesos".into(),
            "-e".into(),
            format!("MESOS_IP={}", node.ip),
            "-e".into(),
            format!("MESOS_HOSTNAME={}", node.ip),
            "-e".into(),
            "MESOS_WORK_DIR=/var/lib/mesos-agent".into(),
            "-e".into(),
            "MESOS_SYSTEMD_ENABLE_SUPPORT=false".into(),
            "-v".into(),
            "/var/run/docker.sock:/var/run/docker.sock".into(),
            "-v".into(),
            "/sys/fs/cgroup:/sys/fs/cgroup".into(),
            "-v".into(),
            "/var/lib/mesos-agent:/var/lib/mesos-agent".into(),
        ]);
        let attrs = attributes(&node.labels);
        if !attrs.is_empty() {
            a.push("-e".into());
            a.push(format!("MESOS_ATTRIBUTES={attrs}"));
        }
        a
    }

    async fn run_container(
        &self,
        node: &ClusterNode,
        name: &str,
        image: &str,
        args: &[String],
        dirs: &[&str],
    ) -> Result<bool, ClusterError> {
        let out = self
            .pool
            .run_ok(
                &node.target,
                name,
                &crate::docker::run_script(name, image, args, &[], dirs),
                Some(Duration::from_secs(300)),
            )
            .await?;
        Ok(out.contains("=started"))
    }

    /// `curl` from a master to any master's endpoint (non-leading masters redirect to the leader).
    async fn get(&self, via: &ClusterNode, url: &str) -> Result<String, ClusterError> {
        Ok(self
            .pool
            .run_ok(
                &via.target,
                "mesos http",
                &format!("curl -fsSL --max-time 10 {}", shell_quote(url)),
                Some(Duration::from_secs(30)),
            )
            .await?)
    }

    async fn agents_via(&self, via: &ClusterNode) -> Result<Vec<Member>, ClusterError> {
        let out = self
            .get(via, &format!("http://{}:5050/master/slaves", via.ip))
            .await?;
        parse_slaves(&out).map_err(|e| ClusterError::Node {
            node: via.name.clone(),
            message: format!("/master/slaves: {e}"),
        })
    }

    async fn master_members(&self, via: &ClusterNode, masters: &[ClusterNode]) -> Vec<Member> {
        let mut out = Vec::new();
        for m in masters {
            let ok = self
                .get(via, &format!("http://{}:5050/health", m.ip))
                .await
                .is_ok();
            out.push(Member {
                id: format!("master:{}", m.ip),
                hostname: m.ip.clone(),
                role: "manager".into(),
                status: if ok { "ready" } else { "down" }.into(),
                availability: "active".into(),
                reachability: String::new(),
                leader: false,
                addr: m.ip.clone(),
                labels: BTreeMap::new(),
            });
        }
        out
    }

    async fn wait_agents(
        &self,
        via: &ClusterNode,
        agents: &[&ClusterNode],
    ) -> Result<Vec<Member>, ClusterError> {
        let mut backoff = Backoff::new(self.settle_timeout);
        loop {
            let seen = self.agents_via(via).await;
            let waiting: Vec<&str> = match &seen {
                Ok(ms) => agents
                    .iter()
                    .filter(|a| !ms.iter().any(|m| m.id == a.ip && m.status == "ready"))
                    .map(|a| a.name.as_str())
                    .collect(),
                Err(_) => agents.iter().map(|a| a.name.as_str()).collect(),
            };
            if waiting.is_empty() {
                return seen;
            }
            if !backoff.wait().await {
                return Err(ClusterError::Cluster(format!(
                    "Mesos agents not registered and active after {}s: {} (last answer: {})",
                    self.settle_timeout.as_secs(),
                    waiting.join(", "),
                    match seen {
                        Ok(_) => "they are missing from /master/slaves".to_string(),
                        Err(e) => e.to_string(),
                    }
                )));
            }
        }
    }

    /// Marks an agent gone through the operator API (it will not be allowed back with that id).
    async fn mark_gone(&self, via: &ClusterNode, hostname: &str) -> Result<(), ClusterError> {
        let agents = self.agents_via(via).await?;
        let Some(agent) = agents.iter().find(|m| m.hostname == hostname) else {
            return Ok(());
        };
        let body = serde_json::json!({
            "type": "MARK_AGENT_GONE",
            "mark_agent_gone": {"agent_id": {"value": agent.reachability}}
        });
        let script = format!(
            "curl -fsSL --max-time 10 -X POST -H 'Content-Type: application/json' -d {} {}",
            shell_quote(&body.to_string()),
            shell_quote(&format!("http://{}:5050/api/v1", via.ip))
        );
        self.pool
            .run_ok(
                &via.target,
                "MARK_AGENT_GONE",
                &script,
                Some(Duration::from_secs(30)),
            )
            .await?;
        Ok(())
    }
}

/// The `mesos` kind (registered in `crate::kinds`).
pub struct Kind;

/// The release a blueprint gets without `cluster.version`.
pub const DEFAULT_VERSION: &str = "1.7.1";

impl super::kind::OrchestratorKind for Kind {
    fn kind(&self) -> &'static str {
        "mesos"
    }

    fn version(&self, written: Option<&str>) -> Result<Option<String>, String> {
        let v = written.unwrap_or(DEFAULT_VERSION);
        let numeric = v
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if numeric {
            Ok(Some(v.to_string()))
        } else {
            Err(format!("`{v}` is not a Mesos version; write e.g. `1.7.1`"))
        }
    }

    fn settings(
        &self,
        version: Option<&str>,
        section: Option<serde_json::Value>,
    ) -> Result<Arc<dyn super::kind::ClusterSettings>, flotilla_provider_core::SettingsError> {
        let options: MesosOptions = match section {
            Some(v) => flotilla_provider_core::parse_section(v)?,
            None => MesosOptions::default(),
        };
        let problems = options.problems();
        if !problems.is_empty() {
            return Err(flotilla_provider_core::SettingsError::Invalid(problems));
        }
        let version = version.unwrap_or(DEFAULT_VERSION).to_string();
        Ok(Arc::new(Settings { version, options }))
    }

    fn managers(&self) -> Option<super::kind::Quorum> {
        Some(super::kind::Quorum {
            managers_are: "Mesos masters",
            quorum: "the ZooKeeper and replicated-log quorum",
            advice: "recover by hand (bring a majority of the masters and their ZooKeeper ensemble back; the replicated log needs it)",
        })
    }

    /// Masters and agents, ZooKeeper (clients, followers, elections), Marathon, and the port
    /// range agents offer to tasks.
    fn ports(&self) -> Vec<flotilla_provider_core::PortRule> {
        let r = |proto, from, to| flotilla_provider_core::PortRule { proto, from, to };
        vec![
            r("tcp", 5050, 5051),
            r("tcp", 2181, 2181),
            r("tcp", 2888, 2888),
            r("tcp", 3888, 3888),
            r("tcp", 8080, 8080),
            r("tcp", 31000, 32000),
        ]
    }

    fn container_detail(&self, name: &str, _labels: &BTreeMap<String, String>) -> Option<String> {
        name.starts_with("mesos-")
            .then(|| "task container".to_string())
    }

    fn after_stop(&self) -> &'static str {
        " (Mesos will see its task fail)"
    }
}

#[async_trait]
impl Orchestrator for Mesos {
    fn kind(&self) -> &'static str {
        "mesos"
    }

    async fn converge(&self, nodes: &[ClusterNode]) -> Result<ConvergeReport, ClusterError> {
        let mut report = ConvergeReport::default();
        let masters: Vec<&ClusterNode> = nodes.iter().filter(|n| n.role == Role::Manager).collect();
        let agents: Vec<&ClusterNode> = nodes.iter().filter(|n| n.role == Role::Worker).collect();
        let first = masters
            .first()
            .copied()
            .ok_or_else(|| ClusterError::Cluster("no master node for Mesos".into()))?;
        // 1. ZooKeeper, one master at a time: a changed ensemble restarts members one by one.
        for m in &masters {
            if self.zookeeper(m, &masters).await? {
                report.joined.push(format!("{}:zookeeper", m.name));
            }
        }
        // 2. Masters (and Marathon).
        for m in &masters {
            let args = self.master_args(m, &masters);
            if self
                .run_container(
                    m,
                    MASTER_CONTAINER,
                    &self.master_image(),
                    &args,
                    &["/var/lib/mesos"],
                )
                .await?
            {
                report.joined.push(m.name.clone());
            }
            if self.options.marathon {
                let image = self
                    .options
                    .marathon_image
                    .clone()
                    .unwrap_or_else(|| DEFAULT_MARATHON.into());
                let args = vec![
                    "--net=host".into(),
                    "--restart=always".into(),
                    "-e".into(),
                    format!("MARATHON_MASTER={}", zk_url(&masters, "mesos")),
                    "-e".into(),
                    format!("MARATHON_ZK={}", zk_url(&masters, "marathon")),
                    "-e".into(),
                    format!("MARATHON_HOSTNAME={}", m.ip),
                ];
                self.run_container(m, MARATHON_CONTAINER, &image, &args, &[])
                    .await?;
            }
        }
        if report.joined.iter().any(|j| j == &first.name) && report.initialized_on.is_none() {
            report.initialized_on = Some(first.name.clone());
        }
        // 3. Agents in parallel.
        let owned: Vec<ClusterNode> = agents.iter().map(|a| (*a).clone()).collect();
        let results: Vec<(String, Result<bool, ClusterError>)> = self
            .pool
            .fan_out(owned, |a| {
                let args = self.agent_args(&a, &masters);
                async move {
                    let r = self
                        .run_container(
                            &a,
                            AGENT_CONTAINER,
                            &self.agent_image(),
                            &args,
                            &["/var/lib/mesos-agent"],
                        )
                        .await;
                    (a.name.clone(), r)
                }
            })
            .await;
        for (name, r) in results {
            if r? {
                report.joined.push(name);
            }
        }
        // 4. Every agent registered and active with the leading master.
        let seen = self.wait_agents(first, &agents).await?;
        for a in &agents {
            if seen.iter().any(|m| m.id == a.ip) {
                report.member_ids.insert(a.name.clone(), a.ip.clone());
            }
        }
        for m in &masters {
            report
                .member_ids
                .insert(m.name.clone(), format!("master:{}", m.ip));
        }
        report.cluster_id = Some(zk_url(&masters, "mesos"));
        Ok(report)
    }

    async fn members(&self, managers: &[ClusterNode]) -> Result<Vec<Member>, ClusterError> {
        super::ask_managers(managers, |via| async move {
            let agents = self.agents_via(via).await?;
            let mut all = self.master_members(via, managers).await;
            all.extend(agents);
            Ok(all)
        })
        .await
    }

    async fn remove(
        &self,
        node: &ClusterNode,
        managers: &[ClusterNode],
        member_id: Option<&str>,
    ) -> Result<(), ClusterError> {
        // Stop what runs on the node (best effort: it may be dead), then tell the master.
        let _ = self
            .pool
            .run(
                &node.target,
                "stop mesos",
                &format!("docker rm -f {AGENT_CONTAINER} {MASTER_CONTAINER} {MARATHON_CONTAINER} >/dev/null 2>&1 || true"),
                Some(Duration::from_secs(120)),
            )
            .await;
        if node.role == Role::Worker {
            if let (Some(via), Some(id)) =
                (managers.iter().find(|m| m.name != node.name), member_id)
            {
                self.mark_gone(via, id).await?;
            }
        }
        Ok(())
    }

    async fn remove_member(
        &self,
        via: &[ClusterNode],
        member_id: &str,
        was_manager: bool,
    ) -> Result<(), ClusterError> {
        // A dead master leaves the ensemble when the next converge rewrites it without the node.
        match (was_manager, via.first()) {
            (false, Some(m)) => self.mark_gone(m, member_id).await,
            _ => Ok(()),
        }
    }

    async fn leave(&self, node: &ClusterNode) -> Result<(), ClusterError> {
        self.pool
            .run_ok(
                &node.target,
                "leave mesos",
                &format!(
                    "docker rm -f {AGENT_CONTAINER} {MASTER_CONTAINER} {MARATHON_CONTAINER} >/dev/null 2>&1 || true; \
                     if [ -x /usr/share/zookeeper/bin/zkServer.sh ]; then \
                       if [ -d /run/systemd/system ]; then systemctl stop zookeeper || true; \
                       else ZOOCFGDIR=/etc/zookeeper/conf /usr/share/zookeeper/bin/zkServer.sh stop >/dev/null 2>&1 || true; fi; fi"
                ),
                Some(Duration::from_secs(120)),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::Target;

    fn node(name: &str, ip: &str) -> ClusterNode {
        let mut n = ClusterNode::bare(
            name,
            Role::Manager,
            Target {
                node: name.into(),
                address: ip.into(),
                port: 22,
                user: "root".into(),
                pinned_key: None,
            },
        );
        n.ip = ip.into();
        n
    }

    #[test]
    fn zookeeper_script_renders_every_server_and_parses() {
        let mut ctx = tera::Context::new();
        ctx.insert("myid", &2);
        ctx.insert(
            "servers",
            &serde_json::json!([{"id": 1, "ip": "10.0.0.1"}, {"id": 2, "ip": "10.0.0.2"}, {"id": 3, "ip": "10.0.0.3"}]),
        );
        let s = super::super::render_script("zookeeper.sh", ZOOKEEPER, &ctx).expect("render");
        for i in 1..=3 {
            assert!(
                s.contains(&format!(
                    "printf 'server.%s=%s:2888:3888\\n' {i} '10.0.0.{i}' >>"
                )),
                "{s}"
            );
        }
        assert!(s.contains("printf '%s\\n' 2 > /var/lib/zookeeper/myid.flotilla"));
        crate::util::assert_sh_syntax(&s);
    }

    #[test]
    fn zookeeper_url_and_ids() {
        let a = node("masters-1", "10.0.0.1");
        let b = node("masters-3", "10.0.0.3");
        assert_eq!(
            zk_url(&[&a, &b], "mesos"),
            "zk://10.0.0.1:2181,10.0.0.3:2181/mesos"
        );
        assert_eq!(zk_id("masters-12"), Some(12));
        assert_eq!(zk_id("masters"), None);
    }

    #[test]
    fn slaves_parse_with_attributes() {
        let json = r#"{"slaves":[{"id":"abc-S0","hostname":"10.0.0.7","active":true,"attributes":{"zone":"a","rack":3}},
                                 {"id":"abc-S1","hostname":"10.0.0.8","active":false}]}"#;
        let ms = parse_slaves(json).expect("slaves");
        assert_eq!(ms[0].id, "10.0.0.7");
        assert_eq!(ms[0].status, "ready");
        assert_eq!(ms[0].reachability, "abc-S0");
        assert_eq!(ms[0].labels.get("rack").map(String::as_str), Some("3"));
        assert_eq!(ms[1].status, "down");
    }

    #[test]
    fn container_script_quotes_and_compares_the_spec() {
        let s = crate::docker::run_script(
            "flotilla-mesos-agent",
            "mesosphere/mesos-slave:1.7.1",
            &["-e".into(), "MESOS_ATTRIBUTES=zone:a;rack:1".into()],
            &[],
            &["/var/lib/mesos-agent"],
        );
        assert!(
            s.contains("spec='-e MESOS_ATTRIBUTES=zone:a;rack:1 mesosphere/mesos-slave:1.7.1'"),
            "{s}"
        );
        assert!(s.contains("'MESOS_ATTRIBUTES=zone:a;rack:1'"), "{s}");
        assert!(s.contains("mkdir -p '/var/lib/mesos-agent'"), "{s}");
    }
}
