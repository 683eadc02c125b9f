//! Response bodies, and a wrapper that counts the payload bytes handed to the connection.

use crate::stream::StreamCounters;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Every response body.
pub(super) type Body = BoxBody<Bytes, Infallible>;

pub(super) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed()
}

pub(super) fn empty() -> Body {
    full(Bytes::new())
}

/// Adds the size of each data frame to a stream's `bytes_out` as hyper takes it for sending,
/// so a client that disconnects early is charged only for what it was given.
#[derive(Debug)]
pub(super) struct Counted<B> {
    inner: B,
    counters: Arc<StreamCounters>,
}

impl<B> Counted<B> {
    pub(super) fn new(inner: B, counters: Arc<StreamCounters>) -> Self {
        Counted { inner, counters }
    }
}

impl<B> HttpBody for Counted<B>
where
    B: HttpBody<Data = Bytes, Error = Infallible> + Unpin,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            StreamCounters::add(&self.counters.bytes_out, data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that keeps `guard` alive until it is finished or dropped (per-connection "busy",
/// in-flight gauges, a play session's open connection) and adds what it sends to
/// `session`'s bytes.
pub(super) struct Holding<G> {
    body: Body,
    _guard: G,
    session: Option<Arc<crate::access::PlaySession>>,
}

impl<G: Send + Sync + Unpin + 'static> Holding<G> {
    pub(super) fn wrap(
        response: http::Response<Body>,
        guard: G,
        session: Option<Arc<crate::access::PlaySession>>,
    ) -> http::Response<Body> {
        response.map(|body| {
            Holding {
                body,
                _guard: guard,
                session,
            }
            .boxed()
        })
    }
}

/// Keeps a connection's busy guard until the response is sent.
pub(super) fn keep_until_sent<G: Send + Sync + Unpin + 'static>(
    response: http::Response<Body>,
    guard: G,
) -> http::Response<Body> {
    Holding::wrap(response, guard, None)
}

impl<G: Unpin> HttpBody for Holding<G> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(s)) = (&polled, &self.session)
            && let Some(data) = frame.data_ref()
        {
            s.bytes
                .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
