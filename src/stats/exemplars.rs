//! Exemplars for the HTTP request-duration histogram, and the OpenMetrics rendering that
//! carries them. `http` records, per method, route and bucket, the latest sampled request's
//! trace id and duration; a scraper that asks for OpenMetrics
//! (`Accept: application/openmetrics-text`) gets them on the bucket lines, so a latency spike
//! in Grafana leads to its trace. The Prometheus recorder (`metrics-exporter-prometheus`)
//! writes no exemplars, so this converts its text: families renamed as OpenMetrics wants
//! (counters without `_total` in `# TYPE`/`# HELP`), no blank lines, `# EOF` at the end.

use super::names;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError, TryLockError};

/// One exemplar: a request's trace and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// The W3C trace id (written as 32 hex digits).
    pub trace_id: u128,
    pub seconds: f64,
    /// When it was recorded, UNIX ms.
    pub at_ms: u64,
}

/// (method, route, bucket index into `DURATION_BUCKETS`, `len` for +Inf) → latest exemplar.
type Table = HashMap<(&'static str, &'static str, usize), Exemplar>;

/// Bounded by the label sets of the histogram (methods × route templates × buckets).
static TABLE: Mutex<Option<Table>> = Mutex::new(None);

/// Keeps `trace_id` as the exemplar of the bucket `seconds` falls in. An exemplar is a
/// sample: when another request is recording one at this moment, this one is not kept
/// (serving threads never wait on each other for it).
pub fn record(method: &'static str, route: &'static str, seconds: f64, trace_id: u128) {
    let bucket = bucket_of(seconds);
    let mut table = match TABLE.try_lock() {
        Ok(t) => t,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => return,
    };
    table.get_or_insert_with(HashMap::new).insert(
        (method, route, bucket),
        Exemplar {
            trace_id,
            seconds,
            at_ms: crate::media::utc::now_ms(),
        },
    );
}

fn bucket_of(seconds: f64) -> usize {
    names::DURATION_BUCKETS
        .iter()
        .position(|le| seconds <= *le)
        .unwrap_or(names::DURATION_BUCKETS.len())
}

fn snapshot() -> Table {
    TABLE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_default()
}

/// The Prometheus text `text` as OpenMetrics 1.0, with the exemplars recorded so far.
pub fn openmetrics(text: &str) -> String {
    to_openmetrics(text, &snapshot())
}

fn to_openmetrics(text: &str, exemplars: &Table) -> String {
    let mut types: HashMap<&str, &str> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            types.insert(name, kind.trim());
        }
    }
    // OpenMetrics names a counter family without `_total`; one whose samples lack it is
    // exported as `unknown`.
    let family = |name: &str| -> (String, &'static str) {
        match types.get(name).copied() {
            Some("counter") => match name.strip_suffix("_total") {
                Some(base) => (base.to_owned(), "counter"),
                None => (name.to_owned(), "unknown"),
            },
            Some("gauge") => (name.to_owned(), "gauge"),
            Some("histogram") => (name.to_owned(), "histogram"),
            Some("summary") => (name.to_owned(), "summary"),
            _ => (name.to_owned(), "unknown"),
        }
    };
    let bucket_prefix = format!("{}_bucket{{", names::HTTP_DURATION);
    let mut out = String::with_capacity(text.len() + 4096);
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_once(' ').map_or(rest, |(n, _)| n);
            let (name, kind) = family(name);
            let _ = writeln!(out, "# TYPE {name} {kind}");
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let (name, _) = family(name);
            let _ = writeln!(out, "# HELP {name} {help}");
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with(&bucket_prefix)
            && let Some(ex) = exemplar_for(line, exemplars)
        {
            let _ = writeln!(
                out,
                "{line} # {{trace_id=\"{:032x}\"}} {} {}.{:03}",
                ex.trace_id,
                ex.seconds,
                ex.at_ms / 1000,
                ex.at_ms % 1000
            );
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The exemplar for one bucket line (`…_bucket{method="GET",route="…",le="0.1"} 3`).
fn exemplar_for<'a>(line: &str, exemplars: &'a Table) -> Option<&'a Exemplar> {
    let labels = &line[line.find('{')? + 1..line.rfind('}')?];
    let mut method = None;
    let mut route = None;
    let mut le = None;
    for pair in labels.split("\",") {
        let (k, v) = pair.split_once("=\"")?;
        let v = v.trim_end_matches('"');
        match k {
            "method" => method = Some(v),
            "route" => route = Some(v),
            "le" => le = Some(v),
            _ => {}
        }
    }
    let (method, route, le) = (method?, route?, le?);
    let bucket = if le == "+Inf" {
        names::DURATION_BUCKETS.len()
    } else {
        let le: f64 = le.parse().ok()?;
        names::DURATION_BUCKETS
            .iter()
            .position(|b| (b - le).abs() < 1e-12)?
    };
    exemplars
        .iter()
        .find(|((m, r, b), _)| *m == method && *r == route && *b == bucket)
        .map(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP flussonic_http_requests_total Requests\n\
# TYPE flussonic_http_requests_total counter\n\
flussonic_http_requests_total{method=\"GET\",route=\"/:name/index.m3u8\",status=\"200\"} 5\n\
\n\
# TYPE flussonic_uptime counter\n\
flussonic_uptime 12\n\
\n\
# TYPE flussonic_http_request_duration_seconds histogram\n\
flussonic_http_request_duration_seconds_bucket{method=\"GET\",route=\"/:name/index.m3u8\",le=\"0.001\"} 1\n\
flussonic_http_request_duration_seconds_bucket{method=\"GET\",route=\"/:name/index.m3u8\",le=\"0.005\"} 5\n\
flussonic_http_request_duration_seconds_bucket{method=\"GET\",route=\"/:name/index.m3u8\",le=\"+Inf\"} 5\n\
flussonic_http_request_duration_seconds_sum{method=\"GET\",route=\"/:name/index.m3u8\"} 0.01\n\
flussonic_http_request_duration_seconds_count{method=\"GET\",route=\"/:name/index.m3u8\"} 5\n";

    #[test]
    fn counters_are_renamed_and_exemplars_sit_on_their_bucket() {
        let mut table = Table::new();
        table.insert(
            ("GET", "/:name/index.m3u8", bucket_of(0.003)),
            Exemplar {
                trace_id: 0x0af7651916cd43dd8448eb211c80319c,
                seconds: 0.003,
                at_ms: 1_700_000_000_250,
            },
        );
        let om = to_openmetrics(TEXT, &table);
        assert!(
            om.contains("# TYPE flussonic_http_requests counter\n"),
            "{om}"
        );
        assert!(
            om.contains("# HELP flussonic_http_requests Requests\n"),
            "{om}"
        );
        assert!(om.contains("# TYPE flussonic_uptime unknown\n"), "{om}");
        assert!(om.contains(
            "le=\"0.005\"} 5 # {trace_id=\"0af7651916cd43dd8448eb211c80319c\"} 0.003 1700000000.250\n"
        ), "{om}");
        assert_eq!(
            om.matches("trace_id").count(),
            1,
            "only the bucket it falls in"
        );
        assert!(!om.contains("\n\n"), "no blank lines");
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn buckets_are_found() {
        assert_eq!(bucket_of(0.0005), 0);
        assert_eq!(bucket_of(0.001), 0);
        assert_eq!(bucket_of(0.0011), 1);
        assert_eq!(bucket_of(100.0), names::DURATION_BUCKETS.len());
    }
}
