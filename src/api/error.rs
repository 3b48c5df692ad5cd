//! `ApiError`: the one JSON error shape every endpoint answers with, `{"error": {"code", "message"}}`.
//!
//! Handlers return `Result<_, ApiError>`; the variant decides the status code and the stable
//! machine-readable `code`, the message is for humans. Bad input must never become a 500, so
//! axum's extractor rejections convert into the matching 4xx variant here, in one place.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// An error answered to an HTTP client. The `Display` text is the `message` in the body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON syntax, bad query, bad path segment).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no bearer token, or one that matches no stored token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 403: the token is valid but its role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such path, route, service, drill, ...
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the request conflicts with the current state (e.g. a drill already running).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body exceeds the configured limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 429: too many failed authentications from this client; try again after the delay.
    #[error("too many failed authentications from this client; retry in {retry_after_secs}s")]
    TooManyRequests { retry_after_secs: u64 },
    /// 415: a JSON body was sent without `Content-Type: application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed JSON that does not mean anything valid (missing `reason`, bad duration).
    #[error("{0}")]
    Unprocessable(String),
    /// 503: this node cannot answer now (a cluster follower with no leader to forward to).
    #[error("{0}")]
    Unavailable(String),
    /// 500: our fault. The detail is logged, never sent, so internals do not leak to clients.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::NotFound(what.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code clients branch on; renaming one is a breaking change.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// Maps an extractor rejection by the status axum chose for it, keeping axum's explanation.
    fn from_rejection(status: StatusCode, text: String) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(text),
            // Everything else an extractor rejects is the client's malformed input; a 500
            // here would page on-call for someone else's typo.
            _ => ApiError::BadRequest(text),
        }
    }
}

/// The body shape, `{"error": {"code": ..., "message": ...}}`.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error answering an API request");
        }
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            // RFC 6750: a 401 names the scheme the client should use.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::TooManyRequests { retry_after_secs } = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::from_rejection(r.status(), r.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        ApiError::from_rejection(r.status(), r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::from_rejection(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::from_rejection(r.status(), r.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn check(err: ApiError, status: u16, code: &str) {
        let response = err.into_response();
        assert_eq!(response.status().as_u16(), status);
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["error"]["code"], code);
        assert!(v["error"]["message"].is_string());
        assert_eq!(v.as_object().map(|o| o.len()), Some(1));
    }

    #[tokio::test]
    async fn every_variant_has_its_status_and_code() {
        check(ApiError::BadRequest("x".into()), 400, "bad_request").await;
        check(ApiError::Unauthorized, 401, "unauthorized").await;
        check(ApiError::Forbidden("x".into()), 403, "forbidden").await;
        check(ApiError::not_found("x"), 404, "not_found").await;
        check(ApiError::MethodNotAllowed, 405, "method_not_allowed").await;
        check(ApiError::Conflict("x".into()), 409, "conflict").await;
        check(ApiError::PayloadTooLarge, 413, "payload_too_large").await;
        check(
            ApiError::UnsupportedMediaType("x".into()),
            415,
            "unsupported_media_type",
        )
        .await;
        check(ApiError::Unprocessable("x".into()), 422, "unprocessable").await;
        check(
            ApiError::TooManyRequests {
                retry_after_secs: 2,
            },
            429,
            "too_many_requests",
        )
        .await;
        check(ApiError::Internal("secret".into()), 500, "internal").await;
    }

    #[tokio::test]
    async fn internal_detail_is_not_sent() {
        let response = ApiError::Internal("db path /var/secret".into()).into_response();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert!(!String::from_utf8_lossy(&bytes).contains("secret"));
    }

    #[test]
    fn unauthorized_names_the_bearer_scheme() {
        let response = ApiError::Unauthorized.into_response();
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static("Bearer"))
        );
    }
}
