//! Track selectors of playback URLs (`/NAME/tracks-v2a1/…`), parsed once by the router into
//! [`Tracks`] (and [`Track`] where one track is meant), which the snapshot's lookups take:
//! no handler reads selector text again.

use std::fmt;

/// Which tracks a URL selects: a rendition's video (`vN`), an audio track (`aN`) or both
/// (`vNaM`). Numbers are 1-based in URLs, 0-based here; at least one is selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracks {
    /// The rendition whose video is selected.
    pub video: Option<usize>,
    /// The audio track selected (the stream has one: 0).
    pub audio: Option<usize>,
}

/// One fMP4 track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// A rendition's video, by index.
    Video(usize),
    /// An audio track, by index.
    Audio(usize),
}

/// Largest track number a URL may carry.
const MAX_NUMBER: usize = 99;

impl Tracks {
    /// `vN`, `aN` or `vNaM` (video first), numbers 1 to 99 without leading zeros; anything
    /// else (`t1`, two videos, audio first) is `None`.
    pub fn parse(spec: &str) -> Option<Tracks> {
        let mut rest = spec;
        let mut number = |letter: char| -> Option<Option<usize>> {
            let Some(after) = rest.strip_prefix(letter) else {
                return Some(None);
            };
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let text = &after[..digits];
            if digits == 0 || text.starts_with('0') {
                return None;
            }
            let n: usize = text.parse().ok().filter(|n| *n <= MAX_NUMBER)?;
            rest = &after[digits..];
            Some(Some(n - 1))
        };
        let video = number('v')?;
        let audio = number('a')?;
        (rest.is_empty() && (video.is_some() || audio.is_some())).then_some(Tracks { video, audio })
    }

    /// The one track selected; `None` when both are.
    pub fn single(self) -> Option<Track> {
        match (self.video, self.audio) {
            (Some(v), None) => Some(Track::Video(v)),
            (None, Some(a)) => Some(Track::Audio(a)),
            _ => None,
        }
    }

    /// The rendition of media that carries the stream's audio with a rendition's video
    /// (MPEG-TS, the archive, LL-HLS's muxed tracks): `vN` or `vNa1`.
    pub fn rendition(self) -> Option<usize> {
        match (self.video, self.audio) {
            (Some(v), None | Some(0)) => Some(v),
            _ => None,
        }
    }
}

impl Track {
    pub fn is_audio(self) -> bool {
        matches!(self, Track::Audio(_))
    }
}

impl fmt::Display for Tracks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(v) = self.video {
            write!(f, "v{}", v + 1)?;
        }
        if let Some(a) = self.audio {
            write!(f, "a{}", a + 1)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_once_and_print_back() {
        for (spec, video, audio) in [
            ("v1", Some(0), None),
            ("a1", None, Some(0)),
            ("v2a1", Some(1), Some(0)),
            ("v99a2", Some(98), Some(1)),
        ] {
            let t = Tracks::parse(spec).unwrap();
            assert_eq!((t.video, t.audio), (video, audio), "{spec}");
            assert_eq!(t.to_string(), spec);
        }
        for bad in [
            "", "v", "a", "v0", "v01", "v100", "a1v1", "v1v2", "v1a1a2", "v1a1t1", "t1", "x1",
            "v1 ", "v-1", "va1",
        ] {
            assert_eq!(Tracks::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn single_tracks_and_renditions() {
        let p = |s| Tracks::parse(s).unwrap();
        assert_eq!(p("v3").single(), Some(Track::Video(2)));
        assert_eq!(p("a1").single(), Some(Track::Audio(0)));
        assert_eq!(p("v1a1").single(), None);
        assert_eq!(p("v2").rendition(), Some(1));
        assert_eq!(p("v2a1").rendition(), Some(1));
        assert_eq!(
            p("v2a2").rendition(),
            None,
            "the stream has one audio track"
        );
        assert_eq!(p("a1").rendition(), None);
        assert!(Track::Audio(0).is_audio() && !Track::Video(0).is_audio());
    }
}
