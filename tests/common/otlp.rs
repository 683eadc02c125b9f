//! A real OTLP trace receiver for the tests, built on the official protobuf definitions
//! (`opentelemetry-proto`): the tonic `TraceService` over gRPC and `POST /v1/traces` with
//! `application/x-protobuf` over HTTP, each on its own port. Keeps every span it is sent.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One span as received.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP `SpanKind` (2 server, 3 client, 1 internal).
    pub kind: i32,
    pub attrs: BTreeMap<String, String>,
    /// The resource's `service.name`.
    pub service: String,
    /// `grpc` or `http`.
    pub via: &'static str,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }
}

type Spans = Arc<Mutex<Vec<Span>>>;

#[derive(Debug)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT` of the gRPC service.
    pub grpc: String,
    /// `http://127.0.0.1:PORT` of the HTTP/protobuf service (`/v1/traces` below it).
    pub http: String,
    spans: Spans,
    runtime: Option<tokio::runtime::Runtime>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn value_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn keep(spans: &Spans, request: ExportTraceServiceRequest, via: &'static str) {
    let mut out = spans.lock().unwrap();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map(|kv| value_text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    attrs: s
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                value_text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                    service: service.clone(),
                    via,
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                });
            }
        }
    }
}

struct Grpc(Spans);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        keep(&self.0, request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    pub fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let spans: Spans = Arc::default();
        let (grpc_listener, http_listener) = runtime.block_on(async {
            (
                tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
                tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            )
        });
        let grpc = format!("http://{}", grpc_listener.local_addr().unwrap());
        let http = format!("http://{}", http_listener.local_addr().unwrap());
        let grpc_spans = spans.clone();
        runtime.spawn(async move {
            let incoming = tokio_stream_of(grpc_listener);
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Grpc(grpc_spans)))
                .serve_with_incoming(incoming)
                .await;
        });
        let http_spans = spans.clone();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = http_listener.accept().await else {
                    continue;
                };
                let spans = http_spans.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let spans = spans.clone();
                            async move {
                                use http_body_util::BodyExt;
                                let path = req.uri().path().to_owned();
                                let kind = req
                                    .headers()
                                    .get("content-type")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned();
                                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                                let status = match body {
                                    Ok(bytes)
                                        if path == "/v1/traces"
                                            && kind == "application/x-protobuf" =>
                                    {
                                        match ExportTraceServiceRequest::decode(bytes) {
                                            Ok(r) => {
                                                keep(&spans, r, "http");
                                                200
                                            }
                                            Err(_) => 400,
                                        }
                                    }
                                    Ok(_) => 404,
                                    Err(_) => 400,
                                };
                                let reply = ExportTraceServiceResponse::default().encode_to_vec();
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(status)
                                        .header("content-type", "application/x-protobuf")
                                        .body(http_body_util::Full::new(bytes::Bytes::from(reply)))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Receiver {
            grpc,
            http,
            spans,
            runtime: Some(runtime),
        }
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until `f` holds on the spans received so far; panics with `what` after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        f: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if f(&spans) {
                return spans;
            }
            if std::time::Instant::now() > deadline {
                let names: Vec<String> = spans
                    .iter()
                    .map(|s| format!("{} {:?}", s.name, s.attrs))
                    .collect();
                panic!(
                    "OTLP receiver: {what} not seen within {timeout:?}; received {} span(s): {names:#?}",
                    spans.len()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops both services at once (connections refused from now on), as a crashed collector.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The listener as the stream of connections tonic serves.
fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures_util::stream::unfold(listener, |l| async move {
        let accepted = l.accept().await.map(|(s, _)| s);
        Some((accepted, l))
    })
}
