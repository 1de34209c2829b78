//! From one validated JSON value to its column's physical value.
//!
//! Rows come from the validator, so each value already has its template type's JSON form (an integer is a
//! JSON number, a decimal a string of digits with the declared scale, a date `YYYY-MM-DD`, a timestamp RFC
//! 3339); the conversions here are exact and still refuse anything else (the message names the JSON kind,
//! never the value).

use chrono::{DateTime, NaiveDate};
use serde_json::Number;

use super::json_row::Scalar;
use super::schema::ColumnKind;

/// One converted value, borrowing the row's text.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// No value.
    Null,
    /// BOOLEAN.
    Bool(bool),
    /// INT32.
    I32(i32),
    /// INT64.
    I64(i64),
    /// BYTE_ARRAY, borrowed from the row.
    Text(&'a str),
    /// BYTE_ARRAY built here (JSON text).
    Owned(String),
    /// FIXED_LEN_BYTE_ARRAY: a decimal's unscaled value, written in the column's width.
    Wide(i128),
}

/// Converts `value` to a value of a `kind` column.
pub fn cell<'a>(kind: ColumnKind, value: &'a Scalar<'_>) -> Result<Cell<'a>, String> {
    if *value == Scalar::Null {
        return Ok(Cell::Null);
    }
    let text = || {
        value
            .as_str()
            .ok_or_else(|| format!("expected a JSON string, found {}", value.kind()))
    };
    Ok(match kind {
        ColumnKind::Text => Cell::Text(text()?),
        ColumnKind::Json => Cell::Owned(value.clone().into_value().to_string()),
        ColumnKind::Int64 => Cell::I64(
            match value {
                Scalar::I64(n) => Some(*n),
                Scalar::U64(n) => i64::try_from(*n).ok(),
                Scalar::Other(v) => v.as_i64(),
                _ => None,
            }
            .ok_or_else(|| format!("expected a 64-bit integer, found {}", value.kind()))?,
        ),
        ColumnKind::Boolean => match value {
            Scalar::Bool(b) => Cell::Bool(*b),
            _ => return Err(format!("expected a boolean, found {}", value.kind())),
        },
        ColumnKind::Date => Cell::I32(date_days(text()?)?),
        ColumnKind::Timestamp => Cell::I64(timestamp_micros(text()?)?),
        ColumnKind::Decimal { precision, scale } => {
            // A decimal arrives as a string; a JSON number (a row written by hand) is read from its text.
            let number = match value {
                Scalar::I64(n) => Some(Number::from(*n)),
                Scalar::U64(n) => Some(Number::from(*n)),
                Scalar::F64(f) => Number::from_f64(*f),
                Scalar::Other(serde_json::Value::Number(n)) => Some(n.clone()),
                _ => None,
            };
            let unscaled = match number {
                Some(n) => decimal_unscaled(&n.to_string(), precision, scale)?,
                None => decimal_unscaled(text()?, precision, scale)?,
            };
            match precision {
                ..=9 => Cell::I32(i32::try_from(unscaled).map_err(|e| e.to_string())?),
                10..=18 => Cell::I64(i64::try_from(unscaled).map_err(|e| e.to_string())?),
                _ => Cell::Wide(unscaled),
            }
        }
    })
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub fn date_days(text: &str) -> Result<i32, String> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("expected a date YYYY-MM-DD: {e}"))?;
    let days = date.signed_duration_since(NaiveDate::default()).num_days();
    i32::try_from(days).map_err(|e| e.to_string())
}

/// Microseconds since the epoch (UTC) of an RFC 3339 timestamp, any offset; digits past the microsecond are
/// dropped (towards the past).
pub fn timestamp_micros(text: &str) -> Result<i64, String> {
    match timestamp_micros_fast(text.as_bytes()) {
        Some(micros) => Ok(micros),
        None => timestamp_micros_chrono(text),
    }
}

/// The fast path of [`timestamp_micros`]: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` read digit by digit, or
/// `None` for anything else (other separators, a leap second, an invalid date…), which chrono then reads or
/// refuses. Tested against chrono.
fn timestamp_micros_fast(t: &[u8]) -> Option<i64> {
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        t.get(range)?.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let at = |i: usize, c: u8| t.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let days_in_month = *month_days.get(usize::try_from(month).ok()?.checked_sub(1)?)?;
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0;
    if at(i, b'.') {
        let digits = t
            .get(i + 1..)?
            .iter()
            .take_while(|d| d.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        let kept = digits.min(6);
        micros = num(i + 1..i + 1 + kept)? * 10i64.pow(6 - kept as u32);
        i += 1 + digits;
    }
    let offset = match t.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'-' {
                -(h * 3600 + m * 60)
            } else {
                h * 3600 + m * 60
            }
        }
        _ => return None,
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(secs * 1_000_000 + micros)
}

/// [`timestamp_micros`] through chrono: the reference, and the path for what the fast one does not read.
pub fn timestamp_micros_chrono(text: &str) -> Result<i64, String> {
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("expected an RFC 3339 timestamp: {e}"))?;
    let secs = at.timestamp();
    let micros = i64::from(at.timestamp_subsec_micros());
    secs.checked_mul(1_000_000)
        .and_then(|s| s.checked_add(micros))
        .ok_or_else(|| "timestamp out of range".to_owned())
}

/// The unscaled integer of a decimal (`-12.5` at scale 2 is `-1250`): exact, refusing more than `precision`
/// digits or non-zero digits past `scale`.
pub fn decimal_unscaled(text: &str, precision: u32, scale: u32) -> Result<i128, String> {
    let bad = || format!("expected a decimal of precision {precision} and scale {scale}");
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(bad());
    }
    let scale = scale as usize;
    let (kept, dropped) = frac.split_at(frac.len().min(scale));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(bad());
    }
    let int = int.trim_start_matches('0');
    if int.len() + scale > precision as usize {
        return Err(bad());
    }
    let mut unscaled: i128 = 0;
    let digits = int
        .bytes()
        .chain(kept.bytes())
        .chain(std::iter::repeat_n(b'0', scale - kept.len()));
    for d in digits {
        // At most 38 digits: below i128::MAX (about 1.7e38).
        unscaled = unscaled * 10 + i128::from(d - b'0');
    }
    Ok(if negative { -unscaled } else { unscaled })
}

/// The last `bytes` bytes of `value`'s big-endian two's complement (a FIXED_LEN_BYTE_ARRAY decimal).
pub fn decimal_fixed(value: i128, bytes: usize) -> Vec<u8> {
    decimal_be(&value.to_be_bytes(), bytes).to_vec()
}

/// The last `bytes` bytes of a big-endian 16-byte integer.
pub fn decimal_be(be: &[u8; 16], bytes: usize) -> &[u8] {
    &be[be.len() - bytes.min(be.len())..]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timestamps around every field's limits, and shapes only chrono reads (or refuses).
    fn timestamps() -> Vec<String> {
        let mut out = Vec::new();
        let dates = [
            "1970-01-01",
            "1969-12-31",
            "2024-02-29",
            "2023-02-29",
            "2100-02-29",
            "2000-02-29",
            "0000-01-01",
            "9999-12-31",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "2024-12-00",
        ];
        let times = [
            "00:00:00", "23:59:59", "12:34:56", "24:00:00", "23:60:00", "23:59:60",
        ];
        let fractions = ["", ".", ".5", ".123456", ".1234567", ".000001999", ".12a"];
        let offsets = [
            "Z", "z", "+00:00", "-00:00", "+02:00", "-05:30", "+23:59", "+24:00", "+02:60", "",
            "+0200",
        ];
        for date in dates {
            for (i, time) in times.iter().enumerate() {
                for (j, fraction) in fractions.iter().enumerate() {
                    for (k, offset) in offsets.iter().enumerate() {
                        let sep = ["T", "T", "T", "t", " "][(i + j + k) % 5];
                        out.push(format!("{date}{sep}{time}{fraction}{offset}"));
                    }
                }
            }
        }
        out.extend(
            [
                "",
                "2024-02-29T12:34:5Z",
                "2024-02-29T12:34:56ZZ",
                "+2024-02-29T12:34:56Z",
            ]
            .map(String::from),
        );
        out
    }

    #[test]
    fn the_fast_timestamp_path_agrees_with_chrono() {
        let mut fast = 0;
        for text in timestamps() {
            let got = timestamp_micros_fast(text.as_bytes());
            let want = timestamp_micros_chrono(&text).ok();
            if got.is_some() {
                fast += 1;
                assert_eq!(got, want, "{text}");
            }
            assert_eq!(timestamp_micros(&text).ok(), want, "{text}");
        }
        assert!(fast > 200, "the fast path read only {fast} timestamps");
    }
}
