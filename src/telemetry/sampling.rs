//! Head sampling of requests. A request that will not be kept costs nothing but a random
//! number: the decision is made from `OTEL_TRACES_SAMPLER[_ARG]` and the incoming
//! `traceparent` *before* any span exists, and only kept requests get one (written straight
//! for export, `request.rs`). The SDK's sampler keeps local children of sampled spans (a
//! request's auth call, its export), drops those of a request left out, and decides other
//! roots (segments, DVR writes, ingest) by the configured sampler as usual.

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, SamplingResult, ShouldSample};
use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

/// How a trace without a parent (or, when not parent-based, any trace) is decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    Always,
    Never,
    /// Keep this fraction (0…1).
    Ratio(f64),
}

/// The configured sampler (`OTEL_TRACES_SAMPLER`, default `parentbased_always_on`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub root: Root,
    /// A caller's sampled flag decides (the `parentbased_*` samplers).
    pub parent_based: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            root: Root::Always,
            parent_based: true,
        }
    }
}

impl Policy {
    /// From the sampler's name and argument, already checked by `Settings`. A ratio sampler
    /// without an argument keeps everything (the specification's default of 1.0).
    pub(super) fn parse(sampler: Option<&str>, arg: Option<&str>) -> Policy {
        let ratio = || Root::Ratio(arg.and_then(|a| a.parse().ok()).unwrap_or(1.0));
        let (root, parent_based) = match sampler.unwrap_or("parentbased_always_on") {
            "always_on" => (Root::Always, false),
            "always_off" => (Root::Never, false),
            "traceidratio" => (ratio(), false),
            "parentbased_always_off" => (Root::Never, true),
            "parentbased_traceidratio" => (ratio(), true),
            _ => (Root::Always, true),
        };
        Policy { root, parent_based }
    }

    /// Whether a request is traced: `parent` is the incoming `traceparent`'s sampled flag,
    /// `None` without a valid one.
    pub fn keep(self, parent: Option<bool>, random: f64) -> bool {
        match (parent, self.parent_based) {
            (Some(sampled), true) => sampled,
            _ => match self.root {
                Root::Always => true,
                Root::Never => false,
                Root::Ratio(p) => random < p,
            },
        }
    }

    /// The SDK sampler for spans not decided here.
    fn sdk(self) -> Sampler {
        let root = match self.root {
            Root::Always => Sampler::AlwaysOn,
            Root::Never => Sampler::AlwaysOff,
            Root::Ratio(p) => Sampler::TraceIdRatioBased(p),
        };
        if self.parent_based {
            Sampler::ParentBased(Box::new(root))
        } else {
            root
        }
    }
}

/// The SDK side: a sampled local parent keeps its children; everything else goes to the
/// configured sampler (server spans, were any made through the SDK, were decided already).
#[derive(Debug, Clone)]
pub(super) struct Head {
    inner: Sampler,
}

impl Head {
    pub(super) fn new(policy: Policy) -> Head {
        Head {
            inner: policy.sdk(),
        }
    }
}

impl ShouldSample for Head {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context.map(|c| c.span().span_context().clone());
        let local_sampled = parent
            .as_ref()
            .is_some_and(|p| p.is_valid() && p.is_sampled() && !p.is_remote());
        if *span_kind == SpanKind::Server || local_sampled {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: parent.map(|p| p.trace_state().clone()).unwrap_or_default(),
            };
        }
        self.inner
            .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
    }
}

/// A uniform number in [0, 1) from a per-thread xorshift generator (seeded from the
/// process's random hasher keys): no lock, no system call.
pub(super) fn uniform() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::collections::hash_map::RandomState::new().build_hasher().finish() | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// The sampled flag of a well-formed `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, ids not
/// all zero), `None` otherwise.
pub(super) fn parent_flag(traceparent: &str) -> Option<bool> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let [version, trace, span, flags] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    if !hex(version, 2) || *version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    if !nonzero(trace) || !nonzero(span) {
        return None;
    }
    u8::from_str_radix(flags, 16).ok().map(|f| f & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_follows_the_sampler_names() {
        let p = Policy::parse(Some("parentbased_traceidratio"), Some("0.1"));
        assert_eq!(p.root, Root::Ratio(0.1));
        assert!(p.keep(Some(true), 0.99), "a sampled caller is honoured");
        assert!(!p.keep(Some(false), 0.0), "an unsampled caller too");
        assert!(p.keep(None, 0.05) && !p.keep(None, 0.5));
        let p = Policy::parse(Some("traceidratio"), Some("0.1"));
        assert!(
            !p.keep(Some(true), 0.5),
            "not parent-based: the ratio decides"
        );
        assert!(Policy::parse(None, None).keep(None, 0.99));
        assert!(!Policy::parse(Some("always_off"), None).keep(Some(true), 0.0));
        assert_eq!(
            Policy::parse(Some("traceidratio"), None).root,
            Root::Ratio(1.0)
        );
    }

    #[test]
    fn traceparent_flags_are_read_strictly() {
        let t = "0af7651916cd43dd8448eb211c80319c";
        assert_eq!(
            parent_flag(&format!("00-{t}-b7ad6b7169203331-01")),
            Some(true)
        );
        assert_eq!(
            parent_flag(&format!("00-{t}-b7ad6b7169203331-00")),
            Some(false)
        );
        assert_eq!(parent_flag(&format!("00-{t}-0000000000000000-01")), None);
        assert_eq!(parent_flag("00-abc-def-01"), None);
        assert_eq!(parent_flag(&format!("ff-{t}-b7ad6b7169203331-01")), None);
    }

    #[test]
    fn uniform_numbers_spread() {
        let n = 100_000;
        let below = (0..n).filter(|_| uniform() < 0.1).count();
        assert!((9_000..11_000).contains(&below), "{below}");
    }
}
