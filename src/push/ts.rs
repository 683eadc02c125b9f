//! MPEG-TS as a push sends it: continuity counters kept continuous across source restarts
//! (with the PCR discontinuity marked), and packets paced by their PCR into datagrams of
//! seven. Pure data: unit-tested without sockets or clocks.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub const PACKET: usize = 188;
/// Packets per UDP/SRT datagram (1316 bytes: what every IPTV receiver expects).
pub const PER_DATAGRAM: usize = 7;
/// PCR ticks per second.
const PCR_HZ: u64 = 27_000_000;
/// A PCR step larger than this (or backwards) is a new timeline, not a gap to pace over.
const PCR_JUMP: u64 = PCR_HZ;

/// The 27 MHz PCR of a packet, when its adaptation field has one.
pub fn pcr_of(packet: &[u8]) -> Option<u64> {
    if packet.len() < 12 || packet[3] & 0x20 == 0 || packet[4] < 7 || packet[5] & 0x10 == 0 {
        return None;
    }
    let b = &packet[6..12];
    let base = (u64::from(b[0]) << 25)
        | (u64::from(b[1]) << 17)
        | (u64::from(b[2]) << 9)
        | (u64::from(b[3]) << 1)
        | (u64::from(b[4]) >> 7);
    let ext = (u64::from(b[4] & 1) << 8) | u64::from(b[5]);
    Some(base * 300 + ext)
}

fn pid(packet: &[u8]) -> u16 {
    (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2])
}

/// Packets without a PCR on the clock's PID after which a PCR on another PID takes over.
const PCR_PID_SWITCH: u32 = 2000;

/// The PID whose PCRs are the clock: the first seen with one, until it has carried none for
/// [`PCR_PID_SWITCH`] packets and another PID carries them (a restarted source may put its
/// PCR elsewhere). PCRs of other PIDs are ignored, so two PCR PIDs never look like jumps.
#[derive(Debug, Default)]
struct PcrPid {
    pid: Option<u16>,
    since_seen: u32,
}

impl PcrPid {
    /// The PCR of `packet` if it is the clock's.
    fn pcr(&mut self, packet: &[u8]) -> Option<u64> {
        self.since_seen = self.since_seen.saturating_add(1);
        let pcr = pcr_of(packet)?;
        let pid = pid(packet);
        if self.pid != Some(pid) {
            if self.pid.is_some() && self.since_seen < PCR_PID_SWITCH {
                return None;
            }
            self.pid = Some(pid);
        }
        self.since_seen = 0;
        Some(pcr)
    }
}

/// Rewrites continuity counters so that each PID counts on without a gap whatever the
/// source does (a restarted muxer starts again at 0), and sets the discontinuity indicator
/// on the first PCR of a new timeline, as a receiver expects after a failover.
#[derive(Debug, Default)]
pub struct Continuity {
    /// Last counter sent per PID (13-bit PIDs: 8192 entries); `None` before the first.
    counters: Vec<Option<u8>>,
    /// Last PCR seen, to notice a new timeline.
    last_pcr: Option<u64>,
    /// A break was announced (a lag resync): the next PCR starts a new timeline.
    broken: bool,
    clock: PcrPid,
}

impl Continuity {
    pub fn new() -> Self {
        Continuity {
            counters: vec![None; 8192],
            last_pcr: None,
            broken: false,
            clock: PcrPid::default(),
        }
    }

    /// What follows does not continue what came before (chunks were lost).
    pub fn mark_break(&mut self) {
        self.broken = true;
    }

    /// Rewrites whole packets in place; a trailing partial packet is left as it is.
    pub fn rewrite(&mut self, data: &mut [u8]) {
        for packet in data.chunks_exact_mut(PACKET) {
            if packet[0] != 0x47 {
                continue;
            }
            let pid = pid(packet);
            if pid == 0x1fff {
                continue;
            }
            if let Some(pcr) = self.clock.pcr(packet) {
                let new_timeline = self.broken
                    || self
                        .last_pcr
                        .is_some_and(|last| pcr < last || pcr - last > PCR_JUMP);
                if new_timeline {
                    // adaptation flags: discontinuity_indicator
                    packet[5] |= 0x80;
                    self.broken = false;
                }
                self.last_pcr = Some(pcr);
            }
            let has_payload = packet[3] & 0x10 != 0;
            let slot = &mut self.counters[usize::from(pid)];
            let cc = match (*slot, has_payload) {
                (None, _) => packet[3] & 0x0f,
                (Some(last), true) => (last + 1) & 0x0f,
                // No payload: the counter does not advance.
                (Some(last), false) => last,
            };
            *slot = Some(cc);
            packet[3] = (packet[3] & 0xf0) | cc;
        }
    }
}

/// Spreads packets over time by their PCR: the packets after one PCR up to the next are sent
/// evenly between the two PCRs' moments, a fixed delay after the first PCR arrived. Groups
/// them into datagrams of [`PER_DATAGRAM`] packets, each due when its last packet is.
#[derive(Debug)]
pub struct Pacer {
    /// Played out this long after arrival, to absorb the source's own jitter.
    delay: Duration,
    /// `(moment, pcr)`: the PCR that is due at that moment; `None` before the first PCR.
    anchor: Option<(Instant, u64)>,
    /// The previous PCR and its moment.
    last: Option<(Instant, u64)>,
    /// Packets since the previous PCR, not yet scheduled.
    pending: Vec<u8>,
    /// The datagram being filled.
    partial: BytesMut,
    /// Scheduled datagrams, in order.
    ready: VecDeque<(Instant, Bytes)>,
    /// Times the timeline was set again (a new source run, or a source far off real time).
    pub reanchored: u64,
    clock: PcrPid,
}

/// Packets held without any PCR before they go out unpaced.
const MAX_PENDING: usize = 4096;
/// A PCR due this far beyond the delay (the source ran ahead) resets the timeline rather than
/// buffering without end.
const MAX_SKEW: Duration = Duration::from_secs(2);

impl Pacer {
    pub fn new(delay: Duration) -> Self {
        Pacer {
            delay,
            anchor: None,
            last: None,
            pending: Vec::new(),
            partial: BytesMut::with_capacity(PACKET * PER_DATAGRAM),
            ready: VecDeque::new(),
            reanchored: 0,
            clock: PcrPid::default(),
        }
    }

    /// Takes whole packets that arrived at `now`.
    pub fn push(&mut self, data: &[u8], now: Instant) {
        for packet in data.chunks_exact(PACKET) {
            let pcr = self.clock.pcr(packet);
            self.pending.extend_from_slice(packet);
            if let Some(pcr) = pcr {
                self.on_pcr(pcr, now);
            } else if self.pending.len() >= MAX_PENDING * PACKET {
                let packets = std::mem::take(&mut self.pending);
                self.schedule(&packets, now, now);
                self.reuse(packets);
            }
        }
    }

    fn on_pcr(&mut self, pcr: u64, now: Instant) {
        let due = match (self.anchor, self.last) {
            (Some((at, base)), Some((_, last)))
                if pcr >= last && pcr - last <= PCR_JUMP && pcr >= base =>
            {
                let due = at + Duration::from_nanos((pcr - base) * 1000 / 27);
                // Already due (the source stalled longer than the delay and resumed with
                // its clock): the timeline is set again a delay from now, rather than
                // sending everything on arrival from then on. Far ahead (a source running
                // fast): set again rather than buffering without end.
                if due < now || due > now + self.delay + MAX_SKEW {
                    None
                } else {
                    Some(due)
                }
            }
            _ => None,
        };
        let due = match due {
            Some(d) => d,
            None => {
                // A new timeline: a delay from now, and not before the previous one's output
                // ends (no overlap).
                let start = self
                    .ready
                    .back()
                    .map_or(now + self.delay, |(t, _)| (*t).max(now + self.delay));
                if self.anchor.is_some() {
                    self.reanchored += 1;
                }
                self.anchor = Some((start, pcr));
                start
            }
        };
        let from = self.last.map_or(due, |(t, _)| t.min(due));
        let packets = std::mem::take(&mut self.pending);
        self.schedule(&packets, from, due);
        self.reuse(packets);
        self.last = Some((due, pcr));
    }

    /// Keeps the buffer of scheduled packets for the next ones.
    fn reuse(&mut self, mut packets: Vec<u8>) {
        packets.clear();
        self.pending = packets;
    }

    /// Spreads `packets` evenly over `(from, to]`.
    fn schedule(&mut self, packets: &[u8], from: Instant, to: Instant) {
        let n = (packets.len() / PACKET) as u32;
        let span = to.saturating_duration_since(from);
        for (i, p) in packets.chunks_exact(PACKET).enumerate() {
            self.partial.extend_from_slice(p);
            if self.partial.len() >= PACKET * PER_DATAGRAM {
                let at = from + span * (i as u32 + 1) / n.max(1);
                let datagram = self.partial.split().freeze();
                self.ready.push_back((at, datagram));
            }
        }
    }

    /// The next datagram's due moment.
    pub fn next_due(&self) -> Option<Instant> {
        self.ready.front().map(|(t, _)| *t)
    }

    /// The next datagram if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Bytes> {
        match self.ready.front() {
            Some((t, _)) if *t <= now => self.ready.pop_front().map(|(_, d)| d),
            _ => None,
        }
    }

    /// Datagrams waiting.
    pub fn queued(&self) -> usize {
        self.ready.len()
    }

    /// Drops everything waiting (a lagging push starting again); returns datagrams dropped.
    pub fn clear(&mut self) -> usize {
        let dropped = self.ready.len();
        self.ready.clear();
        self.pending.clear();
        self.partial.clear();
        self.anchor = None;
        self.last = None;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet of `pid` with counter `cc`, payload, and an optional PCR.
    fn packet(pid: u16, cc: u8, pcr: Option<u64>) -> [u8; PACKET] {
        let mut p = [0xffu8; PACKET];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8;
        p[2] = pid as u8;
        match pcr {
            Some(pcr) => {
                p[3] = 0x30 | cc;
                p[4] = 7;
                p[5] = 0x10;
                let (base, ext) = (pcr / 300, pcr % 300);
                p[6] = (base >> 25) as u8;
                p[7] = (base >> 17) as u8;
                p[8] = (base >> 9) as u8;
                p[9] = (base >> 1) as u8;
                p[10] = ((base & 1) << 7) as u8 | 0x7e | ((ext >> 8) as u8);
                p[11] = ext as u8;
            }
            None => p[3] = 0x10 | cc,
        }
        p
    }

    #[test]
    fn pcr_round_trips() {
        for pcr in [0, 1, 299, 300, 27_000_000 * 3600 + 12_345] {
            assert_eq!(pcr_of(&packet(256, 0, Some(pcr))), Some(pcr));
        }
        assert_eq!(pcr_of(&packet(256, 0, None)), None);
    }

    #[test]
    fn counters_continue_across_a_restarted_muxer_and_the_new_pcr_is_marked() {
        let mut c = Continuity::new();
        let mut data: Vec<u8> = Vec::new();
        for cc in 0..5 {
            data.extend_from_slice(&packet(256, cc, (cc == 0).then_some(27_000_000)));
        }
        // The source restarts: counters from 0 again, PCR far back.
        for cc in 0..3 {
            data.extend_from_slice(&packet(256, cc, (cc == 0).then_some(1000)));
        }
        c.rewrite(&mut data);
        let ccs: Vec<u8> = data.chunks(PACKET).map(|p| p[3] & 0x0f).collect();
        assert_eq!(ccs, [0, 1, 2, 3, 4, 5, 6, 7]);
        let disc: Vec<bool> = data
            .chunks(PACKET)
            .map(|p| p[3] & 0x20 != 0 && p[5] & 0x80 != 0)
            .collect();
        assert_eq!(
            disc,
            [false, false, false, false, false, true, false, false]
        );
    }

    #[test]
    fn packets_are_spread_between_pcrs_and_grouped_by_seven() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(Duration::from_millis(500));
        let ms = 27_000; // PCR ticks per ms
        // 14 packets per 40 ms: the first carries the PCR.
        for frame in 0..10u64 {
            let mut chunk = Vec::new();
            for i in 0..14 {
                chunk.extend_from_slice(&packet(
                    256,
                    (i % 16) as u8,
                    (i == 0).then_some(frame * 40 * ms),
                ));
            }
            pacer.push(&chunk, t0 + Duration::from_millis(frame * 40));
        }
        let due: Vec<Duration> = std::iter::from_fn(|| {
            let t = pacer.next_due()?;
            pacer.pop_due(t).map(|_| t - t0)
        })
        .collect();
        // Nine PCR intervals of 14 packets: two datagrams each, 20 ms apart, from 500 ms.
        assert_eq!(due.len(), 18, "{due:?}");
        for (i, d) in due.iter().enumerate() {
            let expected = Duration::from_millis(500 + 20 * (i as u64 + 1));
            let off = d.abs_diff(expected);
            assert!(off <= Duration::from_millis(4), "datagram {i} at {d:?}");
        }
    }

    #[test]
    fn after_a_stall_the_output_is_paced_again() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(Duration::from_millis(500));
        let frame = |pacer: &mut Pacer, n: u64, at_ms: u64| {
            let mut chunk = Vec::new();
            for i in 0..7 {
                chunk.extend_from_slice(&packet(256, i, (i == 0).then_some(n * 1_080_000)));
            }
            pacer.push(&chunk, t0 + Duration::from_millis(at_ms));
        };
        for n in 0..10 {
            frame(&mut pacer, n, n * 40);
        }
        // The source stalls 1.5 s, then resumes in real time with its clock where it was.
        for n in 10..60 {
            frame(&mut pacer, n, 1500 + n * 40);
        }
        // The last frames go out a delay after they arrived, not on arrival.
        let (last_due, _) = *pacer.ready.back().unwrap();
        let arrived = t0 + Duration::from_millis(1500 + 59 * 40);
        assert!(
            last_due >= arrived + Duration::from_millis(400),
            "due {:?} after arrival",
            last_due.saturating_duration_since(arrived)
        );
        assert_eq!(pacer.reanchored, 1);
    }

    #[test]
    fn pcrs_of_a_second_pid_are_not_the_clock() {
        let mut c = Continuity::new();
        let mut data: Vec<u8> = Vec::new();
        for (i, pcr) in [(0u8, 2_700_000u64), (1, 3_780_000), (2, 4_860_000)] {
            data.extend_from_slice(&packet(256, i, Some(pcr)));
            // Another PID with its own, unrelated PCR values.
            data.extend_from_slice(&packet(257, i, Some(900_000_000 - u64::from(i))));
        }
        c.rewrite(&mut data);
        assert!(
            data.chunks(PACKET).all(|p| p[5] & 0x80 == 0),
            "no discontinuity marked"
        );
    }

    #[test]
    fn a_new_timeline_continues_after_what_is_queued() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(Duration::from_millis(500));
        for frame in 0..5u64 {
            let mut chunk = Vec::new();
            for i in 0..7 {
                chunk.extend_from_slice(&packet(256, i, (i == 0).then_some(frame * 1_080_000)));
            }
            pacer.push(&chunk, t0 + Duration::from_millis(frame * 40));
        }
        let last_before = pacer.ready.back().unwrap().0;
        // PCR jumps back: the source restarted.
        let mut chunk = Vec::new();
        for i in 0..14 {
            chunk.extend_from_slice(&packet(
                256,
                i,
                (i % 7 == 0).then_some(5 + i as u64 * 1_080_000),
            ));
        }
        pacer.push(&chunk, t0 + Duration::from_millis(200));
        assert_eq!(pacer.reanchored, 1);
        let times: Vec<Instant> = pacer.ready.iter().map(|(t, _)| *t).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "in order");
        assert!(*times.last().unwrap() >= last_before);
    }
}
