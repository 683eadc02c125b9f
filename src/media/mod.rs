//! Pure media types shared by every stage: what ingest hands to a stream ([`Chunk`],
//! [`MediaInfo`]) and what packaging keeps ([`Segment`]). No I/O and no GStreamer here, so
//! packaging and HTTP can be tested on synthetic values.

mod codec;
pub mod utc;

pub use codec::{aac_codec_string, avc_codec_string};

use bytes::Bytes;
use std::time::Duration;

/// One access unit's worth of MPEG-TS packets from the ingest muxer, in arrival order.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Whole 188-byte TS packets.
    pub data: Bytes,
    /// Running time of the access unit; `None` when the muxer gave none (PSI-only output).
    pub pts: Option<Duration>,
    /// True when the chunk starts with PAT/PMT followed by a video IDR: a valid cut point.
    pub keyframe: bool,
    /// Which rendition of the ladder it belongs to; 0 for a pass-through stream.
    pub rendition: usize,
}

/// What the stream carries, read from the real caps and bitstream by ingest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaInfo {
    /// Present when the stream has a video track.
    pub video: Option<VideoInfo>,
    /// Present when the stream has an audio track.
    pub audio: Option<AudioInfo>,
}

/// The video track as a player needs to know it (HLS `RESOLUTION`, `CODECS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoInfo {
    /// RFC 6381 codec string, e.g. `avc1.42c01e`.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Frames per second as a fraction, when the caps say (HLS `FRAME-RATE`, DASH `frameRate`).
    pub frame_rate: Option<(u32, u32)>,
}

/// The audio track as a player needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInfo {
    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub codec: String,
    pub channels: u32,
    pub sample_rate: u32,
}

impl MediaInfo {
    /// Flussonic's track selector for "all tracks": `v1a1`, `v1` or `a1`.
    pub fn tracks_spec(&self) -> String {
        let mut spec = String::new();
        if self.video.is_some() {
            spec.push_str("v1");
        }
        if self.audio.is_some() {
            spec.push_str("a1");
        }
        spec
    }

    /// The HLS `CODECS` attribute value, video first.
    pub fn codecs(&self) -> String {
        let codecs: Vec<&str> = [
            self.video.as_ref().map(|v| v.codec.as_str()),
            self.audio.as_ref().map(|a| a.codec.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect();
        codecs.join(",")
    }
}

/// Flussonic's segment path for a start time (UTC ms) and duration: `YYYY/MM/DD/HH/MM/SS-DDDDD.ts`.
/// The same relative path names a live segment in URLs and an archived one on disk.
pub fn segment_path(start_ms: u64, duration_ms: u32) -> String {
    let mut path = String::with_capacity(28);
    utc::Civil::from_unix_ms(start_ms).push_segment_path(&mut path, duration_ms, ".ts");
    path
}

/// A segment as its URL or file names it (`YYYY/MM/DD/HH/MM/SS-DDDDD.ts`, `….m4s`): the UTC
/// second it starts in and its duration. Parsed once from a request, then compared with each
/// segment as numbers (no path is formatted per segment looked at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentName {
    /// Start, UTC ms, rounded down to the second (the path has no finer unit).
    pub second_ms: u64,
    pub duration_ms: u32,
}

impl SegmentName {
    /// Parses `YYYY/MM/DD/HH/MM/SS-DDDDD` + `ext`. Only the canonical spelling of a real time
    /// is a name (`02/31` or second `60` are not, so no two texts name one segment).
    pub fn parse(path: &str, ext: &str) -> Option<Self> {
        let parts: Vec<&str> = path.split('/').collect();
        Self::from_parts(&parts, ext)
    }

    /// [`SegmentName::parse`] of a path already split at its slashes.
    pub fn from_parts(parts: &[&str], ext: &str) -> Option<Self> {
        let [y, mo, d, h, mi, file] = parts else {
            return None;
        };
        let (sec, dur) = file.strip_suffix(ext)?.split_once('-')?;
        let num = |s: &str, len: usize| -> Option<u32> {
            (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
        };
        let civil = utc::Civil {
            year: i64::from(num(y, 4)?),
            month: num(mo, 2)?,
            day: num(d, 2)?,
            hour: num(h, 2)?,
            minute: num(mi, 2)?,
            second: num(sec, 2)?,
            millis: 0,
        };
        let second_ms = civil.to_unix_ms()?;
        (utc::Civil::from_unix_ms(second_ms) == civil).then_some(Self {
            second_ms,
            duration_ms: num(dur, 5)?,
        })
    }

    /// Whether a segment starting at `start_ms` (UTC ms) lasting `duration_ms` has this name.
    pub fn names(&self, start_ms: u64, duration_ms: u32) -> bool {
        start_ms / 1000 * 1000 == self.second_ms && duration_ms == self.duration_ms
    }
}

/// A finished, keyframe-aligned MPEG-TS segment held in memory.
#[derive(Debug, Clone)]
pub struct Segment {
    /// HLS media sequence number; strictly increasing per stream.
    pub sequence: u64,
    /// Wall-clock start, milliseconds since the Unix epoch (UTC).
    pub start_ms: u64,
    /// Duration in milliseconds, from this segment's first keyframe to the next one.
    pub duration_ms: u32,
    /// True when this segment does not continue the previous one (source restart).
    pub discontinuity: bool,
    /// The TS bytes; starts with PAT, PMT and an IDR.
    pub data: Bytes,
}

impl Segment {
    /// Flussonic's segment path, relative to the playlist: `YYYY/MM/DD/HH/MM/SS-DDDDD.ts`.
    pub fn path(&self) -> String {
        segment_path(self.start_ms, self.duration_ms)
    }

    /// Whether `name` (parsed from a URL) names this segment.
    pub fn is_named(&self, name: &SegmentName) -> bool {
        name.names(self.start_ms, self.duration_ms)
    }

    /// Bits per second over this segment.
    pub fn bitrate(&self) -> u64 {
        if self.duration_ms == 0 {
            return 0;
        }
        self.data.len() as u64 * 8 * 1000 / u64::from(self.duration_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_path_is_flussonic_naming() {
        let seg = Segment {
            sequence: 1,
            start_ms: 1_647_936_397_000, // 2022-03-22T08:06:37Z
            duration_ms: 5000,
            discontinuity: false,
            data: Bytes::new(),
        };
        assert_eq!(seg.path(), "2022/03/22/08/06/37-05000.ts");
    }

    #[test]
    fn segment_paths_parse_back() {
        assert_eq!(
            SegmentName::parse("2022/03/22/08/06/37-05000.ts", ".ts"),
            Some(SegmentName {
                second_ms: 1_647_936_397_000,
                duration_ms: 5000
            })
        );
        for bad in [
            "2022/03/22/08/06/37-5000.ts",
            "2022/13/22/08/06/37-05000.ts",
            "x/03/22/08/06/37-05000.ts",
            "03/22/08/06/37-05000.ts",
            // real numbers, but not a real time's canonical spelling
            "2022/02/31/08/06/37-05000.ts",
            "2022/03/22/08/06/60-05000.ts",
            "2022/03/22/08/06/37-05000.ts/x",
        ] {
            assert_eq!(SegmentName::parse(bad, ".ts"), None, "{bad}");
        }
        let name = SegmentName::parse("2022/03/22/08/06/37-02000.m4s", ".m4s").unwrap();
        assert!(name.names(1_647_936_397_999, 2000));
        assert!(!name.names(1_647_936_398_000, 2000));
        assert!(!name.names(1_647_936_397_000, 2001));
        assert_eq!(
            SegmentName::parse("2022/03/22/08/06/37-02000.m4s", ".ts"),
            None
        );
    }

    #[test]
    fn tracks_and_codecs_follow_the_tracks_present() {
        let mut info = MediaInfo {
            video: Some(VideoInfo {
                codec: "avc1.42c01e".into(),
                width: 640,
                height: 360,
                frame_rate: None,
            }),
            audio: Some(AudioInfo {
                codec: "mp4a.40.2".into(),
                channels: 2,
                sample_rate: 48000,
            }),
        };
        assert_eq!(info.tracks_spec(), "v1a1");
        assert_eq!(info.codecs(), "avc1.42c01e,mp4a.40.2");
        info.audio = None;
        assert_eq!(info.tracks_spec(), "v1");
        assert_eq!(info.codecs(), "avc1.42c01e");
    }
}
