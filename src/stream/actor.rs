//! The per-stream actor: the only owner of a stream's segmenters, windows and fMP4 tracks.

use super::low_latency::LowLatency;
use super::rendition::{Audio, Rendition};
use super::{Feed, Sessions, StreamCounters, StreamHandle, mono_ms};
use crate::dvr::{Archive, RecorderInput};
use crate::media::{Chunk, Segment};
use crate::packaging::{
    LadderSegmenter, LlTrackSnapshot, RenditionSnapshot, Snapshot, TrackSnapshot, Window, fmp4, hls,
};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How often retired segments are checked for the end of their grace period.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// Commands of the control plane to a running actor (what changes without a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorControl {
    /// A new `segment_count`: the live window shrinks or grows in place.
    Resize(usize),
}

/// Control commands queued to one actor: the control plane sends one per applied change and
/// waits for nothing, so a few slots suffice.
const CONTROL_CAPACITY: usize = 8;

/// Where a stream's numbering stands when its actor stops, so that an actor started for the
/// same stream after a configuration change continues it (sequence, timeline, fMP4 epoch)
/// with a discontinuity instead of starting over at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Continuity {
    pub next_sequence: u64,
    /// UTC ms where the last segment ended.
    pub last_end_ms: u64,
    pub epoch_ms: Option<u64>,
    /// Discontinuity tags already counted in the playlists (the most of any rendition).
    pub discontinuities: u64,
    /// The next fMP4 init segment version of every track (one past the highest used).
    pub init_version: u32,
}

/// The parts of a stream that viewers hold on to and that outlive one actor: counters
/// (metric series), HLS sessions and the `/mpegts` broadcast (open connections stay open).
#[derive(Debug, Clone)]
pub struct Audience {
    pub counters: Arc<StreamCounters>,
    pub sessions: Arc<Sessions>,
    /// Chunks of the first rendition.
    pub live: broadcast::Sender<Chunk>,
    /// Chunks of the other renditions of a ladder (for pushes that send them).
    pub ladder: broadcast::Sender<Chunk>,
}

impl Default for Audience {
    fn default() -> Self {
        Audience {
            counters: Arc::default(),
            sessions: Arc::default(),
            live: broadcast::channel(super::LIVE_CAPACITY).0,
            ladder: broadcast::channel(super::LADDER_CAPACITY).0,
        }
    }
}

impl Audience {
    /// The broadcast that carries rendition `index` (0-based).
    pub fn chunks_of(&self, index: usize) -> &broadcast::Sender<Chunk> {
        if index == 0 { &self.live } else { &self.ladder }
    }
}

/// What [`StreamActor::new`] hands out besides the actor.
#[derive(Debug)]
pub struct ActorParts {
    pub handle: StreamHandle,
    /// For ingest.
    pub feed: mpsc::Sender<Feed>,
    /// For the control plane.
    pub control: mpsc::Sender<ActorControl>,
}

/// Owns one stream's state; see the module docs of [`crate::stream`].
#[derive(Debug)]
pub struct StreamActor {
    name: Arc<str>,
    feed: mpsc::Receiver<Feed>,
    control: mpsc::Receiver<ActorControl>,
    ladder: LadderSegmenter,
    /// One per rendition, best first (one for a pass-through stream).
    renditions: Vec<Rendition>,
    /// The fMP4 audio track; `None` until a segment with audio.
    audio: Option<Audio>,
    /// UTC ms of the first segment: `tfdt` 0 of every fMP4 track and the DASH
    /// `availabilityStartTime`; fixed for the life of the process.
    epoch_ms: Option<u64>,
    /// Version of the first init segment of every fMP4 track (0, or carried over).
    first_init_version: u32,
    /// A TS segment that cannot be remuxed to fMP4 was logged (reset by the next success).
    fmp4_failing: bool,
    snapshot: watch::Sender<Arc<Snapshot>>,
    live: broadcast::Sender<Chunk>,
    /// Chunks of renditions 2…, sent only while someone (a push) listens.
    ladder_live: broadcast::Sender<Chunk>,
    counters: Arc<StreamCounters>,
    /// The DVR writer of each rendition that records.
    recorders: Vec<Option<RecorderInput>>,
    target_ms: u32,
    /// LL-HLS parts of the first rendition and the audio.
    ll: LowLatency,
    /// Ticked on every expiry pass (see [`StreamHandle::heartbeat`]).
    heartbeat: watch::Sender<u64>,
}

impl StreamActor {
    /// Creates the actor and its reader handle. `resume` continues the numbering of the
    /// stream's previous actor.
    pub fn new(
        config: &crate::config::StreamConfig,
        audience: Audience,
        dvr: Vec<Option<(Arc<Archive>, RecorderInput)>>,
        resume: Option<Continuity>,
    ) -> (Self, ActorParts) {
        let Audience {
            counters,
            sessions,
            live,
            ladder: ladder_live,
        } = audience;
        let (archives, recorders): (Vec<_>, Vec<_>) = dvr.into_iter().map(Option::unzip).unzip();
        let renditions = config.transcoder.as_ref().map_or(1, |t| t.video.0.len());
        // Every rendition sends its own chunks through the one feed.
        let (feed_tx, feed) = mpsc::channel(super::FEED_CAPACITY * renditions);
        let (control_tx, control) = mpsc::channel(CONTROL_CAPACITY);
        // Every rendition exists from the start (without segments), so that archive segments
        // of a stream whose source is down are found by rendition.
        let (snapshot, snapshot_rx) = watch::channel(Arc::new(Snapshot {
            renditions: vec![Default::default(); renditions],
            target_ms: config.segment_duration.as_millis(),
            ..Snapshot::default()
        }));
        let name: Arc<str> = config.name.as_str().into();
        let (heartbeat, heartbeat_rx) = watch::channel(mono_ms());
        let handle = StreamHandle {
            name: name.clone(),
            snapshot: snapshot_rx,
            live: live.clone(),
            counters: counters.clone(),
            sessions,
            segment_ms: config.segment_duration.as_millis(),
            segment_count: config.segment_count.get(),
            inputs: config.inputs.iter().map(|i| i.url.to_string()).collect(),
            archive: archives.iter().flatten().next().cloned(),
            archives: archives.into(),
            definition: Arc::from(""),
            access: Arc::new(config.access.clone()),
            pushes: Arc::default(),
            heartbeat: heartbeat_rx,
        };
        let target_ms = config.segment_duration.as_millis();
        let mut ladder = LadderSegmenter::new(config.segment_duration.duration(), renditions);
        let mut windows: Vec<Window> = (0..renditions)
            .map(|_| Window::new(config.segment_count.get(), target_ms))
            .collect();
        let first_init_version = resume.map_or(0, |r| r.init_version);
        if let Some(r) = resume {
            ladder.resume(r.next_sequence, r.last_end_ms);
            windows.iter_mut().for_each(|w| w.resume(r.discontinuities));
        }
        let actor = StreamActor {
            name,
            feed,
            control,
            ladder,
            renditions: windows
                .into_iter()
                .map(|w| Rendition::new(w, first_init_version))
                .collect(),
            first_init_version,
            audio: None,
            epoch_ms: resume.and_then(|r| r.epoch_ms),
            fmp4_failing: false,
            snapshot,
            live,
            ladder_live,
            counters,
            recorders,
            target_ms,
            ll: LowLatency::new(
                renditions,
                config.segment_duration.duration(),
                config.chunk_duration.duration(),
                crate::media::utc::now_ms(),
            ),
            heartbeat,
        };
        let parts = ActorParts {
            handle,
            feed: feed_tx,
            control: control_tx,
        };
        (actor, parts)
    }

    /// Runs until cancelled or until ingest has gone away; returns where the numbering
    /// stands, for an actor that continues this stream.
    pub async fn run(mut self, cancel: CancellationToken) -> Continuity {
        let mut expire = tokio::time::interval(EXPIRE_EVERY);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                feed = self.feed.recv() => match feed {
                    Some(feed) => self.on_feed(feed),
                    None => break,
                },
                Some(command) = self.control.recv() => self.on_control(command),
                _ = expire.tick() => self.on_expire(),
            }
        }
        debug!(stream = %self.name, "stream actor stopped");
        let (next_sequence, last_end_ms) = self.ladder.position();
        Continuity {
            next_sequence,
            last_end_ms,
            epoch_ms: self.epoch_ms,
            // The highest count of any rendition: no playlist's discontinuity sequence may
            // go back (one that jumps ahead is still in order).
            discontinuities: self
                .renditions
                .iter()
                .map(|r| r.window.discontinuities())
                .max()
                .unwrap_or(0),
            init_version: self
                .renditions
                .iter()
                .map(|r| r.next_init_version())
                .chain(self.audio.as_ref().map(Audio::next_version))
                .max()
                .unwrap_or(self.first_init_version),
        }
    }

    fn on_control(&mut self, command: ActorControl) {
        match command {
            ActorControl::Resize(count) => {
                let now = mono_ms();
                for r in &mut self.renditions {
                    r.window.set_capacity(count, now);
                    r.prune();
                }
                if let (Some(audio), Some(first)) = (&mut self.audio, self.renditions.first()) {
                    audio.prune(first.window.oldest_sequence());
                }
                self.publish();
            }
        }
    }

    fn on_feed(&mut self, feed: Feed) {
        match feed {
            Feed::Chunk(chunk) => {
                let before = self.ladder.building();
                let segments = self.ladder.push(&chunk, crate::media::utc::now_ms());
                let (opens, building) = if chunk.rendition == 0 {
                    let after = self.ladder.building();
                    (after.filter(|a| Some(*a) != before), after.is_some())
                } else {
                    (None, true)
                };
                let media = self
                    .renditions
                    .get(chunk.rendition)
                    .and_then(|r| r.media.as_ref());
                let next = self.ladder.position().0;
                let parted = self
                    .ll
                    .push(&chunk, opens, building, next, &mut self.epoch_ms, media);
                // No receiver is normal (nobody watching, no push); the error only says that.
                if chunk.rendition == 0 {
                    let _ = self.live.send(chunk);
                } else if self.ladder_live.receiver_count() > 0 {
                    let _ = self.ladder_live.send(chunk);
                }
                if !segments.is_empty() {
                    self.list(segments);
                } else if parted {
                    self.publish();
                }
            }
            Feed::Media(rendition, info) => {
                let Some(r) = self.renditions.get_mut(rendition) else {
                    return;
                };
                self.ll.set_media(rendition, &info);
                if r.media.as_ref() != Some(&info) {
                    info!(stream = %self.name, rendition = rendition + 1, tracks = %info.tracks_spec(), codecs = %info.codecs(), "media info");
                    r.media = Some(info);
                    self.publish();
                }
            }
            Feed::Break => {
                let segments = self.ladder.break_run();
                let media: Vec<_> = self.renditions.iter().map(|r| r.media.as_ref()).collect();
                let next = self.ladder.position().0;
                let parted = self.ll.finish(&mut self.epoch_ms, &media, next);
                if !segments.is_empty() {
                    self.list(segments);
                } else if parted {
                    self.publish();
                }
            }
        }
    }

    /// Adds freshly cut segments and publishes the snapshot that lists them; each is traced
    /// as a `segment` span from cut to listed (its fMP4 remux inside).
    fn list(&mut self, segments: Vec<(usize, Segment)>) {
        let spans: Vec<tracing::Span> = segments
            .into_iter()
            .map(|(rendition, segment)| {
                let span = tracing::info_span!(
                    target: crate::telemetry::TARGET,
                    "segment",
                    stream = %self.name,
                    rendition = rendition + 1,
                    segment.sequence = segment.sequence,
                    segment.duration_ms = segment.duration_ms,
                    segment.bytes = segment.data.len(),
                );
                span.in_scope(|| self.on_segment(rendition, segment));
                span
            })
            .collect();
        self.publish();
        drop(spans);
    }

    fn on_segment(&mut self, rendition: usize, segment: Segment) {
        if segment.data.len() < 188 || segment.data[0] != 0x47 {
            warn!(stream = %self.name, rendition = rendition + 1, "dropping a segment that does not start with a TS packet");
            return;
        }
        debug!(stream = %self.name, rendition = rendition + 1, seq = segment.sequence, ms = segment.duration_ms, bytes = segment.data.len(), "segment");
        let epoch_ms = *self.epoch_ms.get_or_insert(segment.start_ms);
        if rendition == 0 {
            StreamCounters::add(&self.counters.segments, 1);
            self.counters
                .last_segment_ms
                .store(mono_ms(), std::sync::atomic::Ordering::Relaxed);
        }
        let mut segment = segment;
        if let Some(last) = self
            .renditions
            .get(rendition)
            .and_then(|r| r.window.last_sequence())
            && segment.sequence != last + 1
        {
            // This rendition lost a segment (its pipeline died first): what follows does
            // not continue what it has.
            segment.discontinuity = true;
        }
        self.add_fragments(rendition, &mut segment, epoch_ms);
        let segment = Arc::new(segment);
        if let Some(Some(recorder)) = self.recorders.get(rendition) {
            recorder.offer(&segment);
        }
        let Some(r) = self.renditions.get_mut(rendition) else {
            return;
        };
        r.window.push(segment, mono_ms());
        r.prune();
        if rendition == 0 {
            self.ll.prune(r.window.oldest_sequence());
            if let Some(audio) = &mut self.audio {
                audio.prune(r.window.oldest_sequence());
            }
        }
    }

    /// Remuxes a TS segment into its fMP4 video fragment (and, for the first rendition, the
    /// audio fragment). A failure costs only the fMP4 outputs of that segment. A segment whose
    /// codec configuration differs from the one before is marked a discontinuity, so that
    /// HLS players (MPEG-TS too) set up their decoders again.
    fn add_fragments(&mut self, rendition: usize, segment: &mut Segment, epoch_ms: u64) {
        let Some(r) = self.renditions.get_mut(rendition) else {
            return;
        };
        let _remux =
            tracing::info_span!(target: crate::telemetry::TARGET, "segment.fmp4").entered();
        let result = fmp4::demux(&segment.data).and_then(|demuxed| {
            if r.changes_configuration(&demuxed)
                || (rendition == 0 && Audio::changes_configuration(self.audio.as_ref(), &demuxed))
            {
                segment.discontinuity = true;
            }
            r.add_fragment(segment, &demuxed, epoch_ms)?;
            if rendition == 0 {
                Audio::add(
                    &mut self.audio,
                    segment,
                    &demuxed,
                    epoch_ms,
                    self.first_init_version,
                )?;
            }
            Ok(())
        });
        match result {
            Ok(()) => self.fmp4_failing = false,
            Err(e) if !self.fmp4_failing => {
                self.fmp4_failing = true;
                warn!(stream = %self.name, rendition = rendition + 1, seq = segment.sequence, error = %e, "cannot package segment as fMP4; HLS-TS is unaffected");
            }
            Err(e) => debug!(stream = %self.name, error = %e, "fMP4 packaging still failing"),
        }
    }

    fn on_expire(&mut self) {
        let mut changed = false;
        let now = mono_ms();
        self.heartbeat.send_replace(now);
        for r in &mut self.renditions {
            if r.window.expire(now) {
                r.prune();
                changed = true;
            }
        }
        if changed {
            if let Some(first) = self.renditions.first() {
                self.ll.prune(first.window.oldest_sequence());
                if let Some(audio) = &mut self.audio {
                    audio.prune(first.window.oldest_sequence());
                }
            }
            self.publish();
        }
    }

    fn publish(&self) {
        let renditions: Vec<_> = self.renditions.iter().map(Rendition::snapshot).collect();
        let audio = match (&self.audio, self.renditions.first()) {
            (Some(a), Some(first)) => Some(a.snapshot(&first.window)),
            _ => None,
        };
        let uris: Vec<(String, String)> = renditions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    format!("tracks-{}/mono.m3u8", r.tracks(i)),
                    format!("tracks-v{}/index.fmp4.m3u8", i + 1),
                )
            })
            .collect();
        // A rendition is listed once it has media info and a segment; the first must be.
        let ts_variants: Vec<hls::Variant<'_>> = renditions
            .iter()
            .zip(&uris)
            .filter_map(|(r, (ts, _))| {
                let media = r.media.as_ref()?;
                (!r.live.is_empty()).then(|| {
                    let (peak, average) = hls::segment_bitrates(&r.live);
                    hls::Variant {
                        media,
                        peak,
                        average,
                        uri: ts,
                    }
                })
            })
            .collect();
        let first_ready = renditions
            .first()
            .is_some_and(|r| r.media.is_some() && !r.live.is_empty());
        let master_playlist: Option<Bytes> =
            first_ready.then(|| hls::master_playlist(&ts_variants).into());
        let audio_ready = audio.as_ref().filter(|a| a.playlist.is_some());
        let (audio_peak, audio_avg) =
            audio_ready.map_or((0, 0), |a| (a.peak_bitrate, a.average_bitrate));
        let fmp4_variants: Vec<hls::Variant<'_>> = renditions
            .iter()
            .zip(&uris)
            .filter_map(|(r, (_, fmp4))| {
                let media = r.media.as_ref()?;
                r.video.playlist.as_ref()?;
                Some(hls::Variant {
                    media,
                    peak: r.video.peak_bitrate + audio_peak,
                    average: r.video.average_bitrate + audio_avg,
                    uri: fmp4,
                })
            })
            .collect();
        let fmp4_ready = renditions
            .first()
            .is_some_and(|r| r.media.is_some() && r.video.playlist.is_some());
        let fmp4_master_playlist: Option<Bytes> = fmp4_ready.then(|| {
            hls::fmp4_master_playlist(
                &fmp4_variants,
                audio_ready.map(|_| "tracks-a1/index.fmp4.m3u8"),
            )
            .into()
        });
        let (renditions, audio, ll_master_playlist) = self.with_ll(renditions, audio);
        let snap = Snapshot {
            renditions,
            audio,
            master_playlist,
            fmp4_master_playlist,
            ll_master_playlist,
            epoch_ms: self.epoch_ms.unwrap_or(0),
            target_ms: self.target_ms,
        };
        self.snapshot.send_replace(Arc::new(snap));
    }

    /// Adds the LL-HLS views to the first rendition's video and the audio track, and the
    /// LL-HLS master playlist once the video has parts.
    fn with_ll(
        &self,
        mut renditions: Vec<RenditionSnapshot>,
        audio: Option<TrackSnapshot>,
    ) -> (Vec<RenditionSnapshot>, Option<TrackSnapshot>, Option<Bytes>) {
        let Some(first) = self.renditions.first() else {
            return (renditions, audio, None);
        };
        let window = &first.window;
        let super::low_latency::LlSnapshots {
            videos: videos_ll,
            audio: audio_ll,
            muxed: muxed_ll,
        } = self
            .ll
            .snapshots(self.target_ms, window.first_live_sequence(), |sequence| {
                window.discontinuities_before(sequence)
            });
        let bitrate = |t: &LlTrackSnapshot| {
            let (bytes, seconds) = t.listed().iter().fold((0usize, 0.0), |(b, d), s| {
                (
                    b + s.parts.iter().map(|p| p.data.len()).sum::<usize>(),
                    d + s.duration(),
                )
            });
            if seconds > 0.0 {
                (bytes as f64 * 8.0 / seconds) as u64
            } else {
                0
            }
        };
        // With audio, the variants are the muxed tracks (video and audio in each part: a
        // player starts sooner than with an alternate audio track); without, the videos.
        let with_audio = renditions
            .first()
            .and_then(|r| r.media.as_ref())
            .is_some_and(|m| m.audio.is_some());
        let (variant_tracks, name) = if with_audio {
            (&muxed_ll, "a1/index.ll.m3u8")
        } else {
            (&videos_ll, "/index.ll.m3u8")
        };
        let uris: Vec<String> = (0..variant_tracks.len())
            .map(|i| format!("tracks-v{}{name}", i + 1))
            .collect();
        let first_ready = renditions.first().is_some_and(|r| r.media.is_some())
            && variant_tracks.first().is_some_and(|v| v.playlist.is_some());
        // A rendition is listed once it has media info and parts; the first must be.
        let master = first_ready.then(|| {
            let variants: Vec<hls::Variant<'_>> = renditions
                .iter()
                .zip(variant_tracks)
                .zip(&uris)
                .filter_map(|((r, ll), uri)| {
                    let media = r.media.as_ref()?;
                    ll.playlist.as_ref()?;
                    let rate = bitrate(ll);
                    Some(hls::Variant {
                        media,
                        peak: rate,
                        average: rate,
                        uri,
                    })
                })
                .collect();
            Bytes::from(hls::ll_master_playlist(&variants))
        });
        for (r, ll) in renditions.iter_mut().zip(muxed_ll) {
            r.ll_muxed = Some(Arc::new(ll));
        }
        let audio_ready = audio_ll.playlist.is_some();
        for (r, ll) in renditions.iter_mut().zip(videos_ll) {
            r.video.ll = Some(Arc::new(ll));
        }
        let audio = match audio {
            Some(mut a) => {
                a.ll = Some(Arc::new(audio_ll));
                Some(a)
            }
            None if audio_ready => Some(TrackSnapshot {
                ll: Some(Arc::new(audio_ll)),
                ..TrackSnapshot::default()
            }),
            None => None,
        };
        (renditions, audio, master)
    }
}
