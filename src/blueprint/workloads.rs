//! What runs on the cluster once it is up: `containers:`, `services:` and the `manager:`.

use super::load::Ctx;
use super::model::*;
use super::problem::expected_one_of;
use std::collections::BTreeMap;
use std::path::Path;

/// `services:` entries: one of `file`/`definition`, a name Swarm and Kubernetes accept, and a
/// cluster kind that has a scheduler to hand them to. Files are read when `up` deploys them (a
/// recorded blueprint must still load after the file is gone, for `down`).
pub(super) fn check_services(
    ctx: &mut Ctx,
    services: BTreeMap<String, ServiceSpec>,
    cluster: Option<ClusterKind>,
) -> BTreeMap<String, ServiceSpec> {
    if !services.is_empty() && cluster.is_some_and(|c| !c.spec().takes_services()) {
        let loc = ctx.index.key("services");
        let msg = format!(
            "stacks and manifests need a cluster kind with a scheduler for them ({}); use `containers:` here",
            crate::kinds::clusters_that(|k| k.takes_services())
        );
        ctx.push(loc, "services", msg);
    }
    for (name, s) in &services {
        let at = format!("services.{name}");
        if !crate::names::is_valid(crate::names::NameKind::Service, name) {
            let loc = ctx.index.key(&at);
            ctx.push(
                loc,
                at.clone(),
                "service names start with a letter and use 1-40 lowercase letters, digits and `-`",
            );
        }
        if s.file.is_some() == s.definition.is_some() {
            let loc = ctx.index.key(&at);
            ctx.push(
                loc,
                at.clone(),
                "give exactly one of `file` (a compose/manifest file) or `definition` (inline)",
            );
        }
        if let Some(r) = &s.resolve_image {
            let applies = cluster.is_some_and(|c| c.spec().resolves_images());
            if !applies || !matches!(r.as_str(), "always" | "changed" | "never") {
                let field = format!("{at}.resolve_image");
                let kinds = crate::kinds::clusters_that(|k| k.resolves_images());
                ctx.at(
                    field,
                    format!("only for cluster kind {kinds}; one of always, changed, never"),
                );
            }
        }
    }
    services
}

/// `manager:`: a group that exists and a usable port.
pub(super) fn check_manager(ctx: &mut Ctx, m: ManagerSpec, groups: &[Group]) -> ManagerSpec {
    if let Some(g) = &m.group {
        if !groups.iter().any(|x| &x.name == g) {
            let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            ctx.at(
                "manager.group",
                format!("no group `{g}`; {}", expected_one_of(g, &names)),
            );
        }
    }
    if m.port == 0 {
        ctx.at("manager.port", "must be 1-65535");
    }
    m
}

/// `containers:` entries: names usable as container names, groups that exist, a known restart
/// policy, port/volume syntax, and image tarballs that are `docker save` archives.
pub(super) fn check_containers(
    ctx: &mut Ctx,
    containers: BTreeMap<String, ContainerSpec>,
    groups: &[Group],
    path: &Path,
) -> BTreeMap<String, ContainerSpec> {
    for (name, c) in &containers {
        let at = format!("containers.{name}");
        if name.is_empty()
            || name.len() > 40
            || !name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        {
            let loc = ctx.index.key(&at);
            ctx.push(
                loc,
                at.clone(),
                "container names use 1-40 lowercase letters, digits and `-`",
            );
        }
        if c.groups.is_empty() {
            ctx.at(
                format!("{at}.groups"),
                "name at least one group whose nodes run it",
            );
        }
        for (i, g) in c.groups.iter().enumerate() {
            if !groups.iter().any(|x| &x.name == g) {
                let field = format!("{at}.groups[{i}]");
                let loc = ctx.index.value(&field);
                let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
                ctx.push(
                    loc,
                    field,
                    format!("no group `{g}`; {}", expected_one_of(g, &names)),
                );
            }
        }
        if let Some(r) = &c.restart {
            let ok = matches!(
                r.as_str(),
                "no" | "always" | "unless-stopped" | "on-failure"
            ) || r
                .strip_prefix("on-failure:")
                .is_some_and(|n| n.parse::<u32>().is_ok());
            if !ok {
                let field = format!("{at}.restart");
                ctx.at(
                    field,
                    format!("`{r}`: expected one of no, always, unless-stopped, on-failure[:N]"),
                );
            }
        }
        for (i, p) in c.ports.iter().enumerate() {
            let (body, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
            let parts: Vec<&str> = body.split(':').collect();
            let ok = matches!(proto, "tcp" | "udp" | "sctp")
                && (2..=3).contains(&parts.len())
                && parts[parts.len() - 2..]
                    .iter()
                    .all(|x| x.parse::<u16>().is_ok_and(|n| n > 0));
            if !ok {
                let field = format!("{at}.ports[{i}]");
                ctx.at(field, format!("`{p}`: write `host_port:container_port[/tcp|udp]` (optionally `ip:` first)"));
            }
        }
        for (i, v) in c.volumes.iter().enumerate() {
            let parts: Vec<&str> = v.split(':').collect();
            let ok = (2..=3).contains(&parts.len())
                && !parts[0].is_empty()
                && parts[1].starts_with('/')
                && parts.get(2).is_none_or(|m| matches!(*m, "ro" | "rw"));
            if !ok {
                let field = format!("{at}.volumes[{i}]");
                ctx.at(
                    field,
                    format!("`{v}`: write `volume_name:/path` or `/host/path:/path[:ro]`"),
                );
            }
        }
        if let ImageSource::Tarball { src, sha256 } = &c.image {
            let field = format!("{at}.image.src");
            if ctx.check_files && !src.starts_with("http://") && !src.starts_with("https://") {
                if let Err(e) = crate::docker::preload::read_archive(&resolve_from(path, src)) {
                    let loc = ctx.index.value(&field);
                    ctx.push(loc, field.clone(), e.to_string());
                }
            }
            if let Some(h) = sha256 {
                let hex = h.strip_prefix("sha256:").unwrap_or(h);
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    let f = format!("{at}.image.sha256");
                    ctx.at(f, "expected `sha256:` and 64 hex digits");
                }
            }
        }
    }
    containers
}
