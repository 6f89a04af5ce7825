//! Bearer-token auth for the API. The token is generated once (32 random bytes, hex), kept in a
//! 0600 file, compared in constant time, and never logged.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("API token file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("API token file {path} is empty; delete it to have a new token generated")]
    Empty { path: String },
    #[error("API token file {path} is readable by others (mode {mode:o}); `chmod 600` it")]
    Open { path: String, mode: u32 },
}

/// Reads the token, generating it first when the file does not exist. Returns (token, created).
pub fn load_or_create(path: &Path) -> Result<(String, bool), TokenError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    let io = |source| TokenError::Io {
        path: shown.clone(),
        source,
    };
    if path.exists() {
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Open { path: shown, mode });
        }
        let token = std::fs::read_to_string(path)
            .map_err(io)?
            .trim()
            .to_string();
        if token.is_empty() {
            return Err(TokenError::Empty { path: shown });
        }
        return Ok((token, false));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::state::write_atomic(path, format!("{token}\n").as_bytes()).map_err(|e| {
        TokenError::Io {
            path: shown.clone(),
            source: std::io::Error::other(e.to_string()),
        }
    })?;
    Ok((token, true))
}

/// True when the request carries `Authorization: Bearer <token>` with the right token (the
/// scheme's name is case-insensitive, RFC 9110 §11.1).
pub fn authorized(header_value: Option<&str>, token: &str) -> bool {
    let Some((scheme, given)) = header_value.and_then(|v| v.trim().split_once(' ')) else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && bool::from(given.trim().as_bytes().ct_eq(token.as_bytes()))
}

pub async fn require_token(
    State(state): State<Arc<super::AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if authorized(value, &state.token) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({"error": {"kind": "unauthorized", "message": "missing or wrong bearer token"}})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_created_0600_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("api-token");
        let (t, created) = load_or_create(&path).expect("create");
        assert!(created);
        assert_eq!(t.len(), 64);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = load_or_create(&path).expect("read");
        assert_eq!((again.as_str(), created), (t.as_str(), false));
        assert!(authorized(Some(&format!("Bearer {t}")), &t));
        assert!(authorized(Some(&format!("bearer {t}")), &t));
        assert!(authorized(Some(&format!("BEARER  {t}")), &t));
        assert!(!authorized(Some(&format!("Basic {t}")), &t));
        assert!(!authorized(Some("Bearer nope"), &t));
        assert!(!authorized(Some(&t), &t), "the scheme is required");
        assert!(!authorized(None, &t));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            load_or_create(&path),
            Err(TokenError::Open { .. })
        ));
    }
}
