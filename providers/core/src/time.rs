//! Timestamps on provider resources, in one form: RFC 3339 UTC. Clouds report creation times
//! with local offsets, nanoseconds or no zone at all (Nova: naive UTC); `gc` compares them with
//! the clock, so each provider normalises through here.

/// Now, as RFC 3339 UTC to the second.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string())
}

/// A cloud's timestamp as RFC 3339 UTC. A time without a zone is taken as UTC (Nova's
/// `created_at`); `None` when it is no time at all.
pub fn utc(t: &str) -> Option<String> {
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Some(ts.to_string());
    }
    t.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_times_become_utc() {
        assert_eq!(
            utc("2026-11-28T17:20:01.123456789+01:00").as_deref(),
            Some("2026-11-28T16:20:01.123456789Z")
        );
        assert_eq!(
            utc("2026-11-28T17:20:01.000000").as_deref(),
            Some("2026-11-28T17:20:01Z"),
            "a naive time is UTC"
        );
        assert_eq!(
            utc("2026-11-28T17:20:01Z").as_deref(),
            Some("2026-11-28T17:20:01Z")
        );
        assert_eq!(utc("yesterday"), None);
        assert!(utc(&now_rfc3339()).is_some());
    }
}
