//! HLS playlist text (RFC 8216), in Flussonic's shape: master `index.m3u8` pointing at
//! `tracks-…/mono.m3u8`, media playlists with `EXT-X-PROGRAM-DATE-TIME` and segment paths
//! named by UTC start and duration.

use super::snapshot::FragmentEntry;
use crate::media::utc::{Civil, extend_padded, push_padded};
use crate::media::{MediaInfo, Segment};
use std::fmt::Write;
use std::sync::Arc;

/// Renders the live media playlist for `segments` (oldest first, not empty).
///
/// `EXT-X-TARGETDURATION` is the configured duration rounded up, raised when a real segment is
/// longer, so that every rounded `EXTINF` stays within it as RFC 8216 §4.3.3.1 requires.
pub fn media_playlist(segments: &[Arc<Segment>], target_ms: u32, discontinuity_seq: u64) -> String {
    let longest = segments.iter().map(|s| s.duration_ms).max().unwrap_or(0);
    let first_seq = segments.first().map_or(0, |s| s.sequence);
    let mut out = String::with_capacity(128 + segments.len() * 96);
    media_header(&mut out, longest, target_ms, first_seq, discontinuity_seq);
    for (i, seg) in segments.iter().enumerate() {
        if seg.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if i == 0 || seg.discontinuity {
            program_date_time(&mut out, seg.start_ms);
        }
        segment_entry(&mut out, seg.duration_ms, &seg.path());
    }
    out
}

/// The head every media playlist (live or archive) starts with. `EXT-X-TARGETDURATION` is the
/// configured duration rounded up, raised when a real segment is longer, so that every
/// rounded `EXTINF` stays within it (RFC 8216 §4.3.3.1).
pub fn media_header(
    out: &mut String,
    longest_ms: u32,
    target_ms: u32,
    first_seq: u64,
    discontinuity_seq: u64,
) {
    media_header_version(out, longest_ms, target_ms, first_seq, discontinuity_seq, 3);
}

/// [`media_header`] with an explicit `EXT-X-VERSION` (7 for fMP4 with `EXT-X-MAP`).
pub fn media_header_version(
    out: &mut String,
    longest_ms: u32,
    target_ms: u32,
    first_seq: u64,
    discontinuity_seq: u64,
    version: u8,
) {
    let target = target_ms
        .div_ceil(1000)
        .max((longest_ms + 500) / 1000)
        .max(1);
    out.push_str("#EXTM3U\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(out, "#EXT-X-VERSION:{version}");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_seq}");
    if discontinuity_seq > 0 {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_seq}");
    }
}

/// `EXT-X-PROGRAM-DATE-TIME` for a segment starting at `start_ms` (UTC).
pub fn program_date_time(out: &mut String, start_ms: u64) {
    program_date_time_civil(out, &Civil::from_unix_ms(start_ms));
}

/// [`program_date_time`] of a time already broken down, onto bytes.
pub fn extend_program_date_time(out: &mut Vec<u8>, start: &Civil) {
    out.extend_from_slice(b"#EXT-X-PROGRAM-DATE-TIME:");
    start.extend_iso8601(out);
    out.push(b'\n');
}

fn program_date_time_civil(out: &mut String, start: &Civil) {
    out.push_str("#EXT-X-PROGRAM-DATE-TIME:");
    start.push_iso8601(out);
    out.push('\n');
}

/// `EXTINF` with millisecond precision, then the segment URI.
pub fn segment_entry(out: &mut String, duration_ms: u32, path: &str) {
    extinf(out, duration_ms);
    out.push_str(path);
    out.push('\n');
}

fn extinf(out: &mut String, duration_ms: u32) {
    out.push_str("#EXTINF:");
    push_padded(out, u64::from(duration_ms / 1000), 1);
    out.push('.');
    push_padded(out, u64::from(duration_ms % 1000), 3);
    out.push_str(",\n");
}

/// `#EXTINF:S.mmm,` and a line end, onto bytes.
pub fn extend_extinf(out: &mut Vec<u8>, duration_ms: u32) {
    out.extend_from_slice(b"#EXTINF:");
    extend_padded(out, u64::from(duration_ms / 1000), 1);
    out.push(b'.');
    extend_padded(out, u64::from(duration_ms % 1000), 3);
    out.extend_from_slice(b",\n");
}

/// One variant of a master playlist.
#[derive(Debug, Clone, Copy)]
pub struct Variant<'a> {
    pub media: &'a MediaInfo,
    /// Peak and average bits/s (the live window's measure, audio included).
    pub peak: u64,
    pub average: u64,
    /// Media playlist URI relative to the master.
    pub uri: &'a str,
}

/// Peak and average bits/s of segments given as (bytes, duration ms).
pub fn bitrates(items: impl Iterator<Item = (u64, u32)>) -> (u64, u64) {
    let (mut peak, mut bytes, mut ms) = (0u64, 0u64, 0u64);
    for (len, dur) in items {
        if dur > 0 {
            peak = peak.max(len * 8 * 1000 / u64::from(dur));
        }
        bytes += len;
        ms += u64::from(dur);
    }
    (peak, (bytes * 8 * 1000).checked_div(ms).unwrap_or(0))
}

/// Peak and average bits/s of a window of TS segments (TS overhead included).
pub fn segment_bitrates(segments: &[Arc<Segment>]) -> (u64, u64) {
    bitrates(
        segments
            .iter()
            .map(|s| (s.data.len() as u64, s.duration_ms)),
    )
}

/// The audio group every variant refers to; `uri` is `None` when the audio is muxed into
/// each variant's segments (MPEG-TS), the playlist of the audio track otherwise (fMP4).
fn audio_group(out: &mut String, media: &MediaInfo, uri: Option<&str>) {
    let Some(audio) = &media.audio else {
        return;
    };
    let _ = write!(
        out,
        "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{AUDIO_GROUP}\",NAME=\"a1\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"{}\"",
        audio.channels.max(1)
    );
    if let Some(uri) = uri {
        let _ = write!(out, ",URI=\"{uri}\"");
    }
    out.push('\n');
}

/// `GROUP-ID` of the audio rendition group.
const AUDIO_GROUP: &str = "audio";

fn stream_inf(out: &mut String, v: &Variant<'_>, codecs: &str) {
    let _ = write!(
        out,
        "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={}",
        v.peak, v.average
    );
    if let Some(video) = &v.media.video {
        let _ = write!(out, ",RESOLUTION={}x{}", video.width, video.height);
        if let Some((n, d)) = video.frame_rate {
            let _ = write!(out, ",FRAME-RATE={:.3}", f64::from(n) / f64::from(d));
        }
    }
    if !codecs.is_empty() {
        let _ = write!(out, ",CODECS=\"{codecs}\"");
    }
    if v.media.audio.is_some() {
        let _ = write!(out, ",AUDIO=\"{AUDIO_GROUP}\"");
    }
    let _ = writeln!(out, "\n{}", v.uri);
}

/// The MPEG-TS master playlist: one variant per rendition (best first), audio muxed into
/// each and announced as a group.
pub fn master_playlist(variants: &[Variant<'_>]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    if let Some(first) = variants.first() {
        audio_group(&mut out, first.media, None);
    }
    for v in variants {
        stream_inf(&mut out, v, &v.media.codecs());
    }
    out
}

/// The LL-HLS master playlist: one variant per rendition (best first), the audio, where there
/// is any, in each variant's own parts (its codec in `CODECS`, no audio group: a player then
/// loads one track, not two).
pub fn ll_master_playlist(variants: &[Variant<'_>]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        let video_only = MediaInfo {
            video: v.media.video.clone(),
            audio: None,
        };
        stream_inf(
            &mut out,
            &Variant {
                media: &video_only,
                ..*v
            },
            &v.media.codecs(),
        );
    }
    out
}

/// The fMP4 master playlist (version 7): video-only variants plus the audio track as an
/// alternative rendition with its own playlist.
pub fn fmp4_master_playlist(variants: &[Variant<'_>], audio_uri: Option<&str>) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    if let (Some(first), Some(uri)) = (variants.first(), audio_uri) {
        audio_group(&mut out, first.media, Some(uri));
    }
    for v in variants {
        let media = if audio_uri.is_some() {
            v.media.clone()
        } else {
            MediaInfo {
                video: v.media.video.clone(),
                audio: None,
            }
        };
        stream_inf(
            &mut out,
            &Variant {
                media: &media,
                ..*v
            },
            &media.codecs(),
        );
    }
    out
}

/// A live fMP4 media playlist (version 7) of one track: `EXT-X-MAP` names the init segment
/// (again where a fragment needs a newer one), fragments are named like the TS segments with
/// `.m4s`.
pub fn fmp4_playlist(
    fragments: &[Arc<FragmentEntry>],
    target_ms: u32,
    discontinuity_seq: u64,
) -> String {
    let longest = fragments.iter().map(|s| s.duration_ms).max().unwrap_or(0);
    let first_seq = fragments.first().map_or(0, |s| s.sequence);
    let mut out = String::with_capacity(160 + fragments.len() * 96);
    media_header_version(
        &mut out,
        longest,
        target_ms,
        first_seq,
        discontinuity_seq,
        7,
    );
    let mut map = None;
    for (i, f) in fragments.iter().enumerate() {
        if f.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        // A new init segment (new codec configuration) applies from this fragment on.
        if map != Some(f.init.version) {
            map = Some(f.init.version);
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"{}\"",
                super::init_name(f.init.version)
            );
        }
        if i == 0 || f.discontinuity {
            program_date_time(&mut out, f.start_ms);
        }
        segment_entry(&mut out, f.duration_ms, &f.path());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{AudioInfo, VideoInfo};
    use crate::packaging::InitSegment;
    use bytes::Bytes;

    fn seg(sequence: u64, start_ms: u64, duration_ms: u32, disc: bool, len: usize) -> Arc<Segment> {
        Arc::new(Segment {
            sequence,
            start_ms,
            duration_ms,
            discontinuity: disc,
            data: Bytes::from(vec![0x47; len]),
        })
    }

    #[test]
    fn media_playlist_exact_text() {
        let t0 = 1_647_936_397_000; // 2022-03-22T08:06:37Z
        let segs = [
            seg(38530, t0, 2000, false, 188),
            seg(38531, t0 + 2000, 2040, false, 188),
            seg(38532, t0 + 4040, 1960, false, 188),
        ];
        assert_eq!(
            media_playlist(&segs, 2000, 0),
            "#EXTM3U\n\
             #EXT-X-TARGETDURATION:2\n\
             #EXT-X-VERSION:3\n\
             #EXT-X-MEDIA-SEQUENCE:38530\n\
             #EXT-X-PROGRAM-DATE-TIME:2022-03-22T08:06:37.000Z\n\
             #EXTINF:2.000,\n\
             2022/03/22/08/06/37-02000.ts\n\
             #EXTINF:2.040,\n\
             2022/03/22/08/06/39-02040.ts\n\
             #EXTINF:1.960,\n\
             2022/03/22/08/06/41-01960.ts\n"
        );
    }

    /// A tag stays in front of the first segment until that segment leaves the window (and
    /// the discontinuity sequence counts it): every segment keeps its discontinuity number.
    #[test]
    fn discontinuity_and_long_segments() {
        let t0 = 1_647_936_397_000;
        let segs = [
            seg(7, t0, 2000, true, 188),
            seg(8, t0 + 2000, 1200, false, 188),
            seg(9, t0 + 5250, 2600, true, 188),
        ];
        assert_eq!(
            media_playlist(&segs, 2000, 4),
            "#EXTM3U\n\
             #EXT-X-TARGETDURATION:3\n\
             #EXT-X-VERSION:3\n\
             #EXT-X-MEDIA-SEQUENCE:7\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:4\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:2022-03-22T08:06:37.000Z\n\
             #EXTINF:2.000,\n\
             2022/03/22/08/06/37-02000.ts\n\
             #EXTINF:1.200,\n\
             2022/03/22/08/06/39-01200.ts\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:2022-03-22T08:06:42.250Z\n\
             #EXTINF:2.600,\n\
             2022/03/22/08/06/42-02600.ts\n"
        );
    }

    fn info(width: u32, height: u32) -> MediaInfo {
        MediaInfo {
            video: Some(VideoInfo {
                codec: "avc1.4d401e".into(),
                width,
                height,
                frame_rate: Some((25, 1)),
            }),
            audio: Some(AudioInfo {
                codec: "mp4a.40.2".into(),
                channels: 2,
                sample_rate: 48000,
            }),
        }
    }

    #[test]
    fn master_playlist_exact_text() {
        // 250,000 B in 2 s = 1,000,000 bit/s; 125,000 B in 2 s = 500,000 bit/s.
        let segs = [
            seg(1, 0, 2000, false, 250_000),
            seg(2, 2000, 2000, false, 125_000),
        ];
        let (peak, average) = segment_bitrates(&segs);
        assert_eq!((peak, average), (1_000_000, 750_000));
        let (hi, lo) = (info(640, 360), info(320, 180));
        let variants = [
            Variant {
                media: &hi,
                peak,
                average,
                uri: "tracks-v1a1/mono.m3u8",
            },
            Variant {
                media: &lo,
                peak: 400_000,
                average: 350_000,
                uri: "tracks-v2a1/mono.m3u8",
            },
        ];
        assert_eq!(
            master_playlist(&variants),
            "#EXTM3U\n\
             #EXT-X-VERSION:4\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"a1\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1000000,AVERAGE-BANDWIDTH=750000,RESOLUTION=640x360,FRAME-RATE=25.000,CODECS=\"avc1.4d401e,mp4a.40.2\",AUDIO=\"audio\"\n\
             tracks-v1a1/mono.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=400000,AVERAGE-BANDWIDTH=350000,RESOLUTION=320x180,FRAME-RATE=25.000,CODECS=\"avc1.4d401e,mp4a.40.2\",AUDIO=\"audio\"\n\
             tracks-v2a1/mono.m3u8\n"
        );
        assert_eq!(
            fmp4_master_playlist(&variants[..1], Some("tracks-a1/index.fmp4.m3u8")),
            "#EXTM3U\n\
             #EXT-X-VERSION:7\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"a1\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"tracks-a1/index.fmp4.m3u8\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1000000,AVERAGE-BANDWIDTH=750000,RESOLUTION=640x360,FRAME-RATE=25.000,CODECS=\"avc1.4d401e,mp4a.40.2\",AUDIO=\"audio\"\n\
             tracks-v1a1/mono.m3u8\n"
        );
    }

    #[test]
    fn fmp4_playlist_exact_text() {
        let t0 = 1_647_936_397_000;
        let frag = |sequence: u64, start_ms: u64, disc: bool| {
            Arc::new(FragmentEntry {
                sequence,
                start_ms,
                duration_ms: 2000,
                discontinuity: disc,
                data: Bytes::new(),
                base_time: 0,
                duration: 180_000,
                timescale: 90_000,
                init: Arc::new(InitSegment {
                    version: u32::from(sequence == 7),
                    ..InitSegment::default()
                }),
            })
        };
        assert_eq!(
            fmp4_playlist(
                &[
                    frag(5, t0, false),
                    frag(6, t0 + 3000, true),
                    frag(7, t0 + 5000, false)
                ],
                2000,
                1
            ),
            "#EXTM3U\n\
             #EXT-X-TARGETDURATION:2\n\
             #EXT-X-VERSION:7\n\
             #EXT-X-MEDIA-SEQUENCE:5\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:1\n\
             #EXT-X-MAP:URI=\"init.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:2022-03-22T08:06:37.000Z\n\
             #EXTINF:2.000,\n\
             2022/03/22/08/06/37-02000.m4s\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:2022-03-22T08:06:40.000Z\n\
             #EXTINF:2.000,\n\
             2022/03/22/08/06/40-02000.m4s\n\
             #EXT-X-MAP:URI=\"init-1.mp4\"\n\
             #EXTINF:2.000,\n\
             2022/03/22/08/06/42-02000.m4s\n"
        );
    }
}
