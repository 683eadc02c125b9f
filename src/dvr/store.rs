//! The archive on disk: `ROOT/NAME/YYYY/MM/DD/HH/MM/SS-DDDDD.ts` (UTC, duration in ms) plus a
//! per-hour `index` file of `start_ms duration_ms size discontinuity` lines. Segments are
//! written to a `.tmp-` name and renamed, so an interrupted write never looks like a segment.

use super::DvrError;
use super::index::{ArchiveIndex, Entry};
use crate::media::parse_segment_path;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Prefix of files being written.
const TMP_PREFIX: &str = ".tmp-";
/// Name of the per-hour index file.
const INDEX_FILE: &str = "index";

/// What loading an archive found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub index: ArchiveIndex,
    /// Interrupted writes removed.
    pub removed_temp: usize,
}

/// Rebuilds the index of `dir` (`ROOT/NAME`): every `.ts` file whose name parses is a
/// segment; the hour's index file supplies discontinuity flags (a segment the index misses
/// — a crash between rename and index append — is still listed). Stray temporary files are
/// deleted.
pub fn load(dir: &Path) -> Result<Loaded, DvrError> {
    let mut found: Vec<(u64, u32, u64, bool)> = Vec::new();
    let mut loaded = Loaded::default();
    if !dir.exists() {
        return Ok(loaded);
    }
    for hour in hour_dirs(dir)? {
        let flags = read_index(&hour);
        let rel_hour = hour
            .strip_prefix(dir)
            .unwrap_or(&hour)
            .to_string_lossy()
            .into_owned();
        for minute in read_dir(&hour)? {
            if !minute.is_dir() {
                continue;
            }
            for file in read_dir(&minute)? {
                let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if name.starts_with(TMP_PREFIX) {
                    if fs::remove_file(&file).is_ok() {
                        loaded.removed_temp += 1;
                    }
                    continue;
                }
                let minute_name = minute.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let rel = format!("{rel_hour}/{minute_name}/{name}");
                let Some((second_ms, duration_ms)) = parse_segment_path(&rel) else {
                    continue;
                };
                let size = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                let (start_ms, disc) = flags
                    .iter()
                    .find(|(s, d)| *s / 1000 * 1000 == second_ms && d.0 == duration_ms)
                    .map_or((second_ms, false), |(s, d)| (*s, d.1));
                found.push((start_ms, duration_ms, size, disc));
            }
        }
    }
    found.sort_unstable();
    for (start, duration, size, disc) in found {
        loaded.index.insert(start, duration, size, disc);
    }
    Ok(loaded)
}

/// Writes one segment crash-safely and appends it to its hour's index.
pub fn write(dir: &Path, entry: &Entry, data: &[u8]) -> Result<(), DvrError> {
    let path = dir.join(entry.path());
    let parent = path
        .parent()
        .ok_or_else(|| DvrError::io(&path, "no parent"))?;
    fs::create_dir_all(parent).map_err(|e| DvrError::Io(parent.to_owned(), e))?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment.ts");
    let tmp = parent.join(format!("{TMP_PREFIX}{file_name}"));
    // Each step its own span inside the caller's `dvr.write` (where the time goes: the page
    // cache, the disk, or the directory).
    let step = |name: &'static str| match name {
        "write" => tracing::info_span!(target: crate::telemetry::TARGET, "dvr.write.data"),
        "fsync" => tracing::info_span!(target: crate::telemetry::TARGET, "dvr.write.fsync"),
        _ => tracing::info_span!(target: crate::telemetry::TARGET, "dvr.write.rename"),
    };
    let result = (|| {
        let f = {
            let _s = step("write").entered();
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            f
        };
        step("fsync").in_scope(|| f.sync_data())?;
        step("rename").in_scope(|| fs::rename(&tmp, &path))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(DvrError::Io(path, e));
    }
    let hour = parent
        .parent()
        .ok_or_else(|| DvrError::io(&path, "no hour folder"))?;
    let line = format!(
        "{} {} {} {}\n",
        entry.start_ms,
        entry.duration_ms,
        entry.size,
        u8::from(entry.discontinuity)
    );
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(hour.join(INDEX_FILE))
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| DvrError::Io(hour.join(INDEX_FILE), e))
}

/// Deletes a segment file and prunes the folders it leaves empty (up to `dir`).
pub fn delete(dir: &Path, entry: &Entry) -> Result<(), DvrError> {
    let path = dir.join(entry.path());
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DvrError::Io(path, e)),
    }
    let mut folder = path.parent().map(Path::to_path_buf);
    while let Some(f) = folder {
        if f == dir || !f.starts_with(dir) {
            break;
        }
        let only_index = read_dir(&f).is_ok_and(|entries| {
            entries
                .iter()
                .all(|e| e.file_name().is_some_and(|n| n == INDEX_FILE))
        });
        if !only_index {
            break;
        }
        let _ = fs::remove_file(f.join(INDEX_FILE));
        if fs::remove_dir(&f).is_err() {
            break;
        }
        folder = f.parent().map(Path::to_path_buf);
    }
    Ok(())
}

/// `YYYY/MM/DD/HH` folders under `dir`.
fn hour_dirs(dir: &Path) -> Result<Vec<PathBuf>, DvrError> {
    let mut level = vec![dir.to_path_buf()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for d in &level {
            next.extend(read_dir(d)?.into_iter().filter(|p| p.is_dir()));
        }
        level = next;
    }
    Ok(level)
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, DvrError> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| DvrError::Io(dir.to_owned(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// start_ms → (duration_ms, discontinuity) from an hour's index file (bad lines skipped).
fn read_index(hour: &Path) -> HashMap<u64, (u32, bool)> {
    let text = fs::read_to_string(hour.join(INDEX_FILE)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let v: Vec<&str> = l.split_whitespace().collect();
            let [start, dur, _size, disc] = v.as_slice() else {
                return None;
            };
            Some((start.parse().ok()?, (dur.parse().ok()?, *disc == "1")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_load_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cam");
        let mut index = ArchiveIndex::default();
        let t0 = 1_795_305_598_500; // 2026-11-21T23:59:58.500Z: crosses an hour and a day
        let a = index.insert(t0, 2000, 188, false);
        let b = index.insert(t0 + 2000, 2000, 376, true);
        write(&root, &a, &[0x47; 188]).unwrap();
        write(&root, &b, &[0x47; 376]).unwrap();
        assert!(root.join("2026/11/21/23/59/58-02000.ts").is_file());
        assert!(root.join("2026/11/22/00/00/00-02000.ts").is_file());
        // A crash mid-write leaves a temporary file; a crash before the index append leaves an
        // unindexed segment.
        fs::write(root.join("2026/11/22/00/00/.tmp-02-02000.ts"), b"partial").unwrap();
        fs::write(root.join("2026/11/22/00/00/02-02000.ts"), [0x47; 188]).unwrap();
        let loaded = load(&root).unwrap();
        assert_eq!(loaded.removed_temp, 1);
        let got: Vec<(u64, u32, u64, bool)> = loaded
            .index
            .iter()
            .map(|e| (e.start_ms, e.duration_ms, e.size, e.discontinuity))
            .collect();
        assert_eq!(
            got,
            [
                (t0, 2000, 188, false),
                (t0 + 2000, 2000, 376, true),
                (1_795_305_602_000, 2000, 188, false),
            ]
        );
        assert!(!root.join("2026/11/22/00/00/.tmp-02-02000.ts").exists());
        delete(&root, &a).unwrap();
        assert!(!root.join("2026/11/21").exists(), "empty day folder pruned");
        assert!(root.join("2026/11/22/00/00").is_dir());
    }

    #[test]
    fn missing_archive_is_empty() {
        let loaded = load(Path::new("/nonexistent/headwater/archive")).unwrap();
        assert!(loaded.index.is_empty());
    }
}
