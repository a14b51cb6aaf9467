//! The crate's wall clock: record timestamps, commit timestamps, retention ages and producer
//! expiry all read it here, so there is one place that says what "now" means.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970). Called per
/// record by the producer, so it avoids `as_millis`' 128-bit arithmetic.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 * 1000 + d.subsec_millis() as i64)
        .unwrap_or(0)
}
