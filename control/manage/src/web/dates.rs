//! Dates as the console's forms take and show them: `YYYY-MM-DD`, UTC. An expiry date means
//! "through that day": it is stored as the next day's first second.

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Unix second an expiry date `YYYY-MM-DD` ends at (the next day's 00:00 UTC).
pub fn expiry_from_date(text: &str) -> Option<u64> {
    let mut parts = text.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if !(1970..=9999).contains(&y) || !(1..=days_in_month).contains(&d) {
        return None;
    }
    u64::try_from((days_from_civil(y, m, d) + 1) * 86_400).ok()
}

/// The date an expiry stored by `expiry_from_date` was given as.
pub fn date_of_expiry(at: u64) -> String {
    let iso = crate::client::iso8601(&serde_json::json!(at.saturating_sub(1)));
    iso.get(..10).unwrap_or(&iso).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_round_trips_and_bad_dates_are_refused() {
        // 2027-01-31 ends at 2027-02-01T00:00:00Z = 1801440000.
        assert_eq!(expiry_from_date("2027-01-31"), Some(1_801_440_000));
        assert_eq!(date_of_expiry(1_801_440_000), "2027-01-31");
        assert_eq!(expiry_from_date("1970-01-01"), Some(86_400));
        assert_eq!(
            date_of_expiry(expiry_from_date("2028-02-29").unwrap_or(0)),
            "2028-02-29"
        );
        for bad in [
            "2027-02-29",
            "2027-13-01",
            "2027-00-10",
            "27-1-1x",
            "",
            "1969-12-31",
        ] {
            assert_eq!(expiry_from_date(bad), None, "{bad}");
        }
    }
}
