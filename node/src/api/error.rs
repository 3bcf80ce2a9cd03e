//! One error shape for every failure: `{"error": {"code": "...", "message":
//! "..."}}`, and the extractors that give axum's own rejections that shape.

use super::{Api, Limits};
use crate::mempool::MempoolError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use phalanx_chain::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An error answer: an HTTP status, a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A local fault (storage): the request was fine.
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::warn!(%error, "api: internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            error.to_string(),
        )
    }

    /// 413 `too_large`: a request body over `limit` bytes.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }

    /// The error an empty or non-JSON error response from a layer (body
    /// limit, timeout, axum's routing) is replaced with.
    pub(super) fn for_status(status: StatusCode, limits: Limits) -> ApiError {
        let reason = status.canonical_reason().unwrap_or("error");
        let (code, message) = match status {
            StatusCode::BAD_REQUEST => ("bad_request", reason.to_owned()),
            StatusCode::NOT_FOUND => ("not_found", "no such route".to_owned()),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "this route does not take that method".to_owned(),
            ),
            StatusCode::REQUEST_TIMEOUT => (
                "timeout",
                format!(
                    "the request was not answered within {} ms",
                    limits.request_timeout.as_millis()
                ),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => return ApiError::too_large(limits.max_body_bytes),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)".to_owned(),
            ),
            s if s.is_server_error() => ("internal", reason.to_owned()),
            _ => ("error", reason.to_owned()),
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError::internal(format!("storage: {error}"))
    }
}

impl From<MempoolError> for ApiError {
    fn from(error: MempoolError) -> ApiError {
        let status = match &error {
            MempoolError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            MempoolError::Duplicate { .. } | MempoolError::NoncePending { .. } => {
                StatusCode::CONFLICT
            }
            MempoolError::Full { .. } => StatusCode::SERVICE_UNAVAILABLE,
            MempoolError::Storage(_) => return ApiError::internal(error),
            MempoolError::WrongChain { .. }
            | MempoolError::BadSignature { .. }
            | MempoolError::NonceTooLow { .. }
            | MempoolError::NonceGap { .. }
            | MempoolError::InsufficientBalance { .. } => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, error.code(), error.to_string())
    }
}

/// The media type of the `Content-Type` header, lowercase, without
/// parameters; empty if there is none.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|value| value.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// True for `application/json` and `application/<anything>+json`, with or
/// without parameters.
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    let essence = media_type(headers);
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// True for `application/octet-stream`, with or without parameters.
pub(super) fn is_octet_stream(headers: &HeaderMap) -> bool {
    media_type(headers) == "application/octet-stream"
}

/// The request's body, refused with 413 `too_large` naming `limit` if
/// `Content-Length` announces more than `limit` bytes or reading finds more
/// than the route's [`axum::extract::DefaultBodyLimit`] (which must be
/// `limit`).
pub(super) async fn read_body(req: Request, state: &Api, limit: usize) -> Result<Bytes, ApiError> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit)
        } else {
            ApiError::bad_request(
                "bad_request",
                format!("reading the body failed: {}", rejection.body_text()),
            )
        }
    })
}

/// A JSON body, with every failure reported in the API's error shape:
/// `unsupported_media_type` (415), `too_large` (413), `invalid_json` and
/// `unknown_field` (400).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Api> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Api) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = read_body(req, state, state.limits.max_body_bytes).await?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(json_error)
    }
}

/// The error for JSON that is not a transaction (`invalid_json`,
/// `unknown_field`).
pub(super) fn json_error(error: serde_json::Error) -> ApiError {
    json_error_in(error, "a valid transaction")
}

/// The error for JSON that is not `what` (`invalid_json`, or
/// `unknown_field` for an unknown field of a transaction).
pub(super) fn json_error_in(error: serde_json::Error, what: &str) -> ApiError {
    use serde_json::error::Category;
    let text = error.to_string();
    match error.classify() {
        Category::Data if text.starts_with("unknown field") => {
            ApiError::bad_request("unknown_field", text)
        }
        Category::Data => {
            ApiError::bad_request("invalid_json", format!("the JSON is not {what}: {text}"))
        }
        Category::Io | Category::Syntax | Category::Eof => ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON: {text}"),
        ),
    }
}

/// The one path parameter of a route, as text (parsed by the handler, which
/// names what was wrong with it).
#[derive(Debug)]
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::bad_request("bad_path", rejection.body_text()))
    }
}

/// Query parameters; unknown or malformed ones are a 400 `bad_query`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::bad_request("bad_query", rejection.body_text()))
    }
}

/// The handler for routes that do not exist.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// The handler for a known route with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// True if `response` is an error without the API's JSON error body (one
/// made by a layer or by axum itself).
pub fn needs_shape(response: &Response) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error()) && !is_json(response.headers())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/vnd.phalanx+json", true),
            ("text/plain", false),
            ("application/jsonx", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_json(&h), json, "{value}");
        }
    }

    #[test]
    fn json_errors_are_classified() {
        let syntax = serde_json::from_str::<phalanx_chain::Transaction>("{").unwrap_err();
        assert_eq!(json_error(syntax).code, "invalid_json");
        let unknown =
            serde_json::from_str::<phalanx_chain::Transaction>(r#"{"memo": 1}"#).unwrap_err();
        assert_eq!(json_error(unknown).code, "unknown_field");
        let missing = serde_json::from_str::<phalanx_chain::Transaction>("{}").unwrap_err();
        let e = json_error(missing);
        assert_eq!(e.code, "invalid_json");
        assert!(e.message.contains("missing field"), "{}", e.message);
    }
}
