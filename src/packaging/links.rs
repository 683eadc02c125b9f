//! Carries a viewer's query parameter (`token=…`) into every URL a playlist or manifest
//! names, as Flussonic does, so that players which resolve relative URLs (and drop the
//! query) still present it on each request: HLS URI lines and `URI="…"` attributes, DASH
//! `initialization`/`media` templates and `BaseURL`s. Pure text work on the shared snapshot
//! text; the result belongs to one viewer.

/// Which text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manifest {
    Hls,
    Dash,
}

/// Whether `pair` may be pasted into URLs and XML attributes as is: `key=value` of URL
/// characters that need no escaping in either (no quotes, `<`, `>`, `&`, spaces or controls).
pub fn safe_pair(pair: &str) -> bool {
    pair.len() <= 300
        && pair
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%+=/:,!*".contains(&b))
}

/// `url` with `pair` appended to its query.
fn with_pair(url: &str, pair: &str, out: &mut String) {
    out.push_str(url);
    out.push(if url.contains('?') { '&' } else { '?' });
    out.push_str(pair);
}

/// The playlist or manifest `text` with `pair` (checked by [`safe_pair`]) added to its URLs.
pub fn add_query(text: &str, manifest: Manifest, pair: &str) -> String {
    match manifest {
        Manifest::Hls => hls(text, pair),
        Manifest::Dash => dash(text, pair),
    }
}

fn hls(text: &str, pair: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let end = &line[body.len()..];
        if body.starts_with('#') {
            attributes(body, "URI=\"", pair, &mut out);
        } else if body.trim().is_empty() {
            out.push_str(body);
        } else {
            with_pair(body, pair, &mut out);
        }
        out.push_str(end);
    }
    out
}

/// Copies `text`, adding `pair` inside every `prefix…"` value.
fn attributes(text: &str, prefix: &str, pair: &str, out: &mut String) {
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let start = at + prefix.len();
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('"') else {
            rest = &rest[start..];
            break;
        };
        with_pair(&rest[start..start + len], pair, out);
        rest = &rest[start + len..];
    }
    out.push_str(rest);
}

fn dash(text: &str, pair: &str) -> String {
    let mut step = String::with_capacity(text.len() + 64);
    attributes(text, "initialization=\"", pair, &mut step);
    let mut media = String::with_capacity(step.len() + 64);
    attributes(&step, " media=\"", pair, &mut media);
    let mut out = String::with_capacity(media.len() + 64);
    let mut rest = media.as_str();
    while let Some(at) = rest.find("<BaseURL>") {
        let start = at + "<BaseURL>".len();
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find("</BaseURL>") else {
            rest = &rest[start..];
            break;
        };
        with_pair(&rest[start..start + len], pair, &mut out);
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hls_uris_and_attributes_get_the_token() {
        let master = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",URI=\"tracks-a1/index.fmp4.m3u8\"\n\
                      #EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"avc1.4d401f,mp4a.40.2\"\ntracks-v1/index.fmp4.m3u8\n";
        let out = add_query(master, Manifest::Hls, "token=abc");
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",URI=\"tracks-a1/index.fmp4.m3u8?token=abc\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"avc1.4d401f,mp4a.40.2\"\ntracks-v1/index.fmp4.m3u8?token=abc\n"
        );
        let media = "#EXTM3U\r\n#EXT-X-MAP:URI=\"init.mp4\"\r\n#EXTINF:2.000,\r\n2026/01/01/00/00/00-02000.m4s\r\n\r\n";
        let out = add_query(media, Manifest::Hls, "token=x");
        assert_eq!(
            out,
            "#EXTM3U\r\n#EXT-X-MAP:URI=\"init.mp4?token=x\"\r\n#EXTINF:2.000,\r\n2026/01/01/00/00/00-02000.m4s?token=x\r\n\r\n"
        );
        assert_eq!(
            add_query("a.ts?x=1", Manifest::Hls, "token=t"),
            "a.ts?x=1&token=t"
        );
    }

    #[test]
    fn dash_templates_get_the_token() {
        let mpd = "<MPD><BaseURL>http://h/s/</BaseURL><SegmentTemplate timescale=\"90000\" \
                   initialization=\"tracks-$RepresentationID$/init.mp4\" media=\"tracks-$RepresentationID$/$Number$.m4s\" startNumber=\"1\"/>\
                   <UTCTiming value=\"http://h/time\"/></MPD>";
        let out = add_query(mpd, Manifest::Dash, "token=abc");
        assert!(
            out.contains("<BaseURL>http://h/s/?token=abc</BaseURL>"),
            "{out}"
        );
        assert!(out.contains("initialization=\"tracks-$RepresentationID$/init.mp4?token=abc\""));
        assert!(out.contains("media=\"tracks-$RepresentationID$/$Number$.m4s?token=abc\""));
        assert!(
            out.contains("value=\"http://h/time\""),
            "the clock needs no token"
        );
    }

    #[test]
    fn only_plain_pairs_are_pasted() {
        assert!(safe_pair("token=abc-123_x.y%2B"));
        for bad in [
            "token=a\"b",
            "token=a b",
            "token=<x>",
            "token=a&b",
            "token=a\nb",
        ] {
            assert!(!safe_pair(bad), "{bad}");
        }
    }
}
