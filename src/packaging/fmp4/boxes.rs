//! ISO BMFF box writer, CMAF init segments and media fragments.

use super::{AacConfig, AvcConfig, Fmp4Error, VIDEO_TIMESCALE, sps};

/// The track every single-track init segment declares and every fragment refers to.
const TRACK_ID: u32 = 1;
/// The audio's track in an init segment of video and audio ([`muxed_init`]).
pub(super) const MUXED_AUDIO_TRACK_ID: u32 = 2;
/// Movie header timescale (only durations of 0 are written with it).
const MOVIE_TIMESCALE: u32 = 1000;
/// Unity transformation matrix.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];
/// `tfhd` flag: offsets are relative to the start of the `moof`.
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
const TRUN_DATA_OFFSET: u32 = 0x001;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTO: u32 = 0x800;
/// Sample flags of a sync sample: sample_depends_on = 2 (does not depend on others).
pub(super) const SAMPLE_SYNC: u32 = 0x0200_0000;
/// Sample flags of a non-sync sample: sample_depends_on = 1, sample_is_non_sync_sample = 1.
pub(super) const SAMPLE_NON_SYNC: u32 = 0x0101_0000;

/// Appends boxes to a byte vector; sizes are patched when a box closes.
#[derive(Debug, Default)]
pub(super) struct Writer {
    /// Bytes written so far; every box in it is closed (size patched) once its writer returns.
    pub(super) buf: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    /// Writes a box whose body `body` produces; the 32-bit size saturates (callers keep < 4 GiB).
    fn boxed(&mut self, kind: &[u8; 4], body: impl FnOnce(&mut Self)) {
        let start = self.buf.len();
        self.u32(0);
        self.bytes(kind);
        body(self);
        let size = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }

    /// Writes a full box (version + 24-bit flags).
    fn full(&mut self, kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Self)) {
        self.boxed(kind, |w| {
            w.u32(u32::from(version) << 24 | (flags & 0x00ff_ffff));
            body(w);
        });
    }
}

fn ftyp(w: &mut Writer, media_brand: &[u8; 4]) {
    w.boxed(b"ftyp", |w| {
        w.bytes(b"iso6");
        w.u32(0);
        for brand in [b"iso6", b"cmfc", b"isom", b"dash", media_brand] {
            w.bytes(brand);
        }
    });
}

/// Handler-specific parts of a track.
#[derive(Debug, Clone, Copy)]
enum Media<'a> {
    Video {
        avc: &'a AvcConfig,
        width: u16,
        height: u16,
    },
    Audio(&'a AacConfig),
}

/// One track of an init segment.
#[derive(Debug, Clone, Copy)]
struct TrackDef<'a> {
    id: u32,
    timescale: u32,
    media: Media<'a>,
}

fn moov(w: &mut Writer, tracks: &[TrackDef<'_>]) {
    w.boxed(b"moov", |w| {
        w.full(b"mvhd", 0, 0, |w| {
            w.zeros(8); // creation, modification time
            w.u32(MOVIE_TIMESCALE);
            w.u32(0); // duration: fragmented
            w.u32(0x0001_0000); // rate 1.0
            w.u16(0x0100); // volume 1.0
            w.zeros(10);
            MATRIX.iter().for_each(|&m| w.u32(m));
            w.zeros(24); // pre_defined
            w.u32(tracks.iter().map(|t| t.id).max().unwrap_or(0) + 1); // next_track_ID
        });
        for track in tracks {
            trak(w, track);
        }
        w.boxed(b"mvex", |w| {
            for track in tracks {
                w.full(b"trex", 0, 0, |w| {
                    w.u32(track.id);
                    w.u32(1); // default_sample_description_index
                    w.zeros(12); // default duration, size, flags
                });
            }
        });
    });
}

fn trak(w: &mut Writer, track: &TrackDef<'_>) {
    let TrackDef {
        id,
        timescale,
        media,
    } = *track;
    let is_audio = matches!(media, Media::Audio(_));
    w.boxed(b"trak", |w| {
        w.full(b"tkhd", 0, 3, |w| {
            w.zeros(8);
            w.u32(id);
            w.zeros(4 + 4 + 8); // reserved, duration, reserved
            w.u16(0); // layer
            w.u16(0); // alternate_group
            w.u16(if is_audio { 0x0100 } else { 0 });
            w.u16(0);
            MATRIX.iter().for_each(|&m| w.u32(m));
            let (width, height) = match media {
                Media::Video { width, height, .. } => (width, height),
                Media::Audio(_) => (0, 0),
            };
            w.u32(u32::from(width) << 16);
            w.u32(u32::from(height) << 16);
        });
        w.boxed(b"mdia", |w| {
            w.full(b"mdhd", 0, 0, |w| {
                w.zeros(8);
                w.u32(timescale);
                w.u32(0);
                w.u16(0x55c4); // 'und'
                w.u16(0);
            });
            w.full(b"hdlr", 0, 0, |w| {
                w.u32(0);
                w.bytes(if is_audio { b"soun" } else { b"vide" });
                w.zeros(12);
                w.bytes(if is_audio {
                    b"SoundHandler\0"
                } else {
                    b"VideoHandler\0"
                });
            });
            w.boxed(b"minf", |w| {
                if is_audio {
                    w.full(b"smhd", 0, 0, |w| w.u32(0));
                } else {
                    w.full(b"vmhd", 0, 1, |w| w.zeros(8));
                }
                w.boxed(b"dinf", |w| {
                    w.full(b"dref", 0, 0, |w| {
                        w.u32(1);
                        w.full(b"url ", 0, 1, |_| {});
                    });
                });
                w.boxed(b"stbl", |w| {
                    w.full(b"stsd", 0, 0, |w| {
                        w.u32(1);
                        match media {
                            Media::Video { avc, width, height } => avc1(w, avc, width, height),
                            Media::Audio(aac) => mp4a(w, aac, id),
                        }
                    });
                    w.full(b"stts", 0, 0, |w| w.u32(0));
                    w.full(b"stsc", 0, 0, |w| w.u32(0));
                    w.full(b"stsz", 0, 0, |w| w.zeros(8));
                    w.full(b"stco", 0, 0, |w| w.u32(0));
                });
            });
        });
    });
}

fn avc1(w: &mut Writer, avc: &AvcConfig, width: u16, height: u16) {
    w.boxed(b"avc1", |w| {
        w.zeros(6);
        w.u16(1); // data_reference_index
        w.zeros(16); // pre_defined, reserved
        w.u16(width);
        w.u16(height);
        w.u32(0x0048_0000); // 72 dpi
        w.u32(0x0048_0000);
        w.u32(0);
        w.u16(1); // frame_count
        w.zeros(32); // compressorname
        w.u16(0x0018); // depth
        w.u16(0xffff); // pre_defined = -1
        w.boxed(b"avcC", |w| avcc(w, avc));
    });
}

/// AVCDecoderConfigurationRecord with one SPS and one PPS.
/// The AVCDecoderConfigurationRecord alone (what FLV's AVC sequence header carries).
pub(super) fn avc_config_record(avc: &AvcConfig) -> Vec<u8> {
    let mut w = Writer::default();
    avcc(&mut w, avc);
    w.buf
}

fn avcc(w: &mut Writer, avc: &AvcConfig) {
    let byte = |i: usize| avc.sps.get(i).copied().unwrap_or(0);
    let len16 = |v: &[u8]| u16::try_from(v.len()).unwrap_or(u16::MAX);
    w.u8(1);
    w.u8(byte(1)); // AVCProfileIndication
    w.u8(byte(2)); // profile_compatibility
    w.u8(byte(3)); // AVCLevelIndication
    w.u8(0xff); // lengthSizeMinusOne = 3
    w.u8(0xe1); // one SPS
    w.u16(len16(&avc.sps));
    w.bytes(avc.sps.get(..usize::from(len16(&avc.sps))).unwrap_or(&[]));
    w.u8(1);
    w.u16(len16(&avc.pps));
    w.bytes(avc.pps.get(..usize::from(len16(&avc.pps))).unwrap_or(&[]));
    if matches!(byte(1), 100 | 110 | 122 | 244)
        && let Some(info) = sps::parse(&avc.sps)
    {
        let low = |v: u32, mask: u8| u8::try_from(v).unwrap_or(0) & mask;
        w.u8(0xfc | low(info.chroma_format_idc, 3));
        w.u8(0xf8 | low(info.bit_depth_luma_minus8, 7));
        w.u8(0xf8 | low(info.bit_depth_chroma_minus8, 7));
        w.u8(0); // numOfSequenceParameterSetExt
    }
}

/// Writes an MPEG-4 descriptor tag with a one-byte size (all ours are < 128 bytes).
fn descriptor(w: &mut Writer, tag: u8, body: impl FnOnce(&mut Writer)) {
    w.u8(tag);
    let at = w.buf.len();
    w.u8(0);
    body(w);
    w.buf[at] = u8::try_from(w.buf.len() - at - 1).unwrap_or(0x7f) & 0x7f;
}

fn mp4a(w: &mut Writer, aac: &AacConfig, track_id: u32) {
    w.boxed(b"mp4a", |w| {
        w.zeros(6);
        w.u16(1); // data_reference_index
        w.zeros(8);
        w.u16(if aac.channels == 0 {
            2
        } else {
            u16::from(aac.channels)
        });
        w.u16(16); // samplesize
        w.zeros(4); // pre_defined, reserved
        w.u32(u16::try_from(aac.sample_rate).map_or(0, |r| u32::from(r) << 16));
        w.full(b"esds", 0, 0, |w| {
            descriptor(w, 0x03, |w| {
                w.u16(u16::try_from(track_id).unwrap_or(1)); // ES_ID
                w.u8(0); // no dependency, URL, OCR
                descriptor(w, 0x04, |w| {
                    w.u8(0x40); // objectTypeIndication: MPEG-4 audio
                    w.u8(0x15); // streamType 5 (audio) << 2 | 1 (reserved)
                    w.zeros(3 + 4 + 4); // bufferSizeDB, maxBitrate, avgBitrate
                    descriptor(w, 0x05, |w| w.bytes(&aac.audio_specific_config()));
                });
                descriptor(w, 0x06, |w| w.u8(0x02));
            });
        });
    });
}

/// `ftyp` + `moov` of an H.264 track.
pub(super) fn video_init(avc: &AvcConfig, width: u32, height: u32) -> Vec<u8> {
    let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    let mut w = Writer::default();
    ftyp(&mut w, b"avc1");
    let (width, height) = (clamp(width), clamp(height));
    moov(
        &mut w,
        &[TrackDef {
            id: TRACK_ID,
            timescale: VIDEO_TIMESCALE,
            media: Media::Video { avc, width, height },
        }],
    );
    w.buf
}

/// `ftyp` + `moov` of an H.264 track (track 1) and, with `aac`, an AAC track
/// ([`MUXED_AUDIO_TRACK_ID`]): one init segment for video and audio in the same fragments.
pub(super) fn muxed_init(
    avc: &AvcConfig,
    width: u32,
    height: u32,
    aac: Option<&AacConfig>,
) -> Vec<u8> {
    let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    let mut w = Writer::default();
    ftyp(&mut w, b"avc1");
    let (width, height) = (clamp(width), clamp(height));
    let video = TrackDef {
        id: TRACK_ID,
        timescale: VIDEO_TIMESCALE,
        media: Media::Video { avc, width, height },
    };
    match aac {
        Some(aac) => moov(
            &mut w,
            &[
                video,
                TrackDef {
                    id: MUXED_AUDIO_TRACK_ID,
                    timescale: aac.sample_rate,
                    media: Media::Audio(aac),
                },
            ],
        ),
        None => moov(&mut w, &[video]),
    }
    w.buf
}

/// `ftyp` + `moov` of an AAC track.
pub(super) fn audio_init(aac: &AacConfig) -> Vec<u8> {
    let mut w = Writer::default();
    ftyp(&mut w, b"mp41");
    moov(
        &mut w,
        &[TrackDef {
            id: TRACK_ID,
            timescale: aac.sample_rate,
            media: Media::Audio(aac),
        }],
    );
    w.buf
}

/// `fragment` (`styp` + `moof` + `mdat` of track 1) as a fragment of track `track_id`
/// without its `styp`: to follow another track's fragment in the same part or segment.
pub(super) fn retag(fragment: &[u8], track_id: u32) -> Result<Vec<u8>, Fmp4Error> {
    let mut out = Vec::with_capacity(fragment.len());
    let mut patched = false;
    for (kind, at, size) in boxes_in(fragment)? {
        match &kind {
            b"styp" => {}
            b"moof" => {
                let start = out.len();
                out.extend_from_slice(&fragment[at..at + size]);
                let moof = &fragment[at + 8..at + size];
                for (kind, traf_at, traf_size) in boxes_in(moof)? {
                    if &kind != b"traf" {
                        continue;
                    }
                    let traf = &moof[traf_at + 8..traf_at + traf_size];
                    for (kind, tfhd_at, tfhd_size) in boxes_in(traf)? {
                        if &kind == b"tfhd" && tfhd_size >= 16 {
                            // moof header + traf header + tfhd header, version and flags.
                            let id_at = start + 8 + traf_at + 8 + tfhd_at + 12;
                            out[id_at..id_at + 4].copy_from_slice(&track_id.to_be_bytes());
                            patched = true;
                        }
                    }
                }
            }
            _ => out.extend_from_slice(&fragment[at..at + size]),
        }
    }
    if patched {
        Ok(out)
    } else {
        Err(Fmp4Error::BadFragment("no tfhd"))
    }
}

/// (type, offset, size) of each box in `data`, in order; an error for a box that does not fit.
fn boxes_in(data: &[u8]) -> Result<Vec<([u8; 4], usize, usize)>, Fmp4Error> {
    let mut boxes = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let header = data
            .get(at..at + 8)
            .ok_or(Fmp4Error::BadFragment("a box header is cut off"))?;
        let size = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if size < 8 || at + size > data.len() {
            return Err(Fmp4Error::BadFragment("a box does not fit"));
        }
        boxes.push(([header[4], header[5], header[6], header[7]], at, size));
        at += size;
    }
    Ok(boxes)
}

/// One `trun` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TrunSample {
    pub(super) duration: u32,
    pub(super) size: u32,
    /// [`SAMPLE_SYNC`] or [`SAMPLE_NON_SYNC`]; ignored for audio.
    pub(super) flags: u32,
    /// `pts - dts`; ignored for audio.
    pub(super) cto: i32,
}

/// `styp` + `moof` + `mdat`. Video runs carry flags and signed composition offsets (trun v1).
pub(super) fn fragment(
    sequence: u32,
    base_time: u64,
    video: bool,
    samples: &[TrunSample],
    payloads: &[&[u8]],
) -> Result<Vec<u8>, Fmp4Error> {
    let payload_len: usize = payloads.iter().map(|p| p.len()).sum();
    let mdat_size =
        u32::try_from(payload_len.saturating_add(8)).map_err(|_| Fmp4Error::TooLarge)?;
    let count = u32::try_from(samples.len()).map_err(|_| Fmp4Error::TooLarge)?;
    let mut w = Writer::default();
    w.boxed(b"styp", |w| {
        w.bytes(b"msdh");
        w.u32(0);
        w.bytes(b"msdh");
        w.bytes(b"msix");
    });
    let moof_start = w.buf.len();
    let mut offset_at = 0;
    w.boxed(b"moof", |w| {
        w.full(b"mfhd", 0, 0, |w| w.u32(sequence));
        w.boxed(b"traf", |w| {
            w.full(b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |w| w.u32(TRACK_ID));
            w.full(b"tfdt", 1, 0, |w| w.u64(base_time));
            let (version, flags) = if video {
                (
                    1,
                    TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS | TRUN_CTO,
                )
            } else {
                (0, TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE)
            };
            w.full(b"trun", version, flags, |w| {
                w.u32(count);
                offset_at = w.buf.len();
                w.u32(0); // data_offset, patched below
                for s in samples {
                    w.u32(s.duration);
                    w.u32(s.size);
                    if video {
                        w.u32(s.flags);
                        w.bytes(&s.cto.to_be_bytes());
                    }
                }
            });
        });
    });
    let data_offset =
        u32::try_from(w.buf.len() - moof_start + 8).map_err(|_| Fmp4Error::TooLarge)?;
    w.buf[offset_at..offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    w.buf.reserve(payload_len + 8);
    w.u32(mdat_size);
    w.bytes(b"mdat");
    payloads.iter().for_each(|p| w.bytes(p));
    Ok(w.buf)
}
