//! The containerized flotilla manager on a node of the deployment: a data-only container
//! (`flotilla-data`, created once, never started, holding the volumes) and the app container
//! (`flotilla-manager`, `--volumes-from flotilla-data`, `--restart=always`, the API published),
//! so the app can crash, be re-created or upgraded without losing its state. The image is built
//! locally from the running binary (`image`) and streamed to the node with `docker save | ssh
//! node docker load`.

pub mod data;
pub mod image;
mod ops;
pub use ops::install_locked;
pub use remote::remove_all_script;
mod remote;

pub use ops::{backup, install, recover, revive, status, upgrade, InstallOptions, ManagerReport};

/// Paths and port inside the image.
pub const BINARY: &str = "/usr/local/bin/flotilla";
pub const DATA_DIR: &str = "/var/lib/flotilla";
/// The API's certificate and key, in the data volume (so upgrades keep the pinned certificate).
pub const TLS_DIR: &str = "/var/lib/flotilla/tls";
pub const LOG_DIR: &str = "/var/log/flotilla";
pub const PORT_IN_IMAGE: u16 = 8700;
pub const DATA_CONTAINER: &str = "flotilla-data";
pub const APP_CONTAINER: &str = "flotilla-manager";
/// Label on both containers naming the deployment (not `io.flotilla.deployment`: `containers:`
/// convergence removes that label's containers it does not know).
pub const MANAGER_LABEL: &str = "io.flotilla.manager";

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("building the manager image: {0}")]
    Build(String),
    #[error("manager data: {0}")]
    Data(String),
    #[error("{node}: {message}")]
    Node { node: String, message: String },
    #[error("{0}")]
    Refused(String),
}

/// `GET /healthz` on the API inside the container (the image's HEALTHCHECK, and what install
/// and upgrade wait for): over TLS, pinned to the certificate in `tls_dir`, once it exists.
pub async fn healthcheck(port: u16, tls_dir: &std::path::Path) -> Result<(), ManagerError> {
    let cert = tls_dir.join(crate::serve::tls::CERT_FILE);
    let timeout = std::time::Duration::from_secs(3);
    let (url, client) = if cert.exists() {
        let fp = crate::serve::tls::file_fingerprint(&cert)
            .map_err(|e| ManagerError::Data(e.to_string()))?;
        (
            format!("https://127.0.0.1:{port}/healthz"),
            crate::serve::tls::pinned_client(&fp, timeout)
                .map_err(|e| ManagerError::Data(e.to_string()))?,
        )
    } else {
        (
            format!("http://127.0.0.1:{port}/healthz"),
            reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| ManagerError::Data(e.to_string()))?,
        )
    };
    let r = client
        .get(&url)
        .send()
        .await
        .map_err(|e| ManagerError::Data(format!("{url}: {e}")))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(ManagerError::Data(format!("{url}: HTTP {}", r.status())))
    }
}
