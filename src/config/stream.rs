//! One stream file, `streams/NAME.toml`, with Flussonic's keys so that the API can later map
//! stream JSON to these files one to one.

use super::{Defaults, InputUrl};
use serde::Deserialize;
use std::time::Duration;

/// A validated stream definition.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// From the file name; letters, digits, `_` and `-`.
    pub name: String,
    pub title: Option<String>,
    /// Sorted by priority, 1 (highest) first; never empty.
    pub inputs: Vec<Input>,
    pub segment_duration: SegmentDuration,
    pub segment_count: SegmentCount,
    /// LL-HLS part target (Flussonic's `chunk_duration`; at most half a segment).
    pub chunk_duration: ChunkDuration,
    /// Recording settings; `None` when the stream has no `[dvr]` table.
    pub dvr: Option<StreamDvr>,
    /// Secret a publisher must present (`rtmp://HOST/APP/NAME?key=SECRET`); never logged.
    pub publish_key: Option<String>,
    /// The ABR ladder to encode; `None` passes the source through.
    pub transcoder: Option<super::Transcoder>,
    /// Authorization backends of this stream (`on_play`, `on_publish`, `on_play_default`).
    pub access: super::StreamAccess,
    /// Destinations the stream is sent on to, in the order written.
    pub pushes: Vec<super::Push>,
}

/// A stream's `[dvr]` table (Flussonic's keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDvr {
    /// Archive root; the server's `[dvr] root` when absent.
    pub root: Option<std::path::PathBuf>,
    /// Archive depth: `"3d"`, `"12h"`, `"30m"` or seconds.
    pub expiration: Option<Span>,
    /// Most bytes the stream's archive may take: `"500G"`, `"20M"` or bytes (applies to
    /// each recorded rendition of a ladder).
    pub storage_limit: Option<ByteSize>,
    /// Which renditions of the transcoder's ladder to record, 1-based (`[1, 3]`); all when
    /// absent. A pass-through stream has one rendition.
    pub renditions: Option<Vec<u32>>,
}

impl StreamDvr {
    /// Whether rendition `index` (0-based) is recorded.
    pub fn records(&self, index: usize) -> bool {
        self.renditions
            .as_ref()
            .is_none_or(|r| r.iter().any(|&n| n as usize == index + 1))
    }
}

/// A duration written as seconds or with a `s`/`m`/`h`/`d` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub struct Span(pub u64);

impl TryFrom<toml::Value> for Span {
    type Error = String;
    fn try_from(v: toml::Value) -> Result<Self, String> {
        let secs = match &v {
            toml::Value::Integer(i) if *i > 0 => Some(*i as u64),
            toml::Value::String(s) => {
                with_suffix(s, &[('s', 1), ('m', 60), ('h', 3600), ('d', 86_400)])
            }
            _ => None,
        };
        match secs {
            Some(s) if s > 0 && s <= 3650 * 86_400 => Ok(Span(s)),
            _ => Err(format!(
                "`expiration` must be seconds or like \"12h\"/\"3d\" (up to 10 years), got {v}"
            )),
        }
    }
}

/// A size written as bytes or with a `K`/`M`/`G`/`T` suffix (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub struct ByteSize(pub u64);

impl TryFrom<toml::Value> for ByteSize {
    type Error = String;
    fn try_from(v: toml::Value) -> Result<Self, String> {
        let bytes = match &v {
            toml::Value::Integer(i) if *i > 0 => Some(*i as u64),
            toml::Value::String(s) => with_suffix(
                s,
                &[
                    ('K', 1 << 10),
                    ('M', 1 << 20),
                    ('G', 1 << 30),
                    ('T', 1 << 40),
                ],
            ),
            _ => None,
        };
        match bytes {
            Some(b) if b > 0 => Ok(ByteSize(b)),
            _ => Err(format!(
                "`storage_limit` must be bytes or like \"500G\"/\"20M\", got {v}"
            )),
        }
    }
}

/// `"12h"` → 12 × the unit of `h`; a bare number is taken as is.
fn with_suffix(s: &str, units: &[(char, u64)]) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.chars().last()? {
        c if c.is_ascii_digit() => (s, 1),
        c => {
            let unit = units.iter().find(|(u, _)| u.eq_ignore_ascii_case(&c))?.1;
            (&s[..s.len() - 1], unit)
        }
    };
    num.parse::<u64>().ok()?.checked_mul(unit)
}

/// One source of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub url: InputUrl,
    /// 1 is the highest priority.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Seconds without data before the source is restarted.
    #[serde(default = "default_source_timeout")]
    pub source_timeout: SourceTimeout,
}

fn default_priority() -> u32 {
    1
}
fn default_source_timeout() -> SourceTimeout {
    SourceTimeout(10)
}

/// An integer setting as written; anything else is refused with the value shown.
#[derive(Debug)]
pub struct Number(i64);

impl Number {
    pub fn get(&self) -> i64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::Integer(i) => Ok(Number(i)),
            other => Err(serde::de::Error::custom(format!(
                "expected an integer, got {other}"
            ))),
        }
    }
}

/// Seconds without input before a restart, 1..=3600.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Number")]
pub struct SourceTimeout(u32);

impl SourceTimeout {
    pub fn duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

impl TryFrom<Number> for SourceTimeout {
    type Error = String;
    fn try_from(v: Number) -> Result<Self, String> {
        let v = v.0;
        match u32::try_from(v) {
            Ok(s @ 1..=3600) => Ok(SourceTimeout(s)),
            _ => Err(format!(
                "`source_timeout` must be 1..=3600 seconds, got {v}"
            )),
        }
    }
}

/// Target segment duration in milliseconds, 1000..=60000 (default 2000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Number")]
pub struct SegmentDuration(u32);

impl SegmentDuration {
    pub fn as_millis(self) -> u32 {
        self.0
    }
    pub fn duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0))
    }
}

impl Default for SegmentDuration {
    fn default() -> Self {
        SegmentDuration(2000)
    }
}

impl TryFrom<Number> for SegmentDuration {
    type Error = String;
    fn try_from(v: Number) -> Result<Self, String> {
        let v = v.0;
        match u32::try_from(v) {
            Ok(ms @ 1000..=60_000) => Ok(SegmentDuration(ms)),
            _ => Err(format!(
                "`segment_duration` is in milliseconds and must be 1000..=60000, got {v}"
            )),
        }
    }
}

/// LL-HLS part target in ms, 100..=1000 (default 250): Flussonic's `chunk_duration`
/// (`part_duration` is accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Number")]
pub struct ChunkDuration(u32);

impl ChunkDuration {
    pub fn as_millis(self) -> u32 {
        self.0
    }
    pub fn duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0))
    }
}

impl Default for ChunkDuration {
    fn default() -> Self {
        ChunkDuration(250)
    }
}

impl TryFrom<Number> for ChunkDuration {
    type Error = String;
    fn try_from(v: Number) -> Result<Self, String> {
        let v = v.0;
        match u32::try_from(v) {
            Ok(ms @ 100..=1000) => Ok(ChunkDuration(ms)),
            _ => Err(format!(
                "`chunk_duration` (LL-HLS part) is in milliseconds and must be 100..=1000, got {v}"
            )),
        }
    }
}

/// Segments in the live playlist, 2..=100 (default 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Number")]
pub struct SegmentCount(u32);

impl SegmentCount {
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

impl Default for SegmentCount {
    fn default() -> Self {
        SegmentCount(6)
    }
}

impl TryFrom<Number> for SegmentCount {
    type Error = String;
    fn try_from(v: Number) -> Result<Self, String> {
        let v = v.0;
        match u32::try_from(v) {
            Ok(n @ 2..=100) => Ok(SegmentCount(n)),
            _ => Err(format!("`segment_count` must be 2..=100, got {v}")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamFile {
    title: Option<String>,
    inputs: Inputs,
    segment_duration: Option<SegmentDuration>,
    segment_count: Option<SegmentCount>,
    #[serde(alias = "part_duration")]
    chunk_duration: Option<ChunkDuration>,
    dvr: Option<StreamDvr>,
    publish_key: Option<String>,
    transcoder: Option<super::Transcoder>,
    on_play: Option<super::BackendUrl>,
    on_publish: Option<super::BackendUrl>,
    on_play_default: Option<super::PlayDefault>,
    pushes: Option<Vec<super::Push>>,
}

/// The `inputs` list, refused when empty.
#[derive(Debug, Deserialize)]
#[serde(try_from = "Vec<Input>")]
struct Inputs(Vec<Input>);

impl TryFrom<Vec<Input>> for Inputs {
    type Error = &'static str;
    fn try_from(v: Vec<Input>) -> Result<Self, Self::Error> {
        if v.is_empty() {
            Err("`inputs` must list at least one input")
        } else {
            Ok(Inputs(v))
        }
    }
}

/// Stream names: what may appear as one URL path segment and one file name.
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl StreamConfig {
    /// Parses one stream file's text; `name` comes from the file name.
    pub fn parse(name: &str, text: &str, defaults: Defaults) -> Result<Self, toml::de::Error> {
        let file: StreamFile = toml::from_str(text)?;
        let ladder = file.transcoder.as_ref().map_or(1, |t| t.video.0.len());
        if let Some(r) = file.dvr.as_ref().and_then(|d| d.renditions.as_ref())
            && (r.is_empty() || r.iter().any(|&n| n == 0 || n as usize > ladder))
        {
            return Err(serde::de::Error::custom(format!(
                "`[dvr] renditions` must list renditions 1..={ladder} (this stream has {ladder}), got {r:?}"
            )));
        }
        let pushes = file.pushes.unwrap_or_default();
        if let Some(p) = pushes.iter().find(|p| p.rendition.index() >= ladder) {
            return Err(serde::de::Error::custom(format!(
                "push {} sends rendition {}, but this stream has {ladder}",
                p.url,
                p.rendition.number()
            )));
        }
        for (i, p) in pushes.iter().enumerate() {
            if pushes[..i].iter().any(|q| q.url == p.url) {
                return Err(serde::de::Error::custom(format!(
                    "push {} is listed twice",
                    p.url
                )));
            }
        }
        let segment_duration = file.segment_duration.unwrap_or(defaults.segment_duration);
        let chunk_duration = file.chunk_duration.unwrap_or(defaults.chunk_duration);
        if chunk_duration.as_millis() * 2 > segment_duration.as_millis() {
            return Err(serde::de::Error::custom(format!(
                "`chunk_duration` {} ms is more than half of `segment_duration` {} ms",
                chunk_duration.as_millis(),
                segment_duration.as_millis()
            )));
        }
        let mut inputs = file.inputs.0;
        inputs.sort_by_key(|i| i.priority);
        Ok(StreamConfig {
            name: name.to_owned(),
            title: file.title,
            inputs,
            segment_duration,
            segment_count: file.segment_count.unwrap_or(defaults.segment_count),
            chunk_duration,
            dvr: file.dvr,
            publish_key: file.publish_key.filter(|k| !k.is_empty()),
            transcoder: file.transcoder,
            access: super::StreamAccess {
                on_play: file.on_play,
                on_publish: file.on_publish,
                on_play_default: file.on_play_default,
            },
            pushes,
        })
    }
}
