//! The archive on disk: `ROOT/NAME/YYYY/MM/DD/HH/MM/SS-DDDDD.ts` (UTC, duration in ms) plus a
//! per-hour `index` file of `start_ms duration_ms size discontinuity` lines. Segments are
//! written to a `.tmp-` name and renamed, so an interrupted write never looks like a segment.

use super::DvrError;
use super::index::{ArchiveIndex, Entry};
use crate::media::{SegmentName, segment_path};
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Prefix of files being written.
const TMP_PREFIX: &str = ".tmp-";
/// Name of the per-hour index file.
const INDEX_FILE: &str = "index";

/// A segment as the archive records it: (start_ms, duration_ms, size, discontinuity).
type Recorded = (u64, u32, u64, bool);

/// What loading an archive found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub index: ArchiveIndex,
    /// Interrupted writes removed.
    pub removed_temp: usize,
}

/// Rebuilds the index of `dir` (`ROOT/NAME`) from the hours' index files and folders.
///
/// An hour is read from its index file alone (exact starts, sizes, discontinuity flags) when
/// it is not the newest hour and the files of its oldest and newest indexed segments exist:
/// segments are only added by the recorder (file renamed into place, then the index line
/// appended) and only deleted by retention, oldest first, so such an hour is whole. Any other
/// hour (the newest, where a crash may have left a segment without its index line or a
/// temporary file; one retention has begun to delete; one without an index) is listed
/// folder by folder: every `.ts` file whose name parses is a segment (its index line, if any,
/// supplies its exact start, size and flag; else the file its size, and a line for it is
/// added to the index) and stray temporary files are deleted. A week of ten streams (3
/// million segments) is indexed in under a second (`benches/archive_index.rs`), where
/// listing every folder took half a minute.
pub fn load(dir: &Path) -> Result<Loaded, DvrError> {
    let mut found: Vec<Recorded> = Vec::new();
    let mut loaded = Loaded::default();
    if !dir.exists() {
        return Ok(loaded);
    }
    let hours = hour_dirs(dir)?;
    let newest = hours.len().saturating_sub(1);
    // Whole hours are read by a few threads at once: after a reboot each index file is a
    // disk read, and the disk answers several at a time.
    let chunk = hours.len().div_ceil(LOAD_THREADS).max(1);
    let read: Vec<Vec<Option<Vec<Recorded>>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = hours
            .chunks(chunk)
            .map(|part| {
                let worker = scope.spawn(move || part.iter().map(|h| read_whole(dir, h)).collect());
                (part.len(), worker)
            })
            .collect();
        // A worker that failed leaves its hours to be listed.
        workers
            .into_iter()
            .map(|(len, w)| w.join().unwrap_or_else(|_| vec![None; len]))
            .collect()
    });
    for (i, (hour, whole)) in hours.iter().zip(read.into_iter().flatten()).enumerate() {
        match whole {
            Some(segments) if i < newest => found.extend_from_slice(&segments),
            _ => list_hour(
                dir,
                hour,
                &read_index(hour),
                &mut found,
                &mut loaded.removed_temp,
            )?,
        }
    }
    found.sort_unstable();
    loaded.index = ArchiveIndex::from_sorted(&found);
    Ok(loaded)
}

/// Threads reading whole hours' index files at start-up.
const LOAD_THREADS: usize = 16;

/// `hour`'s segments from its index file, if the files of its first and last indexed
/// segments exist (see [`load`]).
fn read_whole(dir: &Path, hour: &Path) -> Option<Vec<Recorded>> {
    let indexed = read_index(hour);
    let exists = |s: &Recorded| dir.join(segment_path(s.0, s.1)).is_file();
    // Oldest and newest by start (retention deletes by start; lines are in writing order,
    // which differs after the clock stepped back).
    let oldest = indexed.iter().min_by_key(|s| s.0);
    let newest = indexed.iter().max_by_key(|s| s.0);
    (oldest.is_some_and(exists) && newest.is_some_and(exists)).then_some(indexed)
}

/// Adds the segments found in `hour`'s minute folders to `found` (see [`load`]).
fn list_hour(
    dir: &Path,
    hour: &Path,
    indexed: &[Recorded],
    found: &mut Vec<Recorded>,
    removed_temp: &mut usize,
) -> Result<(), DvrError> {
    let by_name: HashMap<(u64, u32), (u64, u64, bool)> = indexed
        .iter()
        .map(|&(start, duration, size, disc)| {
            ((start / 1000 * 1000, duration), (start, size, disc))
        })
        .collect();
    let rel_hour = hour
        .strip_prefix(dir)
        .unwrap_or(hour)
        .to_string_lossy()
        .into_owned();
    let hour_parts: Vec<&str> = rel_hour.split('/').collect();
    let [y, mo, d, h] = hour_parts.as_slice() else {
        return Ok(());
    };
    // Segments on disk the index misses (a crash between rename and append).
    let mut missing = Vec::new();
    for minute in read_dir(hour)? {
        if !minute.is_dir() {
            continue;
        }
        let minute_name = minute.file_name().and_then(|n| n.to_str()).unwrap_or("");
        for file in read_dir(&minute)? {
            let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with(TMP_PREFIX) {
                if fs::remove_file(&file).is_ok() {
                    *removed_temp += 1;
                }
                continue;
            }
            let parts = [*y, *mo, *d, *h, minute_name, name];
            let Some(segment) = SegmentName::from_parts(&parts, ".ts") else {
                continue;
            };
            let key = (segment.second_ms, segment.duration_ms);
            found.push(match by_name.get(&key) {
                Some(&(start_ms, size, disc)) => (start_ms, segment.duration_ms, size, disc),
                None => {
                    let size = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                    let unindexed = (segment.second_ms, segment.duration_ms, size, false);
                    missing.push(unindexed);
                    unindexed
                }
            });
        }
    }
    // Written into the index, so that the hour is whole for a later start-up (which may read
    // it from its index alone).
    if !missing.is_empty() {
        let lines: String = missing.iter().map(index_line).collect();
        if let Err(e) = append_index(hour, &lines) {
            tracing::warn!(hour = %hour.display(), error = %e, "cannot add found segments to the archive index");
        }
    }
    Ok(())
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
    let line = index_line(&(
        entry.start_ms,
        entry.duration_ms,
        entry.size,
        entry.discontinuity,
    ));
    append_index(hour, &line)
}

/// A segment's line in its hour's index: `start_ms duration_ms size discontinuity`.
fn index_line(s: &Recorded) -> String {
    format!("{} {} {} {}\n", s.0, s.1, s.2, u8::from(s.3))
}

/// Appends `lines` to `hour`'s index file.
fn append_index(hour: &Path, lines: &str) -> Result<(), DvrError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(hour.join(INDEX_FILE))
        .and_then(|mut f| f.write_all(lines.as_bytes()))
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
/// Only folders named as digits of their level's width count (another rendition's archive,
/// `tracks-v2a1/`, lives inside this one's folder and is not an hour of it), in time order.
fn hour_dirs(dir: &Path) -> Result<Vec<PathBuf>, DvrError> {
    let mut level = vec![dir.to_path_buf()];
    for width in [4, 2, 2, 2] {
        let named = |p: &PathBuf| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == width && n.bytes().all(|b| b.is_ascii_digit()))
        };
        let mut next = Vec::new();
        for d in &level {
            next.extend(read_dir(d)?.into_iter().filter(|p| named(p) && p.is_dir()));
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

/// An hour's index file as (start_ms, duration_ms, size, discontinuity), in file order (bad
/// lines skipped; none when the file is missing).
fn read_index(hour: &Path) -> Vec<Recorded> {
    let text = fs::read_to_string(hour.join(INDEX_FILE)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut fields = l.split(' ');
            let start: u64 = fields.next()?.parse().ok()?;
            let duration: u32 = fields.next()?.parse().ok()?;
            let size: u64 = fields.next()?.parse().ok()?;
            let disc = fields.next()? == "1";
            fields
                .next()
                .is_none()
                .then_some((start, duration, size, disc))
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
        let got: Vec<Recorded> = loaded
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

    /// An older hour is read from its index unless retention has begun deleting it (its
    /// first file is gone); the newest hour is always listed.
    #[test]
    fn whole_hours_come_from_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cam");
        let mut index = ArchiveIndex::default();
        let t0 = 1_795_305_600_000; // 2026-11-22T00:00:00Z
        let hour_ms = 3_600_000;
        let mut written = Vec::new();
        for hour in 0..3 {
            for i in 0..3 {
                let e = index.insert(t0 + hour * hour_ms + i * 2000, 2000, 188, false);
                write(&root, &e, &[0x47; 188]).unwrap();
                written.push(e);
            }
        }
        // Retention deleted the first hour's first segment (its index line stays).
        fs::remove_file(root.join(written[0].path())).unwrap();
        let starts = |l: &Loaded| l.index.iter().map(|e| e.start_ms).collect::<Vec<_>>();
        let expected: Vec<u64> = written[1..].iter().map(|e| e.start_ms).collect();
        assert_eq!(starts(&load(&root).unwrap()), expected);
        // The middle hour is whole: its index alone is read (a file added behind the
        // recorder's back there is not seen); in the newest hour the folder is listed.
        fs::write(root.join("2026/11/22/01/00/10-02000.ts"), [0x47; 188]).unwrap();
        fs::write(root.join("2026/11/22/02/00/10-02000.ts"), [0x47; 188]).unwrap();
        let loaded = load(&root).unwrap();
        assert!(!starts(&loaded).contains(&(t0 + hour_ms + 10_000)));
        let found = t0 + 2 * hour_ms + 10_000;
        assert!(starts(&loaded).contains(&found));
        // The segment found in the newest hour went into its index: once a newer hour
        // exists (that hour read from its index alone), it is still there.
        let later = index.insert(t0 + 3 * hour_ms, 2000, 188, false);
        write(&root, &later, &[0x47; 188]).unwrap();
        assert!(starts(&load(&root).unwrap()).contains(&found));
        // Another rendition's archive inside this one's folder is not an hour of it: the
        // newest hour is still listed (a segment missing from its index is found).
        fs::create_dir_all(root.join("tracks-v2a1/2026/11/22/03/00")).unwrap();
        fs::write(root.join("2026/11/22/03/00/20-02000.ts"), [0x47; 188]).unwrap();
        assert!(starts(&load(&root).unwrap()).contains(&(t0 + 3 * hour_ms + 20_000)));
    }

    #[test]
    fn missing_archive_is_empty() {
        let loaded = load(Path::new("/nonexistent/headwater/archive")).unwrap();
        assert!(loaded.index.is_empty());
    }
}
