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
        let mut out = String::with_capacity(24);
        self.push_iso8601(&mut out);
        out
    }

    /// Appends [`Civil::iso8601`] (`YYYY-MM-DDTHH:MM:SS.mmmZ`).
    pub fn push_iso8601(&self, out: &mut String) {
        let mut text = Vec::with_capacity(24);
        self.extend_iso8601(&mut text);
        out.push_str(std::str::from_utf8(&text).unwrap_or_default());
    }

    /// [`Civil::push_iso8601`] onto bytes, without formatting machinery: archive playlists
    /// write one per segment, 43,200 for a day.
    pub fn extend_iso8601(&self, out: &mut Vec<u8>) {
        let mut text = *b"0000-00-00T00:00:00.000Z";
        text[..19].copy_from_slice(&self.date_time(*b"--T::"));
        put_digits(&mut text[20..23], u64::from(self.millis));
        out.extend_from_slice(&text);
    }

    /// Appends Flussonic's segment path of a segment starting at this time (seconds only):
    /// `YYYY/MM/DD/HH/MM/SS-DDDDD` and `ext`.
    pub fn push_segment_path(&self, out: &mut String, duration_ms: u32, ext: &str) {
        let mut text = Vec::with_capacity(25 + ext.len());
        self.extend_segment_path(&mut text, duration_ms, ext.as_bytes());
        out.push_str(std::str::from_utf8(&text).unwrap_or_default());
    }

    /// [`Civil::push_segment_path`] onto bytes.
    pub fn extend_segment_path(&self, out: &mut Vec<u8>, duration_ms: u32, ext: &[u8]) {
        out.extend_from_slice(&self.date_time(*b"/////"));
        out.push(b'-');
        extend_padded(out, u64::from(duration_ms), 5);
        out.extend_from_slice(ext);
    }

    /// `YYYY?MM?DD?HH?MM?SS` with these separators (ASCII) between the fields. Years past
    /// 9999 (not a time a stream runs at) keep their last four digits.
    fn date_time(&self, separators: [u8; 5]) -> [u8; 19] {
        let mut text = *b"0000-00-00T00:00:00";
        put_digits(&mut text[0..4], u64::try_from(self.year).unwrap_or(0));
        let fields = [self.month, self.day, self.hour, self.minute, self.second];
        for (i, (sep, field)) in separators.into_iter().zip(fields).enumerate() {
            text[4 + 3 * i] = sep;
            put_digits(&mut text[5 + 3 * i..7 + 3 * i], u64::from(field));
        }
        text
    }
}

/// Writes the last `dst.len()` decimal digits of `v` into `dst`, zero-padded.
fn put_digits(dst: &mut [u8], mut v: u64) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Appends `v` in decimal, zero-padded to at least `width` digits (as `{:0width$}` would).
pub fn extend_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let len = v
        .checked_ilog10()
        .map_or(1, |l| l as usize + 1)
        .max(width)
        .min(20);
    put_digits(&mut digits[..len], v);
    out.extend_from_slice(&digits[..len]);
}

/// [`extend_padded`] onto text.
pub fn push_padded(out: &mut String, v: u64, width: usize) {
    let mut digits = Vec::with_capacity(20);
    extend_padded(&mut digits, v, width);
    out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
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

    /// The hand-written digits equal what `format!` writes, across the digit counts.
    #[test]
    fn pushed_text_equals_formatted_text() {
        for v in [0u64, 7, 42, 999, 1000, 12_345, 99_999, 100_000, u64::MAX] {
            for width in [1, 2, 3, 4, 5] {
                let mut out = String::new();
                super::push_padded(&mut out, v, width);
                assert_eq!(out, format!("{v:0width$}"), "{v} {width}");
            }
        }
        let mut ms = 0u64;
        while ms < 4_102_444_800_000 {
            let t = Civil::from_unix_ms(ms);
            assert_eq!(
                t.iso8601(),
                format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                    t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
                )
            );
            let mut path = String::new();
            t.push_segment_path(&mut path, 2040, ".ts");
            assert_eq!(
                path,
                format!(
                    "{:04}/{:02}/{:02}/{:02}/{:02}/{:02}-02040.ts",
                    t.year, t.month, t.day, t.hour, t.minute, t.second
                )
            );
            ms += 41_024_447_993; // ~100,000 times, every field value
        }
    }
}
