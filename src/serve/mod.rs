//! `flotilla serve`: the engine behind an HTTP API (what runs in the manager container, and
//! locally). Bearer-token auth on everything but `/healthz` and `/openapi.json`; an
//! Alertmanager-compatible webhook that turns firing alerts into one heal per deployment at a
//! time; Prometheus metrics; request size and time limits; errors as JSON, never a trace.

mod alerts;
pub mod auth;
mod extract;
pub mod listener;
mod metrics;
mod openapi;
pub mod tls;

use crate::engine::heal::{heal, Decision, HealOptions, HealReport};
use crate::engine::scale::{scale, ScaleOptions};
use crate::engine::up::{up, UpOptions};
use crate::error::Error;
use crate::progress::Progress;
use crate::state::Home;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use extract::{Body, Deployment};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use metrics::Metrics;

/// Request bodies above this are refused (413).
pub const BODY_LIMIT: usize = 1024 * 1024;

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub token_file: PathBuf,
    pub request_timeout: Duration,
    /// Request log (one JSON line per request; never headers or bodies).
    pub log_file: Option<PathBuf>,
    /// HTTPS with the pair in this folder (made when missing).
    pub tls_dir: Option<PathBuf>,
    /// Names and addresses for the certificate when it is made.
    pub tls_names: Vec<String>,
    /// Plain HTTP on an address other than loopback.
    pub allow_plain_http: bool,
    pub limits: listener::Limits,
}

pub struct AppState {
    pub home: Home,
    pub token: String,
    pub metrics: Metrics,
    /// Deployments a webhook-started heal is running on (one at a time per deployment).
    pub healing: Mutex<HashSet<String>>,
    /// When an alert last started a heal, per deployment (`health.alert_cooldown`).
    pub alert_heals: Mutex<HashMap<String, std::time::Instant>>,
    pub request_log: Option<Mutex<std::fs::File>>,
}

/// An engine error as an HTTP answer.
pub struct ApiError(pub(crate) Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.0.kind();
        let status = match kind {
            "usage" | "invalid_blueprint" => StatusCode::BAD_REQUEST,
            "not_found" => StatusCode::NOT_FOUND,
            "locked" => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = serde_json::json!({"error": {"kind": kind, "message": self.0.to_string()}});
        (status, Json(body)).into_response()
    }
}

/// Runs an engine operation on a blocking thread of its own (the engine's futures hold SSH
/// sessions and progress bars that need not be `Send`).
async fn engine<F, Fut, T>(make: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = crate::error::Result<T>>,
    T: Send + 'static,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(make()))
        .await
        .map_err(|e| ApiError(Error::Other(format!("the operation stopped: {e}"))))?
        .map_err(ApiError)
}

fn quiet() -> Progress {
    Progress::new(true)
}

pub fn router(state: Arc<AppState>, request_timeout: Duration) -> Router {
    let api = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/deployments", get(list))
        .route("/v1/deployments/{name}", get(status))
        .route("/v1/deployments/{name}/outputs", get(outputs))
        .route("/v1/deployments/{name}/plan", post(plan))
        .route("/v1/deployments/{name}/scale", post(scale_handler))
        .route("/v1/deployments/{name}/heal", post(heal_handler))
        .route("/v1/alerts", post(alertmanager))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .merge(api)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .with_state(state)
}

async fn count_requests(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    state.metrics.request(&route, status);
    if let Some(log) = &state.request_log {
        // The route template, not the path: no deployment names from unauthenticated callers.
        let line = serde_json::json!({
            "at": crate::util::now_rfc3339(),
            "method": method,
            "route": route,
            "status": status,
            "ms": started.elapsed().as_millis() as u64,
        });
        if let Ok(mut f) = log.lock() {
            use std::io::Write;
            let _ = writeln!(f, "{line}");
        }
    }
    response
}

fn open_log(path: &std::path::Path) -> crate::error::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Usage(format!("{}: {e}", dir.display())))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| Error::Usage(format!("request log {}: {e}", path.display())))
}

pub async fn run(home: Home, opts: ServeOptions) -> crate::error::Result<()> {
    let (token, created) =
        auth::load_or_create(&opts.token_file).map_err(|e| Error::Other(e.to_string()))?;
    if created {
        // The path only: the token itself is never printed or logged.
        crate::tell!(
            "flotilla serve: a new API token was written to {} (mode 0600)",
            opts.token_file.display()
        );
    }
    let state = Arc::new(AppState {
        home,
        token,
        metrics: Metrics::default(),
        healing: Mutex::new(HashSet::new()),
        alert_heals: Mutex::new(HashMap::new()),
        request_log: match &opts.log_file {
            None => None,
            Some(p) => Some(Mutex::new(open_log(p)?)),
        },
    });
    let tls = match &opts.tls_dir {
        Some(dir) => {
            let mut names = opts.tls_names.clone();
            names.push(opts.listen.ip().to_string());
            let (cert, key) = tls::load_or_create(dir, &names)
                .map_err(|e| Error::Usage(e.to_string()))?;
            let fp = tls::file_fingerprint(&cert).map_err(|e| Error::Usage(e.to_string()))?;
            crate::tell!("flotilla serve: TLS certificate {} ({fp})", cert.display());
            Some(tls::server_config(&cert, &key).map_err(|e| Error::Usage(e.to_string()))?)
        }
        None if !opts.listen.ip().is_loopback() && !opts.allow_plain_http => {
            return Err(Error::Usage(format!(
                "refusing plain HTTP on {}: the API token would cross the network in clear text; pass --tls-dir DIR (a certificate is made there), or --allow-plain-http behind a TLS-terminating proxy",
                opts.listen
            )))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on {}: {e}", opts.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Other(e.to_string()))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    crate::tell!("flotilla serve: listening on {scheme}://{addr}");
    let app = router(state, opts.request_timeout);
    listener::serve(
        listener,
        tls,
        app,
        opts.limits.clone(),
        opts.request_timeout,
        shutdown(),
    )
    .await;
    Ok(())
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    crate::tell!("flotilla serve: stopping (requests in flight finish first)");
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn list(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let home = state.home.clone();
    let rows = engine(move || async move { crate::engine::status::deployments(&home) }).await?;
    Ok(Json(serde_json::Value::Array(rows)))
}

async fn status(
    State(state): State<Arc<AppState>>,
    Deployment(name): Deployment,
) -> Result<Json<crate::engine::status::StatusReport>, ApiError> {
    let home = state.home.clone();
    let n = name.clone();
    let report =
        engine(move || async move { crate::engine::status::status(&home, &n, true).await }).await?;
    let healthy = report.nodes.iter().filter(|n| n.healthy).count();
    state
        .metrics
        .nodes(&name, healthy, report.nodes.len() - healthy);
    Ok(Json(report))
}

async fn outputs(
    State(state): State<Arc<AppState>>,
    Deployment(name): Deployment,
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    let home = state.home.clone();
    let st = engine(move || async move { home.load_existing(&name).map_err(Error::from) }).await?;
    Ok(Json(st.outputs))
}

async fn plan(
    State(state): State<Arc<AppState>>,
    Deployment(name): Deployment,
) -> Result<Json<crate::engine::up::UpReport>, ApiError> {
    let home = state.home.clone();
    let report = engine(move || async move {
        let st = home.load_existing(&name)?;
        let bp = crate::engine::effective_blueprint(&st)?;
        let mut opts = UpOptions::new("plan");
        opts.dry_run = true;
        opts.overrides = Some(st.count_overrides.clone());
        up(&bp, &home, &quiet(), &opts).await
    })
    .await?;
    Ok(Json(report))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    /// Group name → new size.
    groups: BTreeMap<String, u32>,
    /// Scale-in deletes machines only when this is true.
    #[serde(default)]
    allow_delete: bool,
}

async fn scale_handler(
    State(state): State<Arc<AppState>>,
    Deployment(name): Deployment,
    Body(body): Body<ScaleBody>,
) -> Result<Json<crate::engine::up::UpReport>, ApiError> {
    let home = state.home.clone();
    let n = name.clone();
    let r = engine(move || async move {
        let counts: Vec<(String, u32)> = body.groups.into_iter().collect();
        let opts = ScaleOptions {
            allow_delete: body.allow_delete,
            wait_lock: None,
        };
        scale(&home, &n, &counts, &quiet(), &opts).await
    })
    .await;
    if known(&r) {
        state.metrics.run(&name, "scale", r.is_ok());
    }
    Ok(Json(r?))
}

/// Whether an outcome belongs to a deployment that exists (metric series are made only for
/// those: a caller cannot grow /metrics with names of its choosing).
fn known<T>(r: &Result<T, ApiError>) -> bool {
    !matches!(r, Err(ApiError(e)) if matches!(e.kind(), "not_found" | "usage"))
}

/// `{"dry_run": bool}`, required: no body is no heal.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealBody {
    dry_run: bool,
}

async fn run_heal(state: &AppState, name: &str, dry_run: bool) -> Result<HealReport, ApiError> {
    let home = state.home.clone();
    let n = name.to_string();
    let r = engine(move || async move {
        heal(
            &home,
            &n,
            &quiet(),
            &HealOptions {
                dry_run,
                wait_lock: None,
            },
        )
        .await
    })
    .await;
    if !dry_run && known(&r) {
        record_heal(&state.metrics, name, &r);
    }
    r
}

fn record_heal(m: &Metrics, name: &str, r: &Result<HealReport, ApiError>) {
    match r {
        Ok(rep) => {
            let result = if rep.refused.is_some() {
                "refused"
            } else if !rep.replaced.is_empty() {
                "replaced"
            } else if !rep.restarted.is_empty() {
                "restarted"
            } else {
                "healthy"
            };
            m.heal(name, result, rep.replaced.len());
            match &rep.converge {
                // Replacements made and nothing failed: every node is a healthy one now.
                Some(c) if c.failed.is_empty() => m.nodes(name, c.nodes.len(), 0),
                _ => {
                    let healthy = rep
                        .verdicts
                        .iter()
                        .filter(|v| v.decision == Decision::Healthy)
                        .count();
                    m.nodes(name, healthy, rep.verdicts.len() - healthy);
                }
            }
            m.run(name, "heal", rep.refused.is_none());
        }
        Err(ApiError(e)) => {
            m.heal(
                name,
                if e.kind() == "locked" {
                    "locked"
                } else {
                    "failed"
                },
                0,
            );
            m.run(name, "heal", false);
        }
    }
}

async fn heal_handler(
    State(state): State<Arc<AppState>>,
    Deployment(name): Deployment,
    Body(body): Body<HealBody>,
) -> Result<Response, ApiError> {
    let report = run_heal(&state, &name, body.dry_run).await?;
    let code = if report.refused.is_some() {
        // The guard refused: the request was fine, the cluster is not.
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    Ok((code, Json(report)).into_response())
}

/// Alertmanager webhook: one background heal per named deployment; repeats while one runs are
/// acknowledged as `in_progress`, not queued.
async fn alertmanager(
    State(state): State<Arc<AppState>>,
    Body(hook): Body<alerts::Webhook>,
) -> Json<serde_json::Value> {
    if !hook.version.is_empty() && hook.version != "4" {
        tracing::warn!(version = %hook.version, "webhook payload version is not 4; reading it as 4");
    }
    let (names, ignored) = alerts::deployments_to_heal(&hook);
    for _ in 0..ignored {
        state.metrics.alert("ignored");
    }
    let known: Vec<String> = state.home.list().unwrap_or_default();
    let mut started = Vec::new();
    let mut in_progress = Vec::new();
    let mut unknown = Vec::new();
    let mut cooling_down = Vec::new();
    for name in names {
        if !known.contains(&name)
            || !crate::names::is_valid(crate::names::NameKind::Deployment, &name)
        {
            state.metrics.alert("unknown_deployment");
            unknown.push(name);
            continue;
        }
        if cooling(&state, &name) {
            state.metrics.alert("cooldown");
            cooling_down.push(name);
            continue;
        }
        let fresh = state
            .healing
            .lock()
            .map(|mut set| set.insert(name.clone()))
            .unwrap_or(false);
        if !fresh {
            state.metrics.alert("heal_in_progress");
            in_progress.push(name);
            continue;
        }
        state.metrics.alert("heal_started");
        if let Ok(mut at) = state.alert_heals.lock() {
            at.insert(name.clone(), std::time::Instant::now());
        }
        started.push(name.clone());
        let st = state.clone();
        tokio::spawn(async move {
            let r = run_heal(&st, &name, false).await;
            match &r {
                Ok(rep) => {
                    tracing::info!(deployment = %name, replaced = ?rep.replaced, refused = ?rep.refused, "webhook heal finished")
                }
                Err(ApiError(e)) => {
                    tracing::warn!(deployment = %name, error = %e, "webhook heal failed")
                }
            }
            if let Ok(mut set) = st.healing.lock() {
                set.remove(&name);
            }
        });
    }
    Json(serde_json::json!({
        "heal_started": started,
        "in_progress": in_progress,
        "cooling_down": cooling_down,
        "unknown_deployments": unknown,
        "ignored_alerts": ignored,
    }))
}

/// Whether an alert started a heal of `name` less than its `health.alert_cooldown` ago.
fn cooling(state: &AppState, name: &str) -> bool {
    let Some(last) = state
        .alert_heals
        .lock()
        .ok()
        .and_then(|m| m.get(name).copied())
    else {
        return false;
    };
    let cooldown = state
        .home
        .load_existing(name)
        .ok()
        .and_then(|s| crate::engine::recorded_blueprint(&s).ok())
        .map(|bp| bp.health.alert_cooldown)
        .unwrap_or(crate::blueprint::HealthConfig::default().alert_cooldown);
    last.elapsed() < cooldown
}
