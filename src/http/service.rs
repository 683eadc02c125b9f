//! One request, start to end: route, dispatch (playback or API), HEAD handling, and the HTTP
//! metrics (requests, duration to the response head, size, in-flight until the body ends).

use super::body::{Body, empty};
use super::hls::{self, Client};
use super::server::Scheme;
use super::{AppState, HttpError, Route, RouteError, api, request_metrics, route};
use crate::config::Cidr;
use http::{Method, Request, Response, header};
use hyper::body::Body as _;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::time::Instant;

pub(super) async fn handle<B>(
    state: &AppState,
    req: &Request<B>,
    peer: SocketAddr,
    scheme: Scheme,
) -> Response<Body> {
    let started = Instant::now();
    let in_flight = InFlight::start();
    let routed = route(req.uri().path());
    let label = match &routed {
        Ok(r) => r.label(),
        Err(RouteError::Malformed(_)) => "malformed",
        Err(RouteError::NotFound) => "unmatched",
    };
    let head = *req.method() == Method::HEAD;
    let result = match (req.method(), routed) {
        (&Method::OPTIONS, _) => Ok(hls::preflight()),
        (m, _) if m != Method::GET && m != Method::HEAD => Err(HttpError::MethodNotAllowed),
        (_, Err(RouteError::Malformed(why))) => Err(HttpError::BadRequest(why)),
        (_, Err(RouteError::NotFound)) => Err(HttpError::NotFound("no such resource")),
        (_, Ok(Route::Api(api))) => api::serve(state, api, req.headers(), req.uri().query()),
        (_, Ok(Route::Time)) => Ok(hls::time()),
        (_, Ok(route)) => {
            let headers = req.headers();
            let text = |name: header::HeaderName| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
            };
            let front = state.front.load();
            let client = Client {
                ip: client_ip(peer.ip(), headers, &front.trusted_proxies),
                user_agent: text(header::USER_AGENT),
                referer: text(header::REFERER),
                token: token(req.uri().query()),
                // HTTP/2 names the host in the URI (`:authority`), HTTP/1.1 in `Host`.
                host: req
                    .uri()
                    .authority()
                    .map(http::uri::Authority::as_str)
                    .or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok())),
                origin_scheme: match scheme {
                    Scheme::Http => "http",
                    Scheme::Https => "https",
                },
                public_url: front.public_url.as_deref(),
                head,
            };
            let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
            hls::serve(state, route, range, req.uri().query(), &client).await
        }
    };
    let mut response = result.unwrap_or_else(HttpError::into_response);
    // An endless body ends only when the viewer may no longer watch (session ended, stream
    // gone, shutdown): the HTTP/1.1 connection then closes with it.
    if label == "/:name/mpegts" && req.version() <= http::Version::HTTP_11 {
        response
            .headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    if head {
        *response.body_mut() = empty();
    }
    let method = method_label(req.method());
    let elapsed = started.elapsed().as_secs_f64();
    let size = response.body().size_hint().exact();
    request_metrics::answered(method, label, response.status().as_u16(), elapsed, size);
    super::trace::answered(method, label, &response, elapsed);
    super::body::keep_until_sent(response, in_flight)
}

/// The viewer's address: the peer, or when the peer is a trusted proxy, the last address in
/// `X-Forwarded-For` that is not one of the trusted proxies.
fn client_ip(peer: IpAddr, headers: &http::HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut ip = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(addr) => {
                ip = addr;
                if !is_trusted(addr) {
                    break;
                }
            }
            // Garbage in the chain: trust nothing before it.
            Err(_) => break,
        }
    }
    ip
}

/// The `token` query parameter (Flussonic's playback session token), if any.
fn token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .filter(|t| !t.is_empty() && t.len() <= 256)
}

/// Known methods by name, anything else as `other` (bounded label values).
pub(super) fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// Increments `requests_in_flight` now and decrements it when dropped.
#[derive(Debug)]
struct InFlight;

impl InFlight {
    fn start() -> Self {
        request_metrics::in_flight(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        request_metrics::in_flight(-1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4, 10.0.0.7".parse().unwrap());
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "5.6.7.8".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(stranger, &h, &trusted),
            stranger,
            "not a trusted proxy"
        );
        assert_eq!(client_ip(proxy, &h, &[]), proxy, "no trusted proxies");
        h.insert(
            "x-forwarded-for",
            "9.9.9.9, junk, 10.0.0.7".parse().unwrap(),
        );
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "10.0.0.7".parse::<IpAddr>().unwrap()
        );
        h.remove("x-forwarded-for");
        assert_eq!(client_ip(proxy, &h, &trusted), proxy);
    }

    #[test]
    fn token_and_method_labels() {
        assert_eq!(token(Some("a=1&token=abc")), Some("abc"));
        assert_eq!(token(Some("token=")), None);
        assert_eq!(token(None), None);
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
