//! Deployment state on disk: the versioned state file, its lock and the run journal.

pub mod backend;
pub mod journal;
pub mod lock;
pub mod model;
pub mod store;

pub use journal::{Journal, Phase};
pub use lock::{Holder, LockError};
pub use model::*;
pub use store::{cache_dir, resolve_home, write_atomic, DeploymentLock, Home, StoreError};
