//! Printing results: text for people (aligned `key  value` lines), or,
//! with `--json`, one JSON document on one line of stdout. Warnings,
//! progress and text errors go to stderr, so stdout holds only the result.

use crate::error::WalletError;
use serde_json::Value;
use std::io::Write;

#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// Prints a command's result: `json` with `--json`, else `text()`.
    pub fn emit(&self, json: &Value, text: impl FnOnce() -> String) -> Result<(), WalletError> {
        if self.json {
            write_stdout(&format!("{json}\n"))
        } else {
            let mut text = text();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            write_stdout(&text)
        }
    }
}

/// Writes to stdout and flushes, returning failures (a closed pipe) rather
/// than panicking as `print!` would.
pub fn write_stdout(text: &str) -> Result<(), WalletError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|source| WalletError::Io {
            path: "<stdout>".into(),
            source,
        })
}

/// `key  value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

static NULL: Value = Value::Null;

/// The value at a JSON pointer (`/header/height`), or `null`.
pub fn at<'a>(value: &'a Value, pointer: &str) -> &'a Value {
    value.pointer(pointer).unwrap_or(&NULL)
}

/// The value at a JSON pointer as plain text (see [`plain`]).
pub fn plain_at(value: &Value, pointer: &str) -> String {
    plain(at(value, pointer))
}

/// A JSON value as plain text: strings without quotes, `null` as `-`.
pub fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// Milliseconds since the Unix epoch as UTC, `2026-01-01T00:00:01.000Z`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_matches_known_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_767_225_601_000), "2026-01-01T00:00:01.000Z");
        assert_eq!(utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        // Far out, still a date (u64::MAX ms is in the year 584,556,019).
        assert!(utc(u64::MAX).starts_with("584556019-"));
    }

    #[test]
    fn fields_are_aligned() {
        let text = fields(&[("a", "1".into()), ("long", "2".into())]);
        assert_eq!(text, "a     1\nlong  2\n");
    }
}
