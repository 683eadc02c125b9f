//! Every metric Headwater exports, named exactly as Flussonic's monitoring guide (seed 001)
//! lists them, with units as documented there; plus HTTP, auth and stats-thread health
//! metrics under the same prefix. All names and help texts live here.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

// Server (seed 001).
pub const VERSION_INFO: &str = "flussonic_version_info";
pub const BOOT_TIME: &str = "flussonic_boot_time_seconds";
pub const MEMORY_USAGE: &str = "flussonic_memory_usage";
pub const CLIENTS: &str = "flussonic_clients";
pub const STREAMS: &str = "flussonic_streams";
pub const OPENED_FILES: &str = "flussonic_opened_files";
pub const SCHEDULER_LOAD: &str = "flussonic_scheduler_load";
pub const CPU_USAGE: &str = "flussonic_cpu_usage";
pub const DISK_SIZE: &str = "flussonic_disk_size";
pub const DISK_USAGE: &str = "flussonic_disk_usage";
pub const DISK_IO_USAGE: &str = "flussonic_disk_io_usage";
pub const NET_INPUT: &str = "flussonic_net_input_bytes";
pub const NET_OUTPUT: &str = "flussonic_net_output_bytes";
pub const DVB_STRENGTH: &str = "flussonic_dvb_card_strength";
pub const GPU_DEC: &str = "flussonic_gpu_dec";
pub const GPU_ENC: &str = "flussonic_gpu_enc";
pub const GPU_TEMP: &str = "flussonic_gpu_temp";
pub const GPU_AVAILABLE: &str = "flussonic_gpu_available";
pub const DVB_LOCK_LOST: &str = "flussonic_dvb_lock_lost_total";

// Per stream (seed 001), label `name`.
pub const STREAM_CLIENT_DELAY: &str = "flussonic_stream_client_delay";
pub const STREAM_BYTES_IN: &str = "flussonic_stream_bytes_in";
pub const STREAM_BYTES_OUT: &str = "flussonic_stream_bytes_out";
pub const STREAM_BITRATE: &str = "flussonic_stream_bitrate";
pub const STREAM_START_RUNNING_AT: &str = "flussonic_stream_start_running_at";
pub const STREAM_RETRY_COUNT: &str = "flussonic_stream_retry_count";
pub const STREAM_CLIENT_COUNT: &str = "flussonic_stream_client_count";
pub const STREAM_DVR_DISK_SIZE: &str = "flussonic_stream_dvr_info_disk_size";
pub const STREAM_DVR_DEPTH: &str = "flussonic_stream_dvr_info_depth";
pub const STREAM_DVR_DURATION: &str = "flussonic_stream_dvr_info_duration";
pub const STREAM_ALIVE: &str = "flussonic_stream_alive";
pub const STREAM_INPUT_ACTIVE: &str = "flussonic_stream_input_active";
/// Labels `name`, `hw`, `decoder`, `encoder`: where a transcoded stream's codecs run.
pub const STREAM_TRANSCODER: &str = "flussonic_stream_transcoder_info";
/// Label `name`: 1 while the transcoder can run, 0 when no codec pair is usable.
pub const STREAM_TRANSCODER_UP: &str = "flussonic_stream_transcoder_up";
/// Labels `name`, `track` (`v1`, `v2`…): each rendition's bits/s over the live window.
pub const STREAM_RENDITION_BITRATE: &str = "flussonic_stream_rendition_bitrate";

// Pushes, labels `name` and `push` (the destination URL, secrets masked).
pub const STREAM_PUSH_BYTES: &str = "flussonic_stream_push_bytes_total";
pub const STREAM_PUSH_UP: &str = "flussonic_stream_push_up";
pub const STREAM_PUSH_RETRIES: &str = "flussonic_stream_push_retries_total";
pub const STREAM_PUSH_DROPPED: &str = "flussonic_stream_push_dropped_chunks_total";

// DVR recorder, label `name`.
pub const DVR_WRITTEN: &str = "flussonic_dvr_segments_written_total";
pub const DVR_DROPPED: &str = "flussonic_dvr_segments_dropped_total";
pub const DVR_FAILED: &str = "flussonic_dvr_segments_failed_total";
pub const DVR_DELETED_BYTES: &str = "flussonic_dvr_deleted_bytes_total";

// Publishing.
pub const PUBLISH_REFUSED: &str = "flussonic_publish_refused_total";

// Control plane.
pub const CONFIG_RELOADS: &str = "flussonic_config_reloads_total";

// HTTP and auth (seeds 002/003).
pub const HTTP_REQUESTS: &str = "flussonic_http_requests_total";
pub const HTTP_DURATION: &str = "flussonic_http_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "flussonic_http_requests_in_flight";
pub const HTTP_RESPONSE_SIZE: &str = "flussonic_http_response_size_bytes";
pub const AUTH_FAILURES: &str = "flussonic_auth_failures_total";

// Viewers' authorization and the front door.
/// Labels `hook` (`on_play`, `on_publish`), `result` (`allow`, `deny`, `error`).
pub const AUTH_BACKEND_REQUESTS: &str = "flussonic_auth_backend_requests_total";
/// Label `hook`: how long backend calls took.
pub const AUTH_BACKEND_DURATION: &str = "flussonic_auth_backend_duration_seconds";
/// Spans delivered to the OTLP collector.
pub const TRACE_SPANS_EXPORTED: &str = "flussonic_trace_spans_exported_total";
/// Label `reason` (`queue_full`, `export_failed`): spans that never reached the collector.
pub const TRACE_SPANS_DROPPED: &str = "flussonic_trace_spans_dropped_total";
/// Play requests decided by a cached backend answer (no call made).
pub const AUTH_CACHED: &str = "flussonic_auth_cached_answers_total";
/// Label `reason`: play requests refused (`denied`, `backend_error`, `max_sessions`, `ended`,
/// `table_full`, `bad_token`).
pub const PLAY_REFUSED: &str = "flussonic_play_refused_total";
/// Label `reason` (`api`, `idle`, `denied`): play sessions that ended.
pub const SESSIONS_ENDED: &str = "flussonic_sessions_ended_total";
/// Label `reason` (`max_connections`, `header_timeout`): connections closed by the front door.
pub const CONNECTIONS_REFUSED: &str = "flussonic_http_connections_refused_total";
/// Open HTTP and HTTPS connections.
pub const CONNECTIONS_OPEN: &str = "flussonic_http_connections_open";
/// MP4 exports being remuxed now.
pub const EXPORTS_RUNNING: &str = "flussonic_dvr_exports_running";
/// Label `source` (`remux`, `kept`): MP4 export requests by how they were answered.
pub const EXPORTS: &str = "flussonic_dvr_exports_total";

// Stats thread health (seed 003).
pub const STATS_LAST_SUCCESS: &str = "flussonic_stats_last_success_timestamp_seconds";
pub const STATS_ERRORS: &str = "flussonic_stats_errors_total";
pub const STATS_DURATION: &str = "flussonic_stats_duration_seconds";

/// Latency buckets of seed 002, seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Response size buckets, bytes: playlists (~1 KB) to segments (~MBs).
pub const SIZE_BUCKETS: &[f64] = &[
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// Registers `# HELP` texts and units with the recorder.
pub fn describe() {
    describe_counter!(
        CONFIG_RELOADS,
        "Configuration reloads (SIGHUP or an edit in streams/) by result: ok, or error when a file was refused"
    );
    describe_gauge!(
        STREAM_INPUT_ACTIVE,
        "1 for the input (by position in priority order) feeding the stream, 0 for the others"
    );
    describe_gauge!(
        STREAM_TRANSCODER,
        "1 for the codecs a transcoded stream uses now (hw: nvenc, nvdec or cpu; none when it cannot start), 0 for an earlier choice"
    );
    describe_gauge!(
        STREAM_TRANSCODER_UP,
        "1 while a transcoded stream has a usable decoder and encoder, 0 when it cannot start"
    );
    describe_gauge!(
        STREAM_RENDITION_BITRATE,
        "Bits per second of each rendition over the live window (MPEG-TS)"
    );
    describe_counter!(
        STREAM_PUSH_BYTES,
        Unit::Bytes,
        "Bytes a push sent to its destination (to all viewers of an SRT listener)"
    );
    describe_gauge!(
        STREAM_PUSH_UP,
        "1 while a push is sending (a listener: accepting viewers), 0 while it connects or retries"
    );
    describe_counter!(
        STREAM_PUSH_RETRIES,
        "Times a push lost its destination (refused, dropped, unreachable) and started again"
    );
    describe_counter!(
        STREAM_PUSH_DROPPED,
        "Stream chunks a push skipped because its destination could not keep up"
    );
    describe_gauge!(VERSION_INFO, "Headwater version (value is always 1)");
    describe_gauge!(BOOT_TIME, Unit::Seconds, "Server start time, Unix seconds");
    describe_gauge!(
        MEMORY_USAGE,
        Unit::Percent,
        "Host memory in use, percent of total (MemTotal - MemAvailable)"
    );
    describe_gauge!(CLIENTS, "Clients connected to all streams");
    describe_gauge!(STREAMS, "Configured streams");
    describe_gauge!(OPENED_FILES, "File descriptors open in the server process");
    describe_gauge!(
        SCHEDULER_LOAD,
        Unit::Percent,
        "Async runtime load: busy time of its worker threads, percent of their wall time over the last stats interval"
    );
    describe_gauge!(
        CPU_USAGE,
        Unit::Percent,
        "Host CPU usage over the last stats interval, percent of all cores"
    );
    describe_gauge!(
        DISK_SIZE,
        Unit::Bytes,
        "Size of the filesystem holding a DVR root"
    );
    describe_gauge!(
        DISK_USAGE,
        Unit::Percent,
        "Used space of the filesystem holding a DVR root, percent"
    );
    describe_gauge!(
        DISK_IO_USAGE,
        Unit::Percent,
        "Time the DVR root's block device was busy with I/O over the last stats interval, percent"
    );
    describe_counter!(
        NET_INPUT,
        Unit::Bytes,
        "Bytes received on the host's network interfaces (loopback excluded)"
    );
    describe_counter!(
        NET_OUTPUT,
        Unit::Bytes,
        "Bytes sent on the host's network interfaces (loopback excluded)"
    );
    describe_gauge!(
        DVB_STRENGTH,
        Unit::Percent,
        "DVB card signal strength, percent of the 16-bit maximum"
    );
    describe_counter!(
        DVB_LOCK_LOST,
        "Times a DVB card lost its lock on the multiplex"
    );
    describe_gauge!(GPU_DEC, Unit::Percent, "GPU video decoder utilisation");
    describe_gauge!(GPU_ENC, Unit::Percent, "GPU video encoder utilisation");
    describe_gauge!(GPU_TEMP, "GPU temperature, degrees Celsius");
    describe_gauge!(
        GPU_AVAILABLE,
        "1 when NVIDIA GPUs are monitored through NVML, 0 with the reason when not"
    );
    describe_gauge!(
        STREAM_CLIENT_DELAY,
        "Milliseconds between the newest frame received from the source and the newest segment clients can fetch"
    );
    describe_counter!(
        STREAM_BYTES_IN,
        Unit::Bytes,
        "Bytes received from the stream's source"
    );
    describe_counter!(
        STREAM_BYTES_OUT,
        Unit::Bytes,
        "Bytes of playback sent to the stream's clients"
    );
    describe_gauge!(
        STREAM_BITRATE,
        "Input bitrate in kB/s (1000 bytes per second) over a sliding window"
    );
    describe_gauge!(
        STREAM_START_RUNNING_AT,
        "When the current source run delivered its first data, ms since the Unix epoch (0 while none)"
    );
    describe_counter!(
        STREAM_RETRY_COUNT,
        "Automatic restarts of the stream's source"
    );
    describe_gauge!(
        STREAM_CLIENT_COUNT,
        "Clients of the stream: HLS sessions seen within the session timeout plus open /mpegts connections"
    );
    describe_gauge!(
        STREAM_DVR_DISK_SIZE,
        Unit::Bytes,
        "Bytes of the stream's archive on disk (0 without DVR)"
    );
    describe_gauge!(
        STREAM_DVR_DEPTH,
        Unit::Seconds,
        "Archive depth: first segment start to last segment end (0 without DVR)"
    );
    describe_gauge!(
        STREAM_DVR_DURATION,
        Unit::Seconds,
        "Recorded archive duration without gaps (0 without DVR)"
    );
    describe_gauge!(
        STREAM_ALIVE,
        "1 when the source delivered data within the last 12 s"
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by method, route template and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to the response head (first byte for endless bodies)"
    );
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being handled");
    describe_histogram!(
        HTTP_RESPONSE_SIZE,
        Unit::Bytes,
        "Response body size, for responses with a known length"
    );
    describe_counter!(
        AUTH_FAILURES,
        "API requests refused for authentication, by reason"
    );
    describe_counter!(
        DVR_WRITTEN,
        "Archive segments written (synced and renamed into place)"
    );
    describe_counter!(
        DVR_DROPPED,
        "Archive segments dropped because the DVR writer was behind"
    );
    describe_counter!(
        DVR_FAILED,
        "Archive segments that could not be written (disk full, read-only, I/O error)"
    );
    describe_counter!(
        DVR_DELETED_BYTES,
        Unit::Bytes,
        "Bytes deleted from the archive by retention"
    );
    describe_counter!(
        AUTH_BACKEND_REQUESTS,
        "Calls to authorization backends by hook (on_play, on_publish) and result (allow, deny, error)"
    );
    describe_histogram!(
        AUTH_BACKEND_DURATION,
        Unit::Seconds,
        "Duration of authorization backend calls, by hook"
    );
    describe_counter!(
        AUTH_CACHED,
        "Play requests decided by a still-valid backend answer, without a call"
    );
    describe_counter!(PLAY_REFUSED, "Play requests refused, by reason");
    describe_counter!(
        TRACE_SPANS_EXPORTED,
        "Trace spans delivered to the OTLP collector"
    );
    describe_counter!(
        TRACE_SPANS_DROPPED,
        "Trace spans that never reached the collector, by reason: queue_full (the export queue was full), export_failed (the collector refused or did not answer)"
    );
    describe_counter!(
        SESSIONS_ENDED,
        "Play sessions ended, by reason: api (DELETE), idle (session timeout), denied (backend revoked)"
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections closed by the front door, by reason"
    );
    describe_gauge!(CONNECTIONS_OPEN, "Open HTTP and HTTPS connections");
    describe_gauge!(EXPORTS_RUNNING, "Archive MP4 exports being remuxed now");
    describe_counter!(
        EXPORTS,
        "Archive MP4 export requests by source: remux (made now) or kept (a finished export reused)"
    );
    describe_gauge!(
        STATS_LAST_SUCCESS,
        Unit::Seconds,
        "When the stats thread last completed a sample, Unix seconds"
    );
    describe_counter!(STATS_ERRORS, "Stats samples that failed");
    describe_gauge!(
        STATS_DURATION,
        Unit::Seconds,
        "Duration of the last stats sample"
    );
}

/// Longest label value exported.
const MAX_LABEL: usize = 128;

/// A label value from outside the code (a path, a card name): control characters become `_`
/// and it is cut to a bounded length, so one odd value cannot break a dashboard or bloat the
/// exposition. Quoting and escaping are the exporter's job.
pub fn sanitize_label(value: &str) -> String {
    let mut out: String = value
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .take(MAX_LABEL)
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sanitize_label;

    #[test]
    fn label_values_are_bounded_and_printable() {
        assert_eq!(sanitize_label("/srv/dvr"), "/srv/dvr");
        assert_eq!(sanitize_label("a\nb\tc\u{0}"), "a_b_c_");
        assert_eq!(sanitize_label(""), "_");
        assert_eq!(sanitize_label(&"x".repeat(500)).len(), 128);
        assert_eq!(sanitize_label("dvb \"card\" ä"), "dvb \"card\" ä");
    }
}
