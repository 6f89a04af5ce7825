//! The etcd backend (etcd-client, the v3 API): the state under `<prefix>/state/<name>`, written
//! by transactions that compare the key's version (etcd counts every write of a key, so that
//! count is the state's version) and, for a locked run, that the lock key still holds this run's
//! token; the last versions under `<prefix>/history/<name>/`; the lock a key bound to an etcd
//! lease, so it disappears when its holder stops renewing (dies), plus a plain key recording the
//! last holder, so a takeover can name the run it replaced.

use super::rt::Rt;
use super::{HeldLock, HistoryEntry, LockAttempt, LockInfo, Record, StateBackend, HISTORY_KEPT};
use crate::state::lock::Holder;
use crate::state::store::StoreError;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

struct Inner {
    shown: String,
    prefix: String,
    rt: Rt,
    client: Client,
}

pub struct EtcdBackend {
    inner: Arc<Inner>,
}

/// Where and how to reach etcd, from
/// `etcd://[user:password@]host:port[,host:port…][/prefix][?cacert=CA.pem&cert=C.pem&key=K.pem]`
/// (or `ETCDCTL_CACERT` / `ETCDCTL_CERT` / `ETCDCTL_KEY`, as etcdctl reads them).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    endpoints: Vec<String>,
    user: Option<(String, String)>,
    prefix: String,
    /// TLS: the CA file that verifies the server, and an optional client certificate and key.
    cacert: Option<String>,
    client: Option<(String, String)>,
}

fn parse(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("etcd://")
        .ok_or_else(|| "expected etcd://host:port[/prefix]".to_string())?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, "flotilla"));
    let (user, hosts) = match hosts.rsplit_once('@') {
        Some((u, h)) => {
            let (name, password) = u.split_once(':').unwrap_or((u, ""));
            let password = if password.is_empty() {
                std::env::var("ETCDCTL_PASSWORD").unwrap_or_default()
            } else {
                password.to_string()
            };
            (Some((name.to_string(), password)), h)
        }
        None => (None, hosts),
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (mut cacert, mut cert, mut key) = (
        env("ETCDCTL_CACERT"),
        env("ETCDCTL_CERT"),
        env("ETCDCTL_KEY"),
    );
    let mut insecure = false;
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        match kv.split_once('=') {
            Some(("cacert", v)) => cacert = Some(v.to_string()),
            Some(("cert", v)) => cert = Some(v.to_string()),
            Some(("key", v)) => key = Some(v.to_string()),
            Some(("insecure-transport", v)) => insecure = matches!(v, "true" | "1" | "yes"),
            _ => {
                return Err(format!(
                "unknown URL parameter `{kv}`; expected cacert, cert, key or insecure-transport"
            ))
            }
        }
    }
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("a client certificate needs both `cert` and `key`".into()),
    };
    if client.is_some() && cacert.is_none() {
        return Err("TLS needs `cacert` (the CA that signed the server's certificate)".into());
    }
    let scheme = if cacert.is_some() { "https" } else { "http" };
    let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    if hosts.is_empty() {
        return Err("no etcd endpoint in the URL".into());
    }
    // States carry SSH private keys: plain text only on this machine, or when asked for.
    if cacert.is_none() && !insecure {
        if let Some(h) = hosts.iter().find(|h| !loopback(h)) {
            return Err(format!(
                "refusing to send states (they hold SSH private keys) to {h} without TLS: add ?cacert=CA.pem (and cert=/key= for client certificates), or insecure-transport=true if the network to it is trusted"
            ));
        }
    }
    Ok(Target {
        endpoints: hosts.iter().map(|h| format!("{scheme}://{h}")).collect(),
        user,
        prefix: format!("/{}", prefix.trim_matches('/')),
        cacert,
        client,
    })
}

/// `host:port` names this machine.
fn loopback(host_port: &str) -> bool {
    let host = match host_port.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => host_port,
    };
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn tls_options(t: &Target) -> Result<Option<etcd_client::TlsOptions>, String> {
    let Some(ca) = &t.cacert else {
        return Ok(None);
    };
    let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
    let mut tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    if let Some((cert, key)) = &t.client {
        tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}

fn etcd_message(e: &etcd_client::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ").replace('\n', " ")
}

impl Inner {
    fn err(&self, message: impl Into<String>) -> StoreError {
        StoreError::Backend {
            url: self.shown.clone(),
            message: message.into(),
        }
    }

    fn call<T, F, Fut>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send,
        T: Send + 'static,
    {
        let client = self.client.clone();
        let out = self.rt.run(async move {
            match tokio::time::timeout(CALL_TIMEOUT, f(client)).await {
                Ok(r) => r.map_err(|e| etcd_message(&e)),
                Err(_) => Err(format!("no answer within {}s", CALL_TIMEOUT.as_secs())),
            }
        });
        match out {
            Some(r) => r.map_err(|m| self.err(m)),
            None => Err(self.err("the backend runtime stopped")),
        }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}/{kind}/{name}", self.prefix)
    }

    fn history_key(&self, name: &str, version: u64) -> String {
        format!("{}/history/{name}/{version:020}", self.prefix)
    }
}

impl EtcdBackend {
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let shown = super::redact(url);
        let err = |message: String| StoreError::Backend {
            url: shown.clone(),
            message,
        };
        let target = parse(url).map_err(err)?;
        let rt = Rt::new().map_err(|e| err(format!("starting the backend runtime: {e}")))?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(CALL_TIMEOUT);
        if let Some(tls) = tls_options(&target).map_err(err)? {
            options = options.with_tls(tls);
        }
        if let Some((u, p)) = target.user.clone() {
            options = options.with_user(u, p);
        }
        let (endpoints, prefix) = (target.endpoints.clone(), target.prefix.clone());
        let client = rt
            .run(async move {
                let c = Client::connect(endpoints, Some(options))
                    .await
                    .map_err(|e| etcd_message(&e))?;
                // Connecting is lazy: one read proves the server answers (and the user may read).
                let mut probe = c.clone();
                tokio::time::timeout(Duration::from_secs(5), probe.get("/", None))
                    .await
                    .map_err(|_| "no answer within 5s".to_string())?
                    .map_err(|e| etcd_message(&e))?;
                Ok::<_, String>(c)
            })
            .ok_or_else(|| err("the backend runtime stopped".into()))?
            .map_err(err)?;
        Ok(Self {
            inner: Arc::new(Inner {
                shown,
                prefix,
                rt,
                client,
            }),
        })
    }
}

struct EtcdLock {
    inner: Arc<Inner>,
    name: String,
    token: String,
    lease_id: i64,
    taken_over_from: Option<Holder>,
}

impl HeldLock for EtcdLock {
    fn token(&self) -> Option<String> {
        Some(self.token.clone())
    }

    fn renew(&self) -> Result<bool, StoreError> {
        let (lock_key, token, id) = (
            self.inner.key("lock", &self.name),
            self.token.clone(),
            self.lease_id,
        );
        self.inner.call(move |mut c| async move {
            // A revoked or expired lease answers "lease not found" (or a TTL of 0): lost.
            let lost = |e: &etcd_client::Error| e.to_string().contains("not found");
            let (mut keeper, mut stream) = match c.lease_keep_alive(id).await {
                Ok(k) => k,
                Err(e) if lost(&e) => return Ok(false),
                Err(e) => return Err(e),
            };
            let ttl = match keeper.keep_alive().await {
                Ok(()) => match stream.message().await {
                    Ok(m) => m.map(|r| r.ttl()).unwrap_or(0),
                    Err(e) if lost(&e) => return Ok(false),
                    Err(e) => return Err(e),
                },
                Err(e) if lost(&e) => return Ok(false),
                Err(e) => return Err(e),
            };
            if ttl <= 0 {
                return Ok(false);
            }
            // A force-unlock deletes the key without the lease: check it is still ours.
            let r = c.get(lock_key, None).await?;
            Ok(r.kvs().first().map(|kv| kv.value()) == Some(token.as_bytes()))
        })
    }

    fn release(&self) {
        let (lock_key, info_key, token, id) = (
            self.inner.key("lock", &self.name),
            self.inner.key("lockinfo", &self.name),
            self.token.clone(),
            self.lease_id,
        );
        let _ = self.inner.call(move |mut c| async move {
            c.txn(
                Txn::new()
                    .when([Compare::value(lock_key.clone(), CompareOp::Equal, token)])
                    .and_then([TxnOp::delete(lock_key, None), TxnOp::delete(info_key, None)]),
            )
            .await?;
            let _ = c.lease_revoke(id).await;
            Ok(())
        });
    }

    fn taken_over_from(&self) -> Option<Holder> {
        self.taken_over_from.clone()
    }
}

impl EtcdBackend {
    /// Keeps the newest `HISTORY_KEPT` runs (after the write that added one; a crash between
    /// the two leaves one run too many, which the next snapshot trims).
    fn trim_history(&self, name: &str) -> Result<(), StoreError> {
        let old: Vec<String> = self
            .history(name)?
            .iter()
            .skip(HISTORY_KEPT as usize)
            .map(|e| self.inner.history_key(name, e.version))
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        self.inner.call(move |mut c| {
            let ops: Vec<TxnOp> = old.iter().map(|k| TxnOp::delete(k.clone(), None)).collect();
            async move {
                c.txn(Txn::new().and_then(ops)).await?;
                Ok(())
            }
        })
    }
}

impl StateBackend for EtcdBackend {
    fn url(&self) -> String {
        self.inner.shown.clone()
    }

    fn read(&self, name: &str) -> Result<Option<Record>, StoreError> {
        let key = self.inner.key("state", name);
        self.inner.call(move |mut c| async move {
            let r = c.get(key, None).await?;
            Ok(r.kvs().first().map(|kv| Record {
                body: kv.value().to_vec(),
                version: kv.version() as u64,
            }))
        })
    }

    fn write(
        &self,
        name: &str,
        body: &[u8],
        expected: Option<u64>,
        token: Option<&str>,
        by: &str,
        snapshot: Option<&[u8]>,
    ) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let key = inner.key("state", name);
        let lock_key = inner.key("lock", name);
        let version = expected.unwrap_or(0) + 1;
        let mut compares = vec![Compare::version(
            key.clone(),
            CompareOp::Equal,
            expected.unwrap_or(0) as i64,
        )];
        if let Some(t) = token {
            compares.push(Compare::value(lock_key.clone(), CompareOp::Equal, t));
        }
        let mut ops = vec![TxnOp::put(key.clone(), body.to_vec(), None)];
        if let Some(doc) = snapshot {
            let mut history = format!("{}\n{by}\n", crate::util::now_rfc3339()).into_bytes();
            history.extend_from_slice(doc);
            ops.push(TxnOp::put(inner.history_key(name, version), history, None));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then(ops)
            .or_else([TxnOp::get(key, None), TxnOp::get(lock_key, None)]);
        let outcome = self.inner.call(move |mut c| async move {
            let r = c.txn(txn).await?;
            if r.succeeded() {
                return Ok(Ok(()));
            }
            let mut found = None;
            let mut lock_value: Option<Vec<u8>> = None;
            for (i, op) in r.op_responses().into_iter().enumerate() {
                if let TxnOpResponse::Get(g) = op {
                    let kv = g.kvs().first();
                    if i == 0 {
                        found = kv.map(|kv| kv.version() as u64);
                    } else {
                        lock_value = kv.map(|kv| kv.value().to_vec());
                    }
                }
            }
            Ok(Err((found, lock_value)))
        })?;
        match outcome {
            Ok(()) => {
                if snapshot.is_some() {
                    self.trim_history(name)?;
                }
                Ok(version)
            }
            Err((_, lock_value))
                if token.is_some() && lock_value.as_deref() != token.map(str::as_bytes) =>
            {
                Err(StoreError::LockLost(name.to_string()))
            }
            Err((found, _)) => Err(StoreError::Conflict {
                deployment: name.to_string(),
                expected,
                found,
            }),
        }
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        let key = self.inner.key("state", name);
        let history = format!("{}/history/{name}/", self.inner.prefix);
        self.inner.call(move |mut c| async move {
            c.txn(Txn::new().and_then([
                TxnOp::delete(key, None),
                TxnOp::delete(history, Some(DeleteOptions::new().with_prefix())),
            ]))
            .await?;
            Ok(())
        })
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{}/state/", self.inner.prefix);
        self.inner.call(move |mut c| async move {
            let r = c
                .get(
                    prefix.clone(),
                    Some(GetOptions::new().with_prefix().with_keys_only()),
                )
                .await?;
            let mut names: Vec<String> = r
                .kvs()
                .iter()
                .filter_map(|kv| {
                    std::str::from_utf8(kv.key())
                        .ok()?
                        .strip_prefix(&prefix)
                        .map(str::to_string)
                })
                .collect();
            names.sort();
            Ok(names)
        })
    }

    fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let prefix = format!("{}/history/{name}/", self.inner.prefix);
        self.inner.call(move |mut c| async move {
            let r = c
                .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
                .await?;
            let mut out: Vec<HistoryEntry> = r
                .kvs()
                .iter()
                .filter_map(|kv| {
                    let version = std::str::from_utf8(kv.key())
                        .ok()?
                        .strip_prefix(&prefix)?
                        .parse()
                        .ok()?;
                    let mut parts = kv.value().splitn(3, |b| *b == b'\n');
                    let at = String::from_utf8_lossy(parts.next()?).into_owned();
                    let by = String::from_utf8_lossy(parts.next()?).into_owned();
                    let body = parts.next().unwrap_or_default();
                    Some(HistoryEntry {
                        version,
                        written_at: at,
                        written_by: by,
                        bytes: body.len(),
                    })
                })
                .collect();
            out.sort_by_key(|e| std::cmp::Reverse(e.version));
            Ok(out)
        })
    }

    fn read_version(&self, name: &str, version: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.inner.history_key(name, version);
        self.inner.call(move |mut c| async move {
            let r = c.get(key, None).await?;
            Ok(r.kvs().first().and_then(|kv| {
                kv.value()
                    .splitn(3, |b| *b == b'\n')
                    .nth(2)
                    .map(<[u8]>::to_vec)
            }))
        })
    }

    fn try_lock(
        &self,
        name: &str,
        holder: &Holder,
        lease: Duration,
    ) -> Result<LockAttempt, StoreError> {
        let token = super::new_lock_token();
        let lock_key = self.inner.key("lock", name);
        let info_key = self.inner.key("lockinfo", name);
        let holder_json = serde_json::to_string(holder).unwrap_or_default();
        let ttl = lease.as_secs_f64().ceil().max(1.0) as i64;
        let t = token.clone();
        let (acquired, lease_id, previous): (bool, i64, Option<Holder>) =
            self.inner.call(move |mut c| async move {
                let id = c.lease_grant(ttl, None).await?.id();
                let r = c
                    .txn(
                        Txn::new()
                            .when([Compare::create_revision(
                                lock_key.clone(),
                                CompareOp::Equal,
                                0,
                            )])
                            .and_then([TxnOp::put(
                                lock_key,
                                t,
                                Some(PutOptions::new().with_lease(id)),
                            )]),
                    )
                    .await?;
                // The last holder record: a live holder's when the lock is taken, a dead
                // holder's when its lease expired without a release.
                let info = c.get(info_key.clone(), None).await?;
                let previous: Option<Holder> = info
                    .kvs()
                    .first()
                    .and_then(|kv| serde_json::from_slice(kv.value()).ok());
                if r.succeeded() {
                    c.put(info_key, holder_json, None).await?;
                } else {
                    let _ = c.lease_revoke(id).await;
                }
                Ok((r.succeeded(), id, previous))
            })?;
        if acquired {
            return Ok(LockAttempt::Acquired(Arc::new(EtcdLock {
                inner: self.inner.clone(),
                name: name.to_string(),
                token,
                lease_id,
                taken_over_from: previous,
            })));
        }
        Ok(LockAttempt::Held(match self.lock_status(name)? {
            Some(info) => Some(info),
            None => previous.map(|h| LockInfo {
                holder: h,
                expires_at: None,
            }),
        }))
    }

    fn lock_status(&self, name: &str) -> Result<Option<LockInfo>, StoreError> {
        let lock_key = self.inner.key("lock", name);
        let info_key = self.inner.key("lockinfo", name);
        let found: Option<(Option<Holder>, i64)> = self.inner.call(move |mut c| async move {
            let r = c.get(lock_key, None).await?;
            let Some(kv) = r.kvs().first() else {
                return Ok(None);
            };
            let lease = kv.lease();
            let ttl = c.lease_time_to_live(lease, None).await?.ttl();
            let info = c.get(info_key, None).await?;
            let holder = info
                .kvs()
                .first()
                .and_then(|kv| serde_json::from_slice(kv.value()).ok());
            Ok(Some((holder, ttl)))
        })?;
        Ok(found.map(|(holder, ttl)| LockInfo {
            holder: holder.unwrap_or_else(|| Holder {
                pid: 0,
                host: "unknown".into(),
                started_at: String::new(),
                command: "unknown".into(),
            }),
            expires_at: jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(ttl.max(0)))
                .ok()
                .map(|t| t.to_string()),
        }))
    }

    fn force_unlock(&self, name: &str) -> Result<bool, StoreError> {
        let lock_key = self.inner.key("lock", name);
        self.inner.call(move |mut c| async move {
            let r = c.get(lock_key.clone(), None).await?;
            let Some(kv) = r.kvs().first() else {
                return Ok(false);
            };
            let lease = kv.lease();
            c.delete(lock_key, None).await?;
            if lease != 0 {
                let _ = c.lease_revoke(lease).await;
            }
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_endpoints_user_prefix_and_tls() {
        let t = parse("etcd://127.0.0.1:2379").expect("parse");
        assert_eq!(
            (t.endpoints, t.user, t.prefix.as_str(), t.cacert),
            (
                vec!["http://127.0.0.1:2379".to_string()],
                None,
                "/flotilla",
                None
            )
        );
        let t = parse("etcd://root:pw@localhost:1,[::1]:2/team/x").expect("parse");
        assert_eq!(t.endpoints, vec!["http://localhost:1", "http://[::1]:2"]);
        assert_eq!(t.user, Some(("root".into(), "pw".into())));
        assert_eq!(t.prefix, "/team/x");
        assert!(parse("http://x").is_err());
        let t =
            parse("etcd://e1:2379,e2:2379/p?cacert=/ca.pem&cert=/c.pem&key=/k.pem").expect("tls");
        assert_eq!(t.endpoints, vec!["https://e1:2379", "https://e2:2379"]);
        assert_eq!(t.client, Some(("/c.pem".into(), "/k.pem".into())));
        // Plain text off this machine only when asked for.
        let e = parse("etcd://e1:2379/p").expect_err("refused");
        assert!(e.contains("without TLS"), "{e}");
        assert!(parse("etcd://e1:2379/p?insecure-transport=true").is_ok());
        assert!(parse("etcd://e1:2379/p?cacert=/ca.pem&cert=/c.pem").is_err());
        assert!(parse("etcd://127.0.0.1:2379/p?bogus=1").is_err());
    }
}
