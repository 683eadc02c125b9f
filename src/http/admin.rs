//! Stream management writes (`PUT`/`DELETE …/api/v3/streams/NAME`, `POST …/NAME/restart`,
//! `POST …/api/v3/config/validate`): administrator credentials, a bounded body, then the
//! control plane's answer. Invalid definitions answer 400 with `{errors: [{path, line,
//! column, message}]}` so a client can point at the field.

use super::body::{Body, full};
use super::{ApiRoute, AppState, HttpError, Role, Route, RouteError, route};
use crate::control::{AdminError, AdminRequest, Definition, DefinitionKind};
use crate::stats::names;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use metrics::counter;
use serde_json::{Value, json};
use std::time::Instant;
use tracing::debug;

/// Largest request body of the management API.
pub(super) const MAX_BODY: usize = 1 << 20;

/// Whether a request goes to [`handle`]: a write method on an API path.
pub(super) fn is_write(method: &Method, path: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && (path.starts_with("/flussonic/api/") || path.starts_with("/streamer/api/"))
}

pub(super) async fn handle(state: &AppState, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = super::service::method_label(req.method());
    let routed = route(req.uri().path());
    let label = match &routed {
        Ok(r) => r.label(),
        Err(RouteError::Malformed(_)) => "malformed",
        Err(RouteError::NotFound) => "unmatched",
    };
    let response = match write(state, req, routed).await {
        Ok(r) => r,
        Err(Refused::Http(e)) => e.into_response(),
        Err(Refused::Invalid(errors)) => {
            json_status(StatusCode::BAD_REQUEST, &json!({ "errors": errors }))
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    super::request_metrics::answered(method, label, response.status().as_u16(), elapsed, None);
    super::trace::answered(method, label, &response, elapsed);
    response
}

/// Why a write was not done.
#[derive(Debug)]
enum Refused {
    Http(HttpError),
    Invalid(Vec<crate::config::FieldError>),
}

impl From<HttpError> for Refused {
    fn from(e: HttpError) -> Self {
        Refused::Http(e)
    }
}

async fn write(
    state: &AppState,
    req: Request<Incoming>,
    routed: Result<Route, RouteError>,
) -> Result<Response<Body>, Refused> {
    let api = match routed {
        Ok(Route::Api(api)) => api,
        Ok(_) | Err(RouteError::NotFound) => {
            return Err(HttpError::NotFound("no such API resource").into());
        }
        Err(RouteError::Malformed(why)) => return Err(HttpError::BadRequest(why).into()),
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match state.auth.load().check(authorization) {
        Ok(Role::Edit) => {}
        Ok(Role::View) => {
            counter!(names::AUTH_FAILURES, "reason" => "forbidden").increment(1);
            return Err(HttpError::Forbidden.into());
        }
        Err(failure) => {
            counter!(names::AUTH_FAILURES, "reason" => failure.label()).increment(1);
            debug!(reason = failure.label(), "API write refused");
            return Err(HttpError::Unauthorized.into());
        }
    }
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_owned);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let request = match (method, api) {
        (Method::PUT, ApiRoute::Stream(name)) => {
            let body = json_body(&read_body(req).await?)?;
            AdminRequest::Put { name, body }
        }
        (Method::DELETE, ApiRoute::Stream(name)) => AdminRequest::Delete { name },
        (Method::DELETE, ApiRoute::Session(id)) => {
            // Sessions belong to the HTTP side: ended here, not by the control plane.
            return if state.access.end_session(&id) {
                Ok(Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(super::body::empty())
                    .expect("static response"))
            } else {
                Err(HttpError::NotFound("no such session").into())
            };
        }
        (Method::POST, ApiRoute::StreamRestart(name)) => AdminRequest::Restart { name },
        (Method::POST, ApiRoute::ConfigValidate) => {
            let bytes = read_body(req).await?;
            let params = |key: &str| {
                query
                    .as_deref()
                    .unwrap_or("")
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=').map(str::to_owned))
            };
            let toml = content_type.contains("toml")
                || bytes
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_none_or(|b| *b != b'{');
            let body = if toml {
                Definition::Toml(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|_| HttpError::BadRequest("body is not UTF-8"))?,
                )
            } else {
                Definition::Json(json_body(&bytes)?)
            };
            let kind = match params("type").as_deref() {
                Some("server") => DefinitionKind::Server,
                Some("stream") => DefinitionKind::Stream,
                Some(_) => {
                    return Err(HttpError::BadRequest("type must be stream or server").into());
                }
                None if looks_like_server(&body) => DefinitionKind::Server,
                None => DefinitionKind::Stream,
            };
            let name = params("name").unwrap_or_else(|| "validate".to_owned());
            AdminRequest::Validate { kind, name, body }
        }
        (_, ApiRoute::Stream(_) | ApiRoute::StreamRestart(_) | ApiRoute::ConfigValidate) => {
            return Err(HttpError::MethodNotAllowed.into());
        }
        (_, ApiRoute::Unknown) => return Err(HttpError::NotFound("no such API resource").into()),
        _ => return Err(HttpError::MethodNotAllowed.into()),
    };
    match state.admin.call(request).await {
        Ok(Value::Null) => Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::CACHE_CONTROL, "no-store")
            .body(super::body::empty())
            .expect("static headers are valid")),
        Ok(v) => Ok(json_status(StatusCode::OK, &v)),
        Err(AdminError::NotFound) => Err(HttpError::NotFound("unknown stream").into()),
        Err(AdminError::Invalid(errors)) => Err(Refused::Invalid(errors)),
        Err(AdminError::Unavailable) => Err(HttpError::Busy.into()),
        Err(AdminError::Failed) => Err(HttpError::Internal.into()),
    }
}

/// A server file has tables a stream file cannot have.
fn looks_like_server(body: &Definition) -> bool {
    const SERVER: [&str; 4] = ["server", "defaults", "stats", "dvb"];
    match body {
        Definition::Json(Value::Object(m)) => SERVER.iter().any(|k| m.contains_key(*k)),
        Definition::Json(_) => false,
        Definition::Toml(t) => toml::from_str::<toml::Table>(t)
            .is_ok_and(|t| SERVER.iter().any(|k| t.contains_key(*k))),
    }
}

/// The body, refused past [`MAX_BODY`] (by its declared length at once).
async fn read_body(req: Request<Incoming>) -> Result<bytes::Bytes, HttpError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(HttpError::PayloadTooLarge);
    }
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(HttpError::PayloadTooLarge),
        Err(_) => Err(HttpError::BadRequest("request body could not be read")),
    }
}

/// Parses JSON, reporting a syntax error with its line and column.
fn json_body(bytes: &[u8]) -> Result<Value, Refused> {
    serde_json::from_slice(bytes).map_err(|e| {
        Refused::Invalid(vec![crate::config::FieldError {
            path: None,
            line: Some(e.line()),
            column: Some(e.column()),
            message: format!("malformed JSON: {e}"),
        }])
    })
}

fn json_status(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(full(body.to_string()))
        .expect("static headers are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_api_paths_with_write_methods() {
        assert!(is_write(&Method::PUT, "/streamer/api/v3/streams/a"));
        assert!(is_write(&Method::DELETE, "/flussonic/api/v3/streams/a"));
        assert!(!is_write(&Method::GET, "/streamer/api/v3/streams/a"));
        assert!(!is_write(&Method::POST, "/a/mpegts"));
    }

    #[test]
    fn server_definitions_are_recognised() {
        assert!(looks_like_server(&Definition::Toml(
            "[server]\nlisten = \"0.0.0.0:1\"\n".into()
        )));
        assert!(!looks_like_server(&Definition::Toml(
            "inputs = []\n[dvr]\n".into()
        )));
        assert!(looks_like_server(&Definition::Json(json!({"stats": {}}))));
        assert!(!looks_like_server(&Definition::Json(json!({"dvr": {}}))));
    }
}
