//! Every backend behind one gate: each method that takes a deployment name checks it first
//! (the same rule as the blueprint's), so no caller — API route, import, gc — can make a
//! backend read, write, lock or delete under a name like `../other` or `-x`.

use super::{HistoryEntry, LockAttempt, LockInfo, Record, StateBackend};
use crate::names::{check, NameKind};
use crate::state::lock::Holder;
use crate::state::store::StoreError;
use std::sync::Arc;
use std::time::Duration;

pub struct Checked(pub Arc<dyn StateBackend>);

/// `backend` behind the name gate.
pub fn checked(backend: Arc<dyn StateBackend>) -> Arc<dyn StateBackend> {
    Arc::new(Checked(backend))
}

fn name(n: &str) -> Result<(), StoreError> {
    check(NameKind::Deployment, n).map_err(StoreError::from)
}

impl StateBackend for Checked {
    fn url(&self) -> String {
        self.0.url()
    }
    fn read(&self, n: &str) -> Result<Option<Record>, StoreError> {
        name(n)?;
        self.0.read(n)
    }
    fn write(
        &self,
        n: &str,
        body: &[u8],
        expected: Option<u64>,
        token: Option<&str>,
        by: &str,
        snapshot: Option<&[u8]>,
    ) -> Result<u64, StoreError> {
        name(n)?;
        self.0.write(n, body, expected, token, by, snapshot)
    }
    fn delete(&self, n: &str) -> Result<(), StoreError> {
        name(n)?;
        self.0.delete(n)
    }
    /// Every stored name, valid or not: callers show an invalid one as an error row (a
    /// hand-made row in a shared database), and every other method refuses it.
    fn list(&self) -> Result<Vec<String>, StoreError> {
        self.0.list()
    }
    fn history(&self, n: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        name(n)?;
        self.0.history(n)
    }
    fn read_version(&self, n: &str, version: u64) -> Result<Option<Vec<u8>>, StoreError> {
        name(n)?;
        self.0.read_version(n, version)
    }
    fn try_lock(
        &self,
        n: &str,
        holder: &Holder,
        lease: Duration,
    ) -> Result<LockAttempt, StoreError> {
        name(n)?;
        self.0.try_lock(n, holder, lease)
    }
    fn lock_status(&self, n: &str) -> Result<Option<LockInfo>, StoreError> {
        name(n)?;
        self.0.lock_status(n)
    }
    fn force_unlock(&self, n: &str) -> Result<bool, StoreError> {
        name(n)?;
        self.0.force_unlock(n)
    }
}
