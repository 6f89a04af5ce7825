//! The run journal: one JSON line per step boundary, appended and fsynced *before* a side effect
//! (intent) and after it (done / failed). A run that was killed leaves an intent without a result;
//! the next run reads that, says so, and converges from what the provider and the nodes report.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    RunStart,
    Intent,
    Done,
    Failed,
    RunEnd,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub ts: String,
    pub run: String,
    pub seq: u64,
    pub step: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

pub struct Journal {
    inner: Mutex<(File, u64)>,
    run: String,
    path: PathBuf,
}

/// What the journal says about the run before this one.
#[derive(Debug, Clone, PartialEq)]
pub struct Interrupted {
    pub run: String,
    pub command: String,
    /// Steps with an intent but no result.
    pub open_steps: Vec<(String, String)>,
}

impl Journal {
    pub fn open(dir: &Path, run: &str) -> std::io::Result<Self> {
        let path = dir.join("journal.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Self {
            inner: Mutex::new((file, 0)),
            run: run.to_string(),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends and fsyncs one entry. A journal that cannot be written stops the run: without it
    /// a crash could not be recovered safely.
    pub fn record(
        &self,
        step: &str,
        target: &str,
        phase: Phase,
        detail: serde_json::Value,
    ) -> std::io::Result<()> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.1 += 1;
        let entry = Entry {
            ts: crate::util::now_rfc3339(),
            run: self.run.clone(),
            seq: guard.1,
            step: step.to_string(),
            target: target.to_string(),
            phase,
            detail,
        };
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        guard.0.write_all(&line)?;
        guard.0.sync_data()
    }

    /// Reads the last run recorded in the journal and reports it when it never finished.
    pub fn last_interrupted(dir: &Path) -> Option<Interrupted> {
        let file = File::open(dir.join("journal.jsonl")).ok()?;
        let mut last_run: Option<String> = None;
        let mut command = String::new();
        let mut ended = false;
        let mut open: Vec<(String, String)> = Vec::new();
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            // A torn last line (crash mid-write) is simply skipped.
            let Ok(e) = serde_json::from_str::<Entry>(&line) else {
                continue;
            };
            if last_run.as_deref() != Some(e.run.as_str()) {
                last_run = Some(e.run.clone());
                ended = false;
                open.clear();
                command.clear();
            }
            match e.phase {
                Phase::RunStart => command = e.step.clone(),
                Phase::Intent => open.push((e.step, e.target)),
                Phase::Done | Phase::Failed => {
                    if let Some(i) = open
                        .iter()
                        .position(|(s, t)| *s == e.step && *t == e.target)
                    {
                        open.remove(i);
                    }
                }
                Phase::RunEnd => ended = true,
            }
        }
        match last_run {
            Some(run) if !ended => Some(Interrupted {
                run,
                command,
                open_steps: open,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn an_unfinished_run_is_reported_with_its_open_steps() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(tmp.path(), "run-1").expect("open");
        j.record("up", "", Phase::RunStart, Value::Null).expect("w");
        j.record("create", "workers-1", Phase::Intent, Value::Null)
            .expect("w");
        j.record("create", "workers-1", Phase::Done, Value::Null)
            .expect("w");
        j.record("install", "workers-1", Phase::Intent, Value::Null)
            .expect("w");
        drop(j);
        // a torn line from a crash mid-write
        std::fs::OpenOptions::new()
            .append(true)
            .open(tmp.path().join("journal.jsonl"))
            .and_then(|mut f| f.write_all(b"{\"ts\":"))
            .expect("append");
        let i = Journal::last_interrupted(tmp.path()).expect("interrupted");
        assert_eq!(i.run, "run-1");
        assert_eq!(i.command, "up");
        assert_eq!(
            i.open_steps,
            vec![("install".to_string(), "workers-1".to_string())]
        );

        let j2 = Journal::open(tmp.path(), "run-2").expect("open");
        j2.record("up", "", Phase::RunStart, Value::Null)
            .expect("w");
        j2.record("up", "", Phase::RunEnd, Value::Null).expect("w");
        assert!(Journal::last_interrupted(tmp.path()).is_none());
    }
}
