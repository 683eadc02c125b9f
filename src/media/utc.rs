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
}
