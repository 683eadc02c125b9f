//! The one place where handler errors become HTTP responses. Messages are short and fixed:
//! no internal detail (paths, addresses, library errors) reaches a client.

use super::body::{Body, full};
use http::{Response, StatusCode, header};

/// A request that cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("stream not ready")]
    NotReady,
    #[error("range not satisfiable")]
    RangeNotSatisfiable { len: u64 },
    #[error("authentication required")]
    Unauthorized,
    /// Authenticated, but with credentials that may not do this (view credentials writing).
    #[error("forbidden: administrator credentials required")]
    Forbidden,
    #[error("request body too large")]
    PayloadTooLarge,
    /// The control plane's queue is full or it is stopping.
    #[error("busy, try again")]
    Busy,
    /// The resource is taken (a stream that already has a publisher).
    #[error("conflict")]
    Conflict,
    /// A viewer that may not play this (authorization backend, ended session).
    #[error("access denied")]
    PlayForbidden,
    /// As many archive exports as allowed run already.
    #[error("too many exports running, try again later")]
    ExportsBusy,
    /// Something failed inside the server; the cause is logged where it happened.
    #[error("internal error")]
    Internal,
}

impl HttpError {
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            HttpError::Unauthorized => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden => StatusCode::FORBIDDEN,
            HttpError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Busy | HttpError::ExportsBusy => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::PlayForbidden => StatusCode::FORBIDDEN,
            HttpError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            HttpError::Conflict => StatusCode::CONFLICT,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut builder = Response::builder()
            .status(self.status())
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-store")
            .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
        match self {
            HttpError::MethodNotAllowed => {
                builder = builder.header(header::ALLOW, "GET, HEAD, OPTIONS");
            }
            HttpError::NotReady | HttpError::Busy => {
                builder = builder.header(header::RETRY_AFTER, "1");
            }
            HttpError::ExportsBusy => {
                builder = builder.header(header::RETRY_AFTER, "10");
            }
            HttpError::Unauthorized => {
                builder = builder.header(header::WWW_AUTHENTICATE, "Basic realm=\"headwater\"");
            }
            HttpError::RangeNotSatisfiable { len } => {
                builder = builder.header(header::CONTENT_RANGE, format!("bytes */{len}"));
            }
            _ => {}
        }
        builder
            .body(full(format!("{self}\n")))
            .expect("static headers are valid")
    }
}
