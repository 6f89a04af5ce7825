//! The PostgreSQL backend (tokio-postgres): one row per deployment with a version column,
//! written by single-statement compare-and-swap (so concurrent writers cannot both win, and a
//! write carrying a lock token only lands while that lock is alive — fencing); the last versions
//! in a history table; the lock a row with a lease that its holder renews and that anyone may
//! take once it expired. The schema is created (and later migrated) by flotilla, under an
//! advisory lock so twenty processes starting at once do not race. Credentials come from the
//! URL or the usual libpq variables (PGUSER, PGPASSWORD, PGHOST, PGPORT, PGDATABASE); TLS from
//! `sslmode`/`sslrootcert` in the URL or PGSSLMODE/PGSSLROOTCERT (rustls, the server certificate
//! always verified when TLS is asked for).

use super::rt::Rt;
use super::{
    redact, HeldLock, HistoryEntry, LockAttempt, LockInfo, Record, StateBackend, HISTORY_KEPT,
};
use crate::state::lock::Holder;
use crate::state::store::StoreError;
use flotilla_provider_core::backoff::Backoff;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};

const SCHEMA_VERSION: i32 = 1;
/// Each call is bounded; a server that stops answering fails the command, it does not hang it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS flotilla_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS flotilla_state (
    deployment text PRIMARY KEY,
    version    bigint NOT NULL,
    body       bytea NOT NULL,
    updated_at timestamptz NOT NULL,
    updated_by text NOT NULL
);
CREATE TABLE IF NOT EXISTS flotilla_state_history (
    deployment text NOT NULL,
    version    bigint NOT NULL,
    body       bytea NOT NULL,
    written_at timestamptz NOT NULL,
    written_by text NOT NULL,
    PRIMARY KEY (deployment, version)
);
CREATE TABLE IF NOT EXISTS flotilla_lock (
    deployment text PRIMARY KEY,
    token      text NOT NULL,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);
";

/// TLS to the server: none, or rustls with the roots to verify the server against.
#[derive(Clone)]
enum Tls {
    Off,
    Verify(Arc<rustls::ClientConfig>),
}

/// States carry the deployment's SSH private key: they go to a server without TLS only on this
/// machine (loopback, a Unix socket) or when the URL says `sslmode=disable` itself.
fn refuse_plain_text(config: &Config, tls: &Tls, explicit_disable: bool) -> Result<(), String> {
    use tokio_postgres::config::Host;
    if matches!(tls, Tls::Verify(_)) || explicit_disable {
        return Ok(());
    }
    let local = |h: &Host| match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    };
    match config.get_hosts().iter().find(|h| !local(h)) {
        None => Ok(()),
        Some(h) => Err(format!(
            "refusing to send states (they hold SSH private keys) to {} without TLS: add sslmode=verify-full (with sslrootcert=CA.pem for a private CA), or sslmode=disable if the network to it is trusted",
            match h {
                Host::Tcp(n) => n.clone(),
                Host::Unix(p) => p.display().to_string(),
            }
        )),
    }
}

/// Takes `sslmode` and `sslrootcert` out of the URL (tokio-postgres knows neither `verify-full`
/// nor `sslrootcert`) and builds the TLS setting: `disable`, `allow` and `prefer` (the default)
/// speak plain; `require`, `verify-ca` and `verify-full` speak TLS and verify the certificate and
/// host name against `sslrootcert` (a PEM file) or, without it, the Mozilla roots — stricter than
/// libpq's `require`, which encrypts without verifying.
fn tls_from(url: &str) -> Result<(String, Tls, bool), String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = env("PGSSLMODE");
    let mut root = env("PGSSLROOTCERT");
    let mut kept = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        match kv.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.to_string()),
            Some(("sslrootcert", v)) => root = Some(v.to_string()),
            _ => kept.push(kv),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let tls = match mode.as_deref().unwrap_or("prefer") {
        "disable" | "allow" | "prefer" => Tls::Off,
        "require" | "verify-ca" | "verify-full" => {
            let mut roots = rustls::RootCertStore::empty();
            match &root {
                Some(path) => {
                    use rustls_pki_types::pem::PemObject;
                    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                        .map_err(|e| format!("sslrootcert {path}: {e}"))?;
                    for c in certs {
                        let c = c.map_err(|e| format!("sslrootcert {path}: {e}"))?;
                        roots
                            .add(c)
                            .map_err(|e| format!("sslrootcert {path}: {e}"))?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Tls::Verify(Arc::new(config))
        }
        other => {
            return Err(format!(
                "sslmode={other}: expected disable, prefer, require, verify-ca or verify-full"
            ))
        }
    };
    let explicit_disable = mode.as_deref() == Some("disable");
    Ok((url, tls, explicit_disable))
}

struct Inner {
    shown: String,
    config: Config,
    tls: Tls,
    rt: Rt,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    /// Once a connection worked, a failing reconnect is retried for a while (a restarting
    /// server); before that, a refused connection fails at once (wrong address or password).
    connected_once: std::sync::atomic::AtomicBool,
}

/// How long a lost connection is retried before the command fails: long enough for a server
/// restart on a busy machine (a fast shutdown, crash recovery, start).
const RECONNECT_WINDOW: Duration = Duration::from_secs(60);
/// Statements cut off by a lost connection are sent again at most this often (within the window).
const MAX_SENDS: u32 = 10;

/// How a lost connection is waited out: 250 ms doubling to 2 s, spread, within the window.
fn retry_policy() -> Backoff {
    Backoff::new(RECONNECT_WINDOW)
        .first(Duration::from_millis(250))
        .cap(Duration::from_secs(2))
        .jitter()
}

async fn reconnect(me: &Inner) -> Result<Arc<Client>, String> {
    use std::sync::atomic::Ordering;
    let mut backoff = retry_policy();
    let mut seen_restarting = false;
    loop {
        match connect(&me.config, &me.tls).await {
            Ok(c) => {
                me.connected_once.store(true, Ordering::SeqCst);
                return Ok(c);
            }
            // Before the first connection worked, the server's own refusal is final (a wrong
            // password, a missing database), and a server that does not answer is tried only
            // briefly — unless it was seen restarting, which is waited for like a lost one.
            Err(e) if !me.connected_once.load(Ordering::SeqCst) && e.refused_by_server => {
                return Err(e.message)
            }
            Err(e)
                if !(me.connected_once.load(Ordering::SeqCst)
                    || seen_restarting
                    || e.restarting)
                    && backoff.elapsed() >= FIRST_CONNECT_WINDOW =>
            {
                return Err(e.message)
            }
            Err(e) => {
                seen_restarting |= e.restarting;
                tracing::warn!(
                    "the state database does not answer ({}); retrying",
                    e.message
                );
                if !backoff.wait().await {
                    return Err(e.message);
                }
            }
        }
    }
}

pub struct PostgresBackend {
    inner: Arc<Inner>,
}

fn pg_message(e: &tokio_postgres::Error) -> String {
    // The server's own message when there is one (wrong password, missing database), else the
    // client's; one line either way.
    let text = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut parts = vec![e.to_string()];
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                parts.push(s.to_string());
                src = s.source();
            }
            parts.join(": ")
        }
    };
    text.replace('\n', " ")
}

/// The URL's settings, with the libpq environment variables filling what it leaves out.
fn config_from(url: &str) -> Result<Config, String> {
    let mut c: Config = url
        .parse()
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if c.get_user().is_none() {
        if let Some(u) = env("PGUSER") {
            c.user(&u);
        }
    }
    if c.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            c.password(p);
        }
    }
    if c.get_hosts().is_empty() {
        c.host(env("PGHOST").unwrap_or_else(|| "localhost".into()));
    }
    if c.get_ports().is_empty() {
        if let Some(p) = env("PGPORT").and_then(|p| p.parse().ok()) {
            c.port(p);
        }
    }
    if c.get_dbname().is_none() {
        if let Some(d) = env("PGDATABASE") {
            c.dbname(&d);
        }
    }
    c.connect_timeout(Duration::from_secs(5));
    c.application_name("flotilla");
    Ok(c)
}

/// A statement that failed because the connection went away (the server shutting down or
/// restarting: SQLSTATE class 57P "operator intervention" or 08 "connection exception"): the
/// server rolled it back, so it is safe to retry on a new connection.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("57P") || c.starts_with("08")
        }
        // No SQLSTATE: an I/O error on the socket.
        None => e.as_db_error().is_none(),
    }
}

/// Whether a connection attempt met a server that is there but going down or coming up (it
/// closed or reset the connection, or said so): worth waiting for even before this process
/// ever connected. A refused connection or a wrong password is not: those are final at once.
fn restarting(e: &tokio_postgres::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, UnexpectedEof};
    let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>());
    e.is_closed()
        || e.code().is_some_and(|c| c.code().starts_with("57P"))
        || io.is_some_and(|io| {
            matches!(
                io.kind(),
                UnexpectedEof | ConnectionReset | ConnectionAborted
            )
        })
}

/// A failed connection attempt: its one-line reason, whether the server is restarting, and
/// whether the server itself refused us (a wrong password, a missing database: final).
struct ConnectFailure {
    message: String,
    restarting: bool,
    refused_by_server: bool,
}

impl From<tokio_postgres::Error> for ConnectFailure {
    fn from(e: tokio_postgres::Error) -> Self {
        Self {
            message: pg_message(&e),
            restarting: restarting(&e),
            refused_by_server: e.as_db_error().is_some() && !restarting(&e),
        }
    }
}

/// How long a process that never reached the server keeps trying a server that does not answer
/// (a typo in the address fails after this; a server restarting right then is waited for).
const FIRST_CONNECT_WINDOW: Duration = Duration::from_secs(15);

async fn connect(config: &Config, tls: &Tls) -> Result<Arc<Client>, ConnectFailure> {
    // The connection task ends when the server closes it; the next call reconnects.
    let client = match tls {
        Tls::Off => {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        }
        Tls::Verify(c) => {
            let mut config = config.clone();
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let make = tokio_postgres_rustls::MakeRustlsConnect::new((**c).clone());
            let (client, connection) = config.connect(make).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        }
    };
    Ok(Arc::new(client))
}

impl Inner {
    fn err(&self, message: impl Into<String>) -> StoreError {
        StoreError::Backend {
            url: self.shown.clone(),
            message: message.into(),
        }
    }

    /// Runs `f` with a connected client, reconnecting when the connection was lost (a restarted
    /// server) for up to [`RECONNECT_WINDOW`]. Every statement is a single atomic one, so a retry
    /// never repeats half of something.
    fn call<T, F, Fut>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        F: Fn(Arc<Client>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send,
        T: Send + 'static,
    {
        let me = self.clone();
        let outcome = self.rt.run(async move {
            let mut backoff = retry_policy();
            let mut last = String::new();
            for _ in 1..=MAX_SENDS {
                let client = {
                    let mut slot = me.client.lock().await;
                    match slot.as_ref().filter(|c| !c.is_closed()) {
                        Some(c) => c.clone(),
                        None => {
                            let c = reconnect(&me).await?;
                            *slot = Some(c.clone());
                            c
                        }
                    }
                };
                match tokio::time::timeout(CALL_TIMEOUT, f(client.clone())).await {
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(e)) if client.is_closed() || connection_lost(&e) => {
                        last = pg_message(&e);
                        *me.client.lock().await = None;
                        tracing::warn!("the state database connection was lost ({last}); retrying");
                        if !backoff.wait().await {
                            break;
                        }
                    }
                    Ok(Err(e)) => return Err(pg_message(&e)),
                    Err(_) => {
                        *me.client.lock().await = None;
                        return Err(format!("no answer within {}s", CALL_TIMEOUT.as_secs()));
                    }
                }
            }
            Err(format!(
                "the connection kept being lost for {}s: {last}",
                backoff.elapsed().as_secs()
            ))
        });
        match outcome {
            Some(r) => r.map_err(|m| self.err(m)),
            None => Err(self.err("the backend runtime stopped")),
        }
    }
}

impl PostgresBackend {
    /// Connects and creates or migrates the schema. Wrong credentials or an unreachable server
    /// fail here, with the server's one-line reason; there is no local fallback.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let shown = redact(url);
        let bad = |message| StoreError::Backend {
            url: shown.clone(),
            message,
        };
        let (plain_url, tls, explicit_disable) = tls_from(url).map_err(bad)?;
        let config = config_from(&plain_url).map_err(bad)?;
        refuse_plain_text(&config, &tls, explicit_disable).map_err(bad)?;
        let rt = Rt::new().map_err(|e| StoreError::Backend {
            url: shown.clone(),
            message: format!("starting the backend runtime: {e}"),
        })?;
        let inner = Arc::new(Inner {
            shown,
            config,
            tls,
            rt,
            client: tokio::sync::Mutex::new(None),
            connected_once: std::sync::atomic::AtomicBool::new(false),
        });
        inner.call(|c| async move {
            c.batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock(7262001); {SCHEMA}
                 INSERT INTO flotilla_schema (version) SELECT {SCHEMA_VERSION} WHERE NOT EXISTS (SELECT 1 FROM flotilla_schema);
                 COMMIT;"
            ))
            .await
        })?;
        let found: i32 = inner.call(|c| async move {
            let row = c
                .query_one("SELECT max(version) FROM flotilla_schema", &[])
                .await?;
            Ok(row.get::<_, Option<i32>>(0).unwrap_or(0))
        })?;
        if found > SCHEMA_VERSION {
            return Err(inner.err(format!(
                "the database holds schema version {found}, newer than this flotilla's {SCHEMA_VERSION}; upgrade flotilla"
            )));
        }
        Ok(Self { inner })
    }
}

struct PgLock {
    inner: Arc<Inner>,
    name: String,
    token: String,
    lease: Duration,
    taken_over_from: Option<Holder>,
}

impl HeldLock for PgLock {
    fn token(&self) -> Option<String> {
        Some(self.token.clone())
    }

    fn renew(&self) -> Result<bool, StoreError> {
        let (name, token, secs) = (
            self.name.clone(),
            self.token.clone(),
            self.lease.as_secs_f64(),
        );
        self.inner.call(move |c| {
            let (name, token) = (name.clone(), token.clone());
            async move {
                let n = c
                    .execute(
                        "UPDATE flotilla_lock SET expires_at = clock_timestamp() + make_interval(secs => $3)
                         WHERE deployment = $1 AND token = $2 AND expires_at > clock_timestamp()",
                        &[&name, &token, &secs],
                    )
                    .await?;
                Ok(n == 1)
            }
        })
    }

    fn release(&self) {
        let (name, token) = (self.name.clone(), self.token.clone());
        let _ = self.inner.call(move |c| {
            let (name, token) = (name.clone(), token.clone());
            async move {
                c.execute(
                    "DELETE FROM flotilla_lock WHERE deployment = $1 AND token = $2",
                    &[&name, &token],
                )
                .await
            }
        });
    }

    fn taken_over_from(&self) -> Option<Holder> {
        self.taken_over_from.clone()
    }
}

fn parse_holder(text: Option<String>) -> Option<Holder> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

impl PostgresBackend {
    /// The stored record and who wrote it.
    fn read_with_writer(&self, name: &str) -> Result<Option<(Record, String)>, StoreError> {
        let name = name.to_string();
        self.inner.call(move |c| {
            let name = name.clone();
            async move {
                let row = c
                    .query_opt(
                        "SELECT body, version, updated_by FROM flotilla_state WHERE deployment = $1",
                        &[&name],
                    )
                    .await?;
                Ok(row.map(|r| {
                    (
                        Record {
                            body: r.get(0),
                            version: r.get::<_, i64>(1) as u64,
                        },
                        r.get(2),
                    )
                }))
            }
        })
    }
}

impl StateBackend for PostgresBackend {
    fn url(&self) -> String {
        self.inner.shown.clone()
    }

    fn read(&self, name: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.read_with_writer(name)?.map(|(record, _)| record))
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
        let (n, b, e, t, w) = (
            name.to_string(),
            body.to_vec(),
            expected.unwrap_or(0) as i64,
            token.map(str::to_string),
            by.to_string(),
        );
        let h: Option<Vec<u8>> = snapshot.map(<[u8]>::to_vec);
        // How often the statement was sent: more than once means a connection was lost on the
        // way, possibly after the commit.
        let sends = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = sends.clone();
        let written: Option<i64> = self.inner.call(move |c| {
            let (n, b, t, w, h) = (n.clone(), b.clone(), t.clone(), w.clone(), h.clone());
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                // One statement: the fence, the compare-and-swap (update or first insert) and
                // the history row of a run's end commit together or not at all (a data-modifying
                // CTE runs whether or not the final SELECT reads it).
                let row = c
                    .query_opt(
                        "WITH fence AS (
                           SELECT ($4::text IS NULL OR EXISTS (
                             SELECT 1 FROM flotilla_lock
                             WHERE deployment = $1 AND token = $4 AND expires_at > clock_timestamp())) AS ok
                         ),
                         upd AS (
                           UPDATE flotilla_state SET version = version + 1, body = $2, updated_at = now(), updated_by = $5
                           WHERE deployment = $1 AND version = $3 AND $3 > 0 AND (SELECT ok FROM fence)
                           RETURNING version
                         ),
                         ins AS (
                           INSERT INTO flotilla_state (deployment, version, body, updated_at, updated_by)
                           SELECT $1, 1, $2, now(), $5 WHERE $3 = 0 AND (SELECT ok FROM fence)
                           ON CONFLICT (deployment) DO NOTHING
                           RETURNING version
                         ),
                         written AS (SELECT version AS v FROM upd UNION ALL SELECT version FROM ins),
                         hist AS (
                           INSERT INTO flotilla_state_history (deployment, version, body, written_at, written_by)
                           SELECT $1, v, $6, now(), $5 FROM written WHERE $6::bytea IS NOT NULL
                         )
                         SELECT v FROM written",
                        &[&n, &b, &e, &t, &w, &h],
                    )
                    .await?;
                let v: Option<i64> = row.map(|r| r.get(0));
                if v.is_some() && h.is_some() {
                    // Only the newest runs are kept.
                    c.execute(
                        "DELETE FROM flotilla_state_history WHERE deployment = $1 AND version NOT IN (
                           SELECT version FROM flotilla_state_history WHERE deployment = $1
                           ORDER BY version DESC LIMIT $2)",
                        &[&n, &(HISTORY_KEPT as i64)],
                    )
                    .await?;
                }
                Ok(v)
            }
        })?;
        if let Some(v) = written {
            return Ok(v as u64);
        }
        // Why not: a lost lock, or another version.
        if let Some(t) = token {
            let ours = {
                let (n, t) = (name.to_string(), t.to_string());
                self.inner.call(move |c| {
                    let (n, t) = (n.clone(), t.clone());
                    async move {
                        Ok(c.query_opt(
                            "SELECT 1 FROM flotilla_lock WHERE deployment = $1 AND token = $2 AND expires_at > clock_timestamp()",
                            &[&n, &t],
                        )
                        .await?
                        .is_some())
                    }
                })?
            };
            if !ours {
                return Err(StoreError::LockLost(name.to_string()));
            }
        }
        // A write whose commit went through but whose answer was lost with the connection
        // comes back here when sent again: the stored version is then exactly ours. (Only after
        // a resend: a first attempt that finds the same body is a genuine conflict.)
        let resent = sends.load(std::sync::atomic::Ordering::SeqCst) > 1;
        let now = self.read_with_writer(name)?;
        if let Some((rec, writer)) = &now {
            if resent
                && rec.version == expected.unwrap_or(0) + 1
                && rec.body == body
                && writer == by
            {
                return Ok(rec.version);
            }
        }
        let found = now.map(|(r, _)| r.version);
        Err(StoreError::Conflict {
            deployment: name.to_string(),
            expected,
            found,
        })
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.inner.call(move |c| {
            let name = name.clone();
            async move {
                c.execute(
                    "DELETE FROM flotilla_state_history WHERE deployment = $1",
                    &[&name],
                )
                .await?;
                c.execute("DELETE FROM flotilla_state WHERE deployment = $1", &[&name])
                    .await?;
                Ok(())
            }
        })
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        self.inner.call(|c| async move {
            let rows = c
                .query(
                    "SELECT deployment FROM flotilla_state ORDER BY deployment",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let name = name.to_string();
        self.inner.call(move |c| {
            let name = name.clone();
            async move {
                let rows = c
                    .query(
                        "SELECT version, to_char(written_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), written_by, length(body)
                         FROM flotilla_state_history WHERE deployment = $1 ORDER BY version DESC",
                        &[&name],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| HistoryEntry {
                        version: r.get::<_, i64>(0) as u64,
                        written_at: r.get(1),
                        written_by: r.get(2),
                        bytes: r.get::<_, i32>(3) as usize,
                    })
                    .collect())
            }
        })
    }

    fn read_version(&self, name: &str, version: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let (name, v) = (name.to_string(), version as i64);
        self.inner.call(move |c| {
            let name = name.clone();
            async move {
                let row = c
                    .query_opt(
                        "SELECT body FROM flotilla_state_history WHERE deployment = $1 AND version = $2",
                        &[&name, &v],
                    )
                    .await?;
                Ok(row.map(|r| r.get(0)))
            }
        })
    }

    fn try_lock(
        &self,
        name: &str,
        holder: &Holder,
        lease: Duration,
    ) -> Result<LockAttempt, StoreError> {
        let token = super::new_lock_token();
        let holder_text = serde_json::to_string(holder).unwrap_or_default();
        let (n, t, h, secs) = (
            name.to_string(),
            token.clone(),
            holder_text,
            lease.as_secs_f64(),
        );
        let (got, prev_holder, prev_expires): (Option<String>, Option<String>, Option<String>) =
            self.inner.call(move |c| {
                let (n, t, h) = (n.clone(), t.clone(), h.clone());
                async move {
                    let row = c
                        .query_one(
                            "WITH prev AS (
                               SELECT holder, expires_at, expires_at > clock_timestamp() AS live
                               FROM flotilla_lock WHERE deployment = $1
                             ),
                             ins AS (
                               INSERT INTO flotilla_lock (deployment, token, holder, expires_at)
                               VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4))
                               ON CONFLICT (deployment) DO UPDATE
                                 SET token = EXCLUDED.token, holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                                 WHERE flotilla_lock.expires_at <= clock_timestamp()
                               RETURNING token
                             )
                             SELECT (SELECT token FROM ins), (SELECT holder FROM prev),
                                    (SELECT to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM prev)",
                            &[&n, &t, &h, &secs],
                        )
                        .await?;
                    Ok((row.get(0), row.get(1), row.get(2)))
                }
            })?;
        if got.as_deref() == Some(token.as_str()) {
            return Ok(LockAttempt::Acquired(Arc::new(PgLock {
                inner: self.inner.clone(),
                name: name.to_string(),
                token,
                lease,
                taken_over_from: parse_holder(prev_holder),
            })));
        }
        Ok(LockAttempt::Held(parse_holder(prev_holder).map(|h| {
            LockInfo {
                holder: h,
                expires_at: prev_expires,
            }
        })))
    }

    fn lock_status(&self, name: &str) -> Result<Option<LockInfo>, StoreError> {
        let name = name.to_string();
        let row: Option<(String, String)> = self.inner.call(move |c| {
            let name = name.clone();
            async move {
                let row = c
                    .query_opt(
                        "SELECT holder, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                         FROM flotilla_lock WHERE deployment = $1 AND expires_at > clock_timestamp()",
                        &[&name],
                    )
                    .await?;
                Ok(row.map(|r| (r.get(0), r.get(1))))
            }
        })?;
        Ok(row.and_then(|(h, e)| {
            parse_holder(Some(h)).map(|holder| LockInfo {
                holder,
                expires_at: Some(e),
            })
        }))
    }

    fn force_unlock(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.inner.call(move |c| {
            let name = name.clone();
            async move {
                let n = c
                    .execute("DELETE FROM flotilla_lock WHERE deployment = $1", &[&name])
                    .await?;
                Ok(n > 0)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_never_travel_in_plain_text_off_this_machine() {
        // Refused before any connection is made (db.example.com is never dialled).
        for url in [
            "postgres://u@db.example.com/f",
            "postgres://u@10.0.0.5/f?sslmode=prefer",
            "postgres://u@10.0.0.5/f?sslmode=allow",
        ] {
            let err = PostgresBackend::connect(url)
                .err()
                .expect("refused")
                .to_string();
            assert!(err.contains("without TLS"), "{url}: {err}");
        }
        let (url, tls, disable) = tls_from("postgres://u@10.0.0.5/f?sslmode=disable").expect("ok");
        let config = config_from(&url).expect("config");
        assert!(refuse_plain_text(&config, &tls, disable).is_ok());
        for local in [
            "postgres://u@127.0.0.1:5/f",
            "postgres://u@localhost/f",
            "postgres://u@[::1]/f",
        ] {
            let (url, tls, disable) = tls_from(local).expect("ok");
            let config = config_from(&url).expect("config");
            assert!(refuse_plain_text(&config, &tls, disable).is_ok(), "{local}");
        }
    }
}
