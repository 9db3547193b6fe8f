//! Cross-cutting request handling: request ids and logs, security headers, body size,
//! timeouts and panics — each answered in the contract's JSON.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use super::error::ApiError;
use crate::services::ServiceError;

pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A refused body is still read (and discarded) up to this size and time before the 413
/// goes out, so the client finishes sending and sees the answer instead of a reset.
const DRAIN_BYTES: usize = 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request (echoed from the client when well-formed).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// docs/API.md §7: a client's id is kept when it is 1–64 characters of `[A-Za-z0-9._-]`.
fn acceptable_request_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The method as a metrics and log label: one of the standard methods, else `other`. HTTP
/// accepts any token as a method, and a label per distinct token would let a client grow
/// the metrics (and their memory) without bound.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    ];
    STANDARD
        .into_iter()
        .find(|standard| *standard == method.as_str())
        .unwrap_or("other")
}

/// Outermost layer: assigns the request id, opens the log span every line of this request
/// carries, records metrics, and puts the id on the response.
pub async fn request_id_and_trace(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    // Route templates, never raw paths, so metrics stay low-cardinality.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        );
    });
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Security headers on every response (docs/API.md §4). A route may set its own
/// Content-Security-Policy (the docs page); everything else gets the strictest one.
pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let defaults: [(HeaderName, &'static str); 5] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if state.settings.hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    response
}

/// Reads the whole request body (at most 64 KiB) before any handler runs. A declared
/// body over the limit is refused without reading it; any over-limit body gets `413`.
/// Reading first also means an early answer (401, 403, 429) never leaves unread bytes on
/// a kept-alive connection, which would otherwise be reset under the client's next request.
pub async fn buffer_body(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        if declared.is_some_and(|len| len <= DRAIN_BYTES as u64) {
            drain(req.into_body(), 0).await;
        }
        return ApiError::PayloadTooLarge.into_response();
    }
    let (parts, body) = req.into_parts();
    match read_body(body).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Err(error) => error.into_response(),
    }
}

/// Reads a body to its end, or until `DRAIN_BYTES` (counting `already_read`) or
/// `DRAIN_TIME` runs out, discarding it.
pub async fn drain(body: axum::body::Body, already_read: usize) {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut total = already_read;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            total += chunk.len();
            if total > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Collects a request body of at most `MAX_BODY_BYTES`; a longer one is drained (bounded)
/// and refused with `413`.
pub async fn read_body(body: axum::body::Body) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|_| ApiError::MalformedRequest("the body could not be read".to_owned()))?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            let read = bytes.len() + chunk.len();
            drain(axum::body::Body::from_stream(stream), read).await;
            return Err(ApiError::PayloadTooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// A request that takes longer than `REQUEST_TIMEOUT_SECONDS` is abandoned with a 503.
pub async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit: Duration = state.settings.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::from(ServiceError::Unavailable("request timed out".to_owned()))
            .into_response(),
    }
}

/// A panic in a handler becomes `500 internal_error`, never a dropped connection.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    ApiError::from(ServiceError::Internal(anyhow::anyhow!(
        "handler panicked: {detail}"
    )))
    .into_response()
}

/// A request's slot for a session token rotated while it ran (a role change, see
/// `extract::rotate_if_required`). Cloned into the request by `session_rotation`.
#[derive(Clone, Default)]
pub struct RotatedSession(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl RotatedSession {
    pub fn set(&self, token: String) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(token);
        }
    }

    fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// When a guard rotated the session during this request, the answer carries the new
/// session and CSRF cookies — whatever the handler answered.
pub async fn session_rotation(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let slot = RotatedSession::default();
    req.extensions_mut().insert(slot.clone());
    let response = next.run(req).await;
    let Some(token) = slot.take() else {
        return response;
    };
    // A handler that set (or cleared) the session cookie itself — logout — wins.
    let prefix = format!("{}=", state.settings.session.cookie_name);
    if response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.starts_with(&prefix)))
    {
        return response;
    }
    let csrf = state.keys.csrf_token_for(&token);
    let jar = super::cookies::with_session(
        axum_extra::extract::CookieJar::new(),
        &state.settings.session,
        &token,
        &csrf,
    );
    (jar, response).into_response()
}

#[cfg(test)]
mod tests {
    use super::{acceptable_request_id, method_label};

    #[test]
    fn only_standard_methods_become_labels() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::CONNECT), "CONNECT");
        for custom in ["PROPFIND", "get", &"X".repeat(8192)] {
            let method = Method::from_bytes(custom.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{custom}");
        }
    }

    #[test]
    fn request_ids_follow_the_contract() {
        assert!(acceptable_request_id("abc-123_X.y"));
        assert!(acceptable_request_id(&"a".repeat(64)));
        assert!(!acceptable_request_id(""));
        assert!(!acceptable_request_id(&"a".repeat(65)));
        assert!(!acceptable_request_id("has space"));
        assert!(!acceptable_request_id("inject\r\nx"));
    }
}
