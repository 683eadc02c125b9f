//! The HTTP families' handles (`http_requests_total`, request duration, response size,
//! requests in flight), looked up once per worker thread and (method, route, status) and then
//! reused: recording a request is a few atomic operations, not a registry lookup by name and
//! labels (which built a label list and a `String` status and hashed them for every request).
//!
//! Handles come from the global recorder, which is installed before the server accepts
//! anything (`Exposition::global`); a thread keeps its handles while it lives.

use crate::stats::names;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use std::cell::RefCell;

/// Entries a thread keeps at most (methods × route templates × statuses seen are far fewer);
/// past it, handles are looked up each time (correct, only slower).
const MAX_KEPT: usize = 512;

/// A label set as kept: method, route and (for the request counter) status.
type Labels = (&'static str, &'static str, u16);

#[derive(Default)]
struct Kept {
    requests: Vec<(Labels, Counter)>,
    durations: Vec<(Labels, Histogram)>,
    sizes: Vec<(Labels, Histogram)>,
    in_flight: Option<Gauge>,
}

thread_local! {
    static KEPT: RefCell<Kept> = RefCell::new(Kept::default());
}

/// Labels are `'static` templates: usually the very same string, compared by address first.
fn same(a: &Labels, b: &Labels) -> bool {
    let eq = |x: &'static str, y: &'static str| std::ptr::eq(x, y) || x == y;
    a.2 == b.2 && eq(a.0, b.0) && eq(a.1, b.1)
}

/// Calls `record` with the handle kept for `labels`, registering (and keeping) it first if
/// this thread has none yet.
fn with<H>(
    kept: &mut Vec<(Labels, H)>,
    labels: Labels,
    register: impl FnOnce() -> H,
    record: impl FnOnce(&H),
) {
    if let Some((_, h)) = kept.iter().find(|(l, _)| same(l, &labels)) {
        return record(h);
    }
    let h = register();
    record(&h);
    if kept.len() < MAX_KEPT {
        kept.push((labels, h));
    }
}

/// Records one answered request: its count by status, the time to its response head and,
/// when known, its body's size.
pub(super) fn answered(
    method: &'static str,
    route: &'static str,
    status: u16,
    elapsed_s: f64,
    size: Option<u64>,
) {
    let record = |kept: &mut Kept| {
        with(
            &mut kept.requests,
            (method, route, status),
            || counter!(names::HTTP_REQUESTS, "method" => method, "route" => route, "status" => status.to_string()),
            |c| c.increment(1),
        );
        with(
            &mut kept.durations,
            (method, route, 0),
            || histogram!(names::HTTP_DURATION, "method" => method, "route" => route),
            |h| h.record(elapsed_s),
        );
        if let Some(len) = size {
            with(
                &mut kept.sizes,
                (method, route, 0),
                || histogram!(names::HTTP_RESPONSE_SIZE, "method" => method, "route" => route),
                |h| h.record(len as f64),
            );
        }
    };
    // A thread being torn down has no kept handles any more: record through fresh ones.
    if KEPT
        .try_with(|kept| record(&mut kept.borrow_mut()))
        .is_err()
    {
        record(&mut Kept::default());
    }
}

/// Adds `delta` to `http_requests_in_flight`.
pub(super) fn in_flight(delta: f64) {
    let kept = KEPT.try_with(|kept| {
        kept.borrow_mut()
            .in_flight
            .get_or_insert_with(|| gauge!(names::HTTP_IN_FLIGHT))
            .increment(delta);
    });
    // A thread being torn down (a response dropped at exit) has no kept handles any more.
    if kept.is_err() {
        gauge!(names::HTTP_IN_FLIGHT).increment(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    /// Handles kept by a thread record into the same series a lookup would: counts by status,
    /// one duration per request, a size only when given, in-flight back to zero.
    #[test]
    fn kept_handles_record_into_the_labelled_series() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // A thread of its own: its kept handles are this recorder's and go with it.
        std::thread::spawn(move || {
            metrics::with_local_recorder(&recorder, || {
                // Equal text at another address is the same label.
                let route = String::from("/:name/mono.m3u8").leak();
                for _ in 0..3 {
                    in_flight(1.0);
                    answered("GET", "/:name/mono.m3u8", 200, 0.001, Some(100));
                    in_flight(-1.0);
                }
                answered("GET", route, 200, 0.001, Some(100));
                answered("GET", "/:name/mono.m3u8", 404, 0.001, None);
                answered("HEAD", "/:name/mono.m3u8", 200, 0.001, None);
            });
        })
        .join()
        .unwrap();
        let text = handle.render();
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        let requests = format!("{}{{", names::HTTP_REQUESTS);
        let series = |method: &str, status: &str| {
            format!(
                "{requests}method=\"{method}\",route=\"/:name/mono.m3u8\",status=\"{status}\"}}"
            )
        };
        assert_eq!(line(&series("GET", "200")), "4");
        assert_eq!(line(&series("GET", "404")), "1");
        assert_eq!(line(&series("HEAD", "200")), "1");
        let get = "{method=\"GET\",route=\"/:name/mono.m3u8\"}";
        let head = "{method=\"HEAD\",route=\"/:name/mono.m3u8\"}";
        assert_eq!(line(&format!("{}_count{get}", names::HTTP_DURATION)), "5");
        assert_eq!(
            line(&format!("{}_count{get}", names::HTTP_RESPONSE_SIZE)),
            "4"
        );
        assert_eq!(line(&format!("{}_count{head}", names::HTTP_DURATION)), "1");
        assert!(
            !text.contains(&format!("{}_count{head}", names::HTTP_RESPONSE_SIZE)),
            "no size series without a size:\n{text}"
        );
        assert_eq!(line(names::HTTP_IN_FLIGHT), "0");
    }
}
