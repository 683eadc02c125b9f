//! Which key of a TOML text a byte offset falls in (`inputs[0].url`), so that a mistake found
//! by the deserializer is reported with the key's path as well as its line and column.

use toml_edit::{Item, Table, Value};

/// The dotted path of the innermost key or value whose span holds `offset`.
pub(super) fn path_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let root = doc.as_item().as_table()?;
    in_table(root, offset, "")
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn holds(span: Option<std::ops::Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

fn in_table(table: &Table, offset: usize, prefix: &str) -> Option<String> {
    for (name, item) in table.iter() {
        let path = join(prefix, name);
        if let Some(deeper) = in_item(item, offset, &path) {
            return Some(deeper);
        }
        let key_span = table.get_key_value(name).and_then(|(k, _)| k.span());
        if holds(key_span, offset) || holds(item.span(), offset) {
            return Some(path);
        }
    }
    None
}

fn in_item(item: &Item, offset: usize, path: &str) -> Option<String> {
    match item {
        Item::Table(t) => in_table(t, offset, path),
        Item::ArrayOfTables(a) => a.iter().enumerate().find_map(|(i, t)| {
            let p = format!("{path}[{i}]");
            in_table(t, offset, &p).or_else(|| holds(t.span(), offset).then_some(p))
        }),
        Item::Value(v) => in_value(v, offset, path),
        Item::None => None,
    }
}

fn in_value(value: &Value, offset: usize, path: &str) -> Option<String> {
    match value {
        Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| {
            let p = format!("{path}[{i}]");
            in_value(v, offset, &p).or_else(|| holds(v.span(), offset).then_some(p))
        }),
        Value::InlineTable(t) => t.iter().find_map(|(name, v)| {
            let p = join(path, name);
            let key_span = t.get_key_value(name).and_then(|(k, _)| k.span());
            in_value(v, offset, &p)
                .or_else(|| (holds(key_span, offset) || holds(v.span(), offset)).then_some(p))
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::path_at;

    fn at(text: &str, needle: &str) -> Option<String> {
        path_at(text, text.find(needle).unwrap())
    }

    #[test]
    fn paths_of_keys_values_and_nested_tables() {
        let text = "title = \"x\"\ninputs = [{ url = \"fake://fake\" }, { url = \"udp://bad\", prio = 2 }]\n\n[dvr]\nexpiration = \"-1\"\n\n[transcoder]\n[[transcoder.video]]\nsize = \"1x1\"\n";
        assert_eq!(at(text, "title").as_deref(), Some("title"));
        assert_eq!(at(text, "\"udp").as_deref(), Some("inputs[1].url"));
        assert_eq!(at(text, "prio").as_deref(), Some("inputs[1].prio"));
        assert_eq!(at(text, "\"-1\"").as_deref(), Some("dvr.expiration"));
        assert_eq!(
            at(text, "\"1x1\"").as_deref(),
            Some("transcoder.video[0].size")
        );
        assert_eq!(path_at(text, text.len() + 5), None);
    }
}
