use crate::engine::nodes::{default_user, target_of};
use crate::engine::recorded_blueprint;
use crate::error::{Error, Result};
use crate::state::Home;
use std::os::unix::process::CommandExt;

/// Replaces this process with the system ssh client, using the deployment's key, config and
/// pinned host keys (strict checking: the keys were pinned by `up`).
pub fn run(home: &Home, deployment: &str, node: &str, command: &[String]) -> Result<i32> {
    let state = home.load_existing(deployment)?;
    let bp = recorded_blueprint(&state)?;
    let rec = state.nodes.get(node).ok_or_else(|| {
        let names: Vec<&str> = state.nodes.keys().map(String::as_str).collect();
        Error::Usage(format!(
            "deployment `{deployment}` has no node `{node}`; nodes: {}",
            names.join(", ")
        ))
    })?;
    let t = target_of(rec, &default_user(&bp), bp.ssh.port).ok_or_else(|| {
        Error::Other(format!(
            "node `{node}` has no address yet; run `flotilla up` again"
        ))
    })?;
    let dir = home.deployment_dir(deployment)?;
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-F").arg(dir.join("ssh_config"));
    cmd.arg("-i").arg(&state.ssh_private_key);
    match bp.ssh.host_key_policy {
        crate::blueprint::HostKeyPolicy::Insecure => {
            cmd.args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ]);
        }
        _ => {
            cmd.arg("-o").arg(format!(
                "UserKnownHostsFile={}",
                dir.join("known_hosts").display()
            ));
            cmd.args(["-o", "StrictHostKeyChecking=yes"]);
        }
    }
    if command.is_empty() {
        cmd.args(["-o", "BatchMode=no", "-t"]);
    }
    crate::ssh::check_target(&t, bp.ssh.jump.as_deref()).map_err(crate::ssh::SshError::from)?;
    if let Some(j) = &bp.ssh.jump {
        cmd.arg("-J").arg(j);
    }
    cmd.arg("-p").arg(t.port.to_string());
    cmd.arg("-l").arg(&t.user);
    // The destination after `--`: nothing from the state can become an ssh option.
    cmd.arg("--").arg(&t.address);
    cmd.args(command);
    let err = cmd.exec();
    Err(Error::Other(format!(
        "cannot run ssh: {err} (install openssh-client)"
    )))
}
