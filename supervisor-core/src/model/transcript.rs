//! Where a transcript goes and how its lines look.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What each line starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Timestamps {
    /// Nothing.
    #[default]
    None,
    /// `2026-11-21T07:30:00.123456Z `.
    Rfc3339,
    /// `@4000000069201a58075bcd15 ` (TAI64N, as `multilog t` writes).
    Tai64n,
}

/// Where and how a transcript is written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TranscriptConfig {
    /// The file; rotated copies are `PATH.1` ... `PATH.KEEP`.
    pub path: PathBuf,
    /// Per-line timestamps.
    pub timestamps: Timestamps,
    /// Prefix each line with its stream, `out` or `err`.
    pub tag: bool,
    /// Rotate before the file would grow past this many bytes.
    pub max_size: Option<u64>,
    /// How many rotated files to keep.
    pub keep: usize,
}

impl TranscriptConfig {
    /// A plain transcript at `path`: no timestamps, no tags, no rotation.
    pub fn new(path: impl Into<PathBuf>) -> TranscriptConfig {
        TranscriptConfig { path: path.into(), timestamps: Timestamps::None, tag: false, max_size: None, keep: 5 }
    }

    /// Whether lines must be looked at one by one.
    pub(crate) fn per_line(&self) -> bool {
        self.timestamps != Timestamps::None || self.tag || self.max_size.is_some()
    }
}

impl Timestamps {
    /// The prefix of a line written at `now` (with its trailing space;
    /// empty for [`Timestamps::None`]).
    #[must_use]
    pub fn stamp(self, now: SystemTime) -> String {
        let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        match self {
            Timestamps::None => String::new(),
            Timestamps::Rfc3339 => format!("{} ", rfc3339_micros(d)),
            Timestamps::Tai64n => {
                // TAI64: 2^62 + seconds since 1970 TAI (10 s ahead of UTC in
                // 1970, the offset multilog uses); then nanoseconds.
                let label = (1u64 << 62) + d.as_secs() + 10;
                format!("@{label:016x}{:08x} ", d.subsec_nanos())
            }
        }
    }
}

/// `2026-11-21T07:30:00.123456Z` for a time since the epoch (UTC).
pub(crate) fn rfc3339_micros(d: Duration) -> String {
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, day) = civil_from_days(days);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z", rem / 3600, rem / 60 % 60, rem % 60, d.subsec_micros())
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::new(1_795_246_200, 123_456_789);
        assert_eq!(Timestamps::Rfc3339.stamp(t), "2026-11-21T07:30:00.123456Z ");
        assert_eq!(Timestamps::Tai64n.stamp(t), format!("@{:016x}075bcd15 ", (1u64 << 62) + 1_795_246_210));
        assert_eq!(Timestamps::None.stamp(t), "");
    }
}
