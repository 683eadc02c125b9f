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

/// A body of `chunks` sent one after the other (an LL-HLS segment as its parts: no joined
/// copy is made or kept).
#[derive(Debug)]
pub(super) struct Chunks {
    chunks: std::collections::VecDeque<Bytes>,
    /// Bytes not yet sent.
    left: u64,
}

impl Chunks {
    pub(super) fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let chunks: std::collections::VecDeque<Bytes> =
            chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let left = chunks.iter().map(|c| c.len() as u64).sum();
        Chunks { chunks, left }
    }
}

impl HttpBody for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.left -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
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
/// in-flight gauges, a play session's open connection), adds what it sends to `session`'s
/// bytes, and ends the request's trace span with the body's size.
pub(super) struct Holding<G> {
    body: Body,
    _guard: G,
    session: Option<Arc<crate::access::PlaySession>>,
    /// The request's span (`None` when not traced): it ends when this body is dropped.
    traced: Option<crate::telemetry::RequestSpan>,
    /// Payload bytes handed to the connection so far (counted only when `traced`).
    sent: u64,
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
                traced: None,
                sent: 0,
            }
            .boxed()
        })
    }
}

/// Keeps a connection's busy guard and the request's span until the response is sent.
pub(super) fn keep_until_sent_traced<G: Send + Sync + Unpin + 'static>(
    response: http::Response<Body>,
    guard: G,
    span: crate::telemetry::RequestSpan,
) -> http::Response<Body> {
    if span.is_none() {
        return keep_until_sent(response, guard);
    }
    response.map(|body| {
        Holding {
            body,
            _guard: guard,
            session: None,
            traced: Some(span),
            sent: 0,
        }
        .boxed()
    })
}

impl<G> Drop for Holding<G> {
    fn drop(&mut self) {
        if let Some(span) = &self.traced {
            span.sent(self.sent);
        }
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
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let n = data.len() as u64;
            if let Some(s) = &self.session {
                s.bytes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            self.sent += n;
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
