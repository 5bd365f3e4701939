//! Unix seconds as a date a person can read, in error messages.

use std::fmt;

/// Formats Unix seconds as `2026-01-02T03:04:05Z (unix 1767323045)`.
pub(crate) struct Timestamp(pub(crate) i64);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::clock::rfc3339_opt(self.0) {
            Some(date) => write!(f, "{date} (unix {})", self.0),
            None => write!(f, "unix {}", self.0),
        }
    }
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
