use thiserror::Error;

/// Errors a provider reports. Each variant says whose fault it is, which drives the exit code:
/// `Config` and `NotFound` are the user's input (exit 2), the rest are runtime failures.
#[derive(Debug, Error)]
pub enum ProviderError {
    /// A provider setting in the blueprint is wrong; `field` is the blueprint path.
    #[error("{field}: {message}")]
    Config { field: String, message: String },

    /// Something the blueprint names (image, network, flavor, AMI) does not exist.
    #[error("{what} not found: {message}")]
    NotFound { what: String, message: String },

    /// The provider's API could not be reached at all.
    #[error("cannot reach {endpoint}: {message}")]
    Unreachable {
        endpoint: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// An API call failed.
    #[error("{operation} failed: {message}")]
    Api {
        operation: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A local command the provider needed (e.g. debootstrap to build the node image) failed.
    #[error("{what}: {message}")]
    Local {
        what: String,
        message: String,
        #[source]
        source: Option<std::io::Error>,
    },
}

impl ProviderError {
    /// True when the error is caused by the user's input rather than by the environment.
    pub fn is_user_error(&self) -> bool {
        matches!(self, Self::Config { .. } | Self::NotFound { .. })
    }

    pub fn api(
        operation: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Api {
            operation: operation.into(),
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }
}
