//! UTC calendar arithmetic for segment names and `EXT-X-PROGRAM-DATE-TIME`, without a
//! time-zone library: days-from-civil conversion (H. Hinnant's algorithm).

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl Civil {
    /// Converts milliseconds since the Unix epoch to a UTC calendar time.
    pub fn from_unix_ms(ms: u64) -> Self {
        let secs = ms / 1000;
        let days = (secs / 86_400) as i64;
        let sod = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: (sod / 3600) as u32,
            minute: (sod % 3600 / 60) as u32,
            second: (sod % 60) as u32,
            millis: (ms % 1000) as u32,
        }
    }

    /// Milliseconds since the Unix epoch; `None` for fields out of range.
    pub fn to_unix_ms(&self) -> Option<u64> {
        if !(1..=12).contains(&self.month)
            || !(1..=31).contains(&self.day)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
            || self.millis > 999
        {
            return None;
        }
        let y = self.year - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        u64::try_from(secs)
            .ok()
            .map(|s| s * 1000 + u64::from(self.millis))
    }

    /// ISO 8601 with milliseconds and `Z`, as HLS `EXT-X-PROGRAM-DATE-TIME` wants.
    pub fn iso8601(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }
}

/// The wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::Civil;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(Civil::from_unix_ms(0).iso8601(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Civil::from_unix_ms(951_782_400_123).iso8601(),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            Civil::from_unix_ms(1_795_305_599_999).iso8601(),
            "2026-11-21T23:59:59.999Z"
        );
    }

    #[test]
    fn round_trips_through_unix_ms() {
        for ms in [0, 951_782_400_123, 1_795_305_599_999, 4_102_444_800_000] {
            assert_eq!(Civil::from_unix_ms(ms).to_unix_ms(), Some(ms));
        }
        let mut bad = Civil::from_unix_ms(0);
        bad.month = 13;
        assert_eq!(bad.to_unix_ms(), None);
    }
}
