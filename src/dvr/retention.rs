//! Which segments retention deletes: oldest first, by age (`expiration`), by the stream's
//! `storage_limit`, and by the filesystem's `disk_usage_limit`. Pure planning, unit-tested;
//! the recorder carries the plan out.

use super::index::{ArchiveIndex, Entry};

/// The limits in force for one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Delete segments that ended longer ago than this, ms.
    pub expiration_ms: Option<u64>,
    /// Keep the stream's archive under this many bytes.
    pub storage_limit: Option<u64>,
}

/// Filesystem state for the global limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disk {
    pub total: u64,
    pub available: u64,
    /// Start deleting above this used percentage.
    pub usage_limit: f64,
}

/// Segments to delete, oldest first. The newest segment is never planned: retention must not
/// eat what was just recorded (and the live window is memory, untouched by this).
pub fn plan(index: &ArchiveIndex, limits: Limits, disk: Option<Disk>, now_ms: u64) -> Vec<Entry> {
    let keep_last = index.last().map(|e| e.start_ms);
    let mut bytes = index.bytes();
    // Bytes that must go to bring the disk under its limit.
    let mut disk_excess = disk.map_or(0, |d| {
        if d.total == 0 {
            return 0;
        }
        let used = d.total.saturating_sub(d.available) as f64;
        let allowed = d.total as f64 * d.usage_limit / 100.0;
        (used - allowed).max(0.0) as u64
    });
    let mut out = Vec::new();
    for e in index.iter() {
        if Some(e.start_ms) == keep_last {
            break;
        }
        let expired = limits
            .expiration_ms
            .is_some_and(|exp| e.end_ms() + exp <= now_ms);
        let over_storage = limits.storage_limit.is_some_and(|limit| bytes > limit);
        if !(expired || over_storage || disk_excess > 0) {
            break;
        }
        bytes -= e.size;
        disk_excess = disk_excess.saturating_sub(e.size);
        out.push(*e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(n: u64) -> ArchiveIndex {
        let mut i = ArchiveIndex::default();
        for k in 0..n {
            i.insert(k * 2000, 2000, 100, false);
        }
        i
    }

    fn starts(v: &[Entry]) -> Vec<u64> {
        v.iter().map(|e| e.start_ms).collect()
    }

    #[test]
    fn by_age() {
        let i = index(10); // 0..20 s
        let limits = Limits {
            expiration_ms: Some(10_000),
            storage_limit: None,
        };
        // At t=20 s, segments ending at or before 10 s are expired.
        assert_eq!(
            starts(&plan(&i, limits, None, 20_000)),
            [0, 2000, 4000, 6000, 8000]
        );
        assert!(plan(&i, limits, None, 11_999).is_empty());
        assert_eq!(plan(&i, limits, None, 12_000).len(), 1);
    }

    #[test]
    fn by_storage_limit() {
        let i = index(10); // 1000 bytes
        let limits = Limits {
            expiration_ms: None,
            storage_limit: Some(750),
        };
        assert_eq!(starts(&plan(&i, limits, None, 0)), [0, 2000, 4000]);
    }

    #[test]
    fn by_disk_usage_and_never_the_newest() {
        let i = index(3);
        let disk = Disk {
            total: 10_000,
            available: 500,
            usage_limit: 90.0,
        }; // 9500 used, 9000 allowed
        let p = plan(&i, Limits::default(), Some(disk), 0);
        assert_eq!(
            starts(&p),
            [0, 2000],
            "500 bytes over: whole segments until covered, newest kept"
        );
        let disk = Disk {
            total: 10_000,
            available: 5000,
            usage_limit: 90.0,
        };
        assert!(plan(&i, Limits::default(), Some(disk), 0).is_empty());
        let limits = Limits {
            expiration_ms: Some(1),
            storage_limit: Some(0),
        };
        assert_eq!(plan(&i, limits, None, u64::MAX / 2).len(), 2);
    }
}
