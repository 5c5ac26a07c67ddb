//! Dates as mail headers write them (RFC 5322 §3.3), for Received and bounces, and
//! the Unix time the node's records carry.

use std::time::{SystemTime, UNIX_EPOCH};

use portico_imap::response::{MONTHS, civil_from_days};

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// `Mon, 30 Nov 2026 13:20:05 +0000` for a Unix time, in UTC.
pub fn rfc5322(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let rest = secs.rem_euclid(86_400);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

pub fn rfc5322_now() -> String {
    rfc5322(unix_now())
}

/// Seconds since the Unix epoch now (0 for a clock set before it).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(super::rfc5322(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            super::rfc5322(1_796_044_805),
            "Mon, 30 Nov 2026 13:20:05 +0000"
        );
    }
}
