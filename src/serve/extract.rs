//! What the API takes from a request, checked before any handler runs: a deployment name from
//! the path must be one (400 otherwise — it never reaches a path, a backend or a metric), and a
//! body must be the documented JSON (400 otherwise — never a silent default, so a heal asked
//! for as a dry run can never run for real because its body was misread).

use super::ApiError;
use crate::error::Error;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A checked deployment name from `{name}` in the route.
pub struct Deployment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Deployment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError(Error::Usage(e.body_text())))?;
        crate::names::check(crate::names::NameKind::Deployment, &name)
            .map_err(|e| ApiError(Error::Usage(e.to_string())))?;
        Ok(Self(name))
    }
}

/// A JSON body of the documented shape (`Content-Type: application/json`).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bad = |why: String| {
            ApiError(Error::Usage(format!(
                "the request body must be the documented JSON object (see /openapi.json): {why}"
            )))
        };
        // An object, not another shape serde would also map onto the fields (`[true]`).
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v @ serde_json::Value::Object(_))) => v,
            Ok(_) => return Err(bad("not an object".into())),
            Err(e) => return Err(bad(rejected(&e))),
        };
        serde_json::from_value(value)
            .map(Self)
            .map_err(|e| bad(e.to_string()))
    }
}

fn rejected(e: &JsonRejection) -> String {
    e.body_text()
}
