//! An authenticated session: one token per run, re-issued shortly before it expires or when an
//! API answers 401; endpoints from the catalog; retries with backoff for 409 (when the caller says
//! a conflict is transient), 429 and 5xx; other 4xx fail at once.

use crate::auth::{self, CloudConfig};
use flotilla_provider_core::backoff::{self, Backoff};
use flotilla_provider_core::ProviderError;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::{debug, warn};

/// Nova microversion: tags on create (2.52) and keypair `user_id` queries; 2.53 is widely available.
pub const COMPUTE_MICROVERSION: &str = "2.53";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Compute,
    Network,
    Image,
}

impl Service {
    fn catalog_type(self) -> &'static str {
        match self {
            Service::Compute => "compute",
            Service::Network => "network",
            Service::Image => "image",
        }
    }
}

struct Token {
    value: String,
    expires: Option<jiff::Timestamp>,
    catalog: Value,
    project_id: String,
}

pub struct Session {
    http: reqwest::Client,
    cloud: CloudConfig,
    interface: String,
    region: Option<String>,
    token: Mutex<Option<Token>>,
    auth_url: String,
}

/// When a failed request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Idempotent request: retry network errors, 429 and 5xx (409 too when `conflict` is set).
    Transient { conflict: bool },
    /// A create that must not happen twice: retry only what never reached the API (a refused
    /// connection) or what it rejected unprocessed (429). A timeout or 5xx goes back to the caller,
    /// which must look for the resource before sending the create again.
    OnlyUnsent,
}

/// What an API call answered.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

fn unreachable(endpoint: &str, e: reqwest::Error) -> ProviderError {
    ProviderError::Unreachable {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
        source: Some(Box::new(e)),
    }
}

impl Session {
    pub fn new(
        cloud: CloudConfig,
        interface: String,
        region: Option<String>,
    ) -> Result<Self, ProviderError> {
        let auth_url = cloud
            .auth
            .auth_url
            .clone()
            .ok_or_else(|| ProviderError::Config {
                field: "provider.cloud".into(),
                message: format!("{} has no auth_url", cloud.source),
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| ProviderError::Local {
                what: "HTTP client".into(),
                message: e.to_string(),
                source: None,
            })?;
        let region = region.or_else(|| cloud.region.clone());
        Ok(Self {
            http,
            interface,
            region,
            token: Mutex::new(None),
            auth_url: auth::v3_url(&auth_url),
            cloud,
        })
    }

    async fn issue_token(&self) -> Result<Token, ProviderError> {
        let body = auth::token_request(&self.cloud.auth).map_err(|m| ProviderError::Config {
            field: "provider.cloud (credentials)".into(),
            message: format!("{}: {m}", self.cloud.source),
        })?;
        let url = format!("{}/auth/tokens", self.auth_url);
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        let status = resp.status();
        let value = resp
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let data: Value = resp.json().await.unwrap_or(Value::Null);
        if status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
            || status == StatusCode::NOT_FOUND
        {
            return Err(ProviderError::Config {
                field: "provider.cloud (credentials)".into(),
                message: format!(
                    "Keystone refused the credentials from {} ({status}): {}",
                    self.cloud.source,
                    data["error"]["message"].as_str().unwrap_or("")
                ),
            });
        }
        let value = value
            .filter(|_| status.is_success())
            .ok_or_else(|| ProviderError::Api {
                operation: "Keystone token".into(),
                message: format!(
                    "{status}: {}",
                    data["error"]["message"]
                        .as_str()
                        .unwrap_or("no token in the answer")
                ),
                source: None,
            })?;
        let token = &data["token"];
        Ok(Token {
            value,
            expires: token["expires_at"].as_str().and_then(|s| s.parse().ok()),
            catalog: token["catalog"].clone(),
            project_id: token["project"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// A valid token (re-issued five minutes before expiry) and the endpoint of a service.
    async fn token_and_endpoint(
        &self,
        service: Service,
        force_new: bool,
    ) -> Result<(String, String), ProviderError> {
        let mut guard = self.token.lock().await;
        let stale = match guard.as_ref() {
            None => true,
            Some(t) => {
                force_new
                    || t.expires.is_some_and(|e| {
                        e < jiff::Timestamp::now() + jiff::SignedDuration::from_secs(300)
                    })
            }
        };
        if stale {
            *guard = Some(self.issue_token().await?);
        }
        let t = guard.as_ref().ok_or_else(|| ProviderError::Api {
            operation: "Keystone token".into(),
            message: "no token".into(),
            source: None,
        })?;
        let mut url = auth::endpoint(
            &t.catalog,
            service.catalog_type(),
            &self.interface,
            self.region.as_deref(),
        )
        .ok_or_else(|| ProviderError::Config {
            field: "provider.region".into(),
            message: format!(
                "the service catalog has no {} endpoint for interface `{}`{}",
                service.catalog_type(),
                self.interface,
                self.region
                    .as_ref()
                    .map(|r| format!(" in region `{r}`"))
                    .unwrap_or_default()
            ),
        })?;
        // Neutron and Glance catalogs usually hold the unversioned root.
        match service {
            Service::Network if !url.ends_with("/v2.0") => url.push_str("/v2.0"),
            Service::Image if !url.ends_with("/v2") => url.push_str("/v2"),
            _ => {}
        }
        Ok((t.value.clone(), url))
    }

    pub async fn project_id(&self) -> Result<String, ProviderError> {
        self.token_and_endpoint(Service::Compute, false).await?;
        Ok(self
            .token
            .lock()
            .await
            .as_ref()
            .map(|t| t.project_id.clone())
            .unwrap_or_default())
    }

    /// Sends one request; retries 401 once (new token), 429/5xx/network errors (and 409 when
    /// `conflict_is_transient`) with backoff; other statuses are returned to the caller.
    pub async fn call(
        &self,
        service: Service,
        method: Method,
        path: &str,
        body: Option<&Value>,
        conflict_is_transient: bool,
    ) -> Result<Reply, ProviderError> {
        let resend = Resend::Transient {
            conflict: conflict_is_transient,
        };
        self.call_with(service, method, path, body, resend).await
    }

    /// `call` with an explicit resend policy.
    pub async fn call_with(
        &self,
        service: Service,
        method: Method,
        path: &str,
        body: Option<&Value>,
        resend: Resend,
    ) -> Result<Reply, ProviderError> {
        let unsent_only = resend == Resend::OnlyUnsent;
        let conflict_is_transient = resend == Resend::Transient { conflict: true };
        // Bounded by the attempt count; the gaps come from the one retry policy.
        let mut backoff = Backoff::new(Duration::MAX)
            .first(Duration::from_millis(500))
            .cap(Duration::from_secs(8));
        let mut reauthed = false;
        for attempt in 1..=8u32 {
            let (token, base) = self.token_and_endpoint(service, false).await?;
            let url = format!("{base}{path}");
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("X-Auth-Token", token)
                .header("Accept", "application/json");
            if service == Service::Compute {
                req = req
                    .header(
                        "OpenStack-API-Version",
                        format!("compute {COMPUTE_MICROVERSION}"),
                    )
                    .header("X-OpenStack-Nova-API-Version", COMPUTE_MICROVERSION);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e)
                    if attempt < 8
                        && (e.is_connect()
                            || (!unsent_only && (e.is_timeout() || e.is_request()))) =>
                {
                    debug!(%url, error = %e, "request failed; retrying");
                    backoff.wait().await;
                    continue;
                }
                Err(e) => return Err(unreachable(&url, e)),
            };
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse::<u64>().ok());
            let text = resp.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if status == StatusCode::UNAUTHORIZED && !reauthed {
                reauthed = true;
                self.token_and_endpoint(service, true).await?;
                continue;
            }
            let transient = status == StatusCode::TOO_MANY_REQUESTS
                || (!unsent_only && status.is_server_error())
                || (conflict_is_transient && status == StatusCode::CONFLICT);
            if transient && attempt < 8 {
                warn!(%url, %status, retry_after, "OpenStack API answered {status}; retrying with backoff");
                match retry_after {
                    // The cloud said how long: that, not our own schedule.
                    Some(s) => backoff::pause(Duration::from_secs(s)).await,
                    None => {
                        backoff.wait().await;
                    }
                }
                continue;
            }
            return Ok(Reply { status, body });
        }
        Err(ProviderError::Api {
            operation: format!("{method} {path}"),
            message: "gave up after 8 attempts".into(),
            source: None,
        })
    }

    /// `call` that treats any non-2xx answer as an error carrying the API's message.
    pub async fn ok(
        &self,
        service: Service,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ProviderError> {
        let r = self
            .call(service, method.clone(), path, body, false)
            .await?;
        if r.status.is_success() {
            return Ok(r.body);
        }
        Err(api_error(&format!("{method} {path}"), &r))
    }
}

/// Error message from any of the OpenStack error shapes.
pub fn error_message(body: &Value) -> String {
    if let Some(s) = body.as_str() {
        return s.chars().take(300).collect();
    }
    if let Some(m) = body["NeutronError"]["message"].as_str() {
        return m.to_string();
    }
    if let Some(m) = body["error"]["message"].as_str() {
        return m.to_string();
    }
    body.as_object()
        .and_then(|o| {
            o.values()
                .find_map(|v| v["message"].as_str().map(String::from))
        })
        .unwrap_or_else(|| body.to_string().chars().take(300).collect())
}

pub fn api_error(op: &str, r: &Reply) -> ProviderError {
    let message = format!("{}: {}", r.status, error_message(&r.body));
    if r.status == StatusCode::NOT_FOUND {
        ProviderError::NotFound {
            what: op.to_string(),
            message,
        }
    } else if r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::FORBIDDEN {
        ProviderError::Config {
            field: "provider.cloud (credentials)".into(),
            message: format!("{op}: {message}"),
        }
    } else {
        ProviderError::Api {
            operation: op.to_string(),
            message,
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shapes() {
        assert_eq!(
            error_message(&serde_json::json!({"itemNotFound": {"code": 404, "message": "gone"}})),
            "gone"
        );
        assert_eq!(
            error_message(&serde_json::json!({"NeutronError": {"type": "X", "message": "in use"}})),
            "in use"
        );
        assert_eq!(
            error_message(&serde_json::json!({"error": {"message": "bad auth"}})),
            "bad auth"
        );
    }
}
