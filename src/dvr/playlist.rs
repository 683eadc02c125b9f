//! HLS playlists over the archive (pure text): VOD for closed ranges, EVENT for ranges that
//! grow, and sliding live windows for rewind/timeshift. Gaps become `EXT-X-DISCONTINUITY`;
//! every segment carries `EXT-X-PROGRAM-DATE-TIME` so players can show wall-clock time.

use super::index::{Entry, GAP_MS};
use crate::media::utc::Civil;
use crate::packaging::hls;

/// Which kind of playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Closed range: `EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`.
    Vod,
    /// Append-only from a fixed start: `EXT-X-PLAYLIST-TYPE:EVENT`.
    Event,
    /// A sliding window, like live.
    Live,
}

/// Renders `entries` (oldest first, not empty). `discontinuity_seq` counts the breaks before
/// the first entry (for sliding windows).
pub fn render(entries: &[Entry], kind: Kind, target_ms: u32, discontinuity_seq: u64) -> String {
    let longest = entries.iter().map(|e| e.duration_ms).max().unwrap_or(0);
    let first_seq = entries.first().map_or(0, |e| e.seq);
    let mut header = String::with_capacity(160);
    hls::media_header(
        &mut header,
        longest,
        target_ms,
        first_seq,
        discontinuity_seq,
    );
    match kind {
        Kind::Vod => header.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n"),
        Kind::Event => header.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n"),
        Kind::Live => {}
    }
    // Written as bytes (43,200 entries for a day: formatting machinery per field cost more
    // than the rest), checked as text once at the end.
    let mut out = header.into_bytes();
    out.reserve(entries.len() * 110 + 16);
    let mut prev: Option<&Entry> = None;
    for e in entries {
        if prev.is_some_and(|p| breaks(p, e)) {
            out.extend_from_slice(b"#EXT-X-DISCONTINUITY\n");
        }
        // One breakdown of the start serves the date and the path.
        let start = Civil::from_unix_ms(e.start_ms);
        hls::extend_program_date_time(&mut out, &start);
        hls::extend_extinf(&mut out, e.duration_ms);
        start.extend_segment_path(&mut out, e.duration_ms, b".ts\n");
        prev = Some(e);
    }
    if kind == Kind::Vod {
        out.extend_from_slice(b"#EXT-X-ENDLIST\n");
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `next` does not continue `prev`: flagged, or after a gap.
pub fn breaks(prev: &Entry, next: &Entry) -> bool {
    next.discontinuity || next.start_ms > prev.end_ms() + GAP_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(seq: u64, start_ms: u64, duration_ms: u32, discontinuity: bool) -> Entry {
        Entry {
            start_ms,
            duration_ms,
            size: 1,
            discontinuity,
            seq,
        }
    }

    #[test]
    fn vod_with_a_gap() {
        let t0 = 1_647_936_397_000; // 2022-03-22T08:06:37Z
        let entries = [
            e(5, t0, 2000, false),
            e(6, t0 + 2000, 2000, false),
            e(7, t0 + 30_000, 2500, false),
        ];
        assert_eq!(
            render(&entries, Kind::Vod, 2000, 0),
            "#EXTM3U\n\
             #EXT-X-TARGETDURATION:3\n\
             #EXT-X-VERSION:3\n\
             #EXT-X-MEDIA-SEQUENCE:5\n\
             #EXT-X-PLAYLIST-TYPE:VOD\n\
             #EXT-X-PROGRAM-DATE-TIME:2022-03-22T08:06:37.000Z\n\
             #EXTINF:2.000,\n\
             2022/03/22/08/06/37-02000.ts\n\
             #EXT-X-PROGRAM-DATE-TIME:2022-03-22T08:06:39.000Z\n\
             #EXTINF:2.000,\n\
             2022/03/22/08/06/39-02000.ts\n\
             #EXT-X-DISCONTINUITY\n\
             #EXT-X-PROGRAM-DATE-TIME:2022-03-22T08:07:07.000Z\n\
             #EXTINF:2.500,\n\
             2022/03/22/08/07/07-02500.ts\n\
             #EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn event_and_live_headers() {
        let t0 = 1_647_936_397_000;
        let entries = [e(1, t0, 2000, true), e(2, t0 + 2000, 2000, true)];
        let event = render(&entries, Kind::Event, 2000, 0);
        assert!(event.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n") && !event.contains("ENDLIST"));
        assert_eq!(
            event.matches("#EXT-X-DISCONTINUITY\n").count(),
            1,
            "none before the first"
        );
        let live = render(&entries, Kind::Live, 2000, 3);
        assert!(
            live.contains("#EXT-X-DISCONTINUITY-SEQUENCE:3\n") && !live.contains("PLAYLIST-TYPE")
        );
    }
}
