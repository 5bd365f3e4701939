//! Unix seconds as a date a person can read, in error messages.

use std::fmt;

/// Formats Unix seconds as `2026-01-02T03:04:05Z (unix 1767323045)`.
pub(crate) struct Timestamp(pub(crate) i64);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        if (0..=9999).contains(&year) {
            write!(
                f,
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z (unix {})",
                secs / 3600,
                secs / 60 % 60,
                secs % 60,
                self.0
            )
        } else {
            write!(f, "unix {}", self.0)
        }
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01.
///
/// Counts in 400-year eras of 146 097 days, with years starting on 1 March so
/// the leap day falls at the end of the year.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097); // 0..=146_096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_utc_dates() {
        let cases = [
            (0, "1970-01-01T00:00:00Z (unix 0)"),
            (951_782_400, "2000-02-29T00:00:00Z (unix 951782400)"),
            (1_709_164_799, "2024-02-28T23:59:59Z (unix 1709164799)"),
            (4_102_444_800, "2100-01-01T00:00:00Z (unix 4102444800)"),
            (-1, "1969-12-31T23:59:59Z (unix -1)"),
            (i64::MAX, "unix 9223372036854775807"),
            (i64::MIN, "unix -9223372036854775808"),
        ];
        for (secs, want) in cases {
            assert_eq!(Timestamp(secs).to_string(), want);
        }
    }
}
