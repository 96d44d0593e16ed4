//! The emulator's clocks: [`Clock`] for task completion, health checks and rate-limit windows, and
//! small UTC calendar helpers (no external time crate needed) for the wall-clock side.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Monotonic emulator time: tokio time (so `tokio::time::pause` works) plus whatever the emulator
/// was told to skip ([`crate::Emulator::advance`], `POST /_emulator/clock {"advance_ms"}`), so tests
/// can wait out a task or a health-check warm-up without sleeping. Never goes backwards.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    skipped_ms: AtomicU64,
}

impl Clock {
    /// Now, in emulator time.
    pub fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(self.skipped_ms.load(Ordering::Relaxed))
    }

    /// Moves emulator time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.skipped_ms.fetch_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX / 4), Ordering::Relaxed);
    }
}

/// Seconds since the Unix epoch of `t` (negative before 1970).
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Converts days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// UTC date `YYYY-MM-DD` of a Unix timestamp (what TC3 puts in the credential scope).
pub fn utc_date(ts: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// UTC `YYYY-MM-DD HH:MM:SS` of a Unix timestamp (format of `RegisteredTime` / `CreateTime`).
pub fn utc_datetime(ts: i64) -> String {
    let secs = ts.rem_euclid(86_400);
    format!("{} {:02}:{:02}:{:02}", utc_date(ts), secs / 3600, (secs / 60) % 60, secs % 60)
}

/// UTC `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339) of a Unix timestamp (`Expiration` of temporary credentials).
pub fn utc_rfc3339(ts: i64) -> String {
    format!("{}Z", utc_datetime(ts).replace(' ', "T"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_551_113_065), "2019-02-25");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14");
        assert_eq!(utc_datetime(1_551_113_065), "2019-02-25 16:44:25");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_rfc3339(1_551_113_065), "2019-02-25T16:44:25Z");
    }
}
