//! RFC 6381 codec strings read from the real bitstream and caps, for HLS `CODECS`.

/// `avc1.PPCCLL` from the first SPS NAL unit in an Annex-B access unit.
pub fn avc_codec_string(annex_b: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 3 < annex_b.len() {
        let start_code = annex_b[i] == 0 && annex_b[i + 1] == 0 && annex_b[i + 2] == 1;
        if start_code {
            let nal = &annex_b[i + 3..];
            if nal.len() >= 4 && nal[0] & 0x1f == 7 {
                return Some(format!("avc1.{:02x}{:02x}{:02x}", nal[1], nal[2], nal[3]));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    None
}

/// `mp4a.40.N` from the AAC profile name GStreamer puts in caps (`lc`, `he-aac`, …).
pub fn aac_codec_string(profile: Option<&str>) -> String {
    let object_type = match profile {
        Some("main") => 1,
        Some("he-aac" | "sbr") => 5,
        Some("he-aac-v2" | "ps") => 29,
        Some("ltp") => 4,
        _ => 2, // LC, and what players assume when nothing is said
    };
    format!("mp4a.40.{object_type}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_string_from_sps() {
        // AUD, then SPS for Constrained Baseline 3.0 (42 C0 1E).
        let au = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0xd9, 0, 0, 1, 0x68,
        ];
        assert_eq!(avc_codec_string(&au).as_deref(), Some("avc1.42c01e"));
        assert_eq!(avc_codec_string(&[0, 0, 1, 0x65, 1, 2, 3]), None);
        assert_eq!(avc_codec_string(&[]), None);
    }

    #[test]
    fn aac_profiles() {
        assert_eq!(aac_codec_string(Some("lc")), "mp4a.40.2");
        assert_eq!(aac_codec_string(Some("he-aac")), "mp4a.40.5");
        assert_eq!(aac_codec_string(None), "mp4a.40.2");
    }
}
