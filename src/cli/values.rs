//! Parsers for flag values: durations, expiry dates, SPIFFE IDs and secrets.
//!
//! The parsers are clap value parsers (`fn(&str) -> Result<T, String>`); their messages
//! become part of clap's "invalid value" error.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use super::error::CliError;

/// When an entry stops minting, as given to `--expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A duration from the moment the command runs ("90d").
    In(Duration),
    /// A point in time, Unix seconds (a date or an RFC 3339 time).
    At(i64),
}

impl Expiry {
    /// The Unix time this expiry names, counted from `now` (Unix seconds).
    ///
    /// # Errors
    /// [`CliError::Usage`] if the time is not after `now` or is out of range.
    pub fn resolve(self, now: i64) -> Result<i64, CliError> {
        let at = match self {
            Expiry::In(duration) => i64::try_from(duration.as_secs())
                .ok()
                .and_then(|secs| now.checked_add(secs))
                .ok_or_else(|| CliError::usage("--expires: the duration is too long"))?,
            Expiry::At(at) => at,
        };
        if at <= now {
            return Err(CliError::usage(format!(
                "--expires: {} is not in the future",
                super::output::rfc3339(at)
            )));
        }
        Ok(at)
    }
}

/// Parses a TTL such as "5m" or "90s" into whole seconds that fit the wire's `u32`.
///
/// # Errors
/// A message if the text is not a duration, is zero, has a fraction of a second, or does
/// not fit in 32 bits.
pub fn parse_ttl(text: &str) -> Result<u32, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}; expected a duration such as 5m, 90s or 1h30m"))?;
    if duration.subsec_nanos() != 0 {
        return Err("must be a whole number of seconds".to_string());
    }
    match u32::try_from(duration.as_secs()) {
        Ok(0) => Err("must be at least 1s".to_string()),
        Ok(secs) => Ok(secs),
        Err(_) => Err(format!("must be at most {}s", u32::MAX)),
    }
}

/// Parses a governance interval such as "90d" or "30d" into whole seconds; "never" (or
/// "0s") is 0, which turns the interval off.
///
/// # Errors
/// A message if the text is neither a duration nor "never", or has a fraction of a second.
pub fn parse_interval(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text == "never" {
        return Ok(0);
    }
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("{e}; expected a duration such as 90d or 30d, or never"))?;
    if duration.subsec_nanos() != 0 {
        return Err("must be a whole number of seconds".to_string());
    }
    Ok(duration.as_secs())
}

/// Parses `--expires`: a duration from now ("90d"), a date ("2027-01-31", midnight UTC) or
/// an RFC 3339 time ("2027-01-31T12:00:00Z").
///
/// # Errors
/// A message naming the three accepted forms.
pub fn parse_expiry(text: &str) -> Result<Expiry, String> {
    let text = text.trim();
    const FORMS: &str = "expected a duration from now (90d), a date (2027-01-31, midnight UTC) \
                         or an RFC 3339 time (2027-01-31T12:00:00Z)";
    if let Some(at) = parse_point_in_time(text) {
        return at.map(Expiry::At).map_err(|e| format!("{e}; {FORMS}"));
    }
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err(format!("must be in the future; {FORMS}")),
        Ok(duration) => Ok(Expiry::In(duration)),
        Err(_) => Err(FORMS.to_string()),
    }
}

/// A moment in the past, as given to `--since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// A duration before the moment the command runs ("24h").
    Ago(Duration),
    /// A point in time, Unix seconds (a date or an RFC 3339 time).
    At(i64),
}

impl Since {
    /// The Unix time this names, counted back from `now` (Unix seconds).
    pub fn resolve(self, now: i64) -> i64 {
        match self {
            Since::Ago(duration) => {
                now.saturating_sub(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX))
            }
            Since::At(at) => at,
        }
    }
}

/// Parses `--since`: a duration before now ("24h"), a date ("2026-05-01", midnight UTC)
/// or an RFC 3339 time ("2026-05-01T12:00:00Z").
///
/// # Errors
/// A message naming the three accepted forms.
pub fn parse_since(text: &str) -> Result<Since, String> {
    let text = text.trim();
    const FORMS: &str = "expected a duration before now (24h), a date (2026-05-01, midnight \
                         UTC) or an RFC 3339 time (2026-05-01T12:00:00Z)";
    if let Some(at) = parse_point_in_time(text) {
        return at.map(Since::At).map_err(|e| format!("{e}; {FORMS}"));
    }
    humantime::parse_duration(text)
        .map(Since::Ago)
        .map_err(|_| FORMS.to_string())
}

/// A date (midnight UTC) or an RFC 3339 time, as Unix seconds; `None` when `text` looks
/// like neither (it may be a duration).
fn parse_point_in_time(text: &str) -> Option<Result<i64, String>> {
    if let Ok(date) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        return Some(Ok(date.midnight().assume_utc().unix_timestamp()));
    }
    if text.contains(['T', 't']) && text.contains(['-']) {
        return Some(
            OffsetDateTime::parse(text, &Rfc3339)
                .map(OffsetDateTime::unix_timestamp)
                .map_err(|e| format!("not an RFC 3339 time ({e})")),
        );
    }
    None
}

/// Checks a SPIFFE ID by the spec before it goes to the server.
///
/// # Errors
/// The parser's explanation.
pub fn parse_spiffe_id(text: &str) -> Result<String, String> {
    text.parse::<mayfly_sdk::SpiffeId>()
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

/// Unix seconds now.
pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_duration_back_a_date_or_a_time() {
        assert_eq!(
            parse_since("24h"),
            Ok(Since::Ago(Duration::from_secs(86_400)))
        );
        assert_eq!(Since::Ago(Duration::from_secs(60)).resolve(1_000), 940);
        assert_eq!(parse_since("1970-01-02"), Ok(Since::At(86_400)));
        assert_eq!(parse_since("1970-01-01T00:01:00Z"), Ok(Since::At(60)));
        assert_eq!(Since::At(60).resolve(1_000), 60);
        for bad in ["yesterday", "", "2026-13-01T00:00:00Z", "-5m"] {
            let error = parse_since(bad).unwrap_err();
            assert!(error.contains("duration before now"), "{bad}: {error}");
        }
    }

    #[test]
    fn ttl_accepts_humantime() {
        assert_eq!(parse_ttl("5m"), Ok(300));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("1h 30m"), Ok(5400));
        assert_eq!(parse_ttl(" 2m "), Ok(120));
    }

    #[test]
    fn ttl_refuses_what_the_wire_cannot_carry() {
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1500ms").is_err());
        assert!(parse_ttl("200y").is_err_and(|e| e.contains("at most")));
        assert!(parse_ttl("5").is_err());
        assert!(parse_ttl("five minutes").is_err());
        assert!(parse_ttl("").is_err());
        assert!(parse_ttl("-5m").is_err());
    }

    #[test]
    fn ttl_at_the_u32_boundary() {
        assert_eq!(parse_ttl("4294967295s"), Ok(u32::MAX));
        assert!(parse_ttl("4294967296s").is_err());
    }

    #[test]
    fn expiry_as_duration() {
        assert_eq!(
            parse_expiry("90d"),
            Ok(Expiry::In(Duration::from_secs(90 * 86_400)))
        );
        assert_eq!(
            Expiry::In(Duration::from_secs(60)).resolve(1_000).ok(),
            Some(1_060)
        );
    }

    #[test]
    fn expiry_as_date_is_midnight_utc() {
        // 2027-01-31T00:00:00Z
        assert_eq!(parse_expiry("2027-01-31"), Ok(Expiry::At(1_801_353_600)));
    }

    #[test]
    fn expiry_as_rfc3339() {
        assert_eq!(
            parse_expiry("2027-01-31T12:00:00Z"),
            Ok(Expiry::At(1_801_353_600 + 12 * 3600))
        );
        assert_eq!(
            parse_expiry("2027-01-31T12:00:00+02:00"),
            Ok(Expiry::At(1_801_353_600 + 10 * 3600))
        );
    }

    #[test]
    fn expiry_rejects_nonsense() {
        for bad in [
            "",
            "soon",
            "2027-13-01",
            "2027-02-30",
            "0s",
            "2027-01-31T25:00:00Z",
            "31/01/2027",
        ] {
            assert!(parse_expiry(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_expiry("tomorrow").is_err_and(|e| e.contains("RFC 3339")));
    }

    #[test]
    fn expiry_must_be_in_the_future() {
        assert!(Expiry::At(999).resolve(1_000).is_err());
        assert!(Expiry::At(1_000).resolve(1_000).is_err());
        assert_eq!(Expiry::At(1_001).resolve(1_000).ok(), Some(1_001));
        let too_long = Expiry::In(Duration::from_secs(u64::MAX));
        assert_eq!(too_long.resolve(1_000).map_err(|e| e.exit_code()), Err(64));
    }

    #[test]
    fn spiffe_ids_are_checked() {
        assert!(parse_spiffe_id("spiffe://example.org/billing/api").is_ok());
        assert!(parse_spiffe_id("spiffe://Example.org/x").is_err());
        assert!(parse_spiffe_id("https://example.org/x").is_err());
    }
}
