//! A stream's `[transcoder]` table: Flussonic's model (`hw`, `deviceid`, `preset`, `gop`, a
//! list of video renditions and one audio setting) turned into a validated [`Transcoder`].
//! Without the table the stream passes through untouched.

use serde::Deserialize;

/// Most renditions one ladder may have.
pub const MAX_RENDITIONS: usize = 8;

/// A validated transcoder setting.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcoder {
    /// Which codec hardware to use; `auto` when absent.
    #[serde(default)]
    pub hw: Hw,
    /// GPU index for `nvenc`/`auto` (CUDA device id).
    #[serde(default)]
    pub deviceid: DeviceId,
    /// x264 speed preset (NVENC maps it to its own presets).
    #[serde(default)]
    pub preset: Preset,
    /// Keyframe interval in frames; when absent a keyframe is forced at every segment
    /// boundary (by running time), which keeps renditions aligned whatever the frame rate.
    pub gop: Option<Gop>,
    /// The ladder, best first; never empty, at most [`MAX_RENDITIONS`].
    pub video: Renditions,
    /// Audio re-encoding; copied when absent.
    #[serde(default)]
    pub audio: AudioSetting,
}

/// `hw = "auto" | "nvenc" | "cpu"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hw {
    /// NVIDIA decoder/encoder when the elements and a device exist, else software.
    #[default]
    Auto,
    /// NVENC required: a host without it fails the stream, never a silent CPU fallback.
    Nvenc,
    /// Software only (libav decoder, x264).
    Cpu,
}

impl Hw {
    pub fn as_str(self) -> &'static str {
        match self {
            Hw::Auto => "auto",
            Hw::Nvenc => "nvenc",
            Hw::Cpu => "cpu",
        }
    }
}

/// `deviceid`, 0..=15.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "super::stream::Number")]
pub struct DeviceId(pub u32);

impl TryFrom<super::stream::Number> for DeviceId {
    type Error = String;
    fn try_from(v: super::stream::Number) -> Result<Self, String> {
        match u32::try_from(v.get()) {
            Ok(d @ 0..=15) => Ok(DeviceId(d)),
            _ => Err(format!("`deviceid` must be 0..=15, got {}", v.get())),
        }
    }
}

/// `gop`, frames between keyframes, 1..=600.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "super::stream::Number")]
pub struct Gop(pub u32);

impl TryFrom<super::stream::Number> for Gop {
    type Error = String;
    fn try_from(v: super::stream::Number) -> Result<Self, String> {
        match u32::try_from(v.get()) {
            Ok(g @ 1..=600) => Ok(Gop(g)),
            _ => Err(format!("`gop` must be 1..=600 frames, got {}", v.get())),
        }
    }
}

/// x264 speed presets Flussonic accepts (plus the ones between them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Ultrafast,
    Superfast,
    #[default]
    Veryfast,
    Faster,
    Fast,
    Medium,
    Slow,
}

impl Preset {
    /// The `speed-preset` nick of `x264enc`.
    pub fn x264(self) -> &'static str {
        match self {
            Preset::Ultrafast => "ultrafast",
            Preset::Superfast => "superfast",
            Preset::Veryfast => "veryfast",
            Preset::Faster => "faster",
            Preset::Fast => "fast",
            Preset::Medium => "medium",
            Preset::Slow => "slow",
        }
    }

    /// The `preset` nick of `nvh264enc` (GStreamer 1.22).
    pub fn nvenc(self) -> &'static str {
        match self {
            Preset::Ultrafast | Preset::Superfast | Preset::Veryfast => "low-latency-hp",
            Preset::Faster | Preset::Fast => "hp",
            Preset::Medium => "default",
            Preset::Slow => "hq",
        }
    }
}

/// The video ladder.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<VideoRendition>")]
pub struct Renditions(pub Vec<VideoRendition>);

impl TryFrom<Vec<VideoRendition>> for Renditions {
    type Error = String;
    fn try_from(v: Vec<VideoRendition>) -> Result<Self, String> {
        match v.len() {
            0 => Err("`[[transcoder.video]]` must list at least one rendition".into()),
            n if n > MAX_RENDITIONS => Err(format!(
                "at most {MAX_RENDITIONS} video renditions are supported, got {n}"
            )),
            _ => Ok(Renditions(v)),
        }
    }
}

/// One rung: `bitrate = "800k"`, `size = "640x360"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoRendition {
    pub bitrate: VideoBitrate,
    pub size: Size,
}

/// Video bits per second, 32 kbit/s ..= 100 Mbit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub struct VideoBitrate(pub u32);

impl VideoBitrate {
    pub fn kbps(self) -> u32 {
        self.0 / 1000
    }
}

impl TryFrom<toml::Value> for VideoBitrate {
    type Error = String;
    fn try_from(v: toml::Value) -> Result<Self, String> {
        if v.as_str() == Some("copy") {
            return Err("video `bitrate = \"copy\"` is not supported: leave out \
                        `[transcoder]` to pass the video through"
                .into());
        }
        match bits_per_second(&v) {
            Some(b @ 32_000..=100_000_000) => Ok(VideoBitrate(b)),
            _ => Err(format!(
                "video `bitrate` must be like \"2500k\" or \"2M\" (32k..100M), got {v}"
            )),
        }
    }
}

/// `[transcoder.audio] bitrate = "128k"` or `"copy"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSetting {
    #[serde(default)]
    pub bitrate: AudioBitrate,
}

/// AAC bits per second (16k..=512k), or a copy of the source's audio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum AudioBitrate {
    #[default]
    Copy,
    Aac(u32),
}

impl TryFrom<toml::Value> for AudioBitrate {
    type Error = String;
    fn try_from(v: toml::Value) -> Result<Self, String> {
        if v.as_str() == Some("copy") {
            return Ok(AudioBitrate::Copy);
        }
        match bits_per_second(&v) {
            Some(b @ 16_000..=512_000) => Ok(AudioBitrate::Aac(b)),
            _ => Err(format!(
                "audio `bitrate` must be \"copy\" or like \"128k\" (16k..512k), got {v}"
            )),
        }
    }
}

/// `"2500k"`, `"2.5M"`, `"800000"` or an integer → bits per second.
fn bits_per_second(v: &toml::Value) -> Option<u32> {
    let bits = match v {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::String(s) => {
            let s = s.trim();
            let (num, mult) = match s.chars().last()? {
                'k' | 'K' => (&s[..s.len() - 1], 1e3),
                'm' | 'M' => (&s[..s.len() - 1], 1e6),
                c if c.is_ascii_digit() => (s, 1.0),
                _ => return None,
            };
            let n: f64 = num.parse().ok()?;
            (n.is_finite() && n > 0.0).then_some(n * mult)?
        }
        _ => return None,
    };
    (bits >= 1.0 && bits <= f64::from(u32::MAX)).then_some(bits.round() as u32)
}

/// `size = "1280x720"`: even dimensions, 16..=7680 × 16..=4320.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl TryFrom<String> for Size {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let parsed = s
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
        match parsed {
            Some((w @ 16..=7680, h @ 16..=4320)) if w % 2 == 0 && h % 2 == 0 => Ok(Size {
                width: w,
                height: h,
            }),
            _ => Err(format!(
                "`size` must be WIDTHxHEIGHT with even numbers up to 7680x4320, got {s:?}"
            )),
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Transcoder, String> {
        #[derive(Deserialize)]
        struct F {
            transcoder: Transcoder,
        }
        toml::from_str::<F>(text)
            .map(|f| f.transcoder)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_two_rung_ladder() {
        let t = parse(
            "[transcoder]\nhw = \"cpu\"\npreset = \"ultrafast\"\ngop = 50\n\
             [[transcoder.video]]\nbitrate = \"800k\"\nsize = \"640x360\"\n\
             [[transcoder.video]]\nbitrate = 300000\nsize = \"320x180\"\n\
             [transcoder.audio]\nbitrate = \"96k\"\n",
        )
        .unwrap();
        assert_eq!(t.hw, Hw::Cpu);
        assert_eq!(t.preset, Preset::Ultrafast);
        assert_eq!(t.gop, Some(Gop(50)));
        assert_eq!(t.video.0.len(), 2);
        assert_eq!(t.video.0[0].bitrate, VideoBitrate(800_000));
        assert_eq!(t.video.0[1].bitrate, VideoBitrate(300_000));
        assert_eq!(
            t.video.0[1].size,
            Size {
                width: 320,
                height: 180
            }
        );
        assert_eq!(t.audio.bitrate, AudioBitrate::Aac(96_000));
    }

    #[test]
    fn defaults_are_auto_veryfast_audio_copy() {
        let t =
            parse("[transcoder]\n[[transcoder.video]]\nbitrate = \"2.5M\"\nsize = \"1280x720\"\n")
                .unwrap();
        assert_eq!(t.hw, Hw::Auto);
        assert_eq!(t.deviceid, DeviceId(0));
        assert_eq!(t.preset, Preset::Veryfast);
        assert_eq!(t.gop, None);
        assert_eq!(t.video.0[0].bitrate, VideoBitrate(2_500_000));
        assert_eq!(t.audio.bitrate, AudioBitrate::Copy);
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let rung = "[[transcoder.video]]\nbitrate = \"800k\"\nsize = \"640x360\"\n";
        for (text, want) in [
            ("[transcoder]\nhw = \"qsv\"\n", "unknown variant"),
            ("[transcoder]\nvideo = []\n", "at least one rendition"),
            (
                "[transcoder]\n[[transcoder.video]]\nbitrate = \"copy\"\nsize = \"640x360\"\n",
                "not supported",
            ),
            (
                "[transcoder]\n[[transcoder.video]]\nbitrate = \"fast\"\nsize = \"640x360\"\n",
                "video `bitrate`",
            ),
            (
                "[transcoder]\n[[transcoder.video]]\nbitrate = \"800k\"\nsize = \"641x360\"\n",
                "even numbers",
            ),
            (
                "[transcoder]\n[[transcoder.video]]\nbitrate = \"800k\"\nsize = \"big\"\n",
                "WIDTHxHEIGHT",
            ),
            (&format!("[transcoder]\ngop = 0\n{rung}"), "`gop`"),
            (
                &format!("[transcoder]\ndeviceid = 99\n{rung}"),
                "`deviceid`",
            ),
            (
                &format!("[transcoder]\npreset = \"turbo\"\n{rung}"),
                "unknown variant",
            ),
            (
                &format!("[transcoder]\n{rung}[transcoder.audio]\nbitrate = \"5k\"\n"),
                "audio `bitrate`",
            ),
            (&format!("[transcoder]\nvb = 1\n{rung}"), "unknown field"),
            (&format!("[transcoder]\n{}", rung.repeat(9)), "at most 8"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
