//! Configuration: `config/headwater.toml` for the server and one `streams/NAME.toml` per
//! stream, with Flussonic's stream keys. Loaded and validated once before anything starts;
//! any mistake refuses to start with the file, line and key named.

mod access;
mod auth;
mod dvb;
mod input;
mod keys;
mod push;
mod stream;
pub mod transcoder;

pub use access::{
    AuthSection, BackendUrl, Cidr, FrontDoor, PlayDefault, StreamAccess, Tls, check_public_url,
};
pub use auth::Credentials;
pub use dvb::{DvbCard, DvbHw, DvbSystem, Modulation, Polarization};
pub use input::{InputUrl, mask_credentials};
pub use push::{Push, PushUrl, SrtOptions, mask_line, mask_url};
pub use stream::{
    ByteSize, ChunkDuration, Input, SegmentCount, SegmentDuration, Span, StreamConfig, StreamDvr,
    valid_stream_name,
};
pub use transcoder::Transcoder;

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A configuration mistake, located.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message} (in `{source_line}`)")]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
        /// The offending line, so the key is always named.
        source_line: String,
        /// The key it concerns, as `inputs[0].url`; `None` when no single key is at fault.
        key: Option<String>,
    },
    #[error("{file}: {message}")]
    File {
        file: PathBuf,
        message: String,
        /// The key it concerns, when one is.
        key: Option<String>,
    },
}

/// One mistake as the API reports it: `{path, line, column, message}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The key, as `inputs[0].url`; `null` for the document as a whole.
    pub path: Option<String>,
    /// 1-based position in the text that was parsed; `null` when it has no single place.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl ConfigError {
    /// A whole-file mistake that concerns `key`.
    fn file(file: &Path, key: Option<&str>, message: String) -> Self {
        ConfigError::File {
            file: file.to_owned(),
            message,
            key: key.map(str::to_owned),
        }
    }

    /// The mistake without the file name, for API answers.
    pub fn field_error(&self) -> FieldError {
        match self {
            ConfigError::Read { source, .. } => FieldError {
                path: None,
                line: None,
                column: None,
                message: format!("cannot read: {source}"),
            },
            ConfigError::Invalid {
                line,
                column,
                message,
                key,
                ..
            } => FieldError {
                path: key.clone(),
                line: Some(*line),
                column: Some(*column),
                message: message.clone(),
            },
            ConfigError::File { message, key, .. } => FieldError {
                path: key.clone(),
                line: None,
                column: None,
                message: message.clone(),
            },
        }
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub dvr: DvrConfig,
    pub streams: Vec<StreamConfig>,
    /// DVB cards by name (`dvb://NAME?program=N` inputs refer to them).
    pub dvb: std::collections::BTreeMap<String, DvbCard>,
    /// Each stream file's text, by stream name (what the API shows and updates).
    pub texts: std::collections::BTreeMap<String, String>,
    /// `[defaults]` that stream files may override.
    pub defaults: Defaults,
    /// Where it was read from (reloads and API writes go back there).
    pub paths: ConfigPaths,
}

/// Where the configuration lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPaths {
    /// The server file.
    pub file: PathBuf,
    /// One `NAME.toml` per stream.
    pub streams_dir: PathBuf,
    /// The server file's folder: relative paths in the files are relative to it.
    pub base: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    dvr: DvrSection,
    #[serde(default)]
    stats: StatsSection,
    /// Default authorization backends.
    #[serde(default)]
    auth: AuthSection,
    /// DVB cards by name.
    #[serde(default)]
    dvb: std::collections::BTreeMap<String, DvbCard>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsSection {
    /// Stats thread period, ms.
    #[serde(default = "default_stats_interval")]
    interval: u64,
    /// Seconds an idle HLS session still counts as a client.
    #[serde(default = "default_session_timeout")]
    session_timeout: u64,
}

impl Default for StatsSection {
    fn default() -> Self {
        StatsSection {
            interval: default_stats_interval(),
            session_timeout: default_session_timeout(),
        }
    }
}

fn default_stats_interval() -> u64 {
    5000
}
fn default_session_timeout() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    view_auth: Option<Credentials>,
    edit_auth: Option<Credentials>,
    /// Directory of stream files, relative to the config file.
    #[serde(default = "default_streams_dir")]
    streams: PathBuf,
    /// How long shutdown waits for open connections, ms.
    #[serde(default = "default_drain_ms")]
    shutdown_drain: u64,
    /// RTMP publish listener (only opened when a stream has a `publish://` input).
    #[serde(default = "default_rtmp")]
    rtmp: SocketAddr,
    /// Open connections beyond which new ones are closed.
    max_connections: Option<u64>,
    /// Seconds a client may take to send its request headers.
    header_read_timeout: Option<u64>,
    /// Seconds an idle keep-alive connection stays open.
    keepalive_timeout: Option<u64>,
    /// Peers whose `X-Forwarded-For` is believed.
    #[serde(default)]
    trusted_proxies: Vec<Cidr>,
    /// Prefix of absolute URLs Headwater writes.
    public_url: Option<String>,
    /// SRT publish listener (encoders push to `publish://` streams).
    srt_publish: Option<SocketAddr>,
    /// HTTPS listener address; needs `tls_cert` and `tls_key`.
    https: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            view_auth: None,
            edit_auth: None,
            streams: default_streams_dir(),
            shutdown_drain: default_drain_ms(),
            rtmp: default_rtmp(),
            max_connections: None,
            header_read_timeout: None,
            keepalive_timeout: None,
            trusted_proxies: Vec::new(),
            public_url: None,
            srt_publish: None,
            https: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// Stream defaults that a stream file may override.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default)]
    pub segment_duration: SegmentDuration,
    #[serde(default)]
    pub segment_count: SegmentCount,
    /// LL-HLS part target (`part_duration` is accepted too).
    #[serde(default, alias = "part_duration")]
    pub chunk_duration: ChunkDuration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DvrSection {
    #[serde(default = "default_dvr_root")]
    root: PathBuf,
    /// Default archive depth of streams that set none (Flussonic's `expiration`).
    #[serde(default = "default_expiration")]
    expiration: Span,
    /// Filesystem usage (%) above which every stream deletes its oldest segments.
    disk_usage_limit: Option<f64>,
    /// MP4 exports that may run at once.
    #[serde(default = "default_max_exports")]
    max_exports: u64,
    /// Longest export (`.ts` or `.mp4`).
    #[serde(default = "default_max_export_duration")]
    max_export_duration: Span,
}

fn default_max_exports() -> u64 {
    2
}
fn default_max_export_duration() -> Span {
    Span(6 * 3600)
}

impl Default for DvrSection {
    fn default() -> Self {
        DvrSection {
            root: default_dvr_root(),
            expiration: default_expiration(),
            disk_usage_limit: None,
            max_exports: default_max_exports(),
            max_export_duration: default_max_export_duration(),
        }
    }
}

/// Server-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Read-only API credentials; never logged.
    pub view_auth: Option<Credentials>,
    /// Administrator credentials; never logged.
    pub edit_auth: Option<Credentials>,
    pub shutdown_drain_ms: u64,
    /// RTMP publish listener address.
    pub rtmp: SocketAddr,
    /// Stats thread period, ms (200..=60000).
    pub stats_interval_ms: u64,
    /// Seconds an idle HLS session still counts as a client (1..=3600).
    pub session_timeout_s: u64,
    /// Default authorization backends (`[auth]`).
    pub auth: AuthSection,
    /// Connection limits, timeouts, trusted proxies.
    pub front: FrontDoor,
    /// The HTTPS listener, when configured.
    pub tls: Option<Tls>,
    /// The SRT publish listener's address, when configured.
    pub srt_publish: Option<SocketAddr>,
}

/// Server-wide archive settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DvrConfig {
    /// Default root (absolute, clean); streams record under `ROOT/NAME`.
    pub root: PathBuf,
    /// Default archive depth, seconds.
    pub expiration_s: u64,
    /// Used-space percentage of a DVR filesystem that starts cleaning.
    pub disk_usage_limit: Option<f64>,
    /// MP4 exports that may run at once (1..=64).
    pub max_exports: usize,
    /// Longest export, seconds (at most 24 h).
    pub max_export_s: u64,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_rtmp() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 1935))
}
fn default_streams_dir() -> PathBuf {
    PathBuf::from("../streams")
}
fn default_dvr_root() -> PathBuf {
    PathBuf::from("../dvr")
}
fn default_drain_ms() -> u64 {
    5000
}
fn default_expiration() -> Span {
    Span(86_400)
}

/// Command-line and environment overrides, applied after the files are read.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub rtmp: Option<SocketAddr>,
    pub streams_dir: Option<PathBuf>,
    pub dvr_root: Option<PathBuf>,
    /// `HEADWATER_VIEW_AUTH` value, if set.
    pub view_auth: Option<String>,
    /// `HEADWATER_EDIT_AUTH` value, if set.
    pub edit_auth: Option<String>,
}

impl Overrides {
    /// Reads the credential variables from the environment.
    pub fn with_env(mut self) -> Self {
        self.view_auth = std::env::var("HEADWATER_VIEW_AUTH").ok();
        self.edit_auth = std::env::var("HEADWATER_EDIT_AUTH").ok();
        self
    }
}

impl Config {
    /// Loads the server file, then every `*.toml` in the streams directory; any mistake
    /// refuses the whole configuration (start-up and `check-config`).
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = Config::load_server(path, overrides)?;
        let (files, mut errors) = config.scan_streams()?;
        if !errors.is_empty() {
            return Err(errors.swap_remove(0).1);
        }
        for f in files {
            config.texts.insert(f.config.name.clone(), f.text);
            config.streams.push(f.config);
        }
        Ok(config)
    }

    /// Reads and validates the server file alone (`streams` left empty).
    pub fn load_server(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text = read(path)?;
        Config::parse_server(path, &text, overrides)
    }

    /// Validates the text of a server file read from `path` (the API's validation too).
    pub fn parse_server(
        path: &Path,
        text: &str,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let file: ServerFile = parse(path, text)?;
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let streams_dir = overrides
            .streams_dir
            .clone()
            .unwrap_or_else(|| base.join(&file.server.streams));
        let dvr_root = clean_path(
            &overrides
                .dvr_root
                .clone()
                .unwrap_or_else(|| base.join(&file.dvr.root)),
        );
        let env_auth = |value: &Option<String>, var: &str| -> Result<_, ConfigError> {
            value
                .as_deref()
                .map(|v| {
                    v.parse::<Credentials>().map_err(|message| {
                        ConfigError::file(Path::new(&format!("${var}")), None, message)
                    })
                })
                .transpose()
        };
        let front = access::front_door(&file.server)
            .map_err(|(key, m)| ConfigError::file(path, Some(key), m))?;
        let tls = access::tls(&file.server, &base)
            .map_err(|(key, m)| ConfigError::file(path, Some(key), m))?;
        let server = ServerConfig {
            listen: overrides.listen.unwrap_or(file.server.listen),
            view_auth: env_auth(&overrides.view_auth, "HEADWATER_VIEW_AUTH")?
                .or(file.server.view_auth),
            edit_auth: env_auth(&overrides.edit_auth, "HEADWATER_EDIT_AUTH")?
                .or(file.server.edit_auth),
            shutdown_drain_ms: file.server.shutdown_drain,
            rtmp: overrides.rtmp.unwrap_or(file.server.rtmp),
            stats_interval_ms: file.stats.interval,
            session_timeout_s: file.stats.session_timeout,
            front,
            tls,
            srt_publish: file.server.srt_publish,
            auth: file.auth,
        };
        server
            .auth
            .check()
            .map_err(|(key, m)| ConfigError::file(path, Some(key), m))?;
        if !(1..=64).contains(&file.dvr.max_exports) {
            return Err(ConfigError::file(
                path,
                Some("dvr.max_exports"),
                format!(
                    "[dvr] max_exports must be 1..=64, got {}",
                    file.dvr.max_exports
                ),
            ));
        }
        if file.dvr.max_export_duration.0 > 86_400 {
            return Err(ConfigError::file(
                path,
                Some("dvr.max_export_duration"),
                format!(
                    "[dvr] max_export_duration must be at most 24h, got {} s",
                    file.dvr.max_export_duration.0
                ),
            ));
        }
        if !(200..=60_000).contains(&server.stats_interval_ms) {
            return Err(ConfigError::file(
                path,
                Some("stats.interval"),
                format!(
                    "[stats] interval must be 200..=60000 ms, got {}",
                    server.stats_interval_ms
                ),
            ));
        }
        if !(1..=3600).contains(&server.session_timeout_s) {
            return Err(ConfigError::file(
                path,
                Some("stats.session_timeout"),
                format!(
                    "[stats] session_timeout must be 1..=3600 s, got {}",
                    server.session_timeout_s
                ),
            ));
        }
        if let Some(limit) = file.dvr.disk_usage_limit
            && !(1.0..=100.0).contains(&limit)
        {
            return Err(ConfigError::file(
                path,
                Some("dvr.disk_usage_limit"),
                format!("[dvr] disk_usage_limit must be a percentage 1..=100, got {limit}"),
            ));
        }
        for (name, card) in &file.dvb {
            if card.hw == DvbHw::Udp && card.device.is_none() {
                return Err(ConfigError::file(
                    path,
                    Some(&format!("dvb.{name}.device")),
                    format!("[dvb.{name}] hw = \"udp\" needs device = \"ADDR:PORT\""),
                ));
            }
        }
        Ok(Config {
            dvb: file.dvb,
            server,
            dvr: DvrConfig {
                root: dvr_root,
                expiration_s: file.dvr.expiration.0,
                disk_usage_limit: file.dvr.disk_usage_limit,
                max_exports: file.dvr.max_exports as usize,
                max_export_s: file.dvr.max_export_duration.0,
            },
            streams: Vec::new(),
            texts: std::collections::BTreeMap::new(),
            defaults: file.defaults,
            paths: ConfigPaths {
                file: path.to_owned(),
                streams_dir,
                base,
            },
        })
    }

    /// Reads every `*.toml` of the streams directory: the valid streams, and each invalid
    /// file with its mistake (and the stream name, when the file name is a valid one).
    /// Fails only when the directory itself cannot be read.
    pub fn scan_streams(&self) -> Result<(Vec<StreamFile>, Vec<InvalidFile>), ConfigError> {
        let dir = &self.paths.streams_dir;
        let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Read {
            file: dir.to_owned(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        let mut streams = Vec::new();
        let mut errors = Vec::new();
        for path in files {
            let Some(name) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|n| valid_stream_name(n))
            else {
                let message =
                    "stream file names must be NAME.toml with NAME of letters, digits, `_` and `-`";
                errors.push((None, ConfigError::file(&path, None, message.into())));
                continue;
            };
            let result = read(&path).and_then(|text| {
                let config = self.stream_from_text(name, &text, &path)?;
                Ok(StreamFile { config, text })
            });
            match result {
                Ok(s) => streams.push(s),
                Err(e) => errors.push((Some(name.to_owned()), e)),
            }
        }
        Ok((streams, errors))
    }

    /// The file of stream `name`.
    pub fn stream_file(&self, name: &str) -> PathBuf {
        self.paths.streams_dir.join(format!("{name}.toml"))
    }

    /// The one validation of a stream definition, for files, reloads and the API alike:
    /// `text` is the TOML of stream `name`, reported as `file` in errors.
    pub fn stream_from_text(
        &self,
        name: &str,
        text: &str,
        file: &Path,
    ) -> Result<StreamConfig, ConfigError> {
        if !valid_stream_name(name) {
            return Err(ConfigError::file(
                file,
                Some("name"),
                format!("invalid stream name {name:?}: use 1 to 128 letters, digits, `_` and `-`"),
            ));
        }
        let mut stream =
            StreamConfig::parse(name, text, self.defaults).map_err(|e| locate(file, text, &e))?;
        // A stream's relative DVR root is relative to the config file, like the global one.
        if let Some(d) = &mut stream.dvr
            && let Some(r) = &d.root
        {
            d.root = Some(clean_path(&self.paths.base.join(r)));
        }
        for (i, input) in stream.inputs.iter().enumerate() {
            if let InputUrl::Dvb { card, .. } = &input.url
                && !self.dvb.contains_key(card)
            {
                return Err(ConfigError::file(
                    file,
                    Some(&format!("inputs[{i}].url")),
                    format!(
                        "input dvb://{card}: no [dvb.{card}] card in {}",
                        self.paths.file.display()
                    ),
                ));
            }
        }
        Ok(stream)
    }
}

/// A valid stream file: the definition and the text it was read from.
#[derive(Debug, Clone)]
pub struct StreamFile {
    pub config: StreamConfig,
    pub text: String,
}

/// A stream file that failed validation: its stream name (when the file name is one) and why.
pub type InvalidFile = (Option<String>, ConfigError);

/// Absolute and without `.`/`..` parts (lexically: the root may not exist yet), so logs and
/// metric labels show one spelling of each path.
fn clean_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| locate(path, text, &e))
}

/// Turns a TOML error into `file:line:column: message`.
fn locate(path: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
    let offset = err.span().map_or(0, |s| s.start).min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    // Quoted with its URLs masked: the line may hold a push's stream key.
    let source_line: String = mask_line(text.lines().nth(line - 1).unwrap_or_default().trim())
        .chars()
        .take(120)
        .collect();
    ConfigError::Invalid {
        file: path.to_owned(),
        line,
        column,
        message: err.message().trim().to_owned(),
        source_line,
        key: err.span().and_then(|s| keys::path_at(text, s.start)),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod path_tests {
    use super::clean_path;
    use std::path::Path;

    #[test]
    fn paths_are_made_absolute_and_clean() {
        assert_eq!(
            clean_path(Path::new("/srv/config/../dvr/./x")),
            Path::new("/srv/dvr/x")
        );
        assert!(clean_path(Path::new("rel/../dvr")).is_absolute());
    }
}
