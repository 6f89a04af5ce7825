//! The EC2 client: credentials the way AWS users expect (environment, then the shared
//! config/credentials files with profiles; instance metadata only when asked), an explicit
//! endpoint for test clouds, and one process-wide backoff for throttling: when AWS answers
//! RequestLimitExceeded/Throttling, *every* in-flight call of this process waits, not only the
//! one that got the error.

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::{Credentials, ProvideCredentials, Region, SharedCredentialsProvider};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use flotilla_provider_core::backoff::{self, Backoff};
use flotilla_provider_core::ProviderError;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

use crate::config::Ec2Config;

/// Process-wide throttle gate shared by every EC2 call.
#[derive(Default)]
pub struct Throttle {
    until: Mutex<Option<Instant>>,
    streak: AtomicU32,
}

impl Throttle {
    async fn gate(&self) {
        loop {
            let wait = {
                let until = self.until.lock().unwrap_or_else(|p| p.into_inner());
                until.and_then(|u| u.checked_duration_since(Instant::now()))
            };
            // Not a retry of its own: every call waits out the pause the last throttle set.
            match wait {
                Some(w) if !w.is_zero() => backoff::pause(w).await,
                _ => return,
            }
        }
    }

    fn throttled(&self, op: &str, code: &str) -> Duration {
        let streak = self.streak.fetch_add(1, Ordering::SeqCst).min(6);
        let base = Duration::from_millis(250) * 2u32.pow(streak);
        let jitter = Duration::from_millis(u64::from(rand::random::<u16>() % 250));
        let delay = (base + jitter).min(Duration::from_secs(20));
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let candidate = Instant::now() + delay;
        if until.is_none_or(|u| u < candidate) {
            *until = Some(candidate);
        }
        warn!(
            operation = op,
            code,
            delay_ms = delay.as_millis() as u64,
            "EC2 throttled: shared backoff, every EC2 call of this process pauses"
        );
        delay
    }

    fn succeeded(&self) {
        // Decay rather than reset, so a burst of throttles does not restart at the floor at once.
        let _ = self
            .streak
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                Some(s.saturating_sub(1))
            });
    }
}

/// Counts of API calls by operation, for logs and the API-cost figure.
#[derive(Default)]
pub struct Stats(Mutex<BTreeMap<&'static str, u64>>);

impl Stats {
    fn bump(&self, op: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(op)
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

enum Class {
    Throttle(String),
    Transient(String),
    Auth(String),
    NotFound(String),
    Other(String),
}

const THROTTLE_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "SlowDown",
    "EC2ThrottledException",
];
const AUTH_CODES: &[&str] = &[
    "AuthFailure",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "OptInRequired",
    "Blocked",
    "ExpiredToken",
];

fn classify<E, R>(e: &SdkError<E, R>) -> Class
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match e {
        SdkError::ServiceError(ctx) => {
            let err = ctx.err();
            let code = err.code().unwrap_or("Unknown").to_string();
            let msg = format!("{code}: {}", err.message().unwrap_or(""));
            if THROTTLE_CODES.contains(&code.as_str()) {
                Class::Throttle(code)
            } else if AUTH_CODES.contains(&code.as_str()) {
                Class::Auth(msg)
            } else if code.contains("NotFound") || code.starts_with("InvalidAMIID") {
                Class::NotFound(msg)
            } else if matches!(
                code.as_str(),
                "InternalError"
                    | "InternalFailure"
                    | "ServiceUnavailable"
                    | "Unavailable"
                    | "InsufficientInstanceCapacity"
            ) {
                Class::Transient(msg)
            } else {
                Class::Other(msg)
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            let text = error_chain(e);
            if text.contains("credentials") {
                Class::Auth(text)
            } else {
                Class::Transient(text)
            }
        }
        SdkError::ConstructionFailure(_) => Class::Other(error_chain(e)),
        _ => Class::Other(error_chain(e)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

pub struct Ec2Api {
    pub client: aws_sdk_ec2::Client,
    pub throttle: Throttle,
    pub stats: Stats,
    max_attempts: u32,
    credentials: SharedCredentialsProvider,
    profile: Option<String>,
    pub endpoint: String,
}

impl Ec2Api {
    pub async fn new(cfg: &Ec2Config) -> Result<Self, ProviderError> {
        let profile = cfg
            .profile
            .clone()
            .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()));
        let mut profile_creds = ProfileFileCredentialsProvider::builder();
        if let Some(p) = &profile {
            profile_creds = profile_creds.profile_name(p);
        }
        let mut chain = CredentialsProviderChain::first_try(
            "environment",
            EnvironmentVariableCredentialsProvider::new(),
        );
        chain = chain.or_else("profile", profile_creds.build());
        if cfg.use_instance_metadata {
            chain = chain.or_else(
                "instance-metadata",
                aws_config::imds::credentials::ImdsCredentialsProvider::builder().build(),
            );
        }
        let chain = SharedCredentialsProvider::new(chain);
        let region = match &cfg.region {
            Some(r) => Some(Region::new(r.clone())),
            None => {
                let mut rp = aws_config::profile::region::ProfileFileRegionProvider::builder();
                if let Some(p) = &profile {
                    rp = rp.profile_name(p);
                }
                let from_env = std::env::var("AWS_REGION")
                    .ok()
                    .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                    .filter(|r| !r.is_empty());
                match from_env {
                    Some(r) => Some(Region::new(r)),
                    None => aws_config::meta::region::ProvideRegion::region(&rp.build()).await,
                }
            }
        };
        let Some(region) = region else {
            return Err(ProviderError::Config {
                field: "provider.region".into(),
                message: "no region: set provider.region, AWS_REGION, or `region` in the profile of ~/.aws/config".into(),
            });
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .credentials_provider(chain.clone())
            // flotilla retries itself (shared throttling backoff), so the SDK makes one attempt.
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(url) = &cfg.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        let endpoint = cfg
            .endpoint_url
            .clone()
            .unwrap_or_else(|| format!("ec2.{}.amazonaws.com", region.as_ref()));
        Ok(Self {
            client: aws_sdk_ec2::Client::new(&sdk),
            throttle: Throttle::default(),
            stats: Stats::default(),
            max_attempts: cfg.max_attempts.max(1),
            credentials: chain,
            profile,
            endpoint,
        })
    }

    /// Resolves credentials now, so a missing or broken setup is one clear message before any call.
    pub async fn check_credentials(&self) -> Result<Credentials, ProviderError> {
        self.credentials.provide_credentials().await.map_err(|e| {
            debug!(error = %error_chain(&e).replace('\n', " "), "credential chain failed");
            let profile = self.profile.as_deref().unwrap_or("default");
            ProviderError::Config {
                field: "provider (credentials)".into(),
                message: format!(
                    "no usable AWS credentials (tried the environment and profile `{profile}` of ~/.aws/credentials and ~/.aws/config): \
                     set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or provider.profile / AWS_PROFILE"
                ),
            }
        })
    }

    /// Runs one API call with the shared throttle gate and bounded retries.
    pub async fn call<T, E, R, F, Fut>(&self, op: &'static str, f: F) -> Result<T, ProviderError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        // Bounded by the attempt count; the gaps come from the one retry policy.
        let mut transient = Backoff::new(Duration::MAX)
            .first(Duration::from_millis(300))
            .cap(Duration::from_secs(10));
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.throttle.gate().await;
            self.stats.bump(op);
            let e = match f().await {
                Ok(v) => {
                    self.throttle.succeeded();
                    return Ok(v);
                }
                Err(e) => e,
            };
            let last = attempt >= self.max_attempts;
            match classify(&e) {
                Class::Throttle(code) if !last => {
                    self.throttle.throttled(op, &code);
                }
                Class::Transient(msg) if !last => {
                    debug!(operation = op, attempt, %msg, "transient EC2 error; retrying");
                    transient.wait().await;
                }
                Class::Throttle(code) => {
                    return Err(ProviderError::Api {
                        operation: op.into(),
                        message: format!("{code} after {attempt} attempts"),
                        source: Some(Box::new(e)),
                    })
                }
                Class::Transient(msg) => {
                    return Err(ProviderError::Unreachable {
                        endpoint: self.endpoint.clone(),
                        message: format!("{op}: {msg}"),
                        source: Some(Box::new(e)),
                    })
                }
                Class::Auth(msg) => {
                    return Err(ProviderError::Config {
                        field: "provider (credentials)".into(),
                        message: format!("{op} was refused: {msg}"),
                    })
                }
                Class::NotFound(msg) => {
                    return Err(ProviderError::NotFound {
                        what: op.to_string(),
                        message: msg,
                    })
                }
                Class::Other(msg) => {
                    return Err(ProviderError::Api {
                        operation: op.into(),
                        message: msg,
                        source: Some(Box::new(e)),
                    })
                }
            }
        }
    }
}
