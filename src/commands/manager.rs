use crate::cli::{ManagerCommand, ManagerImageCommand};
use crate::error::{exit, Error, Result};
use crate::manager::{self, InstallOptions, ManagerReport};
use crate::state::Home;
use std::path::Path;

fn print(r: &ManagerReport, json: bool) {
    if json {
        super::print_json(r);
        return;
    }
    let app = &r.app_container;
    match r.action.as_str() {
        "backed-up" => crate::say!(
            "Backed up the manager data of `{}` from {} to {} ({} bytes, mode 0600: it holds the SSH key and the API token).",
            r.deployment,
            r.node,
            r.file.as_deref().unwrap_or("?"),
            r.bytes.unwrap_or(0)
        ),
        "status" => {
            crate::say!("manager of `{}` on {}", r.deployment, r.node);
            crate::say!(
                "  data container: {}",
                if r.data_container.present { "present" } else { "MISSING" }
            );
            if app.present {
                crate::say!(
                    "  app container:  {} (health {}, {} restarts, image {})",
                    app.status, app.health, app.restarts, app.image
                );
            } else {
                crate::say!("  app container:  MISSING (`flotilla manager recover {}`)", r.deployment);
            }
        }
        action => {
            crate::say!(
                "Manager of `{}` {action} on {} (image {}{}){}.",
                r.deployment,
                r.node,
                r.image,
                if r.image_shipped { ", streamed to the node" } else { "" },
                r.answered_after
                    .as_ref()
                    .map(|d| format!("; the API answered after {d}"))
                    .unwrap_or_default()
            );
        }
    }
    if r.action != "backed-up" {
        if let Some(url) = &r.url {
            crate::say!("  API:   {url}  (GET {url}/openapi.json describes it)");
        }
        if let Some(fp) = &r.tls_fingerprint {
            crate::say!("  TLS:   certificate {fp} (self-signed; flotilla pins it, `curl --cacert` the certificate from `docker exec flotilla-manager cat /var/lib/flotilla/tls/cert.pem` or compare the fingerprint)");
        }
        if let Some(api) = &r.api {
            crate::say!("  reachable from here: {api}");
        }
        crate::say!(
            "  token: {} (send it as `Authorization: Bearer <token>`)",
            r.token_file
        );
    }
}

/// A manager backup in memory (for `export --with-manager-data`), through a 0600 temporary file.
pub async fn backup_bytes(home: &Home, deployment: &str) -> Result<Vec<u8>> {
    let dir = tempfile::Builder::new()
        .prefix(".export-")
        .tempdir_in(&home.root)
        .map_err(|e| Error::Other(format!("{}: {e}", home.root.display())))?;
    let file = dir.path().join("manager-data.tar");
    manager::backup(home, deployment, &file).await?;
    std::fs::read(&file).map_err(|e| Error::Other(format!("{}: {e}", file.display())))
}

fn manager_ok(r: &ManagerReport) -> i32 {
    let app = &r.app_container;
    if r.data_container.present && app.present && app.status == "running" {
        exit::OK
    } else {
        exit::FAILURE
    }
}

pub async fn run(home: &Home, cmd: ManagerCommand, json: bool) -> Result<i32> {
    match cmd {
        ManagerCommand::Image(ManagerImageCommand::Build { tag }) => {
            let tag = tag.unwrap_or_else(manager::image::default_tag);
            let docker = manager::image::local_docker()?;
            let built = manager::image::build(&docker, &tag).await?;
            if json {
                super::print_json(&built);
            } else {
                crate::say!(
                    "Built {} ({}, {:.1} MB, {} files from this machine).",
                    built.tag,
                    built.id,
                    built.size_bytes as f64 / 1e6,
                    built.files.len()
                );
            }
            Ok(exit::OK)
        }
        ManagerCommand::Install {
            deployment,
            image,
            data,
            lock,
        } => {
            let opts = InstallOptions {
                image,
                data,
                wait_lock: lock.wait_lock,
            };
            let r = manager::install(home, &deployment, &opts).await?;
            print(&r, json);
            Ok(exit::OK)
        }
        ManagerCommand::Upgrade {
            deployment,
            image,
            lock,
        } => {
            let opts = InstallOptions {
                image,
                data: None,
                wait_lock: lock.wait_lock,
            };
            let r = manager::upgrade(home, &deployment, &opts).await?;
            print(&r, json);
            Ok(exit::OK)
        }
        ManagerCommand::Recover { deployment, lock } => {
            let r = manager::recover(home, &deployment, lock.wait_lock).await?;
            print(&r, json);
            Ok(exit::OK)
        }
        ManagerCommand::Backup { deployment, file } => {
            let r = manager::backup(home, &deployment, &file).await?;
            print(&r, json);
            Ok(exit::OK)
        }
        ManagerCommand::Status { deployment } => {
            let r = manager::status(home, &deployment).await?;
            print(&r, json);
            Ok(manager_ok(&r))
        }
        ManagerCommand::Healthcheck { port, tls_dir } => {
            manager::healthcheck(port, &tls_dir).await?;
            Ok(exit::OK)
        }
        ManagerCommand::TlsFingerprint { tls_dir } => {
            let fp =
                crate::serve::tls::file_fingerprint(&tls_dir.join(crate::serve::tls::CERT_FILE))
                    .map_err(|e| crate::error::Error::Other(e.to_string()))?;
            crate::say!("{fp}");
            Ok(exit::OK)
        }
        ManagerCommand::InitData => {
            let done = manager::data::init(std::io::stdin().lock(), home)?;
            crate::tell!("seeded: {}", done.join(", "));
            Ok(exit::OK)
        }
        ManagerCommand::DumpData => {
            let out = std::io::stdout().lock();
            manager::data::dump(&home.root, Path::new(manager::LOG_DIR), out)?;
            Ok(exit::OK)
        }
        ManagerCommand::RestoreData => {
            let n = manager::data::restore(
                std::io::stdin().lock(),
                &home.root,
                Path::new(manager::LOG_DIR),
            )?;
            crate::tell!("restored {n} entries");
            Ok(exit::OK)
        }
    }
}
