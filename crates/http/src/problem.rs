//! HTTP errors as RFC 9457 problem details (`application/problem+json`): every client mistake
//! gets a 4xx that says what was wrong; only the archive's own failures are 5xx.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_services::ServiceError;

#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
    /// Seconds after which the same request may succeed (429, 503): sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// The same problem, saying when to try again.
    pub fn retry_after(mut self, seconds: u64) -> Problem {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: a bearer token or a session",
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn internal(detail: impl std::fmt::Display) -> Problem {
        tracing::error!("internal error: {detail}");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the archive failed: {detail}"),
        )
    }
}

/// The archive's errors as a client sees them: what it asked for cannot be converted (406),
/// does not exist (404), is under retention or a legal hold (409) or cannot be done as asked (400); anything
/// else is the archive failing.
impl From<ServiceError> for Problem {
    fn from(e: ServiceError) -> Problem {
        use ServiceError as E;
        match e {
            E::Convert(why) | E::TooLarge(why) => Problem::new(StatusCode::NOT_ACCEPTABLE, why),
            E::Busy(why) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, why),
            e @ (E::NotFound(_) | E::NotInScope) => Problem::not_found(e.to_string()),
            e @ (E::Retained { .. } | E::Held { .. }) => {
                Problem::new(StatusCode::CONFLICT, e.to_string())
            }
            E::Invalid(why) => Problem::bad_request(why),
            e => Problem::internal(e),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut r = (self.status, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            "application/problem+json".parse().expect("valid header"),
        );
        if let Some(v) = self
            .retry_after
            .and_then(|s| header::HeaderValue::from_str(&s.to_string()).ok())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"strata\"".parse().expect("valid header"),
            );
        }
        r
    }
}

/// Longest text of a plain refusal carried over into its problem details.
const MAX_PLAIN_DETAIL: usize = 4096;

/// Middleware: the refusals axum makes itself (a query, path or body it cannot extract, a
/// method the route lacks) are plain text or empty; they leave as problem details too, with
/// the same status, their text as the detail, and their other headers (`Allow`) kept.
pub async fn plain_errors_as_problems(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_DETAIL)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut problem = Problem::new(status, detail).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().entry(name).or_insert(value.clone());
        }
    }
    problem
}
