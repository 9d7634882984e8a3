//! The JSON error every API answers with, and how store, signature and envelope errors
//! map onto it.

use std::fmt;

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::new_id;
use crate::store;
use crate::stripe::envelope::EnvelopeError;
use crate::stripe::signature::SignatureError;

/// An error answered as `{"error":{"code","message"}}`; a 5xx also carries the
/// `request_id` its log line has, and never the text of its cause.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status answered.
    pub status: StatusCode,
    /// A stable, machine-readable code in snake case (`not_found`, `invalid_json`…).
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
    /// For a 5xx: the id under which its cause was logged, answered so that a report
    /// can be matched to the log.
    pub request_id: Option<String>,
}

impl ApiError {
    /// An error answered with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            request_id: None,
        }
    }

    /// A 400 Bad Request.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A 404 Not Found with code `not_found`, saying no `what` has id `id`.
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} with id '{id}'"),
        )
    }

    /// A 500 with code `internal` and a generic message; `cause` is logged, under a
    /// fresh request id, and not answered.
    pub fn internal(cause: impl fmt::Display) -> ApiError {
        ApiError::server_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
            &cause,
        )
    }

    /// A 5xx answered with `code` and `message`, its `cause` logged under a fresh request
    /// id that the answer carries.
    fn server_error(
        status: StatusCode,
        code: &'static str,
        message: &str,
        cause: &dyn fmt::Display,
    ) -> ApiError {
        let request_id = new_id("req");
        tracing::error!(%request_id, status = status.as_u16(), code, error = %cause, "request failed");
        ApiError {
            request_id: Some(request_id),
            ..ApiError::new(status, code, message)
        }
    }

    /// The error, logged under a request id if it is a 5xx that was not logged yet (made
    /// with `new`: the message is all there is to log).
    pub fn logged(self) -> ApiError {
        if !self.status.is_server_error() || self.request_id.is_some() {
            return self;
        }
        let request_id = new_id("req");
        tracing::error!(%request_id, status = self.status.as_u16(), code = self.code, error = %self.message, "request failed");
        ApiError {
            request_id: Some(request_id),
            ..self
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ApiError {
            status,
            code,
            message,
            request_id,
        } = self.logged();
        let mut error = json!({ "code": code, "message": message });
        if let Some(request_id) = request_id {
            error["request_id"] = json!(request_id);
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl From<SignatureError> for ApiError {
    fn from(err: SignatureError) -> Self {
        ApiError::bad_request(err.code(), err.to_string())
    }
}

impl From<EnvelopeError> for ApiError {
    fn from(err: EnvelopeError) -> Self {
        ApiError::bad_request(err.code(), err.to_string())
    }
}

impl From<store::Error> for ApiError {
    fn from(err: store::Error) -> Self {
        match err {
            store::Error::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found")
            }
            // The driver's text may name tables, values or hosts: it is logged, not answered.
            err if err.is_unavailable() => ApiError::server_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database is unavailable, retry later",
                &err,
            ),
            err => ApiError::internal(err),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the configured limit",
            )
        } else {
            ApiError::new(rejection.status(), "invalid_body", rejection.body_text())
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::new(rejection.status(), "invalid_json", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}
