//! AAC repair at the MPEG-TS demuxer, before `aacparse`: a PES cut short (a source that
//! restarts mid-packet, lost UDP packets) ends in a partial ADTS frame, and `aacparse` would
//! complete that frame with the next PES's bytes: one corrupt frame in every output, which
//! Chromium's MSE (hls.js, dash.js) treats as a fatal decode error. Sources that keep whole
//! ADTS frames in each PES (nearly all) get a broken PES cut back to its last whole frame;
//! a source seen splitting frames across PES is left alone.

use super::InputMeter;
use gstreamer as gst;
use gstreamer::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use tracing::{debug, warn};

/// How the ADTS frames of one PES payload fill it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tiling {
    /// Whole frames, back to back, to the last byte.
    Whole,
    /// The frames up to byte `keep` are whole; what follows is a cut-off frame, or a frame
    /// whose declared length does not end where another frame begins.
    Broken { keep: usize },
    /// Does not start with an ADTS header: a frame continued from the previous PES.
    Unaligned,
}

/// ADTS: 12-bit sync word, then ID and a 2-bit layer that is always 0 (MPEG-1/2 audio,
/// which shares the sync bits, never has layer 0).
fn is_header(data: &[u8]) -> bool {
    data.len() >= 2 && data[0] == 0xff && data[1] & 0xf6 == 0xf0
}

/// How the ADTS frames of `data` tile it.
pub(super) fn tiling(data: &[u8]) -> Tiling {
    if !is_header(data) {
        return Tiling::Unaligned;
    }
    let mut at = 0;
    loop {
        let rest = &data[at..];
        if rest.is_empty() {
            return Tiling::Whole;
        }
        if rest.len() < 7 || !is_header(rest) {
            return Tiling::Broken { keep: at };
        }
        let len = (usize::from(rest[3] & 0x03) << 11)
            | (usize::from(rest[4]) << 3)
            | usize::from(rest[5] >> 5);
        if len < 7 || len > rest.len() {
            return Tiling::Broken { keep: at };
        }
        // A frame must end where the next one starts (or at the end of the PES).
        let next = &rest[len..];
        if !next.is_empty() && next.len() >= 2 && !is_header(next) {
            return Tiling::Broken { keep: at };
        }
        at += len;
    }
}

/// What one demuxer pad has shown so far (bits, set once).
const SEEN_WHOLE: u8 = 1;
const SEEN_UNALIGNED: u8 = 2;
const NOT_AAC: u8 = 4;
const WARNED: u8 = 8;

/// Watches the `tsdemux` inside `parsebin` and repairs its AAC pads.
pub(super) fn repair_demuxed_aac(parsebin: &gst::Bin, meter: Arc<InputMeter>) {
    parsebin.connect_deep_element_added(move |_, _, element| {
        if element.factory().is_none_or(|f| f.name() != "tsdemux") {
            return;
        }
        let meter = meter.clone();
        element.connect_pad_added(move |_, pad| {
            if pad.name().starts_with("audio") {
                add_probe(pad, meter.clone());
            }
        });
    });
}

fn add_probe(pad: &gst::Pad, meter: Arc<InputMeter>) {
    let seen = AtomicU8::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let state = seen.load(Ordering::Relaxed);
        if state & (NOT_AAC | SEEN_UNALIGNED) != 0 {
            return gst::PadProbeReturn::Ok;
        }
        if state == 0 && !is_adts(pad) {
            seen.fetch_or(NOT_AAC, Ordering::Relaxed);
            return gst::PadProbeReturn::Ok;
        }
        let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let found = match buffer.map_readable() {
            Ok(map) => tiling(&map),
            Err(_) => return gst::PadProbeReturn::Ok,
        };
        match found {
            Tiling::Whole => {
                seen.fetch_or(SEEN_WHOLE, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            }
            Tiling::Unaligned => {
                debug!(pad = %pad.name(), "AAC frames span PES packets; no repair on this track");
                seen.fetch_or(SEEN_UNALIGNED, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            }
            // Until a whole PES was seen, the source may be one that splits frames.
            Tiling::Broken { .. } if state & SEEN_WHOLE == 0 => gst::PadProbeReturn::Ok,
            Tiling::Broken { keep } => {
                meter.count_broken_audio();
                if seen.fetch_or(WARNED, Ordering::Relaxed) & WARNED == 0 {
                    warn!(pad = %pad.name(), bytes = buffer.size() - keep, "AAC frame cut short in the source (restart or lost packets): dropped (logged once per track; counted in broken_audio_frames)");
                }
                if keep == 0 {
                    return gst::PadProbeReturn::Drop;
                }
                buffer.make_mut().set_size(keep);
                gst::PadProbeReturn::Ok
            }
        }
    });
}

/// The pad carries ADTS AAC (`audio/mpeg`, MPEG-2 or -4); checked at its first buffer, when
/// the demuxer has set its caps.
fn is_adts(pad: &gst::Pad) -> bool {
    pad.current_caps().is_some_and(|caps| {
        caps.structure(0).is_some_and(|s| {
            s.name() == "audio/mpeg" && s.get::<i32>("mpegversion").is_ok_and(|v| v == 2 || v == 4)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ADTS frame of `len` bytes (AAC-LC, 48 kHz, stereo).
    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![0xff, 0xf1, 0x4c, 0x80, 0, 0, 0xfc];
        f[3] |= ((len >> 11) & 0x03) as u8;
        f[4] = ((len >> 3) & 0xff) as u8;
        f[5] = (((len & 0x07) << 5) | 0x1f) as u8;
        f.resize(len, 0x21);
        f
    }

    #[test]
    fn whole_frames_tile_the_pes() {
        let pes = [frame(180), frame(201), frame(7)].concat();
        assert_eq!(tiling(&pes), Tiling::Whole);
        assert_eq!(tiling(&frame(300)), Tiling::Whole);
    }

    #[test]
    fn a_pes_cut_short_keeps_its_whole_frames() {
        let whole = [frame(180), frame(201)].concat();
        let cut = [whole.clone(), frame(190)[..100].to_vec()].concat();
        assert_eq!(tiling(&cut), Tiling::Broken { keep: whole.len() });
        // cut inside the next header
        let cut = [whole.clone(), frame(190)[..4].to_vec()].concat();
        assert_eq!(tiling(&cut), Tiling::Broken { keep: whole.len() });
        assert_eq!(tiling(&frame(190)[..150]), Tiling::Broken { keep: 0 });
    }

    #[test]
    fn a_frame_that_does_not_end_on_a_frame_is_dropped_with_what_follows() {
        // a lost TS packet inside the second frame: its declared length overruns
        let mut second = frame(400);
        second.drain(100..284);
        let pes = [frame(180), second, frame(150)].concat();
        assert_eq!(tiling(&pes), Tiling::Broken { keep: 180 });
    }

    #[test]
    fn continuations_and_other_audio_are_unaligned() {
        assert_eq!(tiling(&[0x21, 0x22, 0x23]), Tiling::Unaligned);
        assert_eq!(tiling(&[]), Tiling::Unaligned);
        // MPEG-1 layer II header: same sync bits, layer 2
        assert_eq!(tiling(&[0xff, 0xfd, 0x90, 0x00]), Tiling::Unaligned);
    }
}
