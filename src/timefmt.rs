//! Time as text for logs, errors and messages.

use std::time::{SystemTime, UNIX_EPOCH};

/// RFC 3339 in whole seconds (`2024-05-01T12:00:00Z`) for any time,
/// including those before 1970 or after 9999 that certificates and
/// Teleport data can carry, where `humantime`'s formatter panics or fails.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    };
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{secs} seconds from 1970-01-01T00:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn any_time_formats_as_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::new(1_700_000_000, 5)), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(157_766_400)), "1965-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1 << 40)), "1099511627776 seconds from 1970-01-01T00:00:00Z");
        let now = SystemTime::now();
        assert_eq!(rfc3339(now), humantime::format_rfc3339_seconds(now).to_string(), "same text as before for usual times");
    }
}
