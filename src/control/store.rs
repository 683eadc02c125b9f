//! Stream definitions on disk and as API JSON. The JSON of the API uses the keys of
//! `streams/NAME.toml` one to one: a write becomes TOML text (a hand-written file keeps its
//! comments and layout where keys did not change, through `toml_edit`), that text goes through
//! the file loader's own validation, and only then is it written — atomically — and applied.

use crate::config::{FieldError, mask_credentials, mask_url};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::Path;
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table};

/// What a secret reads as in API answers. Sent back unchanged, it keeps the stored secret.
pub(super) const MASK: &str = "***";

/// Keys of the stream JSON that are not configuration: the answer's own `name` and `stats`
/// are accepted (so a client may send back what it read) and ignored.
const READ_ONLY: [&str; 2] = ["name", "stats"];

fn invalid(path: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        path: (!path.is_empty()).then(|| path.to_owned()),
        line: None,
        column: None,
        message: message.into(),
    }
}

/// The TOML text of a stream after an API write of `body` over `current` (the file's text, if
/// the stream exists): keys sent replace theirs, `null` removes a key (its default applies),
/// tables are merged key by key, `"$reset": true` starts from an empty definition.
pub(super) fn merge(current: Option<&str>, body: &Value) -> Result<String, FieldError> {
    let Value::Object(fields) = body else {
        return Err(invalid("", "the body must be a JSON object"));
    };
    let reset = match fields.get("$reset") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => return Err(invalid("$reset", "must be true or false")),
    };
    let mut doc = match current.filter(|_| !reset) {
        Some(text) => text
            .parse::<DocumentMut>()
            .map_err(|e| invalid("", format!("the stored file does not parse: {e}")))?,
        None => DocumentMut::new(),
    };
    let old_secrets = current.map(Secrets::of).unwrap_or_default();
    for (key, value) in fields {
        if key == "$reset" || READ_ONLY.contains(&key.as_str()) {
            continue;
        }
        if key == "publish_key"
            && *value == Value::String(MASK.into())
            && old_secrets.publish_key.is_none()
        {
            return Err(invalid(
                key,
                format!(
                    "{MASK} stands for a stored key, and this stream has none: send the key itself"
                ),
            ));
        }
        let value = old_secrets.restore(key, value);
        merge_key(doc.as_table_mut(), key, &value, key, true)?;
    }
    Ok(doc.to_string())
}

fn merge_key(
    table: &mut Table,
    key: &str,
    value: &Value,
    path: &str,
    top: bool,
) -> Result<(), FieldError> {
    match value {
        Value::Null => {
            table.remove(key);
        }
        Value::Object(fields) => {
            // Tables merge key by key; a value that was not a table is replaced.
            if !table.get(key).is_some_and(Item::is_table) {
                let mut t = Table::new();
                t.set_implicit(!top && fields.values().all(Value::is_object));
                table.insert(key, Item::Table(t));
            }
            let Some(Item::Table(inner)) = table.get_mut(key) else {
                unreachable!("inserted above");
            };
            for (k, v) in fields {
                merge_key(inner, k, v, &format!("{path}.{k}"), false)?;
            }
        }
        other => {
            let v = to_value(other, path)?;
            match table.get_mut(key) {
                // Keep the decoration (comments around the key) of a replaced value.
                Some(Item::Value(old)) => {
                    let decor = old.decor().clone();
                    *old = v;
                    *old.decor_mut() = decor;
                }
                _ => {
                    table.insert(key, Item::Value(v));
                }
            }
        }
    }
    Ok(())
}

fn to_value(value: &Value, path: &str) -> Result<toml_edit::Value, FieldError> {
    Ok(match value {
        Value::Null => return Err(invalid(path, "null is not allowed here")),
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) if n.is_f64() => f.into(),
            _ => return Err(invalid(path, format!("number {n} is out of range"))),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => {
            let mut a = Array::new();
            for (i, item) in items.iter().enumerate() {
                a.push(to_value(item, &format!("{path}[{i}]"))?);
            }
            toml_edit::Value::Array(a)
        }
        Value::Object(fields) => {
            let mut t = InlineTable::new();
            for (k, v) in fields {
                if v.is_null() {
                    continue;
                }
                t.insert(k, to_value(v, &format!("{path}.{k}"))?);
            }
            toml_edit::Value::InlineTable(t)
        }
    })
}

/// Secrets of a stored definition, to put back where an API client sent their masked form.
#[derive(Debug, Default)]
struct Secrets {
    publish_key: Option<String>,
    input_urls: Vec<String>,
    push_urls: Vec<String>,
}

impl Secrets {
    fn of(text: &str) -> Secrets {
        let Ok(v) = toml::from_str::<toml::Table>(text) else {
            return Secrets::default();
        };
        let urls = |key: &str| -> Vec<String> {
            v.get(key)
                .and_then(|i| i.as_array())
                .map(|list| {
                    list.iter()
                        .filter_map(|i| i.get("url")?.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Secrets {
            publish_key: v
                .get("publish_key")
                .and_then(|k| k.as_str())
                .map(str::to_owned),
            input_urls: urls("inputs"),
            push_urls: urls("pushes"),
        }
    }

    fn restore(&self, key: &str, value: &Value) -> Value {
        match (key, value) {
            ("publish_key", Value::String(s)) if s == MASK => {
                self.publish_key.clone().map_or(Value::Null, Value::String)
            }
            ("inputs", Value::Array(inputs)) => {
                restore_urls(inputs, &self.input_urls, mask_credentials)
            }
            ("pushes", Value::Array(pushes)) => restore_urls(pushes, &self.push_urls, mask_url),
            _ => value.clone(),
        }
    }
}

/// A list of `{url, …}` (inputs, pushes) as an API client sent it back: the live state under
/// `stats` dropped (it is not configuration), and each masked URL replaced by the stored one
/// that masks alike — the one at the same place first (two keys on one server mask alike).
fn restore_urls(items: &[Value], stored: &[String], mask: fn(&str) -> String) -> Value {
    let items = items.iter().enumerate().map(|(i, item)| {
        let mut item = item.clone();
        if let Value::Object(fields) = &mut item {
            fields.remove("stats");
        }
        if let Some(Value::String(url)) = item.get_mut("url")
            && url.contains(MASK)
            && let Some(original) = stored
                .get(i)
                .filter(|u| mask(u) == *url)
                .or_else(|| stored.iter().find(|u| mask(u) == *url))
        {
            *url = original.clone();
        }
        item
    });
    Value::Array(items.collect())
}

/// The stored definition as API JSON, secrets masked: the file's keys as written, plus `name`.
pub(super) fn to_json(name: &str, text: &str) -> Value {
    let mut fields: Map<String, Value> = toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    if fields.contains_key("publish_key") {
        fields.insert("publish_key".into(), Value::String(MASK.into()));
    }
    if let Some(Value::Array(inputs)) = fields.get_mut("inputs") {
        for input in inputs {
            if let Some(Value::String(url)) = input.get_mut("url") {
                *url = mask_credentials(url);
            }
        }
    }
    if let Some(Value::Array(pushes)) = fields.get_mut("pushes") {
        for push in pushes {
            if let Some(Value::String(url)) = push.get_mut("url") {
                *url = mask_url(url);
            }
        }
    }
    fields.insert("name".into(), Value::String(name.into()));
    Value::Object(fields)
}

/// Writes `text` as `dir/NAME.toml` so that a crash at any instant leaves the old file or
/// the new one, never a part: a temporary file in the same folder, written and synced, is
/// renamed over the old one, then the folder is synced. Blocking: call it off the runtime.
/// The new file keeps the old one's permissions; a new one is readable by its owner alone (it
/// may hold input passwords and publish keys). Once the rename is done the write counts as
/// done: a failed sync of the folder is logged, not reported as "nothing changed".
pub(super) fn write_atomic(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // A dot name with another extension: the loader and the watcher's reload ignore it.
    let tmp = dir.join(format!(".{name}.toml.tmp"));
    let target = dir.join(format!("{name}.toml"));
    let mode = std::fs::metadata(&target).map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &target)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_folder(dir);
    Ok(())
}

/// Removes `dir/NAME.toml` durably. Blocking.
pub(super) fn remove(dir: &Path, name: &str) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(format!("{name}.toml"))) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    sync_folder(dir);
    Ok(())
}

/// Makes a rename or removal in `dir` durable; a failure is logged (the change is made).
fn sync_folder(dir: &Path) {
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot sync the streams folder; the change may not survive a power loss");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HAND: &str = "# The lobby camera.\ntitle = \"Lobby\" # shown in the API\ninputs = [{ url = \"rtsp://cam:secret@10.0.0.5/live\" }]\npublish_key = \"k1\"\nsegment_count = 6\n\n# Keep a day.\n[dvr]\nexpiration = \"1d\"\n";

    #[test]
    fn a_partial_update_keeps_other_keys_and_comments() {
        let text = merge(Some(HAND), &json!({"title": "Hall", "segment_count": 4})).unwrap();
        assert!(
            text.starts_with("# The lobby camera.\ntitle = \"Hall\" # shown in the API\n"),
            "{text}"
        );
        assert!(text.contains("segment_count = 4\n"));
        assert!(
            text.contains("# Keep a day.\n[dvr]\nexpiration = \"1d\"\n"),
            "{text}"
        );
        assert!(text.contains("rtsp://cam:secret@10.0.0.5/live"));
    }

    #[test]
    fn null_removes_a_key_and_tables_merge() {
        let text = merge(
            Some(HAND),
            &json!({"segment_count": null, "dvr": {"storage_limit": "1G"}}),
        )
        .unwrap();
        assert!(!text.contains("segment_count"), "{text}");
        assert!(
            text.contains("expiration = \"1d\"\nstorage_limit = \"1G\"\n"),
            "{text}"
        );
        let text = merge(Some(HAND), &json!({"dvr": null})).unwrap();
        assert!(!text.contains("[dvr]"), "{text}");
    }

    #[test]
    fn reset_replaces_the_whole_definition() {
        let text = merge(
            Some(HAND),
            &json!({"$reset": true, "inputs": [{"url": "fake://fake"}]}),
        )
        .unwrap();
        assert_eq!(text, "inputs = [{ url = \"fake://fake\" }]\n");
    }

    #[test]
    fn new_definitions_get_tables_and_nested_tables() {
        let body = json!({
            "title": "T", "inputs": [{"url": "fake://fake", "priority": 1}],
            "transcoder": {"hw": "cpu", "video": [{"bitrate": "300k", "size": "320x180"}], "audio": {"bitrate": "64k"}},
            "dvr": {"expiration": 3600}
        });
        let text = merge(None, &body).unwrap();
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            parsed["transcoder"]["video"][0]["size"].as_str(),
            Some("320x180")
        );
        assert_eq!(
            parsed["transcoder"]["audio"]["bitrate"].as_str(),
            Some("64k")
        );
        assert_eq!(parsed["dvr"]["expiration"].as_integer(), Some(3600));
        assert!(text.contains("[dvr]\n"), "{text}");
    }

    #[test]
    fn masked_secrets_round_trip() {
        let shown = to_json("lobby", HAND);
        assert_eq!(shown["publish_key"], "***");
        assert_eq!(shown["inputs"][0]["url"], "rtsp://cam:***@10.0.0.5/live");
        assert_eq!(shown["name"], "lobby");
        // Sending back what was read (with the inputs' live state) changes nothing.
        let mut shown = shown;
        shown["inputs"][0]["stats"] = json!({"active": true});
        shown["stats"] = json!({"alive": true});
        let text = merge(Some(HAND), &shown).unwrap();
        assert_eq!(text, HAND);
    }

    #[test]
    fn push_keys_are_masked_and_restored() {
        let text = "inputs = [{ url = \"fake://fake\" }]\npushes = [{ url = \"rtmp://yt/live2/KEY-123\" }, { retry_timeout = 3, url = \"srt://h:9000?passphrase=0123456789ab\" }]\n";
        let mut shown = to_json("s", text);
        assert_eq!(shown["pushes"][0]["url"], "rtmp://yt/live2/***");
        assert_eq!(shown["pushes"][1]["url"], "srt://h:9000?passphrase=***");
        assert!(!shown.to_string().contains("KEY-123"));
        shown["pushes"][0]["stats"] = json!({"status": "running"});
        assert_eq!(merge(Some(text), &shown).unwrap(), text);
        // Two keys on one server look alike; each comes back to its place.
        let two = "inputs = [{ url = \"fake://fake\" }]\npushes = [{ url = \"rtmp://yt/live2/A\" }, { url = \"rtmp://yt/live2/B\" }]\n";
        assert_eq!(merge(Some(two), &to_json("s", two)).unwrap(), two);
    }

    #[test]
    fn bad_bodies_name_the_field() {
        assert_eq!(merge(None, &json!([1])).unwrap_err().path, None);
        let e = merge(None, &json!({"inputs": [{"url": null}], "x": [null]})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("x[0]"));
        let e = merge(None, &json!({"$reset": "yes"})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("$reset"));
        let e = merge(None, &json!({"segment_count": 18446744073709551615u64})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("segment_count"));
    }

    #[test]
    fn a_masked_key_without_a_stored_one_is_refused() {
        let e = merge(None, &json!({"publish_key": "***"})).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("publish_key"));
    }

    #[test]
    fn atomic_write_keeps_permissions_and_new_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "n", "title = \"1\"\n").unwrap();
        let mode = |n: &str| {
            std::fs::metadata(dir.path().join(n))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("n.toml"), 0o600);
        std::fs::set_permissions(
            dir.path().join("n.toml"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        write_atomic(dir.path(), "n", "title = \"2\"\n").unwrap();
        assert_eq!(mode("n.toml"), 0o640);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "a", "title = \"1\"\n").unwrap();
        write_atomic(dir.path(), "a", "title = \"2\"\n").unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["a.toml"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.toml")).unwrap(),
            "title = \"2\"\n"
        );
        remove(dir.path(), "a").unwrap();
        remove(dir.path(), "a").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
