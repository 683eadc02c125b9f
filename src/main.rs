//! `headwater` command line: parse arguments, load the configuration, run until a signal.

use anyhow::Context;
use clap::{Parser, Subcommand};
use headwater::app::App;
use headwater::config::{Config, Overrides};
use headwater::logging::{self, LogFormat};
use headwater::telemetry;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `--features mimalloc`: mimalloc instead of glibc's malloc (see docs/benchmarks.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(version, about = "Headwater live streaming origin server")]
struct Cli {
    /// Server configuration file.
    #[arg(long, global = true, default_value = "config/headwater.toml")]
    config: PathBuf,
    /// HTTP listen address, overriding the configuration.
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// RTMP publish listen address, overriding the configuration.
    #[arg(long, global = true)]
    rtmp: Option<SocketAddr>,
    /// Directory of stream files (NAME.toml), overriding the configuration.
    #[arg(long, global = true)]
    streams: Option<PathBuf>,
    /// DVR archive root, overriding the configuration.
    #[arg(long, global = true)]
    dvr: Option<PathBuf>,
    /// Log lines as `text` (default) or `json` (one object per line); also
    /// `HEADWATER_LOG_FORMAT`.
    #[arg(long, global = true)]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the configuration and exit (0 when valid).
    CheckConfig,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let format = cli
        .log_format
        .clone()
        .or_else(|| std::env::var("HEADWATER_LOG_FORMAT").ok())
        .unwrap_or_default();
    let format: LogFormat = match format.parse() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("headwater: {e}");
            std::process::exit(2);
        }
    };
    // The metrics recorder first: the trace exporter registers its counters as it starts.
    headwater::stats::Exposition::global();
    // Traces: only the standard OTEL_* variables; a bad one stops the start with its name.
    let trace_settings = telemetry::Settings::from_env(|k| std::env::var(k).ok());
    let traces = match trace_settings
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|s| s.as_ref().map(telemetry::Traces::start).transpose())
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("headwater: traces: {e}");
            std::process::exit(2);
        }
    };
    logging::init(
        format,
        tracing_subscriber::EnvFilter::try_from_env("HEADWATER_LOG")
            .unwrap_or_else(|_| "info".into()),
        traces.as_ref().map(telemetry::Traces::tracer),
    );
    if let Ok(Some(s)) = &trace_settings {
        tracing::info!(endpoint = %s.endpoint, protocol = ?s.protocol, "exporting traces over OTLP");
    }
    let overrides = Overrides {
        listen: cli.listen,
        rtmp: cli.rtmp,
        streams_dir: cli.streams.clone(),
        dvr_root: cli.dvr.clone(),
        ..Overrides::default()
    }
    .with_env();
    let config = match Config::load(&cli.config, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("headwater: configuration error: {e}");
            std::process::exit(2);
        }
    };
    if let Some(Command::CheckConfig) = cli.command {
        println!(
            "configuration OK: {} stream(s), listen {}",
            config.streams.len(),
            config.server.listen
        );
        report_transcoders(&config);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let app = App::start(config, overrides).await?;
        let token = app.shutdown_token();
        let signals = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        };
        tokio::select! {
            r = signals => {
                r.context("installing signal handlers")?;
                tracing::info!("signal received, shutting down");
                token.cancel();
            }
            () = token.cancelled() => {}
        }
        app.run_until_stopped().await;
        anyhow::Ok(())
    })?;
    // Sends the spans still queued (bounded by OTEL_BSP_EXPORT_TIMEOUT).
    drop(traces);
    Ok(())
}

/// `check-config`: where each transcoded stream's codecs would run on this host. A stream that
/// cannot run here (NVENC required but absent) is a warning: the file itself is valid.
fn report_transcoders(config: &Config) {
    use headwater::ingest::codecs::{GstRegistry, choose};
    let transcoded: Vec<_> = config
        .streams
        .iter()
        .filter_map(|s| Some((s, s.transcoder.as_ref()?)))
        .collect();
    if transcoded.is_empty() {
        return;
    }
    if let Err(e) = headwater::gst_util::init() {
        println!("warning: cannot check the transcoders here: {e}");
        return;
    }
    for (stream, t) in transcoded {
        let rungs: Vec<String> = t
            .video
            .0
            .iter()
            .map(|r| format!("{}@{}k", r.size, r.bitrate.kbps()))
            .collect();
        match choose(t.hw, t.deviceid, &GstRegistry) {
            Ok(c) => println!(
                "stream {}: transcoder hw = \"{}\" runs as {} ({c}) on this host: {}",
                stream.name,
                t.hw.as_str(),
                c.hw_label(),
                rungs.join(", ")
            ),
            Err(e) => println!(
                "warning: stream {}: transcoder cannot run on this host: {e}",
                stream.name
            ),
        }
    }
}
