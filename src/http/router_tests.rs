//! Route table tests: every URL shape, malformed paths, labels.
use super::*;

fn s(x: &str) -> String {
    x.to_owned()
}

fn t(spec: &str) -> Tracks {
    Tracks::parse(spec).unwrap()
}

#[test]
fn good_paths() {
    assert_eq!(
        route("/demo/index.m3u8"),
        Ok(Route::Master { stream: s("demo") })
    );
    assert_eq!(
        route("/demo/playlist.m3u8"),
        Ok(Route::Master { stream: s("demo") })
    );
    assert_eq!(
        route("/demo/mono.m3u8"),
        Ok(Route::Media {
            stream: s("demo"),
            tracks: None
        })
    );
    assert_eq!(
        route("/demo/tracks-v1a1/mono.m3u8"),
        Ok(Route::Media {
            stream: s("demo"),
            tracks: Some(t("v1a1"))
        })
    );
    assert_eq!(
        route("/demo/mpegts"),
        Ok(Route::MpegTs { stream: s("demo") })
    );
    assert_eq!(
        route("/demo/2026/11/22/01/37/18-02000.ts"),
        Ok(Route::Segment {
            stream: s("demo"),
            tracks: None,
            name: SegmentName::parse("2026/11/22/01/37/18-02000.ts", ".ts").unwrap()
        })
    );
    assert_eq!(
        route("/a/b/tracks-v1a1/2026/11/22/01/37/18-02000.ts"),
        Ok(Route::Segment {
            stream: s("a/b"),
            tracks: Some(t("v1a1")),
            name: SegmentName::parse("2026/11/22/01/37/18-02000.ts", ".ts").unwrap()
        })
    );
}

#[test]
fn fmp4_and_dash_paths() {
    assert_eq!(route("/time"), Ok(Route::Time));
    assert_eq!(
        route("/a/b/index.mpd"),
        Ok(Route::Dash { stream: s("a/b") })
    );
    assert_eq!(route("/x/Manifest.mpd"), Ok(Route::Dash { stream: s("x") }));
    assert_eq!(
        route("/x/index.fmp4.m3u8"),
        Ok(Route::Fmp4Master { stream: s("x") })
    );
    assert_eq!(
        route("/x/tracks-v2/index.fmp4.m3u8"),
        Ok(Route::Fmp4Playlist {
            stream: s("x"),
            track: Track::Video(1)
        })
    );
    assert_eq!(
        route("/x/tracks-a1/init.mp4"),
        Ok(Route::Init {
            stream: s("x"),
            track: Track::Audio(0),
            version: None
        })
    );
    assert_eq!(
        route("/x/tracks-v2/init-3.mp4"),
        Ok(Route::Init {
            stream: s("x"),
            track: Track::Video(1),
            version: Some(3)
        })
    );
    assert!(matches!(
        route("/x/tracks-v2/init-x.mp4"),
        Err(RouteError::Malformed(_))
    ));
    assert_eq!(
        route("/x/tracks-v1/1234.m4s"),
        Ok(Route::Fragment {
            stream: s("x"),
            track: Track::Video(0),
            key: FragmentKey::Number(1234)
        })
    );
    assert_eq!(
        route("/x/tracks-v1/2022/03/22/08/06/37-02000.m4s"),
        Ok(Route::Fragment {
            stream: s("x"),
            track: Track::Video(0),
            key: FragmentKey::Name(
                SegmentName::parse("2022/03/22/08/06/37-02000.m4s", ".m4s").unwrap()
            )
        })
    );
    for bad in [
        "/x/tracks-v1a1/init.mp4",
        "/x/tracks-v1/12x.m4s",
        "/x/1.m4s",
        "/x/tracks-v1/2022/13/22/08/06/37-02000.m4s",
    ] {
        assert!(
            matches!(route(bad), Err(RouteError::Malformed(_))),
            "{bad}: {:?}",
            route(bad)
        );
    }
    assert_eq!(route("/x/init.mp4"), Err(RouteError::NotFound));
    assert_eq!(Route::Time.label(), "/time");
}

#[test]
fn malformed_paths_are_400() {
    for bad in [
        "/../etc/passwd",
        "/demo/../index.m3u8",
        "/demo/./index.m3u8",
        "//index.m3u8",
        "/demo//mono.m3u8",
        "/demo/index.m3u8%00",
        "/de mo/index.m3u8",
        "/dé/index.m3u8",
        "/demo/tracks-x9/mono.m3u8",
        "/demo/tracks-/mono.m3u8",
        "/demo/2026/11/22/01/37/18-2000.ts",
        "/demo/2026/13/22/01/37/18-02000.ts",
        "/demo/2026/11/22/01/37/xx-02000.ts",
        "/demo/11/22/01/37/18-02000.ts",
        "/de.mo/index.m3u8",
        "demo/index.m3u8",
    ] {
        assert!(
            matches!(route(bad), Err(RouteError::Malformed(_))),
            "{bad}: {:?}",
            route(bad)
        );
    }
    assert!(matches!(
        route(&format!("/{}", "a".repeat(2000))),
        Err(RouteError::Malformed(_))
    ));
}

#[test]
fn stream_management_paths() {
    assert_eq!(
        route("/streamer/api/v3/streams/cam-1/restart"),
        Ok(Route::Api(ApiRoute::StreamRestart(s("cam-1"))))
    );
    assert_eq!(
        route("/streamer/api/v3/streams/restart"),
        Ok(Route::Api(ApiRoute::Stream(s("restart"))))
    );
    assert_eq!(
        route("/streamer/api/v3/config/validate"),
        Ok(Route::Api(ApiRoute::ConfigValidate))
    );
    assert_eq!(
        route("/streamer/api/v3/streams/a/b/restart"),
        Ok(Route::Api(ApiRoute::Unknown))
    );
    for bad in [
        "/streamer/api/v3/streams/..",
        "/streamer/api/v3/streams/a%2Fb",
        "/streamer/api/v3/streams/a.toml",
        "/streamer/api/v3/streams//restart",
    ] {
        assert!(matches!(route(bad), Err(RouteError::Malformed(_))), "{bad}");
    }
    assert_eq!(
        Route::Api(ApiRoute::StreamRestart(s("x"))).label(),
        "/flussonic/api/v3/streams/:name/restart"
    );
}

#[test]
fn api_paths_and_labels() {
    assert_eq!(
        route("/flussonic/api/metrics"),
        Ok(Route::Api(ApiRoute::Metrics))
    );
    assert_eq!(
        route("/streamer/api/v3/monitoring/readiness"),
        Ok(Route::Api(ApiRoute::Readiness))
    );
    assert_eq!(
        route("/flussonic/api/v3/streams"),
        Ok(Route::Api(ApiRoute::Streams))
    );
    assert_eq!(
        route("/flussonic/api/v3/streams/demo"),
        Ok(Route::Api(ApiRoute::Stream(s("demo"))))
    );
    assert_eq!(
        route("/flussonic/api/v3/sessions"),
        Ok(Route::Api(ApiRoute::Sessions))
    );
    assert_eq!(
        route("/streamer/api/v3/sessions/00ab12cd34ef5678"),
        Ok(Route::Api(ApiRoute::Session(s("00ab12cd34ef5678"))))
    );
    assert!(matches!(
        route("/streamer/api/v3/sessions/a-b"),
        Err(RouteError::Malformed(_))
    ));
    assert!(matches!(
        route("/flussonic/api/../x"),
        Err(RouteError::Malformed(_))
    ));
    // Labels never carry the stream name or the segment path.
    let labels: Vec<&str> = [
        "/secret-name/index.m3u8",
        "/secret-name/tracks-v1a1/mono.m3u8",
        "/secret-name/2026/11/22/01/37/18-02000.ts",
        "/flussonic/api/v3/monitoring/liveness",
    ]
    .iter()
    .map(|p| route(p).unwrap().label())
    .collect();
    assert_eq!(
        labels,
        [
            "/:name/index.m3u8",
            "/:name/tracks/mono.m3u8",
            "segment",
            "health"
        ]
    );
    assert!(labels.iter().all(|l| !l.contains("secret")));
}

#[test]
fn archive_urls_of_one_rendition() {
    assert_eq!(
        route("/cam/tracks-v2a1/archive-1795305600-60.m3u8"),
        Ok(Route::Dvr {
            stream: s("cam"),
            tracks: Some(t("v2a1")),
            request: DvrRequest::Playlist {
                from: 1_795_305_600,
                duration: Some(60)
            }
        })
    );
    assert!(matches!(
        route("/cam/archive-1795305600-60.m3u8"),
        Ok(Route::Dvr { tracks: None, .. })
    ));
}

#[test]
fn archive_urls() {
    let dvr = |p: &str| match route(p) {
        Ok(Route::Dvr {
            stream, request, ..
        }) => (stream, request),
        other => panic!("{p}: {other:?}"),
    };
    assert_eq!(
        dvr("/cam/archive-1795305600-3600.m3u8"),
        (
            s("cam"),
            DvrRequest::Playlist {
                from: 1_795_305_600,
                duration: Some(3600)
            }
        )
    );
    assert_eq!(
        dvr("/cam/index-1795305600-now.m3u8").1,
        DvrRequest::Playlist {
            from: 1_795_305_600,
            duration: None
        }
    );
    assert_eq!(
        dvr("/cam/timeshift_abs-1795305600.m3u8").1,
        DvrRequest::TimeshiftAbs {
            from: 1_795_305_600
        }
    );
    assert_eq!(
        dvr("/cam/timeshift_rel-600.m3u8").1,
        DvrRequest::TimeshiftRel { ago: 600 }
    );
    assert_eq!(
        dvr("/cam/rewind-7200.m3u8").1,
        DvrRequest::Rewind { ago: 7200 }
    );
    assert_eq!(
        dvr("/cam/archive-1795305600-20.ts").1,
        DvrRequest::Export {
            from: 1_795_305_600,
            duration: 20,
            mp4: false
        }
    );
    assert_eq!(
        dvr("/cam/archive-1795305600-20.mp4").1,
        DvrRequest::Export {
            from: 1_795_305_600,
            duration: 20,
            mp4: true
        }
    );
    assert_eq!(dvr("/cam/recording_status.json").1, DvrRequest::Status);
    assert_eq!(
        route("/flussonic/api/v3/streams/cam/dvr/ranges"),
        Ok(Route::Api(ApiRoute::DvrRanges(s("cam"))))
    );
}

#[test]
fn bad_archive_ranges_are_400_by_class() {
    for (bad, why) in [
        ("/cam/archive-x-20.m3u8", "time must be UNIX seconds"),
        ("/cam/archive--5-20.m3u8", "time must be UNIX seconds"),
        (
            "/cam/archive-1795305600--5.m3u8",
            "duration must be whole seconds",
        ),
        (
            "/cam/archive-1795305600-0.m3u8",
            "duration must be positive",
        ),
        ("/cam/archive-1795305600-99999999.m3u8", "duration too long"),
        ("/cam/archive-1795305600-90000.ts", "duration too long"),
        (
            "/cam/archive-1795305600-now.mp4",
            "an export needs a fixed duration",
        ),
        ("/cam/archive-12-20.m3u8", "time out of range"),
        ("/cam/archive-99999999999-20.m3u8", "time out of range"),
        (
            "/cam/archive-1795305600.m3u8",
            "archive range must be FROM-DURATION",
        ),
        ("/cam/rewind-abc.m3u8", "duration must be whole seconds"),
        ("/cam/timeshift_rel-99999999.m3u8", "duration too long"),
    ] {
        assert_eq!(route(bad), Err(RouteError::Malformed(why)), "{bad}");
    }
}

#[test]
fn unknown_resources_are_404() {
    for missing in [
        "/",
        "/demo",
        "/demo/index.webm",
        "/demo/other.m3u8",
        "/index.m3u8",
        "/mpegts",
    ] {
        assert_eq!(route(missing), Err(RouteError::NotFound), "{missing}");
    }
}

#[test]
fn ll_hls_paths() {
    assert_eq!(
        route("/demo/index.ll.m3u8"),
        Ok(Route::LlMaster { stream: s("demo") })
    );
    for track in ["v1", "v2", "a1", "v1a1", "v12a1"] {
        assert_eq!(
            route(&format!("/demo/tracks-{track}/index.ll.m3u8")),
            Ok(Route::LlPlaylist {
                stream: s("demo"),
                track: t(track)
            }),
            "{track}"
        );
        assert!(
            matches!(
                route(&format!("/demo/tracks-{track}/ll-17-3.m4s")),
                Ok(Route::LlResource { track: ref selected, .. }) if *selected == t(track)
            ),
            "{track}"
        );
    }
    // A muxed track is one video with the (one) audio; nothing else combines.
    for track in ["va1", "a1a1", "v1a2", "v1v2", "a1v1", "v1a1t1"] {
        assert!(
            matches!(
                route(&format!("/demo/tracks-{track}/index.ll.m3u8")),
                Err(RouteError::Malformed(_))
            ),
            "{track}"
        );
    }
}
