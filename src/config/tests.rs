//! One test per class of configuration mistake, plus the shipped files.

use super::*;

fn stream(text: &str) -> Result<StreamConfig, ConfigError> {
    StreamConfig::parse("s", text, Defaults::default())
        .map_err(|e| locate(Path::new("streams/s.toml"), text, &e))
}

fn err(text: &str) -> String {
    stream(text).expect_err("must be refused").to_string()
}

#[test]
fn minimal_stream_gets_defaults() {
    let s = stream("inputs = [{ url = \"fake://fake\" }]").unwrap();
    assert_eq!(s.segment_duration.as_millis(), 2000);
    assert_eq!(s.segment_count.get(), 6);
    assert_eq!(s.inputs[0].priority, 1);
    assert_eq!(s.inputs[0].source_timeout.duration().as_secs(), 10);
}

#[test]
fn inputs_sorted_by_priority() {
    let s = stream(
        "inputs = [{ url = \"udp://239.0.0.1:1234\", priority = 2 },\n\
                   { url = \"fake://fake\", priority = 1 }]",
    )
    .unwrap();
    assert_eq!(s.inputs[0].url, InputUrl::Fake);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let e = err("title = \"x\"\ninputs = [{ url = \"fake://fake\" }]\nsgement_count = 3\n");
    assert!(
        e.starts_with("streams/s.toml:3:1: unknown field `sgement_count`"),
        "{e}"
    );
}

#[test]
fn unknown_input_key() {
    let e = err("inputs = [{ url = \"fake://fake\", prio = 1 }]");
    assert!(
        e.starts_with("streams/s.toml:1:") && e.contains("`prio`"),
        "{e}"
    );
}

#[test]
fn bad_url_names_the_key_and_line() {
    let e = err("title = \"x\"\ninputs = [{ url = \"rtmp://x/y\" }]");
    assert!(e.starts_with("streams/s.toml:2:"), "{e}");
    assert!(
        e.contains("invalid input `url`") && e.contains("rtmp"),
        "{e}"
    );
}

#[test]
fn bad_durations() {
    for text in [
        "segment_duration = 20\ninputs = [{ url = \"fake://fake\" }]",
        "segment_duration = -5\ninputs = [{ url = \"fake://fake\" }]",
        "segment_duration = \"2s\"\ninputs = [{ url = \"fake://fake\" }]",
    ] {
        let e = err(text);
        assert!(e.starts_with("streams/s.toml:1:"), "{e}");
        assert!(e.contains("segment_duration"), "{e}");
    }
    let e = err("segment_count = 0\ninputs = [{ url = \"fake://fake\" }]");
    assert!(e.contains("`segment_count` must be"), "{e}");
    let e = err("inputs = [{ url = \"fake://fake\", source_timeout = 0 }]");
    assert!(e.contains("`source_timeout` must be"), "{e}");
}

#[test]
fn ll_hls_part_duration() {
    let s = stream("inputs = [{ url = \"fake://fake\" }]").unwrap();
    assert_eq!(s.chunk_duration.as_millis(), 250, "the default part target");
    let s = stream("part_duration = 400\ninputs = [{ url = \"fake://fake\" }]").unwrap();
    assert_eq!(
        s.chunk_duration.as_millis(),
        400,
        "`part_duration` is an alias"
    );
    for text in [
        "chunk_duration = 50\ninputs = [{ url = \"fake://fake\" }]",
        "chunk_duration = 1500\ninputs = [{ url = \"fake://fake\" }]",
    ] {
        let e = err(text);
        assert!(
            e.contains("`chunk_duration`") && e.contains("100..=1000"),
            "{e}"
        );
    }
    let e =
        err("segment_duration = 1000\nchunk_duration = 600\ninputs = [{ url = \"fake://fake\" }]");
    assert!(e.contains("more than half of `segment_duration`"), "{e}");
}

#[test]
fn missing_or_empty_inputs() {
    assert!(err("title = \"x\"").contains("missing field `inputs`"));
    let e = err("title = \"x\"\ninputs = []");
    assert!(
        e.starts_with("streams/s.toml:2:") && e.contains("at least one input"),
        "{e}"
    );
}

#[test]
fn toml_syntax_error() {
    let e = err("inputs = [{ url = \"fake://fake\" ]");
    assert!(e.starts_with("streams/s.toml:1:"), "{e}");
}

#[test]
fn server_file_errors() {
    let p = Path::new("config/headwater.toml");
    let text = "[server]\nlisten = \"nowhere\"\n";
    let e = parse::<ServerFile>(p, text).unwrap_err().to_string();
    assert!(e.starts_with("config/headwater.toml:2:"), "{e}");
    let text = "[server]\nview_auth = \"nocolon\"\n";
    let e = parse::<ServerFile>(p, text).unwrap_err().to_string();
    assert!(e.contains("login:password"), "{e}");
    let text = "[server]\nlisten = \"0.0.0.0:80\"\n[segmets]\n";
    let e = parse::<ServerFile>(p, text).unwrap_err().to_string();
    assert!(
        e.starts_with("config/headwater.toml:3:") && e.contains("segmets"),
        "{e}"
    );
}

#[test]
fn credentials_are_never_printed() {
    let c: Credentials = "admin:s3cret".parse().unwrap();
    assert!(!format!("{c:?}").contains("s3cret"));
    assert!("admin:".parse::<Credentials>().is_err());
    assert!(":pw".parse::<Credentials>().is_err());
    let c: Credentials = "a:b:c".parse().unwrap();
    assert_eq!(c.password, "b:c");
}

#[test]
fn bad_stream_file_names_are_refused() {
    for good in ["demo", "ch_1", "A-b"] {
        assert!(valid_stream_name(good));
    }
    for bad in ["", "..", "a.b", "a/b", "a b", "ä"] {
        assert!(!valid_stream_name(bad), "{bad}");
    }
}

#[test]
fn shipped_config_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = Config::load(&root.join("config/headwater.toml"), &Overrides::default()).unwrap();
    let demo = cfg
        .streams
        .iter()
        .find(|s| s.name == "demo")
        .expect("demo stream");
    assert_eq!(demo.inputs[0].url, InputUrl::Fake);
    assert!(cfg.server.view_auth.is_some() && cfg.server.edit_auth.is_some());
}

#[test]
fn env_overrides_credentials_and_bad_env_is_refused() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ov = Overrides {
        view_auth: Some("ops:pw1".into()),
        ..Overrides::default()
    };
    let cfg = Config::load(&root.join("config/headwater.toml"), &ov).unwrap();
    assert_eq!(cfg.server.view_auth.unwrap().login, "ops");
    let ov = Overrides {
        edit_auth: Some("broken".into()),
        ..Overrides::default()
    };
    let e = Config::load(&root.join("config/headwater.toml"), &ov).unwrap_err();
    assert!(e.to_string().contains("HEADWATER_EDIT_AUTH"), "{e}");
}

#[test]
fn dvr_table_with_flussonic_units() {
    let s = stream("inputs = [{ url = \"fake://fake\" }]\n[dvr]\nexpiration = \"3d\"\nstorage_limit = \"500G\"\n").unwrap();
    let d = s.dvr.unwrap();
    assert_eq!(d.expiration, Some(Span(3 * 86_400)));
    assert_eq!(d.storage_limit, Some(ByteSize(500 << 30)));
    let s = stream("inputs = [{ url = \"fake://fake\" }]\n[dvr]\nexpiration = 7200\n").unwrap();
    assert_eq!(s.dvr.unwrap().expiration, Some(Span(7200)));
    assert!(
        stream("inputs = [{ url = \"fake://fake\" }]\n")
            .unwrap()
            .dvr
            .is_none()
    );
    for bad in [
        "expiration = \"3x\"",
        "expiration = -1",
        "storage_limit = \"lots\"",
        "storage_limit = 0",
        "depth = 5",
    ] {
        let e = err(&format!(
            "inputs = [{{ url = \"fake://fake\" }}]\n[dvr]\n{bad}\n"
        ));
        assert!(e.starts_with("streams/s.toml:3:"), "{bad}: {e}");
    }
}

#[test]
fn dvr_renditions_must_exist_in_the_ladder() {
    let ladder = "inputs = [{ url = \"fake://fake\" }]\n[transcoder]\n\
                  [[transcoder.video]]\nbitrate = \"300k\"\nsize = \"320x180\"\n\
                  [[transcoder.video]]\nbitrate = \"100k\"\nsize = \"160x90\"\n";
    let ok = stream(&format!("{ladder}[dvr]\nrenditions = [2]\n")).unwrap();
    let dvr = ok.dvr.unwrap();
    assert!(!dvr.records(0) && dvr.records(1));
    for bad in ["renditions = [3]", "renditions = [0]", "renditions = []"] {
        let err = err(&format!("{ladder}[dvr]\n{bad}\n"));
        assert!(err.contains("renditions 1..=2"), "{bad}: {err}");
    }
    let plain = "inputs = [{ url = \"fake://fake\" }]\n[dvr]\nrenditions = [2]\n";
    assert!(err(plain).contains("renditions 1..=1"));
}

#[test]
fn authorization_keys_are_checked_where_they_are_written() {
    let s = stream(
        "inputs = [{ url = \"fake://fake\" }]\non_play = \"http://127.0.0.1:8000/play?site=1\"\n\
         on_play_default = \"allow\"\n",
    )
    .unwrap();
    assert_eq!(
        s.access.on_play.as_ref().map(|u| u.0.as_str()),
        Some("http://127.0.0.1:8000/play?site=1")
    );
    assert_eq!(s.access.on_play_default, Some(PlayDefault::Allow));
    let e = err("inputs = [{ url = \"fake://fake\" }]\non_play = \"https://auth/play\"\n");
    assert!(
        e.starts_with("streams/s.toml:2:") && e.contains("https:// backends"),
        "{e}"
    );
    let e = err("inputs = [{ url = \"fake://fake\" }]\non_play_default = \"maybe\"\n");
    assert!(e.starts_with("streams/s.toml:2:"), "{e}");
}

fn server(text: &str) -> Result<Config, ConfigError> {
    Config::parse_server(
        Path::new("/etc/hw/headwater.toml"),
        text,
        &Overrides::default(),
    )
}

#[test]
fn front_door_and_tls_settings() {
    let c = server(
        "[server]\nmax_connections = 50\nheader_read_timeout = 3\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
         https = \"0.0.0.0:8443\"\ntls_cert = \"tls/cert.pem\"\ntls_key = \"/k.pem\"\n\
         [auth]\non_play = \"http://a/p\"\ntimeout_ms = 500\n[dvr]\nmax_exports = 4\nmax_export_duration = \"2h\"\n",
    )
    .unwrap();
    assert_eq!(c.server.front.max_connections, 50);
    assert_eq!(c.server.front.header_read_timeout.as_secs(), 3);
    assert_eq!(c.server.front.keepalive_timeout.as_secs(), 60, "default");
    assert_eq!(c.server.front.trusted_proxies.len(), 1);
    let tls = c.server.tls.unwrap();
    assert_eq!(
        tls.cert,
        Path::new("/etc/hw/tls/cert.pem"),
        "relative to the file"
    );
    assert_eq!(tls.key, Path::new("/k.pem"));
    assert_eq!(c.server.auth.timeout_ms, 500);
    assert_eq!((c.dvr.max_exports, c.dvr.max_export_s), (4, 7200));
    for (bad, key) in [
        ("[server]\nhttps = \"0.0.0.0:8443\"\n", "server.tls_cert"),
        (
            "[server]\ntls_cert = \"c\"\ntls_key = \"k\"\n",
            "server.https",
        ),
        (
            "[server]\nheader_read_timeout = 0\n",
            "server.header_read_timeout",
        ),
        ("[server]\nmax_connections = 0\n", "server.max_connections"),
        (
            "[server]\npublic_url = \"https://x/path\"\n",
            "server.public_url",
        ),
        ("[auth]\ntimeout_ms = 50\n", "auth.timeout_ms"),
        ("[dvr]\nmax_exports = 0\n", "dvr.max_exports"),
        (
            "[dvr]\nmax_export_duration = \"2d\"\n",
            "dvr.max_export_duration",
        ),
    ] {
        match server(bad) {
            Err(ConfigError::File { key: Some(k), .. }) => assert_eq!(k, key, "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    let e = server("[server]\ntrusted_proxies = [\"10.0.0.0/40\"]\n").unwrap_err();
    assert!(e.to_string().contains("prefix must be 0..=32"), "{e}");
}
