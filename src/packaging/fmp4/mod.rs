//! Pure data: TS segment in, fMP4 init/fragments out; no I/O, no GStreamer.
//!
//! One keyframe-aligned MPEG-TS segment (H.264 + optional AAC/ADTS, as `mpegtsmux` writes it)
//! is [`demux`]ed into timestamped samples; [`video_init`] / [`audio_init`] build the CMAF
//! init segments (`ftyp`+`moov`), and the stateful [`VideoTrack`] / [`AudioTrack`] turn each
//! segment's samples into one media fragment (`styp`+`moof`+`mdat`) whose `tfdt` continues the
//! previous one. Video and audio are separate tracks (each `track_ID` 1 in its own init
//! segment), as DASH wants one AdaptationSet per type; HLS uses them via `EXT-X-MAP`.
//!
//! A/V sync: both tracks place their first sample on the TS clock unless the caller gives a
//! `run_start`. When it does, give audio `run_start` = video's start (in seconds) plus
//! [`Demuxed::audio_lead`] so the offset between the streams survives.

mod boxes;
mod es;
mod sps;
mod track;
mod ts;

#[cfg(test)]
mod tests;

pub use track::{AudioTrack, Fragment, VideoTrack, wrap_delta};

/// Timescale of video tracks (MPEG-TS clock).
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Samples in one AAC access unit (AAC-LC / HE-AAC core frame).
pub const AAC_FRAME_SAMPLES: u32 = 1024;

/// Why a segment could not be demuxed or packaged.
#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    /// No 0x47 sync byte at 188-byte spacing anywhere in the input.
    #[error("no MPEG-TS sync byte found in {len} bytes")]
    NoSync {
        /// Input length in bytes.
        len: usize,
    },
    /// No usable PAT (program association table) in the segment.
    #[error("no PAT with a program in the segment")]
    NoPat,
    /// The PAT names a program whose PMT never appears.
    #[error("no PMT for program map PID {pid:#x}")]
    NoPmt {
        /// PID the PAT points to.
        pid: u16,
    },
    /// The PMT lists no H.264 (stream_type 0x1b) elementary stream.
    #[error("PMT has no H.264 stream (stream_type 0x1b)")]
    NoVideoStream,
    /// The segment carries no AAC stream, or its PMT has none.
    #[error("segment has no AAC audio")]
    NoAudioStream,
    /// A PES packet is shorter than its header or its declared length.
    #[error("truncated PES on PID {pid:#x}: need {needed} bytes, have {got}")]
    TruncatedPes {
        /// Elementary stream PID.
        pid: u16,
        /// Bytes the header promises.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// A PES packet does not start with the 00 00 01 start code prefix.
    #[error("bad PES start code on PID {pid:#x}")]
    BadPesStart {
        /// Elementary stream PID.
        pid: u16,
    },
    /// An ADTS header is malformed (sync, length, sampling index, raw blocks).
    #[error("bad ADTS frame: {0}")]
    BadAdts(&'static str),
    /// The video stream carries no SPS and/or PPS in this segment.
    #[error("no H.264 SPS/PPS in the segment")]
    NoParameterSets,
    /// There are no samples to put into a fragment.
    #[error("no samples to package")]
    NoSamples,
    /// Timestamps go backwards, or jump further than a 32-bit duration, inside a fragment.
    #[error("timestamps go backwards or jump too far at sample {index}")]
    BadTimestamps {
        /// Index of the offending sample in the fragment.
        index: usize,
    },
    /// `pts - dts` does not fit a signed 32-bit composition offset.
    #[error("composition offset out of range at sample {index}")]
    CompositionOffset {
        /// Index of the offending sample in the fragment.
        index: usize,
    },
    /// The fragment would exceed 4 GiB.
    #[error("fragment too large")]
    TooLarge,
    /// The sample rate is zero.
    #[error("invalid sample rate {0}")]
    BadSampleRate(u32),
    /// A fragment's boxes do not nest or fit (or it has no `tfhd`).
    #[error("malformed fragment: {0}")]
    BadFragment(&'static str),
}

/// H.264 decoder configuration: first SPS and PPS of the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// Sequence parameter set NAL unit (with header byte, without start code); at least 4 bytes.
    pub sps: Vec<u8>,
    /// Picture parameter set NAL unit (with header byte, without start code).
    pub pps: Vec<u8>,
}

impl AvcConfig {
    /// RFC 6381 codec string, e.g. `avc1.64001f`, for playlists and manifests.
    pub fn codec_string(&self) -> String {
        let b = |i: usize| self.sps.get(i).copied().unwrap_or(0);
        format!("avc1.{:02x}{:02x}{:02x}", b(1), b(2), b(3))
    }

    /// Display size (width, height) from the SPS, after cropping; `None` if it cannot be parsed.
    pub fn dimensions(&self) -> Option<(u32, u32)> {
        sps::parse(&self.sps).map(|info| (info.width, info.height))
    }
}

/// AAC configuration taken from the first ADTS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// MPEG-4 audio object type (ADTS profile + 1; 2 = AAC-LC).
    pub object_type: u8,
    /// Sample rate in Hz (from `sampling_index`).
    pub sample_rate: u32,
    /// ADTS / AudioSpecificConfig sampling frequency index (0..=12).
    pub sampling_index: u8,
    /// Channel configuration (1 = mono, 2 = stereo, ...; 0 = defined in-band).
    pub channels: u8,
}

impl AacConfig {
    /// The 2-byte AudioSpecificConfig (object type, sampling index, channel configuration).
    pub fn audio_specific_config(&self) -> [u8; 2] {
        let ot = self.object_type & 0x1f;
        let si = self.sampling_index & 0x0f;
        let ch = self.channels & 0x0f;
        [(ot << 3) | (si >> 1), ((si & 1) << 7) | (ch << 3)]
    }

    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

/// One H.264 access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSample {
    /// Decode time, 90 kHz, unwrapped within the segment.
    pub dts: u64,
    /// Presentation time, 90 kHz, unwrapped within the segment; `>= dts` for sane streams.
    pub pts: u64,
    /// The access unit contains an IDR slice (NAL type 5).
    pub keyframe: bool,
    /// AVCC payload: NAL units with 4-byte big-endian length prefixes; AUD/SPS/PPS removed.
    pub data: Vec<u8>,
}

/// One raw AAC access unit (1024 samples).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// Presentation time, 90 kHz, unwrapped within the segment.
    pub pts: u64,
    /// Raw AAC frame, ADTS header removed.
    pub data: Vec<u8>,
}

/// Everything taken from one TS segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demuxed {
    /// First SPS/PPS seen; `None` if the segment has none in-band.
    pub avc: Option<AvcConfig>,
    /// Video access units in decode order.
    pub video: Vec<VideoSample>,
    /// AAC configuration of the first ADTS frame; `None` without audio.
    pub aac: Option<AacConfig>,
    /// AAC frames in order.
    pub audio: Vec<AudioFrame>,
}

impl Demuxed {
    /// The H.264 configuration, or [`Fmp4Error::NoParameterSets`].
    pub fn avc_config(&self) -> Result<&AvcConfig, Fmp4Error> {
        self.avc.as_ref().ok_or(Fmp4Error::NoParameterSets)
    }

    /// The AAC configuration, or [`Fmp4Error::NoAudioStream`].
    pub fn aac_config(&self) -> Result<&AacConfig, Fmp4Error> {
        self.aac.as_ref().ok_or(Fmp4Error::NoAudioStream)
    }

    /// First audio PTS minus the first video sample's PTS (90 kHz): how far audio starts
    /// after the picture a run's video `tfdt` presents (see `VideoTrack`).
    pub fn audio_lead(&self) -> Option<i64> {
        let v = self.video.first()?.pts;
        let a = self.audio.first()?.pts;
        Some(i64::try_from(i128::from(a) - i128::from(v)).unwrap_or(0))
    }
}

/// Demuxes one TS segment: first H.264 stream (stream_type 0x1b) and first AAC stream (0x0f)
/// of the first program. A PES still open at the end of the buffer is complete there.
pub fn demux(ts: &[u8]) -> Result<Demuxed, Fmp4Error> {
    let streams = ts::demux_pes(ts)?;
    es::assemble(&streams)
}

/// The first SPS/PPS in `ts` (e.g. a keyframe chunk), if it has whole ones.
pub fn parameter_sets(ts: &[u8]) -> Option<AvcConfig> {
    demux(ts).ok()?.avc
}

/// `ftyp` + `moov` for one H.264 track (track_ID 1, timescale 90000, `avc1` + `avcC` from the
/// config); `width`/`height` go to `tkhd` and the sample entry (clamped to 16 bits).
pub fn video_init(avc: &AvcConfig, width: u32, height: u32) -> Vec<u8> {
    boxes::video_init(avc, width, height)
}

/// The AVCDecoderConfigurationRecord (ISO/IEC 14496-15) of `avc`: the body of `avcC` and of
/// an FLV AVC sequence header.
pub fn avc_config_record(avc: &AvcConfig) -> Vec<u8> {
    boxes::avc_config_record(avc)
}

/// `ftyp` + `moov` for H.264 (track_ID 1) and, with `aac`, AAC (track_ID 2) in the same
/// fragments: what a part of video and audio together decodes with.
pub fn muxed_init(avc: &AvcConfig, width: u32, height: u32, aac: Option<&AacConfig>) -> Vec<u8> {
    boxes::muxed_init(avc, width, height, aac)
}

/// A fragment of track 1 (as [`AudioTrack::fragment`] makes them) as one of the audio track
/// of a [`muxed_init`], without its `styp`: to be appended to a video fragment.
pub fn as_muxed_audio(fragment: &[u8]) -> Result<Vec<u8>, Fmp4Error> {
    boxes::retag(fragment, boxes::MUXED_AUDIO_TRACK_ID)
}

/// `ftyp` + `moov` for one AAC track (track_ID 1, timescale = sample rate, `mp4a` + `esds`).
pub fn audio_init(aac: &AacConfig) -> Vec<u8> {
    boxes::audio_init(aac)
}
