//! Installing and starting Docker on a node over SSH, from the templates in `templates/docker-install/`.

pub mod install;
pub mod preload;
mod probe;

pub use install::{install_script, offline_bundle, Family, InstallError};
pub use probe::{parse_probe, Probe, SwarmLocal, PROBE_SCRIPT};
