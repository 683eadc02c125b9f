//! HLS playlist text (RFC 8216), in Flussonic's shape: master `index.m3u8` pointing at
//! `tracks-…/mono.m3u8`, media playlists with `EXT-X-PROGRAM-DATE-TIME` and segment paths
//! named by UTC start and duration.

use crate::media::{MediaInfo, Segment, utc::Civil};
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
        if i > 0 && seg.discontinuity {
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
    let target = target_ms
        .div_ceil(1000)
        .max((longest_ms + 500) / 1000)
        .max(1);
    out.push_str("#EXTM3U\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    out.push_str("#EXT-X-VERSION:3\n");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_seq}");
    if discontinuity_seq > 0 {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_seq}");
    }
}

/// `EXT-X-PROGRAM-DATE-TIME` for a segment starting at `start_ms` (UTC).
pub fn program_date_time(out: &mut String, start_ms: u64) {
    let pdt = Civil::from_unix_ms(start_ms).iso8601();
    let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{pdt}");
}

/// `EXTINF` with millisecond precision, then the segment URI.
pub fn segment_entry(out: &mut String, duration_ms: u32, path: &str) {
    let _ = writeln!(
        out,
        "#EXTINF:{}.{:03},",
        duration_ms / 1000,
        duration_ms % 1000
    );
    out.push_str(path);
    out.push('\n');
}

/// Renders the master playlist: one variant with the measured peak and average bandwidth
/// of the live window (bits/s, TS overhead included), resolution and codecs of the stream.
pub fn master_playlist(info: &MediaInfo, segments: &[Arc<Segment>]) -> String {
    let peak = segments.iter().map(|s| s.bitrate()).max().unwrap_or(0);
    let bytes: u64 = segments.iter().map(|s| s.data.len() as u64).sum();
    let ms: u64 = segments.iter().map(|s| u64::from(s.duration_ms)).sum();
    let average = (bytes * 8 * 1000).checked_div(ms).unwrap_or(0);
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = write!(
        out,
        "#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average}"
    );
    if let Some(v) = &info.video {
        let _ = write!(out, ",RESOLUTION={}x{}", v.width, v.height);
    }
    let _ = writeln!(out, ",CODECS=\"{}\"", info.codecs());
    let _ = writeln!(out, "tracks-{}/mono.m3u8", info.tracks_spec());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{AudioInfo, VideoInfo};
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

    #[test]
    fn master_playlist_exact_text() {
        let info = MediaInfo {
            video: Some(VideoInfo {
                codec: "avc1.42c01e".into(),
                width: 640,
                height: 360,
            }),
            audio: Some(AudioInfo {
                codec: "mp4a.40.2".into(),
                channels: 2,
                sample_rate: 48000,
            }),
        };
        // 250,000 B in 2 s = 1,000,000 bit/s; 125,000 B in 2 s = 500,000 bit/s.
        let segs = [
            seg(1, 0, 2000, false, 250_000),
            seg(2, 2000, 2000, false, 125_000),
        ];
        assert_eq!(
            master_playlist(&info, &segs),
            "#EXTM3U\n\
             #EXT-X-VERSION:3\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1000000,AVERAGE-BANDWIDTH=750000,RESOLUTION=640x360,CODECS=\"avc1.42c01e,mp4a.40.2\"\n\
             tracks-v1a1/mono.m3u8\n"
        );
    }
}
