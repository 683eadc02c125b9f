//! What a configuration change needs: a pure comparison of a stream's running definition with
//! its new one, so that only what changed restarts. Unit-tested without any running part.

use crate::config::StreamConfig;

/// How to bring a running stream to its new definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The top-level keys whose values differ, in file order (for the log and the API).
    pub keys: Vec<&'static str>,
    pub action: Action,
}

/// The least that must restart, from cheapest to most disruptive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Nothing differs.
    None,
    /// Only what readers see about the stream (`title`, authorization backends): the handle
    /// is replaced.
    Describe,
    /// The live window's length (`segment_count`): resized in place by the actor.
    Resize,
    /// Retention of the archive (`[dvr] expiration`, `storage_limit`): the DVR writer takes
    /// the new limits from its next pass.
    Retention,
    /// The `pushes` list: pushes that changed or went stop, new ones start, the others and
    /// the stream go on.
    Pushes,
    /// Where the media comes from (`inputs`, `publish_key`): the ingest supervisor restarts;
    /// the window, viewers and archive go on and the playlist gets a discontinuity.
    Source,
    /// The stream's structure (`segment_duration`, `transcoder`, what the archive records and
    /// where): its actor, DVR writers and ingest restart; numbering, viewers' sessions and
    /// `/mpegts` connections carry over.
    Rebuild,
}

impl Action {
    /// What restarts, as said in logs and API answers.
    pub fn restarts(self) -> &'static str {
        match self {
            Action::None | Action::Describe | Action::Resize | Action::Retention => "nothing",
            Action::Pushes => "the changed pushes",
            Action::Source => "source",
            Action::Rebuild => "source, packager and DVR writer",
        }
    }
}

/// Compares a running definition with its replacement.
pub fn plan(old: &StreamConfig, new: &StreamConfig) -> Change {
    let mut keys = Vec::new();
    let mut action = Action::None;
    let mut differ = |key: &'static str, differs: bool, needs: Action| {
        if differs {
            keys.push(key);
            action = action.max(needs);
        }
    };
    differ("title", old.title != new.title, Action::Describe);
    differ("inputs", old.inputs != new.inputs, Action::Source);
    differ(
        "segment_duration",
        old.segment_duration != new.segment_duration,
        Action::Rebuild,
    );
    differ(
        "chunk_duration",
        old.chunk_duration != new.chunk_duration,
        Action::Rebuild,
    );
    differ(
        "segment_count",
        old.segment_count != new.segment_count,
        Action::Resize,
    );
    differ("dvr", old.dvr != new.dvr, dvr_action(old, new));
    // A key matters only to a stream that takes publishers.
    let publishes = new
        .inputs
        .iter()
        .any(|i| matches!(i.url, crate::config::InputUrl::Publish));
    differ(
        "publish_key",
        old.publish_key != new.publish_key,
        if publishes {
            Action::Source
        } else {
            Action::Describe
        },
    );
    // Read per request from the stream's handle.
    let (a, b) = (&old.access, &new.access);
    differ("on_play", a.on_play != b.on_play, Action::Describe);
    differ("on_publish", a.on_publish != b.on_publish, Action::Describe);
    differ(
        "on_play_default",
        a.on_play_default != b.on_play_default,
        Action::Describe,
    );
    differ(
        "transcoder",
        old.transcoder != new.transcoder,
        Action::Rebuild,
    );
    differ("pushes", old.pushes != new.pushes, Action::Pushes);
    Change { keys, action }
}

/// Retention limits change in place; turning recording on or off, another root or another
/// set of recorded renditions needs new writers.
fn dvr_action(old: &StreamConfig, new: &StreamConfig) -> Action {
    match (&old.dvr, &new.dvr) {
        (Some(a), Some(b)) if a.root == b.root && a.renditions == b.renditions => Action::Retention,
        _ => Action::Rebuild,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Defaults;

    fn stream(text: &str) -> StreamConfig {
        StreamConfig::parse("s", text, Defaults::default()).unwrap()
    }

    const BASE: &str = "title = \"a\"\ninputs = [{ url = \"fake://fake\" }]\nsegment_count = 6\n[dvr]\nexpiration = \"1h\"\n";

    fn change(new: &str) -> Change {
        plan(&stream(BASE), &stream(new))
    }

    #[test]
    fn an_identical_definition_changes_nothing() {
        // Same meaning, other spelling: reordered keys, a comment.
        let same = "# comment\ninputs = [{ url = \"fake://fake\", priority = 1 }]\ntitle = \"a\"\nsegment_count = 6\n[dvr]\nexpiration = 3600\n";
        assert_eq!(
            change(same),
            Change {
                keys: vec![],
                action: Action::None
            }
        );
    }

    #[test]
    fn title_and_segment_count_restart_nothing() {
        let c = change(&BASE.replace("\"a\"", "\"b\"").replace("= 6", "= 3"));
        assert_eq!(c.keys, ["title", "segment_count"]);
        assert_eq!(c.action, Action::Resize);
        assert_eq!(c.action.restarts(), "nothing");
    }

    #[test]
    fn a_new_input_restarts_the_source_only() {
        let c = change(&BASE.replace(
            "[{ url = \"fake://fake\" }]",
            "[{ url = \"fake://fake\" }, { url = \"udp://127.0.0.1:5000\", priority = 2 }]",
        ));
        assert_eq!(c.keys, ["inputs"]);
        assert_eq!(c.action, Action::Source);
        let c = change(&BASE.replace("title", "publish_key = \"k\"\ntitle"));
        assert_eq!(
            c.action,
            Action::Describe,
            "no publish:// input: the key is inert"
        );
        let publish = BASE.replace("fake://fake", "publish://");
        let c = plan(
            &stream(&publish),
            &stream(&publish.replace("title", "publish_key = \"k\"\ntitle")),
        );
        assert_eq!(c.action, Action::Source);
    }

    #[test]
    fn retention_applies_in_place_and_recording_changes_rebuild() {
        assert_eq!(
            change(&BASE.replace("\"1h\"", "\"2h\"")).action,
            Action::Retention
        );
        let without_dvr = BASE.split("[dvr]").next().unwrap().to_owned();
        assert_eq!(change(&without_dvr).action, Action::Rebuild);
        assert_eq!(
            change(&BASE.replace("expiration", "root = \"/srv\"\nexpiration")).action,
            Action::Rebuild
        );
    }

    #[test]
    fn a_new_push_restarts_only_pushes() {
        let c = change(&BASE.replace(
            "segment_count = 6",
            "segment_count = 6\npushes = [{ url = \"udp://127.0.0.1:5000\" }]",
        ));
        assert_eq!(c.keys, ["pushes"]);
        assert_eq!(c.action, Action::Pushes);
        assert_eq!(c.action.restarts(), "the changed pushes");
    }

    #[test]
    fn structure_changes_rebuild() {
        let c = change(&BASE.replace(
            "segment_count = 6",
            "segment_duration = 4000\nsegment_count = 6",
        ));
        assert_eq!(c.keys, ["segment_duration"]);
        assert_eq!(c.action, Action::Rebuild);
        let ladder = format!(
            "{BASE}\n[transcoder]\n[[transcoder.video]]\nbitrate = \"300k\"\nsize = \"320x180\"\n"
        );
        assert_eq!(change(&ladder).action, Action::Rebuild);
        // The most disruptive need wins; every key is named.
        let both = ladder.replace("\"a\"", "\"z\"");
        let c = change(&both);
        assert_eq!(c.keys, ["title", "transcoder"]);
        assert_eq!(c.action, Action::Rebuild);
    }
}
