//! Host figures: CPU and memory (sysinfo), open files (`/proc/self/fd`), the filesystems of
//! the DVR roots (`statvfs`; their block device from sysinfo's mount list) and those devices'
//! busy time (`/proc/diskstats`), network byte totals (sysinfo, loopback excluded).

use super::{StatsError, names};
use metrics::{counter, gauge};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use sysinfo::{Disks, Networks, System};

/// Column of `/proc/diskstats` (0-based, after major, minor, name) holding ms spent in I/O.
const IO_TICKS_FIELD: usize = 12;

#[derive(Debug)]
pub(super) struct Host {
    system: System,
    networks: Networks,
    disks: Disks,
    /// DVR roots as configured (label `path`).
    dvr_roots: Vec<PathBuf>,
    /// Device name → (io_ticks ms, when read) from the previous sample.
    io_prev: HashMap<String, (u64, Instant)>,
    /// Roots whose filesystem has no listed block device (logged once each).
    unlisted: std::collections::HashSet<PathBuf>,
}

/// A DVR root's filesystem, as measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DiskFigures {
    pub(super) total: u64,
    pub(super) available: u64,
    /// Its block device (for `/proc/diskstats`); `None` when no mount listed in
    /// `/proc/self/mounts` is this filesystem (a chroot, some containers, a tmpfs).
    pub(super) device: Option<String>,
}

impl Host {
    pub(super) fn new(dvr_roots: Vec<PathBuf>) -> Result<Host, StatsError> {
        let mut system = System::new().map_err(StatsError::sysinfo)?;
        system.refresh_cpu_usage();
        Ok(Host {
            system,
            networks: Networks::new_with_refreshed_list().map_err(StatsError::sysinfo)?,
            disks: Disks::new_with_refreshed_list().map_err(StatsError::sysinfo)?,
            dvr_roots,
            io_prev: HashMap::new(),
            unlisted: std::collections::HashSet::new(),
        })
    }

    /// Publishes one sample; returns each DVR root's filesystem usage in percent.
    pub(super) fn sample(&mut self) -> Result<Vec<(PathBuf, Option<f64>)>, StatsError> {
        self.system.refresh_cpu_usage();
        gauge!(names::CPU_USAGE).set(f64::from(self.system.global_cpu_usage()));
        self.system.refresh_memory();
        let total = self.system.total_memory();
        if total > 0 {
            let used = total.saturating_sub(self.system.available_memory());
            gauge!(names::MEMORY_USAGE).set(used as f64 * 100.0 / total as f64);
        }
        gauge!(names::OPENED_FILES).set(open_files()? as f64);

        self.networks.refresh(true);
        let (rx, tx) = self
            .networks
            .iter()
            .filter(|(name, _)| name.as_os_str() != "lo")
            .fold((0, 0), |(rx, tx), (_, n)| {
                (rx + n.total_received(), tx + n.total_transmitted())
            });
        counter!(names::NET_INPUT).absolute(rx);
        counter!(names::NET_OUTPUT).absolute(tx);

        self.disks.refresh(true);
        let diskstats = std::fs::read_to_string("/proc/diskstats").unwrap_or_default();
        let now = Instant::now();
        let mut usage = Vec::with_capacity(self.dvr_roots.len());
        for root in &self.dvr_roots {
            let label = names::sanitize_label(&root.display().to_string());
            let Some(disk) = disk_figures(&self.disks, root) else {
                usage.push((root.clone(), None));
                continue;
            };
            if disk.device.is_none() && self.unlisted.insert(root.clone()) {
                tracing::info!(root = %root.display(), "no block device found for the DVR root's filesystem (not listed in /proc/self/mounts, or not on a block device): its I/O usage is not measured");
            }
            let size = disk.total;
            gauge!(names::DISK_SIZE, "path" => label.clone()).set(size as f64);
            let used_percent = (size > 0).then(|| {
                let used = size.saturating_sub(disk.available);
                used as f64 * 100.0 / size as f64
            });
            if let Some(p) = used_percent {
                gauge!(names::DISK_USAGE, "path" => label.clone()).set(p);
            }
            usage.push((root.clone(), used_percent));
            let Some(device) = disk.device else {
                continue;
            };
            if let Some(ticks) = io_ticks(&diskstats, &device)
                && let Some((prev, at)) = self.io_prev.insert(device, (ticks, now))
            {
                let wall_ms = now.duration_since(at).as_secs_f64() * 1000.0;
                if wall_ms > 0.0 {
                    let busy = ticks.saturating_sub(prev) as f64 * 100.0 / wall_ms;
                    gauge!(names::DISK_IO_USAGE, "path" => label).set(busy.min(100.0));
                }
            }
        }
        Ok(usage)
    }
}

fn open_files() -> Result<usize, StatsError> {
    Ok(std::fs::read_dir("/proc/self/fd")
        .map_err(|e| StatsError::Proc("/proc/self/fd", e))?
        .count())
}

/// The filesystem holding `path`: its size from `statvfs` of the path itself (what `df`
/// reports, whether or not the filesystem is listed in `/proc/self/mounts`), and the block
/// device of the listed mount that is the same filesystem (same `st_dev`), if any. A root that
/// does not exist yet is resolved through its nearest existing ancestor.
pub(super) fn disk_figures(disks: &[sysinfo::Disk], path: &Path) -> Option<DiskFigures> {
    use std::os::unix::fs::MetadataExt;
    let absolute = std::path::absolute(path).ok()?;
    let existing = absolute.ancestors().find(|p| p.exists())?;
    let real = existing.canonicalize().ok()?;
    let stats = fs4::statvfs(&real).ok()?;
    let dev = std::fs::metadata(&real).ok()?.dev();
    let device = disks
        .iter()
        .filter(|d| {
            real.starts_with(d.mount_point())
                && std::fs::metadata(d.mount_point()).is_ok_and(|m| m.dev() == dev)
        })
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .and_then(|d| {
            Path::new(d.name())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        });
    Some(DiskFigures {
        total: stats.total_space(),
        available: stats.available_space(),
        device,
    })
}

/// `io_ticks` of `device` in `/proc/diskstats` text.
pub(super) fn io_ticks(diskstats: &str, device: &str) -> Option<u64> {
    diskstats.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let name = fields.nth(2)?;
        if name != device {
            return None;
        }
        fields.nth(IO_TICKS_FIELD - 3)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::{disk_figures, io_ticks};

    #[test]
    fn a_root_outside_the_listed_mounts_is_measured_with_statvfs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("dvr-not-created-yet");
        // No listed mount holds it (as in a chroot whose /proc/self/mounts shows the host's).
        let figures = disk_figures(&[], &root).expect("statvfs of the nearest existing folder");
        let truth = fs4::statvfs(dir.path()).unwrap();
        assert_eq!(figures.total, truth.total_space());
        assert!(figures.total > 0 && figures.available <= figures.total);
        assert_eq!(figures.device, None, "no device: I/O usage is not measured");
        // With this host's listed mounts the size is the same: that of the filesystem the
        // path is on (a tmpfs /tmp is not taken for the disk mounted at /).
        let disks = sysinfo::Disks::new_with_refreshed_list().unwrap();
        let listed = disk_figures(&disks, &root).unwrap();
        assert_eq!(listed.total, truth.total_space());
    }

    #[test]
    fn diskstats_io_ticks() {
        let text = " 254       0 vda 120 3 4000 50 300 20 8000 900 0 777 950 0 0 0 0\n \
                     254       1 vda1 100 3 3000 40 200 10 6000 800 0 555 840 0 0 0 0\n";
        assert_eq!(io_ticks(text, "vda"), Some(777));
        assert_eq!(io_ticks(text, "vda1"), Some(555));
        assert_eq!(io_ticks(text, "sdb"), None);
    }
}
