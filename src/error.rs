//! The binary's error type and the exit codes it maps to (documented in README "Exit codes").

use crate::blueprint::Problems;
use crate::state::{LockError, StoreError};
use flotilla_provider_core::ProviderError;
use thiserror::Error;

pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const INVALID: i32 = 2;
    pub const LOCKED: i32 = 3;
    pub const PARTIAL: i32 = 4;
    pub const HEAL_REFUSED: i32 = 5;
    /// `gc`: something could not be deleted this time (the next run retries).
    pub const GC_INCOMPLETE: i32 = 7;
    pub const CHANGES_PENDING: i32 = 10;
}

#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(#[from] Problems),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Locked(LockError),
    #[error(transparent)]
    State(#[from] StoreError),
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
    #[error("{0}")]
    Ssh(#[from] crate::ssh::SshError),
    #[error("{0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// Some nodes failed; the state is consistent and a re-run continues from it.
    #[error("{failed} of {total} nodes failed; the state is saved and `flotilla up` again continues from here:\n{details}")]
    Partial {
        failed: usize,
        total: usize,
        details: String,
    },
    #[error("{0}")]
    Manager(#[from] crate::manager::ManagerError),
    #[error("journal {path}: {source}")]
    Journal {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl From<LockError> for Error {
    fn from(e: LockError) -> Self {
        Error::Locked(e)
    }
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::Usage(_) => exit::INVALID,
            Error::Locked(LockError::Held { .. }) => exit::LOCKED,
            Error::Provider(p) if p.is_user_error() => exit::INVALID,
            Error::State(StoreError::NotFound(_) | StoreError::InvalidName(_)) => exit::INVALID,
            Error::Partial { .. } => exit::PARTIAL,
            Error::Manager(crate::manager::ManagerError::Refused(_)) => exit::INVALID,
            _ => exit::FAILURE,
        }
    }

    /// Short machine-readable kind for `-o json` error output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid_blueprint",
            Error::Usage(_) => "usage",
            Error::Locked(LockError::Held { .. }) => "locked",
            Error::Locked(_) => "lock_io",
            Error::State(StoreError::NotFound(_)) => "not_found",
            Error::State(StoreError::InvalidName(_)) => "usage",
            Error::State(_) => "state",
            Error::Provider(_) => "provider",
            Error::Ssh(_) => "ssh",
            Error::Cluster(_) => "cluster",
            Error::Partial { .. } => "partial",
            Error::Journal { .. } => "journal",
            Error::Manager(crate::manager::ManagerError::Refused(_)) => "refused",
            Error::Manager(_) => "manager",
            Error::Other(_) => "failure",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
