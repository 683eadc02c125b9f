//! LL-HLS of a whole stream: every rendition's video and the stream's audio, cut into parts
//! as the chunks arrive. The first rendition's segments are the segmenter's; the other
//! renditions' keyframes at the same instants (the ladder's encoders are keyframe-aligned)
//! open the same segments, so part N of every rendition covers about the same time and
//! players switch renditions at any segment.

use super::ll::LlTrack;
use super::ll_muxed::MuxedTrack;
use crate::media::{Chunk, MediaInfo};
use crate::packaging::fmp4;
use crate::packaging::llhls::{self, Report, Skip};
use crate::packaging::parts::{PartCut, PartCutter, SegmentStart};
use crate::packaging::{CUT_AT_PERCENT, LlTrackSnapshot, SAME_INSTANT};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;
use tracing::{debug, warn};

/// Frame duration assumed until the media info gives the frame rate (25 fps).
const DEFAULT_FRAME: Duration = Duration::from_millis(40);
/// Segment starts of the first rendition remembered for the others to find theirs.
const STARTS_KEPT: usize = 8;

/// One rendition's video parts.
#[derive(Debug)]
struct VideoParts {
    cutter: PartCutter,
    track: LlTrack,
    /// `track` with the stream's audio in its parts (follows `track` after each change).
    muxed: MuxedTrack,
    /// (start PTS, segment) of the segment its parts are cut for.
    current: Option<(Duration, SegmentStart)>,
}

/// LL-HLS state of a stream.
#[derive(Debug)]
pub(super) struct LowLatency {
    /// One per rendition, best first.
    videos: Vec<VideoParts>,
    /// The audio, cut with the first rendition's parts.
    audio: LlTrack,
    /// (start PTS, segment) of the first rendition's recent segments, newest last.
    starts: VecDeque<(Duration, SegmentStart)>,
    /// The stream's segment duration.
    target: Duration,
    /// The actor's start, UNIX ms: part and segment names carry it, so no name is reused by
    /// a later actor of the stream.
    run: u64,
    part_target_ms: u32,
    /// A part that cannot be packaged was logged (reset by the next success).
    failing: bool,
}

impl LowLatency {
    pub(super) fn new(
        renditions: usize,
        target: Duration,
        part_target: Duration,
        run: u64,
    ) -> Self {
        LowLatency {
            videos: (0..renditions.max(1))
                .map(|_| VideoParts {
                    cutter: PartCutter::new(part_target, DEFAULT_FRAME),
                    track: LlTrack::video(),
                    muxed: MuxedTrack::default(),
                    current: None,
                })
                .collect(),
            audio: LlTrack::audio(u32::try_from(part_target.as_millis()).unwrap_or(u32::MAX)),
            starts: VecDeque::new(),
            target,
            run,
            part_target_ms: u32::try_from(part_target.as_millis()).unwrap_or(u32::MAX),
            failing: false,
        }
    }

    /// A rendition's media info: its frame rate sets where its parts may end.
    pub(super) fn set_media(&mut self, rendition: usize, media: &MediaInfo) {
        if let (Some(v), Some((n, d))) = (
            self.videos.get_mut(rendition),
            media.video.as_ref().and_then(|v| v.frame_rate),
        ) && n > 0
        {
            v.cutter
                .set_frame(Duration::from_secs_f64(f64::from(d) / f64::from(n)));
        }
    }

    /// One chunk. For the first rendition, `opens` is the segment the segmenter opened with
    /// it, `building` whether a segment is being filled after it and `next` the number the
    /// segmenter gives its next segment; the other renditions find their segment starts
    /// themselves. Returns whether a part was published.
    pub(super) fn push(
        &mut self,
        chunk: &Chunk,
        opens: Option<SegmentStart>,
        building: bool,
        next: u64,
        epoch_ms: &mut Option<u64>,
        media: Option<&MediaInfo>,
    ) -> bool {
        let rendition = chunk.rendition;
        let cut = if rendition == 0 {
            if let (Some(start), Some(pts)) = (opens, chunk.pts) {
                self.starts.push_back((pts, start));
                if self.starts.len() > STARTS_KEPT {
                    self.starts.pop_front();
                }
            }
            let Some(v) = self.videos.first_mut() else {
                return false;
            };
            if building {
                v.cutter.push(chunk, opens)
            } else {
                // The segmenter closed (a timestamp jump) or dropped its segment: it ends
                // here, complete if the segmenter made it (its next segment is `next`).
                let cut = v.cutter.finish();
                let packaged = cut.is_some_and(|cut| self.package(0, &cut, epoch_ms, media));
                return packaged | self.settle(1, next);
            }
        } else {
            let opens = self.follower_opens(rendition, chunk);
            let Some(v) = self.videos.get_mut(rendition) else {
                return false;
            };
            if let (Some(start), Some(pts)) = (opens, chunk.pts) {
                v.current = Some((pts, start));
            }
            v.cutter.push(chunk, opens)
        };
        cut.is_some_and(|cut| self.package(rendition, &cut, epoch_ms, media))
    }

    /// The segment a keyframe of rendition `rendition` (not the first) opens: the first
    /// rendition's segment that starts at the same instant, else (that one has not arrived
    /// yet) the next one after its own, once a segment's worth has passed.
    fn follower_opens(&self, rendition: usize, chunk: &Chunk) -> Option<SegmentStart> {
        let pts = chunk.pts.filter(|_| chunk.keyframe)?;
        let current = self.videos.get(rendition)?.current;
        // Only a segment after the one it fills (a keyframe near an old start must not open
        // that segment again).
        if let Some((_, start)) = self.starts.iter().rev().find(|(at, start)| {
            at.abs_diff(pts) < SAME_INSTANT
                && current.is_none_or(|(_, c)| start.sequence > c.sequence)
        }) {
            return Some(*start);
        }
        let (from, current) = current?;
        let elapsed = pts.checked_sub(from)?;
        (elapsed.as_nanos() * 100 >= self.target.as_nanos() * CUT_AT_PERCENT).then(|| {
            SegmentStart {
                sequence: current.sequence + 1,
                start_ms: current.start_ms + u64::try_from(elapsed.as_millis()).unwrap_or(0),
                discontinuity: false,
            }
        })
    }

    /// The source stopped: every rendition's open segment ends with its last part, and is
    /// complete if the segmenter made it (its next segment is `next`) or goes if not.
    pub(super) fn finish(
        &mut self,
        epoch_ms: &mut Option<u64>,
        media: &[Option<&MediaInfo>],
        next: u64,
    ) -> bool {
        let mut published = false;
        for rendition in 0..self.videos.len() {
            let cut = self.videos[rendition].cutter.finish();
            self.videos[rendition].current = None;
            if let Some(cut) = cut {
                let m = media.get(rendition).copied().flatten();
                published |= self.package(rendition, &cut, epoch_ms, m);
            }
        }
        published |= self.settle(self.videos.len(), next);
        self.starts.clear();
        published
    }

    /// Nothing follows in the first `renditions` renditions (and the audio): their ended
    /// segments are complete if the segmenter made them (its next segment is `next`).
    fn settle(&mut self, renditions: usize, next: u64) -> bool {
        let mut changed = false;
        for v in self.videos.iter_mut().take(renditions) {
            changed |= v.track.settle_at_stop(next);
        }
        changed |= self.audio.settle_at_stop(next);
        for v in &mut self.videos {
            v.muxed.follow(&v.track, &self.audio);
        }
        changed
    }

    fn package(
        &mut self,
        rendition: usize,
        cut: &PartCut,
        epoch_ms: &mut Option<u64>,
        media: Option<&MediaInfo>,
    ) -> bool {
        let epoch = *epoch_ms.get_or_insert(cut.segment.start_ms);
        let size = media
            .and_then(|m| m.video.as_ref())
            .map(|v| (v.width, v.height));
        let Some(video) = self.videos.get_mut(rendition) else {
            return false;
        };
        let audio = &mut self.audio;
        let result = fmp4::demux(&cut.ts).and_then(|demuxed| {
            // A track with nothing in this part (a short last part may hold no audio frame)
            // still ends its segment with it.
            let v = if demuxed.video.is_empty() {
                video.track.close(cut);
                Ok(())
            } else {
                video.track.add(cut, &demuxed, epoch, size)
            };
            // Every rendition carries the same audio: the first one's makes the track (a
            // part without audio frames still tells it where segments begin and end).
            let a = if rendition == 0 {
                audio.add(cut, &demuxed, epoch, None)
            } else {
                Ok(())
            };
            v.and(a)
        });
        video.muxed.follow(&video.track, audio);
        match result {
            Ok(()) => {
                self.failing = false;
                true
            }
            Err(e) if !self.failing => {
                self.failing = true;
                warn!(rendition = rendition + 1, seq = cut.segment.sequence, part = cut.index, error = %e, "cannot package an LL-HLS part; other outputs are unaffected");
                false
            }
            Err(e) => {
                debug!(error = %e, "LL-HLS parts still failing");
                false
            }
        }
    }

    /// Drops what the TS window no longer serves.
    pub(super) fn prune(&mut self, oldest: Option<u64>) {
        for v in &mut self.videos {
            v.track.prune(oldest);
        }
        self.audio.prune(oldest);
        for v in &mut self.videos {
            v.muxed.follow(&v.track, &self.audio);
        }
    }

    /// Every rendition's video view, the audio's and every rendition's muxed view, with
    /// their playlists (each video or audio track reporting every other, each muxed track
    /// every other muxed one), given the first rendition's first live sequence and the
    /// discontinuities before a sequence.
    pub(super) fn snapshots(
        &self,
        target_ms: u32,
        first_live: Option<u64>,
        discontinuities_before: impl Fn(u64) -> u64,
    ) -> LlSnapshots {
        // (playlist URI relative to another track's, view) of each rendition's `pick`.
        let views = |suffix: &str, pick: &dyn Fn(&VideoParts) -> LlTrackSnapshot| {
            self.videos
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    (
                        format!("../tracks-v{}{suffix}/index.ll.m3u8", i + 1),
                        pick(v),
                    )
                })
                .collect::<Vec<(String, LlTrackSnapshot)>>()
        };
        let mut tracks = views("", &|v| v.track.snapshot(self.run, first_live));
        tracks.push((
            "../tracks-a1/index.ll.m3u8".to_owned(),
            self.audio.snapshot(self.run, first_live),
        ));
        self.render(&mut tracks, target_ms, &discontinuities_before);
        let mut muxed = views("a1", &|v| v.muxed.snapshot(self.run, first_live));
        self.render(&mut muxed, target_ms, &discontinuities_before);
        let audio = tracks.pop().map(|(_, t)| t).unwrap_or_default();
        LlSnapshots {
            videos: tracks.into_iter().map(|(_, t)| t).collect(),
            audio,
            muxed: muxed.into_iter().map(|(_, t)| t).collect(),
        }
    }

    /// Renders the playlists of `tracks` (URI relative to a track's playlist, view), each
    /// reporting the others.
    fn render(
        &self,
        tracks: &mut [(String, LlTrackSnapshot)],
        target_ms: u32,
        discontinuities_before: &impl Fn(u64) -> u64,
    ) {
        let lasts: Vec<Option<Report>> = tracks
            .iter()
            .map(|(uri, t)| {
                t.last().map(|(last_msn, last_part)| Report {
                    uri: uri.clone(),
                    last_msn,
                    last_part,
                })
            })
            .collect();
        for (i, (_, track)) in tracks.iter_mut().enumerate() {
            track.part_target_ms = self.part_target_ms;
            let listed = track.listed();
            if listed.iter().all(|s| s.parts.is_empty()) {
                continue;
            }
            let reports: Vec<Report> = lasts
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .filter_map(|(_, r)| r.clone())
                .collect();
            let media = llhls::LlMedia {
                segments: listed,
                target_ms,
                part_target_ms: self.part_target_ms,
                discontinuity_sequence: listed
                    .first()
                    .map_or(0, |s| discontinuities_before(s.sequence)),
                run: self.run,
                next_part: track.next_part,
                reports: &reports,
            };
            let full: Bytes = llhls::media_playlist(&media, Skip::No).into();
            let skip: Bytes = llhls::media_playlist(&media, Skip::Yes).into();
            track.playlist = Some(full);
            track.playlist_skip = Some(skip);
        }
    }
}

/// The LL-HLS views of a stream.
#[derive(Debug, Default)]
pub(super) struct LlSnapshots {
    /// Each rendition's video, best first.
    pub(super) videos: Vec<LlTrackSnapshot>,
    pub(super) audio: LlTrackSnapshot,
    /// Each rendition's video with the audio, best first.
    pub(super) muxed: Vec<LlTrackSnapshot>,
}
