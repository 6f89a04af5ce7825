//! `cluster:` of a blueprint: its kind, version and options, and the manager counts it needs.

use super::load::Ctx;
use super::model::*;
use super::problem::expected_one_of;
use flotilla_provider_core::Role;

/// `cluster.kind`, its version (defaults applied) and the options that belong to it.
pub(super) fn check_cluster(ctx: &mut Ctx, raw: RawCluster) -> Option<ClusterConfig> {
    let kind = match raw.kind.as_deref() {
        None => {
            let loc = ctx.index.value("cluster");
            ctx.push(
                loc,
                "cluster.kind",
                format!("missing; {}", expected_one_of("", CLUSTER_KINDS)),
            );
            return None;
        }
        Some("swarm") => ClusterKind::Swarm,
        Some("kubernetes") => ClusterKind::Kubernetes,
        Some("mesos") => ClusterKind::Mesos,
        Some("none") => ClusterKind::None,
        Some(k) => {
            ctx.at(
                "cluster.kind",
                format!(
                    "unknown cluster kind `{k}`; {}",
                    expected_one_of(k, CLUSTER_KINDS)
                ),
            );
            return None;
        }
    };
    let mut ok = true;
    let version = match kind {
        ClusterKind::Kubernetes => {
            let v = raw
                .version
                .clone()
                .unwrap_or_else(|| KUBERNETES_DEFAULT_VERSION.to_string());
            match crate::cluster::kubernetes::parse_version(&v) {
                Some((minor, _)) if minor >= KUBERNETES_MIN_MINOR => {}
                Some(_) => {
                    ok = false;
                    ctx.at("cluster.version", format!(
                        "Kubernetes {v} is too old: 1.{KUBERNETES_MIN_MINOR} or newer (older releases need dockershim, which is gone, and their package repositories are frozen)"
                    ));
                }
                None => {
                    ok = false;
                    ctx.at(
                        "cluster.version",
                        format!("`{v}` is not a Kubernetes version; write `1.31` or `1.31.2`"),
                    );
                }
            }
            Some(v)
        }
        ClusterKind::Mesos => {
            let v = raw
                .version
                .clone()
                .unwrap_or_else(|| MESOS_DEFAULT_VERSION.to_string());
            if !v
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            {
                ok = false;
                ctx.at(
                    "cluster.version",
                    format!("`{v}` is not a Mesos version; write e.g. `1.7.1`"),
                );
            }
            Some(v)
        }
        ClusterKind::Swarm | ClusterKind::None => {
            if raw.version.is_some() {
                ctx.at("cluster.version", "only used with `kind: kubernetes` or `kind: mesos` (Swarm comes with the installed Docker)");
                ok = false;
            }
            None
        }
    };
    if kind == ClusterKind::Kubernetes {
        if let Some(cni) = raw.kubernetes.cni.as_deref() {
            if !crate::cluster::kubernetes::CNI_CHOICES.contains(&cni)
                && !cni.starts_with("https://")
            {
                ok = false;
                ctx.at(
                    "cluster.kubernetes.cni",
                    format!(
                        "`{cni}`: {} or the https:// URL of a manifest",
                        expected_one_of(cni, crate::cluster::kubernetes::CNI_CHOICES)
                    ),
                );
            }
        }
    }
    ok.then_some(ClusterConfig {
        kind,
        version,
        swarm: raw.swarm,
        kubernetes: raw.kubernetes,
        mesos: raw.mesos,
    })
}

/// Manager (control-plane, master) counts: at least one, odd so the quorum of raft / etcd /
/// ZooKeeper survives a failure, and Kubernetes HA needs an endpoint in front of them.
pub(super) fn check_managers(ctx: &mut Ctx, groups: &[Group], cfg: &ClusterConfig) {
    let (what, quorum) = match cfg.kind {
        ClusterKind::Swarm => ("swarm managers", "the raft quorum"),
        ClusterKind::Kubernetes => ("control-plane nodes", "the etcd quorum"),
        ClusterKind::Mesos => ("Mesos masters", "the ZooKeeper and replicated-log quorum"),
        ClusterKind::None => return,
    };
    let managers: u32 = groups
        .iter()
        .filter(|g| g.role == Role::Manager)
        .map(|g| g.count)
        .sum();
    let loc = ctx.index.value("groups");
    if managers == 0 {
        ctx.push(
            loc,
            "groups",
            format!("a {} cluster needs at least one manager node (its {what}): a group with `role: manager` and count >= 1", cfg.kind.as_str()),
        );
    } else if managers.is_multiple_of(2) {
        ctx.push(
            loc,
            "groups",
            format!("{managers} {what}: use an odd number so {quorum} survives a failure"),
        );
    } else if managers > 1
        && cfg.kind == ClusterKind::Kubernetes
        && cfg.kubernetes.control_plane_endpoint.is_none()
    {
        let loc = ctx.index.value("cluster");
        ctx.push(
            loc,
            "cluster.kubernetes.control_plane_endpoint",
            format!("{managers} control-plane nodes need `control_plane_endpoint` (a load balancer or DNS name in front of them, `host[:port]`): kubeadm cannot add control-plane nodes without it"),
        );
    }
}
