//! Starting a node's SSH multiplexing master. flotilla spawns this `ssh` itself rather than
//! through openssh's `SessionBuilder`, whose command line has no `--` before the destination:
//! here every value is checked (`argv`) and the destination comes after `--`, so no user, host
//! or jump host can be read as an option. openssh then drives the master over its socket.

use super::argv::{check_host, check_jump, check_port, check_user, ArgvError};
use super::pool::{SshSettings, Target};
use crate::blueprint::HostKeyPolicy;
use std::ffi::OsString;
use std::process::Stdio;

#[derive(Debug)]
pub enum LaunchError {
    /// A value that may not reach the command line (never retried).
    Invalid(ArgvError),
    /// ssh could not be started or the connection failed: ssh's own message.
    Failed(String),
}

/// Every check a target and the settings must pass before they reach `ssh`'s argv.
pub fn check_target(t: &Target, jump: Option<&str>) -> Result<(), ArgvError> {
    let field = |what: &str| format!("{}: {what}", t.node);
    check_user(&field("ssh user"), &t.user)?;
    check_host(&field("address"), &t.address)?;
    check_port(&field("ssh port"), t.port)?;
    if let Some(j) = jump {
        check_jump(&field("ssh.jump"), j)?;
    }
    Ok(())
}

/// `Option=value` for `-o`, the value in double quotes when it holds a space (ssh splits
/// some options' values at spaces).
fn option(name: &str, value: &std::path::Path) -> OsString {
    let text = value.display().to_string();
    if text.contains(char::is_whitespace) {
        format!("{name}=\"{text}\"").into()
    } else {
        format!("{name}={text}").into()
    }
}

/// The master's arguments (without the program): options, then `--`, then the host.
pub fn master_args(settings: &SshSettings, t: &Target, dir: &std::path::Path) -> Vec<OsString> {
    let strict = match (settings.policy, t.pinned_key.is_some()) {
        (HostKeyPolicy::Pin, false) => "accept-new",
        (HostKeyPolicy::Insecure, _) => "no",
        _ => "yes",
    };
    let known_hosts = match settings.policy {
        HostKeyPolicy::Insecure => std::path::PathBuf::from("/dev/null"),
        _ => settings.known_hosts.clone(),
    };
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
        a.extend(items.iter().map(|i| i.as_ref().to_os_string()));
    };
    push(&[&"-E", &dir.join("log"), &"-S", &dir.join("master")]);
    push(&[&"-M", &"-f", &"-N", &"-o", &"ControlPersist=yes"]);
    push(&[&"-o", &"BatchMode=yes"]);
    push(&[&"-o", &format!("StrictHostKeyChecking={strict}")]);
    push(&[
        &"-o",
        &format!(
            "ConnectTimeout={}",
            settings.connect_timeout.as_secs().max(1)
        ),
    ]);
    push(&[&"-o", &"ServerAliveInterval=5"]);
    push(&[&"-p", &t.port.to_string(), &"-l", &t.user]);
    push(&[&"-o", &"IdentitiesOnly=yes", &"-i", &settings.private_key]);
    push(&[&"-F", &settings.config_file]);
    if let Some(j) = &settings.jump {
        push(&[&"-J", j]);
    }
    push(&[&"-o", &option("UserKnownHostsFile", &known_hosts)]);
    push(&[&"--", &t.address]);
    a
}

/// Starts the master for `t` in a fresh directory under the control directory and returns
/// the session that uses it (the directory goes with the session).
pub async fn launch(settings: &SshSettings, t: &Target) -> Result<openssh::Session, LaunchError> {
    check_target(t, settings.jump.as_deref()).map_err(LaunchError::Invalid)?;
    let dir = tempfile::Builder::new()
        .prefix(".ssh-connection")
        .tempdir_in(&settings.control_dir)
        .map_err(|e| {
            LaunchError::Failed(format!(
                "cannot create a control directory in {}: {e}",
                settings.control_dir.display()
            ))
        })?;
    let status = tokio::process::Command::new("ssh")
        .args(master_args(settings, t, dir.path()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| {
            LaunchError::Failed(format!("cannot run ssh: {e} (install openssh-client)"))
        })?;
    if !status.success() {
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        let log = log
            .lines()
            .filter(|l| !l.starts_with("Warning: Permanently added"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(LaunchError::Failed(format!(
            "ssh exited with {status}: {}",
            log.trim()
        )));
    }
    Ok(openssh::Session::new_native_mux(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> SshSettings {
        SshSettings {
            private_key: "/k/id".into(),
            config_file: "/k/ssh_config".into(),
            known_hosts: "/k/known hosts".into(),
            control_dir: "/tmp".into(),
            policy: HostKeyPolicy::Pin,
            connect_timeout: Duration::from_secs(10),
            boot_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(10),
            parallelism: 1,
            jump: Some("ops@bastion:2222".into()),
        }
    }

    fn target(user: &str, address: &str) -> Target {
        Target {
            node: "workers-1".into(),
            user: user.into(),
            address: address.into(),
            port: 22,
            pinned_key: None,
        }
    }

    #[test]
    fn the_destination_comes_after_a_double_dash() {
        let a = master_args(&settings(), &target("ubuntu", "10.0.0.5"), "/c".as_ref());
        let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into()).collect();
        assert_eq!(a[a.len() - 2..], ["--".to_string(), "10.0.0.5".to_string()]);
        assert!(a.contains(&"StrictHostKeyChecking=accept-new".to_string()));
        assert!(a.contains(&"UserKnownHostsFile=\"/k/known hosts\"".to_string()));
        let l = a.iter().position(|x| x == "-l").expect("-l");
        assert_eq!(a[l + 1], "ubuntu");
    }

    #[test]
    fn hostile_values_never_reach_ssh() {
        for (user, address) in [
            ("-oProxyCommand=touch /tmp/p", "10.0.0.5"),
            ("ubuntu", "-oProxyCommand=touch /tmp/p"),
            ("ubu ntu", "10.0.0.5"),
            ("ubuntu", "10.0.0.5 -v"),
        ] {
            assert!(check_target(&target(user, address), None).is_err());
        }
        assert!(check_target(&target("u", "10.0.0.5"), Some("-oProxyCommand=x")).is_err());
    }
}
