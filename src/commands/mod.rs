//! One function per verb: parse-level concerns and output formatting; the work is in `engine`.

mod down;
mod gc;
mod heal;
mod list;
mod lock;
pub(crate) mod manager;
mod outputs;
mod plan;
mod ps;
mod scale;
mod ssh;
mod status;
mod up;
mod validate;

use crate::cli::{Cli, Command, Output};
use crate::error::Result;
use crate::state::{resolve_home, Home};

/// Runs a command; returns the exit code for successful runs (0, or 10 for `plan` with changes).
pub async fn run(cli: Cli) -> Result<i32> {
    // `up` and `plan` read their blueprint once, here: the backend it names and the run see the
    // same rendering of the same file.
    let blueprint = match &cli.command {
        Command::Up { bp: a, .. } | Command::Plan { blueprint: a, .. } => {
            Some(crate::blueprint::load(&a.blueprint, &a.set)?)
        }
        _ => None,
    };
    let backend = backend_url(&cli, blueprint.as_ref())?;
    let home = Home::open(resolve_home(cli.home.as_deref()), backend.as_deref())?;
    let json = cli.output == Output::Json;
    match cli.command {
        Command::Validate(bp) => validate::run(&bp, json),
        Command::Plan { no_probe, .. } => {
            let bp = blueprint.ok_or_else(|| crate::error::Error::Other("no blueprint".into()))?;
            plan::run(&bp, &home, json, cli.quiet, !no_probe).await
        }
        Command::Up { yes, lock, ttl, .. } => {
            let bp = blueprint.ok_or_else(|| crate::error::Error::Other("no blueprint".into()))?;
            up::run(&bp, &home, json, cli.quiet, yes, lock.wait_lock, ttl).await
        }
        Command::Extend {
            deployment,
            duration,
            lock,
        } => gc::extend(&home, &deployment, duration, json, lock.wait_lock).await,
        Command::Gc(args) => gc::run(&home, &args, json, cli.quiet).await,
        Command::Status {
            deployment,
            no_probe,
        } => status::run(&home, deployment.as_deref(), json, !no_probe).await,
        Command::Outputs { deployment } => outputs::run(&home, &deployment, json),
        Command::Ps { deployment, node } => {
            ps::run(&home, &deployment, node.as_deref(), json).await
        }
        Command::Stop(a) => ps::signal(&home, &a, crate::engine::ps::Signal::Stop, json).await,
        Command::Kill(a) => ps::signal(&home, &a, crate::engine::ps::Signal::Kill, json).await,
        Command::Export {
            deployment,
            file,
            with_manager_data,
        } => {
            let manager_data = if with_manager_data {
                Some(manager::backup_bytes(&home, &deployment).await?)
            } else {
                None
            };
            let bytes =
                crate::engine::transfer::export_with(&home, &deployment, manager_data.as_deref())?;
            if file.as_os_str() == "-" {
                use std::io::Write;
                std::io::stdout()
                    .write_all(&bytes)
                    .map_err(|e| crate::error::Error::Other(format!("stdout: {e}")))?;
            } else {
                crate::engine::transfer::write_archive(&file, &bytes)?;
                if json {
                    print_json(
                        &serde_json::json!({"deployment": deployment, "file": file, "bytes": bytes.len()}),
                    );
                } else {
                    crate::say!(
                        "Exported `{deployment}` to {} ({} bytes, mode 0600: it holds the SSH private key).",
                        file.display(),
                        bytes.len()
                    );
                }
            }
            Ok(0)
        }
        Command::Import { file, force } => {
            let bytes = if file.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
                    .map_err(|e| crate::error::Error::Other(format!("stdin: {e}")))?;
                b
            } else {
                std::fs::read(&file)
                    .map_err(|e| crate::error::Error::Usage(format!("{}: {e}", file.display())))?
            };
            let r = crate::engine::transfer::import(&home, &bytes, force)?;
            if json {
                print_json(&r);
            } else {
                crate::say!(
                    "Imported `{}` ({} nodes){}.",
                    r.deployment,
                    r.nodes,
                    if r.replaced_existing {
                        ", replacing the existing state"
                    } else {
                        ""
                    }
                );
                if r.files
                    .iter()
                    .any(|f| f == crate::engine::transfer::MANAGER_DATA)
                {
                    crate::say!(
                        "The manager's data is in {}; `flotilla manager install {} --data <that file>` restores it into a new manager.",
                        home.deployment_dir(&r.deployment)?
                            .join(crate::engine::transfer::MANAGER_DATA)
                            .display(),
                        r.deployment
                    );
                }
            }
            Ok(0)
        }
        Command::Kubeconfig { deployment } => outputs::kubeconfig(&home, &deployment, json),
        Command::Serve {
            listen,
            token_file,
            request_timeout,
            log_file,
            tls_dir,
            tls_name,
            allow_plain_http,
        } => {
            let token_file = token_file.unwrap_or_else(|| home.root.join("api-token"));
            crate::serve::run(
                home,
                crate::serve::ServeOptions {
                    listen,
                    token_file,
                    request_timeout,
                    log_file,
                    tls_dir,
                    tls_names: tls_name,
                    allow_plain_http,
                    limits: Default::default(),
                },
            )
            .await?;
            Ok(0)
        }
        Command::Ssh {
            deployment,
            node,
            command,
        } => ssh::run(&home, &deployment, &node, &command),
        Command::Scale {
            deployment,
            counts,
            yes,
            lock,
        } => {
            scale::run(
                &home,
                &deployment,
                &counts,
                yes,
                json,
                cli.quiet,
                lock.wait_lock,
            )
            .await
        }
        Command::Heal {
            deployment,
            dry_run,
            watch,
            interval,
            lock,
        } => {
            heal::run(
                &home,
                &deployment,
                dry_run,
                watch,
                interval,
                json,
                cli.quiet,
                lock.wait_lock,
            )
            .await
        }
        Command::Down {
            deployment,
            yes,
            lock,
        } => down::run(&home, &deployment, yes, json, cli.quiet, lock.wait_lock).await,
        Command::List => list::run(&home, json),
        Command::Manager(m) => manager::run(&home, m, json).await,
        Command::Lock(c) => lock::run_lock(&home, c, json),
        Command::State(c) => lock::run_state(&home, c, json),
    }
}

/// `--backend` / `FLOTILLA_BACKEND`, else (for `up` and `plan`) the blueprint's `state.backend`.
/// Both given and different: refused, since that would split the deployment's state.
fn backend_url(
    cli: &Cli,
    blueprint: Option<&crate::blueprint::Blueprint>,
) -> Result<Option<String>> {
    let from_blueprint = blueprint.and_then(|b| b.state_backend.clone());
    match (&cli.backend, from_blueprint) {
        (Some(flag), Some(bp)) if flag.trim() != bp => Err(crate::error::Error::Usage(format!(
            "the blueprint keeps its state in `{}` but --backend/FLOTILLA_BACKEND says `{}`; use one",
            crate::state::backend::redact(&bp),
            crate::state::backend::redact(flag)
        ))),
        (Some(flag), _) => Ok(Some(flag.clone())),
        (None, bp) => Ok(bp),
    }
}

pub fn print_json<T: serde::Serialize>(v: &T) {
    use std::io::Write;
    match serde_json::to_string_pretty(v) {
        // A reader that stops early (`| head`) is not an error worth a panic.
        Ok(s) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{s}");
        }
        Err(e) => crate::tell!("error: cannot encode JSON output: {e}"),
    }
}

/// Asks on a terminal; off a terminal, `--yes` is the only way to touch another tool's container.
pub fn confirm(question: &str) -> bool {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    matches!(answer.trim(), "y" | "yes" | "Y")
}
