//! SSH to the nodes: one multiplexed connection per node (openssh native mux), bounded
//! parallelism, retries while a fresh machine boots, per-command timeouts, and an explicit host
//! key policy (pin on first use; the pinned keys live in the state file and are written back to
//! the deployment's own known_hosts file on every run).

mod keys;
mod known_hosts;
mod master;
mod pool;

/// What may reach an `ssh` command line (users, hosts, ports, jump hosts).
pub use flotilla_provider_core::argv;
pub use keys::ensure_keypair;
pub use known_hosts::KnownHostsFile;
pub use master::check_target;
pub use pool::{
    failure_tail as failure_tail_pub, shell_quote, ByteStream, CommandOutput, SshPool, SshSettings,
    Target,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SshError {
    #[error("{node}: SSH to {address} did not come up within {waited}: {message}")]
    Unreachable {
        node: String,
        address: String,
        waited: String,
        message: String,
    },
    #[error("{node}: the host key of {address} does not match the one pinned in the state (a different machine answers at that address). If the machine was replaced on purpose, run `flotilla up` again after removing it from the state; otherwise investigate")]
    HostKeyChanged { node: String, address: String },
    #[error("{node}: `{what}` timed out after {timeout}")]
    Timeout {
        node: String,
        what: String,
        timeout: String,
    },
    #[error("{node}: `{what}` failed: {message}")]
    Command {
        node: String,
        what: String,
        message: String,
    },
    /// A user, host, port or jump host that may not reach the ssh command line.
    #[error("{0}")]
    Invalid(#[from] argv::ArgvError),
    #[error("{what}: {source}")]
    Local {
        what: String,
        #[source]
        source: std::io::Error,
    },
}
