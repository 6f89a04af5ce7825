//! The top-level sections of a blueprint that need no other section to be checked: the
//! deployment's name, the provider, SSH, the Docker install, where the state lives, expiry.

use super::load::Ctx;
use super::model::*;
use super::problem::expected_one_of;
use super::yaml_index::Loc;
use flotilla_provider_core::SettingsError;
use serde_json::Value;
use std::path::Path;

/// `name`: required, a valid deployment name.
pub(super) fn check_name(ctx: &mut Ctx, v: Option<Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => match crate::names::check(crate::names::NameKind::Deployment, &s)
        {
            Ok(()) => Some(s),
            Err(e) => {
                ctx.at("name", e.to_string());
                None
            }
        },
        Some(other) => {
            ctx.at("name", format!("expected a string, found {other}"));
            None
        }
        None => {
            ctx.push(
                Some(Loc { line: 1, col: 1 }),
                "name",
                "missing required field (the deployment name)",
            );
            None
        }
    }
}

/// `provider`: its kind and the kind's own settings, read by the kind's factory.
pub(super) fn check_provider(ctx: &mut Ctx, v: Option<Value>) -> Option<ProviderConfig> {
    let kinds = crate::kinds::provider_kinds();
    let mut p = match v {
        Some(Value::Object(p)) => p,
        Some(_) => {
            ctx.at("provider", "expected a map with at least `kind`");
            return None;
        }
        None => {
            let msg = format!(
                "missing required section; kind is {}",
                expected_one_of("", &kinds)
            );
            ctx.push(Some(Loc { line: 1, col: 1 }), "provider", msg);
            return None;
        }
    };
    let kind = p.remove("kind");
    let Some(kind) = kind.as_ref().and_then(Value::as_str) else {
        let loc = ctx.index.value("provider");
        ctx.push(
            loc,
            "provider.kind",
            format!("missing; {}", expected_one_of("", &kinds)),
        );
        return None;
    };
    let Some(factory) = crate::kinds::provider(kind) else {
        let msg = format!(
            "unknown provider `{kind}`; {}",
            expected_one_of(kind, &kinds)
        );
        ctx.at("provider.kind", msg);
        return None;
    };
    match factory.settings(Value::Object(p)) {
        Ok(settings) => Some(settings),
        Err(SettingsError::Shape(e)) => {
            ctx.serde_error("provider", &e);
            None
        }
        Err(SettingsError::Invalid(problems)) => {
            for (field, msg) in problems {
                let loc = ctx.index.value(&field);
                ctx.push(loc, field, msg);
            }
            None
        }
    }
}

/// `ssh`: the settings, and the values that reach the ssh command line.
pub(super) fn check_ssh(ctx: &mut Ctx, v: Option<Value>) -> Option<SshConfig> {
    let ssh: Option<SshConfig> = match v {
        Some(v) => ctx.section(v, "ssh"),
        None => Some(SshConfig::default()),
    };
    if let Some(s) = &ssh {
        if s.host_key_policy == HostKeyPolicy::Strict && s.known_hosts.is_none() {
            let loc = ctx.index.value("ssh.host_key_policy");
            ctx.push(
                loc,
                "ssh.known_hosts",
                "host_key_policy: strict needs a known_hosts file",
            );
        }
        if s.parallelism == Some(0) {
            ctx.at("ssh.parallelism", "must be at least 1");
        }
        // Values that reach the ssh command line.
        let argv = [
            s.user
                .as_deref()
                .map(|u| ("ssh.user", crate::ssh::argv::check_user("ssh.user", u))),
            s.jump
                .as_deref()
                .map(|j| ("ssh.jump", crate::ssh::argv::check_jump("ssh.jump", j))),
            s.port
                .map(|p| ("ssh.port", crate::ssh::argv::check_port("ssh.port", p))),
        ];
        for (field, result) in argv.into_iter().flatten() {
            if let Err(e) = result {
                ctx.at(
                    field,
                    format!("{} is not a valid {}: {}", e.shown, e.what, e.rule),
                );
            }
        }
    }
    ssh
}

/// `docker`: how Docker is installed; preload archives must be readable (blueprint files only).
pub(super) fn check_docker(
    ctx: &mut Ctx,
    v: Option<Value>,
    path: &Path,
) -> Option<DockerInstallConfig> {
    let docker: Option<DockerInstallConfig> = match v {
        Some(v) => ctx.section(v, "docker"),
        None => Some(DockerInstallConfig::default()),
    };
    if let Some(d) = &docker {
        if d.method == InstallMethod::Offline && d.packages.is_none() {
            let loc = ctx.index.value("docker.method");
            ctx.push(
                loc,
                "docker.packages",
                "method offline needs `packages`: a folder or tarball of .deb/.rpm/.apk files",
            );
        }
        if d.packages.is_some() && d.method != InstallMethod::Offline {
            ctx.at("docker.packages", "only used with `method: offline`");
        }
        for (i, p) in d.preload_images.iter().enumerate() {
            if !ctx.check_files {
                continue;
            }
            if let Err(e) = crate::docker::preload::read_archive(&resolve_from(path, p)) {
                let field = format!("docker.preload_images[{i}]");
                ctx.at(
                    field,
                    format!("{e}; make one with `docker save -o images.tar repo:tag ...`"),
                );
            }
        }
    }
    docker
}

/// `state.backend`: one of the backends flotilla knows.
pub(super) fn check_state(ctx: &mut Ctx, v: Option<Value>) -> Option<String> {
    match v {
        Some(Value::Null) | None => None,
        Some(v) => ctx.section::<StateSpec>(v, "state").and_then(|st| {
            let b = st.backend.trim();
            let known = b == "file"
                || b.starts_with("file://")
                || b.starts_with("postgres://")
                || b.starts_with("postgresql://")
                || b.starts_with("etcd://");
            if !known {
                ctx.at(
                    "state.backend",
                    format!(
                        "`{}`: expected file, postgres://user@host/db or etcd://host:2379/prefix",
                        crate::state::backend::redact(b)
                    ),
                );
                None
            } else {
                Some(b.to_string())
            }
        }),
    }
}

/// `expires_after`: a duration of at least a minute.
pub(super) fn check_expires_after(ctx: &mut Ctx, v: Option<Value>) -> Option<std::time::Duration> {
    match v {
        Some(Value::Null) | None => None,
        Some(v) => {
            let loc = ctx.index.value("expires_after");
            match v.as_str().map(|s| humantime::parse_duration(s.trim())) {
                Some(Ok(d)) if d >= std::time::Duration::from_secs(60) => Some(d),
                Some(Ok(_)) => {
                    ctx.push(loc, "expires_after", "must be at least 1m".to_string());
                    None
                }
                Some(Err(e)) => {
                    ctx.push(
                        loc,
                        "expires_after",
                        format!("`{v}` is not a duration ({e}); write e.g. 6h, 90m or 2days"),
                    );
                    None
                }
                None => {
                    ctx.push(
                        loc,
                        "expires_after",
                        format!("expected a duration such as 6h, found {v}"),
                    );
                    None
                }
            }
        }
    }
}
