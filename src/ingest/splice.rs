//! PES repair in front of the MPEG-TS demuxer. A video PES has no length (PES_packet_length
//! 0), so `tsdemux` (GStreamer 1.22) ends it at the next packet that starts a PES and pushes
//! what it has *before* it checks that packet's continuity counter. A source that stops in
//! the middle of a picture (an encoder killed and restarted, lost UDP datagrams) therefore
//! hands the parser a truncated picture as if it were whole, and Chromium's MSE (hls.js,
//! dash.js) stops playback with a fatal decode error on it.
//!
//! This guard reads the packets on their way into the demuxer. When a PES start arrives
//! after a continuity-counter gap on its PID while a PES was open, it puts one packet with
//! a wrong counter in front of it: `tsdemux` then drops the open PES as broken (as it does
//! for a gap inside a PES) and starts cleanly on the new one. Only sources that deliver
//! whole 188-byte packets per buffer (UDP, SRT, RTP-less multicast) are repaired; other
//! buffers pass untouched.

use super::InputMeter;
use gstreamer as gst;
use gstreamer::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tracing::{debug, warn};

const PACKET: usize = 188;
const SYNC: u8 = 0x47;
const NULL_PID: u16 = 0x1fff;

/// One PID that carries PES packets.
#[derive(Debug, Clone, Copy)]
struct PesPid {
    /// Continuity counter of its last packet with payload.
    cc: u8,
    /// A PES started and the demuxer still collects it (no gap since its start).
    open: bool,
}

/// Continuity state of every PES PID seen; see the module docs.
#[derive(Debug, Default)]
pub(super) struct SpliceGuard {
    pids: HashMap<u16, PesPid>,
}

/// What [`SpliceGuard::repair`] did to one buffer.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Repair {
    /// The buffer with a breaking packet in front of each PES start that follows a cut.
    pub data: Vec<u8>,
    /// PID of each PES dropped that way, in order.
    pub cut: Vec<u16>,
}

impl SpliceGuard {
    /// Reads the packets of `ts`; returns the repaired bytes when a PES was cut short in it.
    /// A buffer that is not whole aligned packets resets the guard and is left alone.
    pub(super) fn repair(&mut self, ts: &[u8]) -> Option<Repair> {
        if !ts.len().is_multiple_of(PACKET) || ts.chunks(PACKET).any(|p| p[0] != SYNC) {
            self.pids.clear();
            return None;
        }
        let mut cuts = Vec::new();
        for (i, p) in ts.chunks(PACKET).enumerate() {
            if let Some((pid, cc)) = self.packet(p) {
                cuts.push((i * PACKET, pid, cc));
            }
        }
        if cuts.is_empty() {
            return None;
        }
        let mut data = Vec::with_capacity(ts.len() + cuts.len() * PACKET);
        let mut from = 0;
        for &(at, pid, cc) in &cuts {
            data.extend_from_slice(&ts[from..at]);
            data.extend_from_slice(&breaking_packet(pid, cc));
            from = at;
        }
        data.extend_from_slice(&ts[from..]);
        Some(Repair {
            data,
            cut: cuts.into_iter().map(|(_, pid, _)| pid).collect(),
        })
    }

    /// Updates the state with one packet; returns its PID and the counter before it when a
    /// breaking packet must go in front of it (see [`breaking_packet`]).
    fn packet(&mut self, p: &[u8]) -> Option<(u16, u8)> {
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let error = p[1] & 0x80 != 0;
        let start = p[1] & 0x40 != 0;
        let control = (p[3] >> 4) & 0x03;
        let cc = p[3] & 0x0f;
        if error || pid == NULL_PID || control & 0x01 == 0 {
            // Damaged, stuffing, or no payload (the counter does not advance).
            return None;
        }
        let (payload, announced) = if control & 0x02 != 0 {
            let len = usize::from(p[4]);
            // discontinuity_indicator: the counter may jump legitimately.
            (p.get(5 + len..).unwrap_or(&[]), len > 0 && p[5] & 0x80 != 0)
        } else {
            (&p[4..], false)
        };
        let pes_start = start && payload.starts_with(&[0, 0, 1]);
        let Some(state) = self.pids.get_mut(&pid) else {
            if pes_start {
                self.pids.insert(pid, PesPid { cc, open: true });
            }
            return None;
        };
        let before = state.cc;
        let gap = cc != before && cc != (before + 1) & 0x0f && !announced;
        let cut = gap && start && state.open;
        state.cc = cc;
        if start {
            state.open = pes_start;
        } else if gap {
            // The demuxer drops a PES with a gap inside by itself.
            state.open = false;
        }
        cut.then_some((pid, before))
    }
}

/// A payload packet on `pid` whose counter is neither `cc` nor the next one: `tsdemux`
/// takes it as a gap inside the open PES, drops that PES and waits for the next start.
fn breaking_packet(pid: u16, cc: u8) -> [u8; PACKET] {
    let mut p = [0xff; PACKET];
    p[0] = SYNC;
    p[1] = ((pid >> 8) & 0x1f) as u8;
    p[2] = (pid & 0xff) as u8;
    p[3] = 0x10 | ((cc + 2) & 0x0f);
    p
}

/// Watches the `tsdemux` inside `parsebin` and guards its input.
pub(super) fn guard_demuxer_input(parsebin: &gst::Bin, meter: Arc<InputMeter>) {
    parsebin.connect_deep_element_added(move |_, _, element| {
        if element.factory().is_none_or(|f| f.name() != "tsdemux") {
            return;
        }
        if let Some(sink) = element.static_pad("sink") {
            add_probe(&sink, meter.clone());
        }
    });
}

fn add_probe(pad: &gst::Pad, meter: Arc<InputMeter>) {
    // One streaming thread feeds the pad: the lock is never contended.
    let guard = Mutex::new(SpliceGuard::default());
    let warned = AtomicBool::new(false);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let repair = {
            let Ok(map) = buffer.map_readable() else {
                return gst::PadProbeReturn::Ok;
            };
            let Ok(mut guard) = guard.lock() else {
                return gst::PadProbeReturn::Ok;
            };
            guard.repair(&map)
        };
        let Some(repair) = repair else {
            return gst::PadProbeReturn::Ok;
        };
        for pid in &repair.cut {
            meter.count_broken_pes();
            if !warned.swap(true, Ordering::Relaxed) {
                warn!(pad = %pad.name(), pid, "PES cut short in the source (restart or lost packets): dropped before the demuxer (logged once per run; counted in broken_pes)");
            } else {
                debug!(pid, "PES cut short in the source: dropped");
            }
        }
        let mut repaired = gst::Buffer::from_mut_slice(repair.data);
        {
            let out = repaired.make_mut();
            out.set_pts(buffer.pts());
            out.set_dts(buffer.dts());
            out.set_flags(buffer.flags());
        }
        *buffer = repaired;
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet on `pid` with counter `cc`; `pes` starts a PES there (PUSI + start code).
    fn packet(pid: u16, cc: u8, pes: bool) -> Vec<u8> {
        let mut p = vec![0xaa; PACKET];
        p[0] = SYNC;
        p[1] = ((pid >> 8) as u8 & 0x1f) | if pes { 0x40 } else { 0 };
        p[2] = pid as u8;
        p[3] = 0x10 | (cc & 0x0f);
        if pes {
            p[4..10].copy_from_slice(&[0, 0, 1, 0xe0, 0, 0]);
        }
        p
    }

    /// A PES of `n` packets on `pid` from counter `cc`.
    fn pes(pid: u16, cc: u8, n: u8) -> Vec<u8> {
        (0..n)
            .flat_map(|i| packet(pid, cc.wrapping_add(i) & 0x0f, i == 0))
            .collect()
    }

    #[test]
    fn continuous_packets_pass_untouched() {
        let mut g = SpliceGuard::default();
        let ts = [pes(0x100, 0, 5), pes(0x101, 7, 3), pes(0x100, 5, 14)].concat();
        assert_eq!(g.repair(&ts), None);
        // counters wrap from 15 to 0
        assert_eq!(g.repair(&pes(0x100, 3, 4)), None);
    }

    #[test]
    fn a_pes_start_after_a_gap_gets_a_breaking_packet() {
        let mut g = SpliceGuard::default();
        // a picture of 4 packets sent only up to its 2nd: the source died
        let cut = pes(0x100, 0, 4)[..2 * PACKET].to_vec();
        assert_eq!(g.repair(&cut), None);
        // the restarted source begins a new PES with its own counters
        let restart = [packet(0, 0, false), pes(0x100, 9, 3)].concat();
        let r = g.repair(&restart).expect("repaired");
        assert_eq!(r.cut, [0x100]);
        assert_eq!(r.data.len(), restart.len() + PACKET);
        let inserted = &r.data[PACKET..2 * PACKET];
        assert_eq!(inserted[1] & 0x40, 0, "no PES start");
        assert_eq!(inserted[3], 0x10 | 3, "neither 1 nor 2 (the next)");
        assert_eq!(&r.data[2 * PACKET..], &restart[PACKET..]);
        // the new PES goes on without another repair
        assert_eq!(g.repair(&pes(0x100, 12, 2)), None);
    }

    #[test]
    fn a_gap_inside_a_pes_is_left_to_the_demuxer() {
        let mut g = SpliceGuard::default();
        let ts = [
            packet(0x100, 0, true),
            packet(0x100, 1, false),
            packet(0x100, 4, false),
            packet(0x100, 5, true),
        ]
        .concat();
        assert_eq!(g.repair(&ts), None, "the demuxer drops that PES itself");
    }

    #[test]
    fn announced_discontinuities_and_duplicates_are_not_cuts() {
        let mut g = SpliceGuard::default();
        g.repair(&pes(0x100, 0, 3));
        let mut start = packet(0x100, 9, true);
        // adaptation field with discontinuity_indicator, then the PES start
        start[3] = 0x30 | 9;
        start[4] = 1;
        start[5] = 0x80;
        start[6..9].copy_from_slice(&[0, 0, 1]);
        assert_eq!(g.repair(&start), None);
        assert_eq!(g.repair(&packet(0x100, 9, false)), None, "a duplicate");
    }

    #[test]
    fn unaligned_buffers_are_left_alone() {
        let mut g = SpliceGuard::default();
        g.repair(&pes(0x100, 0, 3));
        assert_eq!(g.repair(&pes(0x100, 3, 2)[..300]), None);
        // the guard forgot the PID: a later jump is not taken for a cut
        assert_eq!(g.repair(&pes(0x100, 9, 2)), None);
    }
}
