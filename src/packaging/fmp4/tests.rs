//! End-to-end tests on a real `mpegtsmux` capture: three 1 s segments of 160x90 H.264
//! (High, B-frames) at 25 fps plus AAC-LC 48 kHz stereo.

use super::*;

const SEGMENTS: [&[u8]; 3] = [
    include_bytes!("../../../tests/fixtures/fmp4/seg0.ts"),
    include_bytes!("../../../tests/fixtures/fmp4/seg1.ts"),
    include_bytes!("../../../tests/fixtures/fmp4/seg2.ts"),
];

/// Boxes directly inside `data`: (type, offset of the box in `data`, body).
fn children(data: &[u8]) -> Vec<([u8; 4], usize, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        assert!(
            size >= 8 && at + size <= data.len(),
            "bad box size {size} at {at}"
        );
        out.push((
            data[at + 4..at + 8].try_into().unwrap(),
            at,
            &data[at + 8..at + size],
        ));
        at += size;
    }
    assert_eq!(at, data.len(), "trailing bytes");
    out
}

/// Body of the first box along `path`; `skip` bytes of each container's body come first.
fn find<'a>(data: &'a [u8], path: &[(&[u8; 4], usize)]) -> &'a [u8] {
    let mut body = data;
    for (kind, skip) in path {
        body = children(body)
            .into_iter()
            .find(|(k, _, _)| k == *kind)
            .map(|(_, _, b)| b)
            .unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(*kind)));
        body = &body[*skip..];
    }
    body
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

/// (sequence, tfdt, data_offset, per-sample sizes, mdat offset, mdat payload length)
fn walk_fragment(data: &[u8]) -> (u32, u64, usize, Vec<u32>, usize, usize) {
    let top = children(data);
    let kinds: Vec<&[u8; 4]> = top.iter().map(|(k, _, _)| k).collect();
    assert_eq!(kinds, [b"styp", b"moof", b"mdat"]);
    let (_, moof_at, moof) = top[1];
    let (_, mdat_at, mdat) = top[2];
    let seq = be32(&find(moof, &[(b"mfhd", 4)])[..4]);
    let traf = find(moof, &[(b"traf", 0)]);
    let tfhd = find(traf, &[(b"tfhd", 0)]);
    assert_eq!(be32(tfhd), 0x0002_0000);
    let tfdt = find(traf, &[(b"tfdt", 0)]);
    assert_eq!(tfdt[0], 1, "tfdt version 1");
    let tfdt = u64::from_be_bytes(tfdt[4..12].try_into().unwrap());
    let trun = find(traf, &[(b"trun", 0)]);
    let flags = be32(trun) & 0xff_ffff;
    let count = be32(&trun[4..]) as usize;
    let offset = be32(&trun[8..]) as usize;
    let stride = 4 * (flags & 0xf00).count_ones() as usize;
    let size_at = if flags & 0x100 != 0 { 4 } else { 0 };
    let sizes = (0..count)
        .map(|i| be32(&trun[12 + i * stride + size_at..]))
        .collect();
    (seq, tfdt, moof_at + offset, sizes, mdat_at + 8, mdat.len())
}

fn demux_all() -> Vec<Demuxed> {
    SEGMENTS.iter().map(|s| demux(s).unwrap()).collect()
}

#[test]
fn demux_counts_match_ffprobe() {
    let d = demux_all();
    let video: Vec<usize> = d.iter().map(|d| d.video.len()).collect();
    let keys: Vec<usize> = d
        .iter()
        .map(|d| d.video.iter().filter(|v| v.keyframe).count())
        .collect();
    let audio: Vec<usize> = d.iter().map(|d| d.audio.len()).collect();
    assert_eq!(video, [25, 25, 25]);
    assert_eq!(keys, [1, 1, 1]);
    assert_eq!(audio, [44, 46, 52]);
    for seg in &d {
        assert!(seg.video[0].keyframe);
        assert!(seg.video.windows(2).all(|w| w[1].dts == w[0].dts + 3600));
        assert!(seg.video.iter().any(|v| v.pts != v.dts), "B-frames reorder");
        let avc = seg.avc_config().unwrap();
        assert_eq!(avc.dimensions(), Some((160, 90)));
        assert_eq!(
            avc.codec_string(),
            format!("avc1.64{:02x}{:02x}", avc.sps[2], avc.sps[3])
        );
        let aac = seg.aac_config().unwrap();
        assert_eq!(
            (
                aac.object_type,
                aac.sample_rate,
                aac.sampling_index,
                aac.channels
            ),
            (2, 48_000, 3, 2)
        );
        assert_eq!(aac.codec_string(), "mp4a.40.2");
        // AVCC: length prefixes tile each sample exactly; no AUD/SPS/PPS left.
        for v in &seg.video {
            let mut rest = v.data.as_slice();
            while !rest.is_empty() {
                let len = be32(rest) as usize;
                assert!(!matches!(rest[4] & 0x1f, 7..=9));
                rest = &rest[4 + len..];
            }
        }
    }
    // First video DTS of the capture: mpegtsmux starts at 3600 s (minus B-frame delay).
    assert_eq!(d[1].video[0].dts - d[0].video[0].dts, 90_000);
    assert!(d[0].audio_lead().unwrap().abs() < 90_000);
}

#[test]
fn video_init_boxes() {
    let d = demux(SEGMENTS[0]).unwrap();
    let avc = d.avc.unwrap();
    let init = video_init(&avc, 160, 90);
    let top = children(&init);
    assert_eq!(top[0].0, *b"ftyp");
    assert_eq!(&top[0].2[..4], b"iso6");
    assert!(top[0].2.windows(4).any(|w| w == b"cmfc"));
    let stbl = &[
        (b"moov", 0),
        (b"trak", 0),
        (b"mdia", 0),
        (b"minf", 0),
        (b"stbl", 0),
    ];
    let stsd = find(&init, &[stbl.as_slice(), &[(b"stsd", 8)]].concat());
    let avc1 = find(stsd, &[(b"avc1", 0)]);
    assert_eq!(u16::from_be_bytes([avc1[24], avc1[25]]), 160);
    assert_eq!(u16::from_be_bytes([avc1[26], avc1[27]]), 90);
    let avcc = find(&avc1[78..], &[(b"avcC", 0)]);
    let mut expected = vec![1, avc.sps[1], avc.sps[2], avc.sps[3], 0xff, 0xe1];
    expected.extend_from_slice(&(avc.sps.len() as u16).to_be_bytes());
    expected.extend_from_slice(&avc.sps);
    expected.push(1);
    expected.extend_from_slice(&(avc.pps.len() as u16).to_be_bytes());
    expected.extend_from_slice(&avc.pps);
    expected.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0]); // High: 4:2:0, 8 bit
    assert_eq!(avcc, expected.as_slice());
    let mdhd = find(
        &init,
        &[(b"moov", 0), (b"trak", 0), (b"mdia", 0), (b"mdhd", 0)],
    );
    assert_eq!(be32(&mdhd[12..]), VIDEO_TIMESCALE);
    let hdlr = find(
        &init,
        &[(b"moov", 0), (b"trak", 0), (b"mdia", 0), (b"hdlr", 0)],
    );
    assert_eq!(&hdlr[8..12], b"vide");
    let trex = find(&init, &[(b"moov", 0), (b"mvex", 0), (b"trex", 4)]);
    assert_eq!((be32(trex), be32(&trex[4..])), (1, 1));
}

#[test]
fn audio_init_boxes() {
    let aac = demux(SEGMENTS[0]).unwrap().aac.unwrap();
    let init = audio_init(&aac);
    let stbl = [
        (b"moov", 0),
        (b"trak", 0),
        (b"mdia", 0),
        (b"minf", 0),
        (b"stbl", 0),
        (b"stsd", 8),
    ];
    let mp4a = find(&init, &stbl);
    let mp4a = find(mp4a, &[(b"mp4a", 0)]);
    assert_eq!(u16::from_be_bytes([mp4a[16], mp4a[17]]), 2);
    assert_eq!(be32(&mp4a[24..]), 48_000 << 16);
    let esds = find(&mp4a[28..], &[(b"esds", 4)]);
    assert_eq!(
        esds,
        [
            3, 25, 0, 1, 0, // ES_Descriptor
            4, 17, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // DecoderConfigDescriptor
            5, 2, 0x11, 0x90, // AudioSpecificConfig: LC, 48 kHz, stereo
            6, 1, 2 // SLConfigDescriptor
        ]
    );
    let mdhd = find(
        &init,
        &[(b"moov", 0), (b"trak", 0), (b"mdia", 0), (b"mdhd", 0)],
    );
    assert_eq!(be32(&mdhd[12..]), 48_000);
}

/// Checks offsets/sizes of each fragment and returns (sequence, tfdt, duration) per fragment.
fn check_fragments(frags: &[Fragment]) -> Vec<(u32, u64, u64)> {
    frags
        .iter()
        .map(|f| {
            let (seq, tfdt, data_at, sizes, payload_at, payload_len) = walk_fragment(&f.data);
            assert_eq!(
                data_at, payload_at,
                "data_offset points at the mdat payload"
            );
            assert_eq!(
                sizes.iter().map(|&s| s as usize).sum::<usize>(),
                payload_len
            );
            assert_eq!(sizes.len(), f.samples as usize);
            assert_eq!((seq, tfdt), (f.sequence, f.base_time));
            (seq, tfdt, f.duration)
        })
        .collect()
}

#[test]
fn fragments_are_continuous_across_segments() {
    let d = demux_all();
    let mut video = VideoTrack::new();
    let mut audio = AudioTrack::new(48_000);
    let mut vf = Vec::new();
    let mut af = Vec::new();
    for (n, seg) in d.iter().enumerate() {
        let run = (n == 0).then_some(0);
        vf.push(video.fragment(100 + n as u64, run, &seg.video).unwrap());
        af.push(audio.fragment(100 + n as u64, run, &seg.audio).unwrap());
    }
    let v = check_fragments(&vf);
    let a = check_fragments(&af);
    assert_eq!(v.iter().map(|f| f.0).collect::<Vec<_>>(), [101, 102, 103]);
    assert_eq!(a.iter().map(|f| f.0).collect::<Vec<_>>(), [101, 102, 103]);
    // CFR source: tfdt[n+1] == tfdt[n] + duration[n] exactly, for both tracks.
    for w in v.windows(2).chain(a.windows(2)) {
        assert_eq!(w[1].1, w[0].1 + w[0].2);
    }
    assert_eq!(v.iter().map(|f| f.2).collect::<Vec<_>>(), [90_000; 3]);
    assert_eq!(a[1].1, 44 * 1024);
    assert_eq!(a[2].1, 90 * 1024);
    // run_start resets the timeline.
    let again = video.fragment(7, Some(123), &d[0].video).unwrap();
    assert_eq!((again.base_time, again.sequence), (123, 8));
    let again = audio.fragment(7, Some(456), &d[0].audio).unwrap();
    assert_eq!(again.base_time, 456);
}

#[test]
fn first_fragment_without_run_start_uses_ts_clock() {
    let d = demux(SEGMENTS[0]).unwrap();
    let v = VideoTrack::new().fragment(0, None, &d.video).unwrap();
    assert_eq!(v.base_time, d.video[0].dts);
    let a = AudioTrack::new(48_000).fragment(0, None, &d.audio).unwrap();
    assert_eq!(a.base_time, (d.audio[0].pts * 48_000 + 45_000) / 90_000);
}

/// xorshift64: deterministic noise without extra crates.
fn noise(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn package_everything(ts: &[u8]) {
    if let Ok(d) = demux(ts) {
        if let Some(avc) = &d.avc {
            let _ = video_init(avc, 16, 16);
            let _ = avc.dimensions();
        }
        if let Some(aac) = &d.aac {
            let _ = audio_init(aac);
            let _ = AudioTrack::new(aac.sample_rate).fragment(0, None, &d.audio);
        }
        let _ = VideoTrack::new().fragment(u64::MAX, None, &d.video);
    }
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15;
    for len in [0, 1, 187, 188, 189, 376, 5000] {
        let bytes: Vec<u8> = (0..len).map(|_| noise(&mut seed) as u8).collect();
        package_everything(&bytes);
        // Random payloads behind valid-looking sync bytes.
        let synced: Vec<u8> = bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| if i % 188 == 0 { 0x47 } else { b })
            .collect();
        package_everything(&synced);
    }
    let seg = SEGMENTS[0];
    for cut in (0..seg.len()).step_by(97) {
        package_everything(&seg[..cut]);
        package_everything(&seg[cut..]);
    }
    for _ in 0..300 {
        let mut broken = seg.to_vec();
        for _ in 0..20 {
            let at = noise(&mut seed) as usize % broken.len();
            broken[at] = noise(&mut seed) as u8;
        }
        package_everything(&broken);
    }
}

#[test]
fn segment_errors_are_specific() {
    assert!(matches!(demux(&[0xff; 400]), Err(Fmp4Error::NoSync { .. })));
    // Only the video PID's packets: no PAT.
    let no_pat: Vec<u8> = SEGMENTS[0]
        .chunks(188)
        .filter(|p| p[1] & 0x1f != 0 || p[2] != 0)
        .flatten()
        .copied()
        .collect();
    assert!(matches!(demux(&no_pat), Err(Fmp4Error::NoPat)));
    let no_pmt: Vec<u8> = SEGMENTS[0]
        .chunks(188)
        .filter(|p| p[1] & 0x1f != 0 || p[2] != 0x20)
        .flatten()
        .copied()
        .collect();
    assert!(matches!(
        demux(&no_pmt),
        Err(Fmp4Error::NoPmt { pid: 0x20 })
    ));
    // PMT that lists the video PID (0x41) as MPEG-2 video instead of H.264.
    let mut no_h264 = SEGMENTS[0].to_vec();
    for p in no_h264
        .chunks_mut(188)
        .filter(|p| p[1] & 0x1f == 0 && p[2] == 0x20)
    {
        let at = p.windows(3).position(|w| w == [0x1b, 0xe0, 0x41]).unwrap();
        p[at] = 0x02;
    }
    assert!(matches!(demux(&no_h264), Err(Fmp4Error::NoVideoStream)));
    assert!(matches!(
        Demuxed::default().avc_config(),
        Err(Fmp4Error::NoParameterSets)
    ));
    assert!(matches!(
        Demuxed::default().aac_config(),
        Err(Fmp4Error::NoAudioStream)
    ));
}

#[test]
fn the_first_picture_of_a_run_is_presented_at_its_tfdt() {
    // The fixture has B-frames: its IDR is presented after its decode time.
    let d = demux_all();
    let first = &d[0].video[0];
    assert!(first.pts > first.dts, "fixture reorders frames");
    let mut track = VideoTrack::new();
    for (seq, seg) in d.iter().enumerate() {
        let frag = track
            .fragment(seq as u64, (seq == 0).then_some(0), &seg.video)
            .unwrap();
        let traf = find(find(&frag.data, &[(b"moof", 0)]), &[(b"traf", 0)]);
        let trun = find(traf, &[(b"trun", 0)]);
        assert_eq!(trun[0], 1, "signed composition offsets");
        let flags = be32(trun) & 0xff_ffff;
        let stride = 4 * (flags & 0xf00).count_ones() as usize;
        let count = be32(&trun[4..]) as usize;
        // duration, size, flags, cto: the cto is the last field of each entry.
        let cto = |i: usize| {
            i32::from_be_bytes(
                trun[12 + i * stride + stride - 4..][..4]
                    .try_into()
                    .unwrap(),
            )
        };
        assert_eq!(cto(0), 0, "segment {seq}: keyframe presented at tfdt");
        let mut decode = frag.base_time as i64;
        let mut earliest = i64::MAX;
        for (i, s) in seg.video.iter().enumerate() {
            earliest = earliest.min(decode + i64::from(cto(i)));
            decode += (seg.video.get(i + 1).map_or(3600, |n| n.dts - s.dts)) as i64;
        }
        assert_eq!(
            earliest, frag.base_time as i64,
            "segment {seq} starts presenting at tfdt"
        );
        assert_eq!(count, seg.video.len());
    }
}

/// Video and audio in one init segment: two tracks (1: `vide` at 90 kHz, 2: `soun` at the
/// sample rate), a `trex` for each and `next_track_ID` 3; the audio's `ES_ID` is its track.
#[test]
fn muxed_init_declares_both_tracks() {
    let d = demux(SEGMENTS[0]).unwrap();
    let (avc, aac) = (d.avc_config().unwrap(), d.aac.unwrap());
    let init = muxed_init(avc, 160, 90, Some(&aac));
    let moov = find(&init, &[(b"moov", 0)]);
    let mvhd = find(moov, &[(b"mvhd", 0)]);
    assert_eq!(be32(&mvhd[96..]), 3, "next_track_ID");
    let traks: Vec<&[u8]> = children(moov)
        .into_iter()
        .filter(|(k, _, _)| k == b"trak")
        .map(|(_, _, b)| b)
        .collect();
    assert_eq!(traks.len(), 2);
    for (trak, (id, handler, timescale)) in traks
        .iter()
        .zip([(1, b"vide", 90_000), (2, b"soun", 48_000)])
    {
        assert_eq!(be32(&find(trak, &[(b"tkhd", 12)])[..4]), id);
        assert_eq!(&find(trak, &[(b"mdia", 0), (b"hdlr", 8)])[..4], handler);
        assert_eq!(
            be32(&find(trak, &[(b"mdia", 0), (b"mdhd", 12)])[..4]),
            timescale
        );
    }
    let trex: Vec<u32> = children(find(moov, &[(b"mvex", 0)]))
        .into_iter()
        .map(|(_, _, b)| be32(&b[4..]))
        .collect();
    assert_eq!(trex, [1, 2]);
    let esds = find(
        traks[1],
        &[
            (b"mdia", 0),
            (b"minf", 0),
            (b"stbl", 0),
            (b"stsd", 8),
            (b"mp4a", 28),
            (b"esds", 4),
        ],
    );
    assert_eq!(&esds[2..4], &[0, 2], "ES_ID");
    // Without audio it is the video's init segment.
    assert_eq!(muxed_init(avc, 160, 90, None), video_init(avc, 160, 90));
}

/// An audio fragment made for track 1 becomes one of track 2 without its `styp`: the same
/// `moof` (but for `tfhd`) and the same `mdat`, so its `trun` data offset still holds.
#[test]
fn an_audio_fragment_moves_to_the_muxed_audio_track() {
    let d = demux(SEGMENTS[0]).unwrap();
    let mut track = AudioTrack::new(d.aac.unwrap().sample_rate);
    let fragment = track.fragment(7, Some(0), &d.audio).unwrap();
    let muxed = as_muxed_audio(&fragment.data).unwrap();
    let kinds: Vec<[u8; 4]> = children(&muxed).into_iter().map(|(k, _, _)| k).collect();
    assert_eq!(kinds, [*b"moof", *b"mdat"]);
    let tfhd = find(&muxed, &[(b"moof", 0), (b"traf", 0), (b"tfhd", 0)]);
    assert_eq!(be32(&tfhd[4..]), 2, "track_ID");
    let styp = children(&fragment.data)[0].2.len() + 8;
    let mut original = fragment.data[styp..].to_vec();
    // moof header, mfhd, traf header, tfhd header with version and flags.
    original[8 + 16 + 8 + 12..][..4].copy_from_slice(&2u32.to_be_bytes());
    assert_eq!(muxed, original, "only the track_ID differs");
    assert!(as_muxed_audio(&fragment.data[..fragment.data.len() - 1]).is_err());
    assert!(as_muxed_audio(b"").is_err(), "no tfhd");
}
