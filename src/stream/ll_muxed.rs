//! One rendition's video and the stream's audio as one LL-HLS track (`tracks-vNa1`): each
//! video part with the audio parts that arrived with it appended as the init segment's second
//! track. The LL master lists these: a player of one track per variant starts sooner than one
//! that also loads an alternate audio track (hls.js 1.7.4 loads the audio only once the
//! video's first part is demuxed, in a worker of its own: ~0.4 s behind live more, measured).
//!
//! Derived from the video and audio [`LlTrack`]s after each part they make: the same
//! segments, part numbers, durations, dates and completeness as the video, so a muxed
//! playlist and the video's say the same thing; its parts hold the audio in addition.

use super::ll::{self, LlTrack};
use crate::packaging::fmp4;
use crate::packaging::llhls::{LlSegment, Part};
use crate::packaging::{InitSegment, LlTrackSnapshot};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::Arc;
use tracing::debug;

/// The init segment of one video and audio configuration.
#[derive(Debug)]
struct MuxedInit {
    /// The video init segment's version it was made from.
    video: u32,
    /// The audio init segment's version.
    audio: u32,
    init: Arc<InitSegment>,
}

/// One rendition's muxed LL-HLS track.
#[derive(Debug, Default)]
pub(super) struct MuxedTrack {
    /// The video track's segments with the audio added; oldest first, only the last may be
    /// incomplete.
    segments: VecDeque<Arc<LlSegment>>,
    /// The next audio part not yet placed in a part (each goes into exactly one).
    audio_next: u64,
    /// The init segment of the newest segment; `None` before the first.
    init: Option<MuxedInit>,
    /// The number the next part gets (the video's).
    next_part: u64,
}

impl MuxedTrack {
    /// Catches up with `video` (after it made a part, or settled or pruned segments):
    /// every new video part becomes a part with the audio parts `audio` made since the last
    /// one (those of a later segment wait for it).
    pub(super) fn follow(&mut self, video: &LlTrack, audio: &LlTrack) {
        let mut out = VecDeque::with_capacity(video.segments().len());
        for vs in video.segments() {
            let first = vs.parts.first().map(|p| p.number);
            let old = self
                .segments
                .iter()
                .find(|m| m.sequence == vs.sequence && m.parts.first().map(|p| p.number) == first)
                .cloned();
            if let Some(old) = &old
                && old.parts.len() == vs.parts.len()
                && old.complete() == vs.complete()
            {
                out.push_back(old.clone());
                continue;
            }
            let init = match &old {
                Some(o) => o.init.clone(),
                None => match self.init_for(vs.init.version, video, audio) {
                    Some(init) => init,
                    None => continue,
                },
            };
            let audio_version = self
                .init
                .as_ref()
                .filter(|i| Arc::ptr_eq(&i.init, &init))
                .map(|i| i.audio);
            let mut parts: Vec<Arc<Part>> = old.map(|o| o.parts.clone()).unwrap_or_default();
            parts.truncate(vs.parts.len());
            for vp in &vs.parts[parts.len()..] {
                let sound = self.audio_for(audio, vs.sequence, audio_version);
                parts.push(Arc::new(Part {
                    number: vp.number,
                    duration: vp.duration,
                    independent: vp.independent,
                    // The video part's bytes themselves, not a copy.
                    data: vp.data.clone(),
                    muxed_audio: sound.freeze(),
                }));
            }
            // A new init segment (the audio's configuration changed, say a source restarted
            // at another sample rate) starts a new run for the player, as the video's does.
            let reconfigured = out
                .back()
                .is_some_and(|prev: &Arc<LlSegment>| !Arc::ptr_eq(&prev.init, &init));
            out.push_back(Arc::new(LlSegment {
                sequence: vs.sequence,
                start_ms: vs.start_ms,
                discontinuity: vs.discontinuity || reconfigured,
                parts,
                complete: vs.complete(),
                init,
            }));
        }
        self.segments = out;
        self.next_part = video.next_part();
    }

    /// The init segment for a segment the video opens now: the current one while neither
    /// configuration changed, else a new version; `None` (no segment) before the audio has
    /// a configuration (the master announces the audio codec in every variant).
    fn init_for(
        &mut self,
        video_version: u32,
        video: &LlTrack,
        audio: &LlTrack,
    ) -> Option<Arc<InitSegment>> {
        let (avc, width, height) = video.video_config()?;
        let (aac, audio_version) = audio.audio_config()?;
        if let Some(current) = &self.init
            && current.video == video_version
            && current.audio == audio_version
        {
            return Some(current.init.clone());
        }
        let version = self.init.as_ref().map_or(0, |i| i.init.version + 1);
        let init = Arc::new(InitSegment {
            data: fmp4::muxed_init(avc, width, height, Some(&aac)).into(),
            version,
            codec: format!("{},{}", avc.codec_string(), aac.codec_string()),
            width,
            height,
            sample_rate: aac.sample_rate,
            channels: aac.channels,
            ..InitSegment::default()
        });
        self.init = Some(MuxedInit {
            video: video_version,
            audio: audio_version,
            init: init.clone(),
        });
        Some(init)
    }

    /// The audio parts made since the last call that belong to segment `sequence` or an
    /// earlier one, as fragments of the muxed init's audio track; a part made with another
    /// audio configuration than `audio_version` is left out.
    fn audio_for(
        &mut self,
        audio: &LlTrack,
        sequence: u64,
        audio_version: Option<u32>,
    ) -> BytesMut {
        let mut sound = BytesMut::new();
        for segment in audio.segments() {
            for part in &segment.parts {
                if part.number < self.audio_next {
                    continue;
                }
                if segment.sequence > sequence {
                    return sound;
                }
                self.audio_next = part.number + 1;
                if audio_version != Some(segment.init.version) {
                    continue;
                }
                match fmp4::as_muxed_audio(&part.data) {
                    Ok(fragment) => sound.extend_from_slice(&fragment),
                    Err(e) => debug!(error = %e, "an audio part left out of a muxed part"),
                }
            }
        }
        sound
    }

    /// The reader's view (see [`LlTrack::snapshot`]).
    pub(super) fn snapshot(&self, run: u64, first_live: Option<u64>) -> LlTrackSnapshot {
        ll::snapshot(&self.segments, self.next_part, run, first_live)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ll_test_media::*;
    use super::*;

    /// Top-level boxes of `data`: their types.
    fn kinds(data: &[u8]) -> Vec<[u8; 4]> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= data.len() {
            let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            out.push(data[at + 4..at + 8].try_into().unwrap());
            at += size;
        }
        assert_eq!(at, data.len());
        out
    }

    /// Feeds segment `sequence` (4 parts of 250 ms, 12 AAC frames each) to the video and
    /// the audio, the muxed track following after each part.
    fn segment(video: &mut LlTrack, audio: &mut LlTrack, muxed: &mut MuxedTrack, sequence: u64) {
        for index in 0..4u32 {
            let at = (sequence * 4 + u64::from(index)) * 22_500;
            let frames = (0..12).map(|n| at + n * 1920);
            let d = demuxed(at, frames);
            let c = cut(sequence, index, index == 3);
            feed(video, &c, &d);
            feed(audio, &c, &d);
            muxed.follow(video, audio);
        }
    }

    #[test]
    fn each_video_part_carries_the_audio_that_came_with_it() {
        let (mut video, mut audio) = (LlTrack::video(), LlTrack::audio(250));
        let mut muxed = MuxedTrack::default();
        for sequence in 0..3 {
            segment(&mut video, &mut audio, &mut muxed, sequence);
        }
        let (v, m) = (video.snapshot(1, Some(0)), muxed.snapshot(1, Some(0)));
        assert_eq!(m.next_part, v.next_part);
        assert_eq!(m.segments.len(), 3);
        for (vs, ms) in v.segments.iter().zip(&m.segments) {
            assert_eq!(
                (ms.sequence, ms.start_ms, ms.complete()),
                (vs.sequence, vs.start_ms, vs.complete())
            );
            for (vp, mp) in vs.parts.iter().zip(&ms.parts) {
                assert_eq!(
                    (mp.number, mp.duration, mp.independent),
                    (vp.number, vp.duration, vp.independent)
                );
                // The video's part as it is, then the audio's as track 2 (the segment's
                // last part brings what is left: two audio parts here).
                assert_eq!(mp.data.as_ptr(), vp.data.as_ptr(), "shared, not copied");
                assert!(mp.joined().starts_with(&vp.data));
                let audio = kinds(&mp.muxed_audio);
                assert!(
                    !audio.is_empty() && audio.chunks(2).all(|pair| pair == [*b"moof", *b"mdat"]),
                    "segment {} part {}: {audio:?}",
                    ms.sequence,
                    mp.number
                );
            }
        }
        // Every audio part went into exactly one muxed part.
        let audio_bytes: usize = audio
            .segments()
            .iter()
            .flat_map(|s| &s.parts)
            .map(|p| p.data.len() - 24) // without its styp
            .sum();
        let video_bytes: usize = v
            .segments
            .iter()
            .flat_map(|s| &s.parts)
            .map(|p| p.data.len())
            .sum();
        let muxed_bytes: usize = m
            .segments
            .iter()
            .flat_map(|s| &s.parts)
            .map(|p| p.len())
            .sum();
        assert_eq!(muxed_bytes, video_bytes + audio_bytes);
        let init = &m.segments[0].init;
        assert_eq!(init.codec, "avc1.64001f,mp4a.40.2");
        assert_eq!((init.sample_rate, init.channels), (48_000, 2));
        assert!(m.segments.iter().all(|s| Arc::ptr_eq(&s.init, init)));
    }

    /// A later rendition's parts take the audio that the first rendition's parts brought,
    /// never audio of a segment they have not reached, and none twice.
    #[test]
    fn audio_of_a_later_segment_waits_for_it() {
        let (mut video, mut audio) = (LlTrack::video(), LlTrack::audio(250));
        let mut follower = LlTrack::video();
        let mut muxed = MuxedTrack::default();
        // The audio (with the first rendition) runs a whole segment ahead of the follower.
        for sequence in 0..2 {
            let mut ignored = MuxedTrack::default();
            segment(&mut video, &mut audio, &mut ignored, sequence);
        }
        for index in 0..4u32 {
            let d = demuxed(u64::from(index) * 22_500, std::iter::empty());
            feed(&mut follower, &cut(0, index, index == 3), &d);
            muxed.follow(&follower, &audio);
        }
        let parts_of = |m: &MuxedTrack, sequence: u64| -> Vec<usize> {
            m.segments
                .iter()
                .filter(|s| s.sequence == sequence)
                .flat_map(|s| &s.parts)
                .map(|p| kinds(&p.joined()).iter().filter(|k| *k == b"moof").count())
                .collect()
        };
        let audio_parts = |sequence: u64| -> usize {
            audio
                .segments()
                .iter()
                .filter(|s| s.sequence == sequence)
                .map(|s| s.parts.len())
                .sum()
        };
        // Segment 0's audio parts came with the follower's first part (they were all
        // there), segment 1's waited.
        assert_eq!(parts_of(&muxed, 0), [1 + audio_parts(0), 1, 1, 1]);
        let d = demuxed(4 * 22_500, std::iter::empty());
        feed(&mut follower, &cut(1, 0, false), &d);
        muxed.follow(&follower, &audio);
        assert_eq!(parts_of(&muxed, 1), [1 + audio_parts(1)]);
        assert!(muxed.segments[0].complete(), "ended when segment 1 began");
    }

    /// The audio's configuration changes (a source restarted at 44.1 kHz): the segment it
    /// comes with gets a new init segment and starts a new run.
    #[test]
    fn a_new_audio_configuration_gets_a_new_init_and_a_discontinuity() {
        let (mut video, mut audio) = (LlTrack::video(), LlTrack::audio(250));
        let mut muxed = MuxedTrack::default();
        segment(&mut video, &mut audio, &mut muxed, 0);
        for index in 0..4u32 {
            let at = (4 + u64::from(index)) * 22_500;
            let mut d = demuxed(at, (0..11).map(|n| at + n * 2090));
            d.aac = Some(fmp4::AacConfig {
                sample_rate: 44_100,
                sampling_index: 4,
                ..AAC
            });
            let c = cut(1, index, index == 3);
            feed(&mut video, &c, &d);
            feed(&mut audio, &c, &d);
            muxed.follow(&video, &audio);
        }
        segment(&mut video, &mut audio, &mut muxed, 2);
        let m = muxed.snapshot(1, Some(0));
        let runs: Vec<(u64, u32, bool, u32)> = m
            .segments
            .iter()
            .map(|s| {
                (
                    s.sequence,
                    s.init.version,
                    s.discontinuity,
                    s.init.sample_rate,
                )
            })
            .collect();
        // The audio's configuration arrives with the segment's first part (packaged before
        // the muxed track follows): segment 1 decodes with a 44.1 kHz init, segment 2 with
        // 48 kHz again, each a new run.
        assert_eq!(
            runs,
            [
                (0, 0, false, 48_000),
                (1, 1, true, 44_100),
                (2, 2, true, 48_000)
            ]
        );
    }

    #[test]
    fn nothing_before_the_audio_has_a_configuration() {
        let (mut video, audio) = (LlTrack::video(), LlTrack::audio(250));
        let mut muxed = MuxedTrack::default();
        feed(
            &mut video,
            &cut(0, 0, false),
            &demuxed(0, std::iter::empty()),
        );
        muxed.follow(&video, &audio);
        assert!(muxed.snapshot(1, Some(0)).segments.is_empty());
    }
}
