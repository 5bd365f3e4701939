//! The range of an export, `[since, until)`, and its bounds: a seq or an RFC 3339 time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::super::record::AuditRecord;

/// One end of an export's range: a seq (`seq:120`) or an RFC 3339 time
/// (`2026-11-01T00:00:00Z`, `2026-11-01T01:00:00+01:00`).
///
/// A bare number is refused rather than guessed at (a seq, or a Unix time?). Its text form
/// (`Display`, and the proof file's) is `seq:N` or the time in RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportBound(Bound);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Bound {
    Seq(u64),
    /// The time, and its RFC 3339 text (formatted once, when parsed).
    Time(OffsetDateTime, String),
}

/// Why a range or one of its bounds cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BoundError {
    /// `seq:` followed by something else than a record number from 1.
    #[error("{given:?}: after `seq:` comes a record number from 1, as in seq:120")]
    BadSeq {
        /// The text given.
        given: String,
    },
    /// A bare number, which could be a seq or a Unix time.
    #[error(
        "{given:?}: write seq:{given} for a record number, or an RFC 3339 time such as \
         2026-11-01T00:00:00Z"
    )]
    BareNumber {
        /// The text given.
        given: String,
    },
    /// Neither `seq:N` nor an RFC 3339 time.
    #[error(
        "{given:?} is neither a seq (seq:120) nor an RFC 3339 time (2026-11-01T00:00:00Z, \
         or with an offset such as +01:00): {reason}"
    )]
    BadTime {
        /// The text given.
        given: String,
        /// What the time parser said.
        reason: String,
    },
    /// `since` lies after `until`.
    #[error("the range ends before it starts: since {since} is after until {until}")]
    Reversed {
        /// The start given.
        since: String,
        /// The end given.
        until: String,
    },
}

impl ExportBound {
    /// The bound at record `seq`.
    ///
    /// # Errors
    /// [`BoundError::BadSeq`] for 0: records are numbered from 1.
    pub fn seq(seq: u64) -> Result<ExportBound, BoundError> {
        if seq == 0 {
            return Err(BoundError::BadSeq {
                given: "seq:0".into(),
            });
        }
        Ok(ExportBound(Bound::Seq(seq)))
    }

    /// Whether `record` is at or after this bound; `None` when the bound is a time and the
    /// record's time is not RFC 3339.
    pub(super) fn admits(&self, record: &AuditRecord) -> Option<bool> {
        match &self.0 {
            Bound::Seq(seq) => Some(record.seq >= *seq),
            Bound::Time(at, _) => record_time(record).map(|time| time >= *at),
        }
    }

    /// Whether this bound is a time.
    pub(super) fn is_time(&self) -> bool {
        matches!(self.0, Bound::Time(..))
    }
}

/// A record's commit time, if it is RFC 3339.
pub(super) fn record_time(record: &AuditRecord) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(&record.time, &Rfc3339).ok()
}

impl FromStr for ExportBound {
    type Err = BoundError;

    fn from_str(text: &str) -> Result<ExportBound, BoundError> {
        if let Some(number) = text.strip_prefix("seq:") {
            return match number.parse::<u64>() {
                Ok(seq) if seq > 0 => Ok(ExportBound(Bound::Seq(seq))),
                _ => Err(BoundError::BadSeq {
                    given: text.to_owned(),
                }),
            };
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BoundError::BareNumber {
                given: text.to_owned(),
            });
        }
        let bad = |reason: String| BoundError::BadTime {
            given: text.to_owned(),
            reason,
        };
        let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| bad(e.to_string()))?;
        let canonical = at.format(&Rfc3339).map_err(|e| bad(e.to_string()))?;
        Ok(ExportBound(Bound::Time(at, canonical)))
    }
}

impl fmt::Display for ExportBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Bound::Seq(seq) => write!(f, "seq:{seq}"),
            Bound::Time(_, text) => f.write_str(text),
        }
    }
}

impl Serialize for ExportBound {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ExportBound {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The range of an export, `[since, until)`: from `since` (the log's start when `None`) to
/// before `until` (the signed checkpoint's last record, included, when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RangeFields")]
pub struct ExportRange {
    since: Option<ExportBound>,
    until: Option<ExportBound>,
}

/// The fields of [`ExportRange`] as read, before their order is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeFields {
    since: Option<ExportBound>,
    until: Option<ExportBound>,
}

impl TryFrom<RangeFields> for ExportRange {
    type Error = BoundError;

    fn try_from(fields: RangeFields) -> Result<ExportRange, BoundError> {
        ExportRange::new(fields.since, fields.until)
    }
}

impl ExportRange {
    /// The range from `since` to before `until`.
    ///
    /// # Errors
    /// [`BoundError::Reversed`] when both are seqs, or both times, and `since` is after
    /// `until` (equal bounds make an empty range, which is allowed).
    pub fn new(
        since: Option<ExportBound>,
        until: Option<ExportBound>,
    ) -> Result<ExportRange, BoundError> {
        if let (Some(start), Some(end)) = (&since, &until) {
            let reversed = match (&start.0, &end.0) {
                (Bound::Seq(a), Bound::Seq(b)) => a > b,
                (Bound::Time(a, _), Bound::Time(b, _)) => a > b,
                _ => false,
            };
            if reversed {
                return Err(BoundError::Reversed {
                    since: start.to_string(),
                    until: end.to_string(),
                });
            }
        }
        Ok(ExportRange { since, until })
    }

    /// Where the range starts; `None`: at the log's first record.
    pub fn since(&self) -> Option<&ExportBound> {
        self.since.as_ref()
    }

    /// Where the range ends (excluded); `None`: at the signed checkpoint (included).
    pub fn until(&self) -> Option<&ExportBound> {
        self.until.as_ref()
    }
}

impl fmt::Display for ExportRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.since {
            Some(since) => write!(f, "[{since}, ")?,
            None => f.write_str("[the start, ")?,
        }
        match &self.until {
            Some(until) => write!(f, "{until})"),
            None => f.write_str("the signed head]"),
        }
    }
}
