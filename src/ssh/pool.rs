//! Connection pool: one multiplexed master per node, reused by every command of a run.

use super::known_hosts::{host_pattern, KnownHostsFile};
use super::SshError;
use crate::blueprint::HostKeyPolicy;
use flotilla_provider_core::backoff::Backoff;
use openssh::Session;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, Semaphore};
use tracing::debug;

#[derive(Debug, Clone)]
pub struct SshSettings {
    pub private_key: PathBuf,
    /// The deployment's own ssh_config (so /etc/ssh/ssh_config cannot change our behaviour).
    pub config_file: PathBuf,
    pub known_hosts: PathBuf,
    /// Where the pool makes its own private folder for the control sockets.
    pub control_dir: PathBuf,
    pub policy: HostKeyPolicy,
    pub connect_timeout: Duration,
    pub boot_timeout: Duration,
    pub command_timeout: Duration,
    pub parallelism: usize,
    pub jump: Option<String>,
}

/// Who to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub node: String,
    pub user: String,
    pub address: String,
    pub port: u16,
    /// Key pinned in the state; `None` the first time.
    pub pinned_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Bytes streamed to a remote command's stdin.
pub type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

/// What a remote command reads on stdin.
enum Input {
    /// The script itself (`sh -s`).
    Script,
    Bytes(Vec<u8>),
    Stream(ByteStream),
}

pub struct SshPool {
    settings: SshSettings,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Bounds how many nodes are worked on at once.
    pub limit: Arc<Semaphore>,
    /// The pool's own control-socket folder (random name, 0700, removed with the pool): never
    /// a predictable path in a shared /tmp that another user could have made first. Declared
    /// last: the sessions above (which stop their masters through it) go first.
    _control: tempfile::TempDir,
}

/// The ssh_config flotilla writes for each deployment.
pub fn ssh_config_text() -> String {
    [
        "# Written by flotilla; used for every connection to this deployment's nodes.",
        "Host *",
        "  HashKnownHosts no",
        "  GlobalKnownHostsFile /dev/null",
        "  IdentitiesOnly yes",
        "  BatchMode yes",
        "  PasswordAuthentication no",
        "  KbdInteractiveAuthentication no",
        "  ServerAliveInterval 5",
        "  ServerAliveCountMax 4",
        "  LogLevel ERROR",
        "",
    ]
    .join("\n")
}

fn retryable(message: &str) -> bool {
    // Host key problems are never retried: that would defeat pinning.
    !(message.contains("Host key verification failed")
        || message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || message.contains("No such file or directory (os error 2)") && message.contains("ssh"))
}

impl SshPool {
    pub fn new(settings: SshSettings) -> Result<Self, SshError> {
        let control = tempfile::Builder::new()
            .prefix("flotilla-")
            .tempdir_in(&settings.control_dir)
            .map_err(|source| SshError::Local {
                what: format!("create a folder in {}", settings.control_dir.display()),
                source,
            })?;
        let mut settings = settings;
        settings.control_dir = control.path().to_path_buf();
        crate::state::store::write_atomic(&settings.config_file, ssh_config_text().as_bytes())
            .map_err(|e| SshError::Local {
                what: format!("write {}", settings.config_file.display()),
                source: std::io::Error::other(e.to_string()),
            })?;
        let limit = Arc::new(Semaphore::new(settings.parallelism.max(1)));
        Ok(Self {
            settings,
            sessions: Mutex::new(HashMap::new()),
            limit,
            _control: control,
        })
    }

    pub fn settings(&self) -> &SshSettings {
        &self.settings
    }

    /// The one way per-node work fans out: `work` for every item, at most `ssh.parallelism` at
    /// once across everything this pool runs (the pool's one limit); results in the order they
    /// finish.
    pub async fn fan_out<T, R, F, Fut>(&self, items: impl IntoIterator<Item = T>, work: F) -> Vec<R>
    where
        F: Fn(T) -> Fut,
        Fut: std::future::Future<Output = R>,
    {
        use futures::stream::{self, StreamExt};
        let limit = self.limit.clone();
        let work = &work;
        stream::iter(items)
            .map(|item| {
                let limit = limit.clone();
                async move {
                    // A closed semaphore cannot happen (the pool owns it); run unbounded then.
                    let _permit = limit.acquire_owned().await.ok();
                    work(item).await
                }
            })
            .buffer_unordered(self.settings.parallelism.max(1))
            .collect()
            .await
    }

    /// Rewrites the deployment's known_hosts from the pinned keys.
    pub fn write_known_hosts(&self, targets: &[Target]) -> Result<(), SshError> {
        if self.settings.policy != HostKeyPolicy::Pin {
            return Ok(());
        }
        let entries: Vec<(String, String)> = targets
            .iter()
            .filter_map(|t| {
                t.pinned_key
                    .clone()
                    .map(|k| (host_pattern(&t.address, t.port), k))
            })
            .collect();
        KnownHostsFile::new(self.settings.known_hosts.clone())
            .write(&entries)
            .map_err(|source| SshError::Local {
                what: format!("write {}", self.settings.known_hosts.display()),
                source,
            })
    }

    /// The host key ssh saw for a target (after a first connection under the pin policy).
    pub fn observed_host_key(&self, t: &Target) -> Option<String> {
        KnownHostsFile::new(self.settings.known_hosts.clone()).lookup(&t.address, t.port)
    }

    /// Connects (or reuses the node's master), retrying until `boot_timeout` while sshd is not up.
    pub async fn session(&self, t: &Target) -> Result<Arc<Session>, SshError> {
        self.session_within(t, self.settings.boot_timeout).await
    }

    /// Like `session`, with an explicit retry window (probes of existing nodes use a short one).
    pub async fn session_within(
        &self,
        t: &Target,
        window: Duration,
    ) -> Result<Arc<Session>, SshError> {
        let key = format!("{}@{}:{}", t.user, t.address, t.port);
        {
            let mut sessions = self.sessions.lock().await;
            if let Some(s) = sessions.get(&key) {
                if s.check().await.is_ok() {
                    return Ok(s.clone());
                }
                sessions.remove(&key);
            }
        }
        let mut backoff = Backoff::new(window)
            .first(Duration::from_millis(200))
            .cap(Duration::from_secs(3));
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match super::master::launch(&self.settings, t).await {
                Ok(s) => {
                    debug!(node = %t.node, attempts, "ssh connected");
                    let s = Arc::new(s);
                    self.sessions.lock().await.insert(key, s.clone());
                    return Ok(s);
                }
                Err(super::master::LaunchError::Invalid(e)) => {
                    return Err(SshError::Invalid(e));
                }
                Err(super::master::LaunchError::Failed(message)) => {
                    if message.contains("Host key verification failed")
                        || message.contains("IDENTIFICATION HAS CHANGED")
                    {
                        return Err(SshError::HostKeyChanged {
                            node: t.node.clone(),
                            address: t.address.clone(),
                        });
                    }
                    debug!(node = %t.node, attempts, %message, "ssh not ready yet; retrying");
                    if !retryable(&message) || !backoff.wait().await {
                        return Err(SshError::Unreachable {
                            node: t.node.clone(),
                            address: format!("{}@{}:{}", t.user, t.address, t.port),
                            waited: crate::util::human_duration(backoff.elapsed()),
                            message,
                        });
                    }
                }
            }
        }
    }

    /// Runs a shell script on the node (`sh -s`, script on stdin, so nothing secret shows in the
    /// remote process list or in our logs) with a timeout.
    pub async fn run(
        &self,
        t: &Target,
        what: &str,
        script: &str,
        timeout: Option<Duration>,
    ) -> Result<CommandOutput, SshError> {
        self.run_with_input(t, what, script, None, timeout).await
    }

    /// Like `run`, then streams `data` after the script: the script reads it from stdin
    /// (e.g. `tar -x`), used for uploads. The script must consume stdin itself: it is sent as
    /// a `sh -c` argument, not on stdin, when `data` is given.
    pub async fn run_with_input(
        &self,
        t: &Target,
        what: &str,
        script: &str,
        data: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<CommandOutput, SshError> {
        let input = match data {
            None => Input::Script,
            Some(d) => Input::Bytes(d),
        };
        self.exec(t, what, script, input, None, timeout).await
    }

    /// Runs `script` (as `sh -c`) with `input` streamed to its stdin as it arrives — `docker
    /// save | ssh node docker load` without a temporary file.
    pub async fn run_streaming_in(
        &self,
        t: &Target,
        what: &str,
        script: &str,
        input: ByteStream,
        timeout: Option<Duration>,
    ) -> Result<CommandOutput, SshError> {
        self.exec(t, what, script, Input::Stream(input), None, timeout)
            .await
    }

    /// Runs `script` and copies its stdout into `sink` as it comes (backups of a node's data);
    /// the returned output has the exit status and stderr only.
    pub async fn run_streaming_out(
        &self,
        t: &Target,
        what: &str,
        script: &str,
        sink: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        timeout: Option<Duration>,
    ) -> Result<CommandOutput, SshError> {
        self.exec(t, what, script, Input::Script, Some(sink), timeout)
            .await
    }

    async fn exec(
        &self,
        t: &Target,
        what: &str,
        script: &str,
        input: Input,
        sink: Option<&mut (dyn tokio::io::AsyncWrite + Unpin + Send)>,
        timeout: Option<Duration>,
    ) -> Result<CommandOutput, SshError> {
        let session = self.session(t).await?;
        let timeout = timeout.unwrap_or(self.settings.command_timeout);
        let fut = async {
            let mut cmd = session.clone().arc_raw_command("sh");
            match &input {
                Input::Script => {
                    cmd.arg("-s");
                }
                // `arg` would shell-escape a second time; the script is quoted once, here.
                Input::Bytes(_) | Input::Stream(_) => {
                    cmd.arg("-c").raw_arg(shell_quote(script));
                }
            }
            cmd.stdin(openssh::Stdio::piped())
                .stdout(openssh::Stdio::piped())
                .stderr(openssh::Stdio::piped());
            let mut child = cmd.spawn().await?;
            let stdin = child.stdin().take();
            let stdout = child.stdout().take();
            let stderr = child.stderr().take();
            // stdin, stdout and stderr are served together: a command that writes a lot before
            // reading all of its input would otherwise block on a full pipe.
            let feed = async move {
                let Some(mut stdin) = stdin else { return };
                // A failed write shows up as the command's own failure.
                match input {
                    Input::Script => {
                        let _ = stdin.write_all(script.as_bytes()).await;
                    }
                    Input::Bytes(d) => {
                        let _ = stdin.write_all(&d).await;
                    }
                    Input::Stream(mut s) => {
                        use futures::StreamExt;
                        while let Some(chunk) = s.next().await {
                            let Ok(chunk) = chunk else { break };
                            if stdin.write_all(&chunk).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = stdin.shutdown().await;
            };
            let drain_out = async move {
                let mut buf = Vec::new();
                if let Some(mut out) = stdout {
                    let copied = match sink {
                        Some(sink) => tokio::io::copy(&mut out, sink).await.map(|_| ()),
                        None => out.read_to_end(&mut buf).await.map(|_| ()),
                    };
                    copied?;
                }
                Ok(buf)
            };
            let drain_err = async move {
                let mut buf = Vec::new();
                if let Some(mut err) = stderr {
                    let _ = err.read_to_end(&mut buf).await;
                }
                buf
            };
            let ((), out, err) = tokio::join!(feed, drain_out, drain_err);
            let status = child.wait().await?;
            Ok::<_, openssh::Error>((status, out, err))
        };
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(SshError::Timeout {
                node: t.node.clone(),
                what: what.to_string(),
                timeout: crate::util::human_duration(timeout),
            }),
            Ok(Err(e)) => {
                // The master may be dead (node rebooted): drop it so the next call reconnects.
                self.forget(t).await;
                Err(SshError::Command {
                    node: t.node.clone(),
                    what: what.to_string(),
                    message: error_chain(&e),
                })
            }
            Ok(Ok((_, Err(e), _))) => Err(SshError::Local {
                what: format!("{}: {what}: writing its output", t.node),
                source: e,
            }),
            Ok(Ok((status, Ok(out), err))) => Ok(CommandOutput {
                status: status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
            }),
        }
    }

    /// Runs a script and fails unless it exits 0 (the error carries the tail of its output).
    pub async fn run_ok(
        &self,
        t: &Target,
        what: &str,
        script: &str,
        timeout: Option<Duration>,
    ) -> Result<String, SshError> {
        let out = self.run(t, what, script, timeout).await?;
        if out.status == 0 {
            Ok(out.stdout)
        } else {
            Err(SshError::Command {
                node: t.node.clone(),
                what: what.to_string(),
                message: failure_tail(&out),
            })
        }
    }

    pub async fn forget(&self, t: &Target) {
        let key = format!("{}@{}:{}", t.user, t.address, t.port);
        if let Some(s) = self.sessions.lock().await.remove(&key) {
            if let Ok(s) = Arc::try_unwrap(s) {
                let _ = s.close().await;
            }
        }
    }

    /// Closes every master connection (end of the run).
    pub async fn close_all(&self) {
        let sessions: Vec<Arc<Session>> =
            self.sessions.lock().await.drain().map(|(_, s)| s).collect();
        for s in sessions {
            if let Ok(s) = Arc::try_unwrap(s) {
                let _ = s.close().await;
            }
        }
    }
}

pub fn failure_tail(out: &CommandOutput) -> String {
    let mut lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        lines = out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
    }
    let tail: Vec<&str> = lines.iter().rev().take(6).rev().copied().collect();
    format!("exit {}: {}", out.status, tail.join(" | "))
}

/// One line: the error and its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    crate::util::error_chain(e).replace('\n', " ")
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn host_key_failures_are_not_retried() {
        assert!(!retryable("Host key verification failed."));
        assert!(retryable("Connection refused"));
    }
}
