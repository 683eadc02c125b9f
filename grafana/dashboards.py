#!/usr/bin/env python3
"""Generates grafana/dashboards/*.json (Grafana 10+ schema). Run from the repo root:
`python3 grafana/dashboards.py`. The JSON files are committed; tests/grafana.rs checks them
against a live Headwater and a real Prometheus."""
import json, os

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'
SSEL = 'instance=~"$instance",name=~"$name"'
RI = "$__rate_interval"


class Board:
    def __init__(self, uid, title, with_streams):
        self.uid, self.title, self.with_streams = uid, title, with_streams
        self.panels, self.x, self.y, self.row_h, self.next_id = [], 0, 0, 0, 1

    def row(self, title):
        if self.x:
            self.x, self.y = 0, self.y + self.row_h
        self.panels.append({"id": self.next_id, "type": "row", "title": title, "collapsed": False,
                            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1}, "panels": []})
        self.next_id += 1
        self.y += 1
        self.row_h = 0

    def panel(self, title, kind, targets, w=8, h=7, unit=None, desc="", no_value=None, extra=None):
        if self.x + w > 24:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        defaults = {}
        if unit:
            defaults["unit"] = unit
        if no_value:
            defaults["noValue"] = no_value
        p = {"id": self.next_id, "type": kind, "title": title, "description": desc,
             "datasource": DS, "gridPos": {"x": self.x, "y": self.y, "w": w, "h": h},
             "fieldConfig": {"defaults": defaults, "overrides": []},
             "targets": [dict({"datasource": DS, "refId": chr(65 + i)}, **t) for i, t in enumerate(targets)]}
        if kind == "timeseries":
            p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                            "tooltip": {"mode": "multi", "sort": "desc"}}
        if extra:
            p.update(extra)
        self.panels.append(p)
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)

    def json(self):
        variables = [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "options": []},
            {"name": "instance", "label": "Server", "type": "query", "datasource": DS,
             "query": {"query": "label_values(flussonic_version_info, instance)", "refId": "instance"},
             "definition": "label_values(flussonic_version_info, instance)",
             "multi": True, "includeAll": True, "allValue": ".*", "current": {}, "refresh": 2,
             "sort": 1, "options": [], "hide": 0},
        ]
        if self.with_streams:
            variables.append(
                {"name": "name", "label": "Stream", "type": "query", "datasource": DS,
                 "query": {"query": 'label_values(flussonic_stream_alive{instance=~"$instance"}, name)', "refId": "name"},
                 "definition": 'label_values(flussonic_stream_alive{instance=~"$instance"}, name)',
                 "multi": True, "includeAll": True, "allValue": ".*", "current": {}, "refresh": 2,
                 "sort": 1, "options": [], "hide": 0})
        return {"uid": self.uid, "title": self.title, "tags": ["headwater", "flussonic"],
                "timezone": "utc", "schemaVersion": 39, "version": 1, "editable": True,
                "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
                "graphTooltip": 1, "fiscalYearStartMonth": 0, "liveNow": False,
                "annotations": {"list": []}, "links": [],
                "templating": {"list": variables}, "panels": self.panels}


def q(expr, legend="", exemplar=False):
    t = {"expr": expr, "legendFormat": legend}
    if exemplar:
        # Exemplars (trace ids, scraped over OpenMetrics) drawn as points linking to Tempo.
        t["exemplar"] = True
    return t


def server():
    b = Board("headwater-server", "Headwater — server", False)
    b.row("Server")
    b.panel("Version", "stat", [q(f"flussonic_version_info{{{SEL}}}", "{{instance}} {{version}}")], w=6, h=4,
            desc="Headwater version per server", extra={"options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "name"}})
    b.panel("Uptime", "stat", [q(f"time() - flussonic_boot_time_seconds{{{SEL}}}", "{{instance}}")], w=6, h=4, unit="s",
            desc="Seconds since the server started")
    b.panel("Streams", "stat", [q(f"flussonic_streams{{{SEL}}}", "{{instance}}")], w=6, h=4, desc="Configured streams")
    b.panel("Clients", "stat", [q(f"flussonic_clients{{{SEL}}}", "{{instance}}")], w=6, h=4,
            desc="HLS sessions within the session timeout plus /mpegts connections, all streams")
    b.row("Resources")
    b.panel("CPU usage", "timeseries", [q(f"flussonic_cpu_usage{{{SEL}}}", "{{instance}}")], unit="percent",
            desc="Host CPU, percent of all cores")
    b.panel("Memory usage", "timeseries", [q(f"flussonic_memory_usage{{{SEL}}}", "{{instance}}")], unit="percent",
            desc="Host memory in use (MemTotal - MemAvailable)")
    b.panel("Scheduler load", "timeseries", [q(f"flussonic_scheduler_load{{{SEL}}}", "{{instance}}")], unit="percent",
            desc="Busy share of the async runtime workers (Flussonic: Erlang scheduler load)")
    b.panel("Opened files", "timeseries", [q(f"flussonic_opened_files{{{SEL}}}", "{{instance}}")],
            desc="File descriptors open in the server process")
    b.panel("Network in/out", "timeseries", [q(f"rate(flussonic_net_input_bytes{{{SEL}}}[{RI}]) * 8", "in {{instance}}"),
                                             q(f"rate(flussonic_net_output_bytes{{{SEL}}}[{RI}]) * 8", "out {{instance}}")],
            w=16, unit="bps", desc="Host NIC traffic, loopback excluded")
    b.row("DVR disks")
    b.panel("Disk size", "stat", [q(f"flussonic_disk_size{{{SEL}}}", "{{path}}")], unit="bytes",
            desc="Filesystem holding each DVR root")
    b.panel("Disk usage", "timeseries", [q(f"flussonic_disk_usage{{{SEL}}}", "{{instance}} {{path}}")], unit="percent",
            desc="Used space of the DVR filesystem")
    b.panel("Disk I/O usage", "timeseries", [q(f"flussonic_disk_io_usage{{{SEL}}}", "{{instance}} {{path}}")], unit="percent",
            desc="Share of time the DVR block device was busy")
    b.row("Hardware")
    b.panel("GPU monitoring", "stat", [q(f"flussonic_gpu_available{{{SEL}}}", "{{reason}}")], w=6, h=6,
            desc="1: NVIDIA GPUs monitored through NVML; 0: why not (no_driver, no_devices, nvml_error)",
            extra={"options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name"},
                   "fieldConfig": {"defaults": {"mappings": [{"type": "value", "options": {
                       "0": {"text": "no GPU", "color": "text"}, "1": {"text": "GPU monitored", "color": "green"}}}]},
                       "overrides": []}})
    b.panel("GPU encoder", "timeseries", [q(f"flussonic_gpu_enc{{{SEL}}}", "{{instance}} gpu {{gpu}}")], w=6, h=6,
            unit="percent", no_value="no GPU", desc="NVENC utilisation")
    b.panel("GPU decoder", "timeseries", [q(f"flussonic_gpu_dec{{{SEL}}}", "{{instance}} gpu {{gpu}}")], w=6, h=6,
            unit="percent", no_value="no GPU", desc="NVDEC utilisation")
    b.panel("GPU temperature", "timeseries", [q(f"flussonic_gpu_temp{{{SEL}}}", "{{instance}} gpu {{gpu}}")], w=6, h=6,
            unit="celsius", no_value="no GPU", desc="GPU die temperature")
    b.panel("DVB signal strength", "timeseries", [q(f"flussonic_dvb_card_strength{{{SEL}}}", "{{instance}} {{card}}")], w=24, h=6,
            unit="percent", no_value="no DVB card", desc="Signal of each DVB card, percent of the 16-bit maximum")
    return b


def streams():
    b = Board("headwater-streams", "Headwater — streams", True)
    b.row("Health")
    b.panel("Streams by problems", "table", [
        q(f"sort_desc((1 - flussonic_stream_alive{{{SSEL}}}) * 1000 + increase(flussonic_stream_retry_count{{{SSEL}}}[15m]) * 10 + flussonic_stream_client_delay{{{SSEL}}} / 1000)", ""),
    ], w=24, h=8, desc="Problem score: 1000 per dead source, 10 per restart in 15 min, 1 per second of client delay. Worst first.",
        extra={"options": {"showHeader": True, "sortBy": [{"displayName": "Value", "desc": True}]},
               "transformations": [{"id": "labelsToFields", "options": {}}]})
    b.panel("Alive", "timeseries", [q(f"flussonic_stream_alive{{{SSEL}}}", "{{name}}")],
            desc="1 while the source delivered data within 12 s")
    b.panel("Bitrate", "timeseries", [q(f"flussonic_stream_bitrate{{{SSEL}}}", "{{name}}")], unit="KBs",
            desc="Input bitrate over 10 s, kB/s")
    b.panel("Clients", "timeseries", [q(f"flussonic_stream_client_count{{{SSEL}}}", "{{name}}")],
            desc="HLS sessions plus /mpegts connections")
    b.row("Traffic")
    b.panel("Bytes in", "timeseries", [q(f"rate(flussonic_stream_bytes_in{{{SSEL}}}[{RI}]) * 8", "{{name}}")], unit="bps",
            desc="Rate of input from the source")
    b.panel("Bytes out", "timeseries", [q(f"rate(flussonic_stream_bytes_out{{{SSEL}}}[{RI}]) * 8", "{{name}}")], unit="bps",
            desc="Rate of playback sent to clients")
    b.panel("Source restarts", "timeseries", [q(f"increase(flussonic_stream_retry_count{{{SSEL}}}[5m])", "{{name}}")],
            desc="Automatic restarts in the last 5 minutes")
    b.panel("Client delay", "timeseries", [q(f"flussonic_stream_client_delay{{{SSEL}}}", "{{name}}")], unit="ms",
            desc="Newest frame received vs newest segment clients can fetch")
    b.panel("Running since", "table", [q(f"flussonic_stream_start_running_at{{{SSEL}}}", "{{name}}")], w=16, unit="dateTimeAsIso",
            desc="When the current source run started", extra={"options": {"showHeader": True}})
    b.row("DVR")
    b.panel("DVR depth", "timeseries", [q(f"flussonic_stream_dvr_info_depth{{{SSEL}}}", "{{name}}")], unit="s",
            desc="First archived second to the last")
    b.panel("DVR duration", "timeseries", [q(f"flussonic_stream_dvr_info_duration{{{SSEL}}}", "{{name}}")], unit="s",
            desc="Recorded time without gaps")
    b.panel("DVR disk size", "timeseries", [q(f"flussonic_stream_dvr_info_disk_size{{{SSEL}}}", "{{name}}")], unit="bytes",
            desc="Archive bytes on disk")
    b.panel("DVR writes", "timeseries", [
        q(f"rate(flussonic_dvr_segments_written_total{{{SSEL}}}[{RI}])", "written {{name}}"),
        q(f"rate(flussonic_dvr_segments_failed_total{{{SSEL}}}[{RI}])", "failed {{name}}"),
        q(f"rate(flussonic_dvr_segments_dropped_total{{{SSEL}}}[{RI}])", "dropped {{name}}"),
    ], w=12, unit="ops", desc="Archive segments written, failed (disk full, read-only) and dropped (slow disk) per second")
    b.panel("Retention deletes", "timeseries", [q(f"rate(flussonic_dvr_deleted_bytes_total{{{SSEL}}}[{RI}]) * 8", "{{name}}")],
            w=12, unit="bps", desc="Archive bytes removed by expiration, storage_limit and disk_usage_limit")
    b.row("Transcoding")
    b.panel("Transcoder", "table", [q(f"flussonic_stream_transcoder_info{{{SSEL}}} == 1", "{{name}}")], w=12,
            desc="Where each transcoded stream's codecs run now (hw: nvenc, nvdec = GPU decode + CPU encode, cpu; none = cannot start)",
            extra={"options": {"showHeader": True}, "transformations": [{"id": "labelsToFields", "options": {}}]})
    b.panel("Rendition bitrate", "timeseries", [q(f"flussonic_stream_rendition_bitrate{{{SSEL}}}", "{{name}} {{track}}")],
            w=12, unit="bps", desc="Bits per second of each rendition of a ladder over the live window")
    b.row("Pushes")
    b.panel("Push up", "timeseries", [q(f"flussonic_stream_push_up{{{SSEL}}}", "{{name}} {{push}}")], w=6,
            desc="1 while a push sends (a listener: accepts viewers), 0 while it connects or retries")
    b.panel("Push bitrate", "timeseries", [q(f"rate(flussonic_stream_push_bytes_total{{{SSEL}}}[{RI}]) * 8", "{{name}} {{push}}")],
            w=6, unit="bps", desc="Bits per second each push sends (all viewers of an SRT listener together)")
    b.panel("Push retries", "timeseries", [q(f"increase(flussonic_stream_push_retries_total{{{SSEL}}}[5m])", "{{name}} {{push}}")],
            w=6, desc="Times in 5 minutes a push lost its destination and started again")
    b.panel("Push drops", "timeseries", [q(f"rate(flussonic_stream_push_dropped_chunks_total{{{SSEL}}}[{RI}])", "{{name}} {{push}}")],
            w=6, unit="cps", desc="Stream chunks per second a push skipped because its destination could not keep up")
    return b


def http():
    b = Board("headwater-http", "Headwater — HTTP and auth", False)
    b.row("Requests")
    b.panel("Requests by route and status", "timeseries",
            [q(f"sum by (route, status) (rate(flussonic_http_requests_total{{{SEL}}}[{RI}]))", "{{route}} {{status}}")],
            w=12, unit="reqps", desc="Request rate per route template and status")
    b.panel("5xx ratio", "timeseries",
            [q(f"(sum(rate(flussonic_http_requests_total{{{SEL},status=~\"5..\"}}[{RI}])) or vector(0)) / sum(rate(flussonic_http_requests_total{{{SEL}}}[{RI}]))", "5xx share")],
            w=12, unit="percentunit", desc="Share of responses that were server errors")
    b.panel("Latency p50 / p95 / p99", "timeseries", [
        q(f"histogram_quantile(0.5, sum by (le) (rate(flussonic_http_request_duration_seconds_bucket{{{SEL}}}[{RI}])))", "p50", exemplar=True),
        q(f"histogram_quantile(0.95, sum by (le) (rate(flussonic_http_request_duration_seconds_bucket{{{SEL}}}[{RI}])))", "p95", exemplar=True),
        q(f"histogram_quantile(0.99, sum by (le) (rate(flussonic_http_request_duration_seconds_bucket{{{SEL}}}[{RI}])))", "p99", exemplar=True),
    ], w=12, unit="s", desc="Time to the response head, from the histogram. Points are exemplars: click one to open its trace in Tempo")
    b.panel("In-flight requests", "timeseries", [q(f"flussonic_http_requests_in_flight{{{SEL}}}", "{{instance}}")], w=12,
            desc="Requests whose response is still being sent (endless /mpegts bodies included)")
    b.panel("Response size p50 / p95", "timeseries", [
        q(f"histogram_quantile(0.5, sum by (le, route) (rate(flussonic_http_response_size_bytes_bucket{{{SEL}}}[{RI}])))", "p50 {{route}}"),
        q(f"histogram_quantile(0.95, sum by (le, route) (rate(flussonic_http_response_size_bytes_bucket{{{SEL}}}[{RI}])))", "p95 {{route}}"),
    ], w=12, unit="bytes", desc="Body sizes of responses with a known length")
    b.panel("Auth failures by reason", "timeseries",
            [q(f"sum by (reason) (increase(flussonic_auth_failures_total{{{SEL}}}[5m]))", "{{reason}}")], w=12,
            desc="API requests refused: missing, malformed, invalid credentials")
    b.panel("Trace spans exported / dropped", "timeseries", [
        q(f"sum(rate(flussonic_trace_spans_exported_total{{{SEL}}}[{RI}]))", "exported"),
        q(f"sum by (reason) (rate(flussonic_trace_spans_dropped_total{{{SEL}}}[{RI}]))", "dropped {{reason}}"),
    ], w=12, unit="ops", no_value="tracing off",
        desc="Spans sent to the OTLP collector, and spans lost (queue full, collector down or slow). Empty when no OTEL_EXPORTER_OTLP_ENDPOINT is set")
    b.row("Stats thread")
    b.panel("Stats sample age", "stat", [q(f"time() - flussonic_stats_last_success_timestamp_seconds{{{SEL}}}", "{{instance}}")],
            w=8, unit="s", desc="Seconds since the stats thread last sampled")
    b.panel("Stats sample duration", "timeseries", [q(f"flussonic_stats_duration_seconds{{{SEL}}}", "{{instance}}")], w=8, unit="s",
            desc="Time one stats sample takes")
    b.panel("Stats errors", "timeseries", [q(f"increase(flussonic_stats_errors_total{{{SEL}}}[5m])", "{{instance}}")], w=8,
            desc="Failed samples in 5 minutes")
    return b


here = os.path.dirname(os.path.abspath(__file__))
for name, board in [("headwater-server", server()), ("headwater-streams", streams()), ("headwater-http", http())]:
    with open(os.path.join(here, "dashboards", name + ".json"), "w") as f:
        json.dump(board.json(), f, indent=2, ensure_ascii=False)
        f.write("\n")


# The "Panels and their queries" section of README.md is generated from the same boards.
readme_path = os.path.join(here, "README.md")
readme = open(readme_path).read()
head, rest = readme.split("## Panels and their queries", 1)
tail = rest[rest.index("## Alerts and thresholds"):]
lines = ["## Panels and their queries", ""]
for name, board in [("headwater-server", server()), ("headwater-streams", streams()), ("headwater-http", http())]:
    d = board.json()
    lines += [f"### {d['title']}", "", "| panel | meaning | query |", "| --- | --- | --- |"]
    for p in d["panels"]:
        if p["type"] == "row":
            continue
        qs = "<br>".join("`" + t["expr"].replace("|", "\\|") + "`" for t in p["targets"])
        lines.append(f"| {p['title']} | {p.get('description', '')} | {qs} |")
    lines.append("")
with open(readme_path, "w") as f:
    f.write(head + "\n".join(lines) + "\n" + tail)
