//! One probe per node per run: OS, init system, Docker and Swarm state in a single SSH command.

use crate::state::OsInfo;

pub const PROBE_SCRIPT: &str = r#"
. /etc/os-release 2>/dev/null || true
echo "os_id=${ID:-unknown}"
echo "os_like=${ID_LIKE:-}"
echo "os_version=${VERSION_ID:-}"
echo "os_pretty=${PRETTY_NAME:-unknown}"
if [ -d /run/systemd/system ]; then echo systemd=1; else echo systemd=0; fi
if [ -d /proc/sys/net/ipv4/vs ]; then echo ipvs=1; else echo ipvs=0; fi
if command -v dockerd >/dev/null 2>&1; then echo docker_installed=1; else echo docker_installed=0; fi
if v=$(docker version --format '{{.Server.Version}}' 2>/dev/null) && [ -n "$v" ]; then
  echo "docker_server=$v"
  docker info --format 'swarm_state={{.Swarm.LocalNodeState}}
swarm_node_id={{.Swarm.NodeID}}
swarm_control={{.Swarm.ControlAvailable}}
swarm_cluster={{if .Swarm.Cluster}}{{.Swarm.Cluster.ID}}{{end}}
swarm_managers={{range .Swarm.RemoteManagers}}{{.Addr}} {{end}}' 2>/dev/null || true
fi
"#;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwarmLocal {
    /// inactive | pending | active | error | locked
    pub state: String,
    pub node_id: String,
    pub control: bool,
    pub cluster_id: String,
    pub managers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub os: OsInfo,
    pub ipvs: bool,
    pub docker_installed: bool,
    /// Server version when the daemon answers.
    pub docker_server: Option<String>,
    pub swarm: SwarmLocal,
}

pub fn parse_probe(out: &str) -> Probe {
    let get = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let server = get("docker_server");
    Probe {
        os: OsInfo {
            id: get("os_id"),
            id_like: get("os_like")
                .split_whitespace()
                .map(String::from)
                .collect(),
            version_id: get("os_version"),
            pretty_name: get("os_pretty"),
            systemd: get("systemd") == "1",
        },
        ipvs: get("ipvs") == "1",
        docker_installed: get("docker_installed") == "1",
        docker_server: (!server.is_empty()).then_some(server),
        swarm: SwarmLocal {
            state: get("swarm_state"),
            // IDs are reused in scripts on other nodes: anything else reads as none.
            node_id: crate::cluster::answers::member_id(&get("swarm_node_id")).unwrap_or_default(),
            control: get("swarm_control") == "true",
            cluster_id: crate::cluster::answers::member_id(&get("swarm_cluster"))
                .unwrap_or_default(),
            managers: get("swarm_managers")
                .split_whitespace()
                .map(String::from)
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_manager_probe() {
        let p = parse_probe("os_id=debian\nos_like=\nos_version=12\nos_pretty=Debian GNU/Linux 12 (bookworm)\nsystemd=0\nipvs=0\ndocker_installed=1\ndocker_server=20.10.24\nswarm_state=active\nswarm_node_id=abc\nswarm_control=true\nswarm_cluster=xyz\nswarm_managers=10.0.0.1:2377 \n");
        assert_eq!(p.os.id, "debian");
        assert_eq!(p.docker_server.as_deref(), Some("20.10.24"));
        assert!(p.swarm.control);
        assert_eq!(p.swarm.managers, vec!["10.0.0.1:2377"]);
        let bare = parse_probe("os_id=debian\nsystemd=0\ndocker_installed=0\n");
        assert_eq!(bare.docker_server, None);
        assert_eq!(bare.swarm, SwarmLocal::default());
    }
}
