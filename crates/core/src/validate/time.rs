//! Dates and timestamps: the default forms read a word at a time and written in canonical UTC form; a
//! declared format goes through chrono.

use super::write::{copy_small, stage};
use super::Fail;
use crate::bytes::{splat, HI};
use crate::json_out::Out;
use crate::ErrorCode;

fn days_in_month(year: u32, month: u32) -> u32 {
    // A table and plain `&`/`|` rather than a `match` and `&&`: months are as good as random from row to row,
    // and a branch per month would be mispredicted most of the time.
    const DAYS: [u8; 13] = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    // Divisible by 4 and not by 100, or by 400. A year that is not a multiple of 25 is no multiple of 100: it
    // is a leap year when divisible by 4. A multiple of 25 is a multiple of 400 exactly when it is divisible
    // by 16 (400 = 16 * 25). So one remainder (by 25) picks the power of two to test.
    let low_bits = if year % 25 == 0 { 15 } else { 3 };
    let leap = year & low_bits == 0;
    let days = DAYS.get(month as usize).copied().unwrap_or(0);
    u32::from(days) + u32::from(leap & (month == 2))
}

#[inline]
fn digits2(a: u8, b: u8) -> Option<u32> {
    let (x, y) = (a.wrapping_sub(b'0'), b.wrapping_sub(b'0'));
    (x <= 9 && y <= 9).then_some(u32::from(x) * 10 + u32::from(y))
}

/// `YYYY-MM-DD`, a real calendar day.
#[inline(always)]
fn parse_ymd(t: &[u8]) -> Option<(u32, u32, u32)> {
    if t.len() < 10 || t[4] != b'-' || t[7] != b'-' {
        return None;
    }
    let year = digits2(t[0], t[1])? * 100 + digits2(t[2], t[3])?;
    let month = digits2(t[5], t[6])?;
    let day = digits2(t[8], t[9])?;
    ((1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month))
        .then_some((year, month, day))
}

fn date_message(format: Option<&str>) -> String {
    match format {
        Some(f) => format!("expected a date in the format `{f}`"),
        None => "expected a date as YYYY-MM-DD".into(),
    }
}

#[inline(never)]
pub(super) fn write_date(out: &mut Out<'_>, text: &[u8], format: Option<&str>) -> Result<(), Fail> {
    let fail = || Fail::new(ErrorCode::InvalidDate, date_message(format));
    let (y, m, d) = match format {
        None if text.len() == 10 => parse_ymd(text).ok_or_else(fail)?,
        None => return Err(fail()),
        Some(f) => {
            use chrono::Datelike;
            let s = std::str::from_utf8(text).map_err(|_| fail())?;
            let date = chrono::NaiveDate::parse_from_str(s, f).map_err(|_| fail())?;
            let year = u32::try_from(date.year())
                .ok()
                .filter(|y| *y <= 9999 && year_written_whole(text, *y))
                .ok_or_else(fail)?;
            (year, date.month(), date.day())
        }
    };
    stage(out, |b| {
        b[0] = b'"';
        stage_date(b, 1, y, m, d);
        b[11] = b'"';
        12
    });
    Ok(())
}

/// Writes `YYYY-MM-DD` at `b[at..at + 10]`.
#[inline(always)]
fn stage_date(b: &mut [u8], at: usize, y: u32, m: u32, d: u32) {
    stage_2(b, at, y / 100);
    stage_2(b, at + 2, y % 100);
    b[at + 4] = b'-';
    stage_2(b, at + 5, m);
    b[at + 7] = b'-';
    stage_2(b, at + 8, d);
}

/// Writes `v` (below 100) as two digits at `b[at..at + 2]`.
#[inline(always)]
fn stage_2(b: &mut [u8], at: usize, v: u32) {
    // A table read instead of a division and a remainder by ten, which the CPU computes as a chain of
    // multiplications: dates and times are written as such pairs.
    static TWO_DIGITS: [[u8; 2]; 100] = {
        let mut t = [[0u8; 2]; 100];
        let mut i = 0;
        while i < 100 {
            t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
            i += 1;
        }
        t
    };
    let pair = TWO_DIGITS.get(v as usize).copied().unwrap_or(*b"00");
    b[at..at + 2].copy_from_slice(&pair);
}

const TIMESTAMP_MESSAGE: &str =
    "expected an RFC 3339 timestamp (2024-05-01T12:00:00Z, 2024-05-01T14:00:00.5+02:00) \
     or YYYY-MM-DD HH:MM:SS[.fff] in UTC";

/// A timestamp split into parts; `frac` is the 1-9 sub-second digits as written.
struct Parsed<'a> {
    date: (u32, u32, u32),
    time: (u32, u32, u32),
    frac: &'a [u8],
    /// Offset east of UTC in minutes.
    offset: i64,
}

/// `YYYY-MM-DD?HH:MM:SS`, the separator `?` aside (the caller's): the year, month, day, hour, minute and
/// second of a real calendar day and time of day, `None` unless every digit is one and the punctuation is
/// where it belongs.
///
/// Three overlapping 8-byte words, each checked and turned into two-digit numbers at once (the bytes as
/// digit values, times ten plus the next byte), instead of 14 digits one by one: every row of a timestamp
/// column goes through here.
#[inline(always)]
fn parse_date_time(t: &[u8; 19]) -> Option<[u32; 6]> {
    const ZEROS: u64 = splat(b'0');
    // `YYYY-MM-` (byte `k` of a word is bits `8k..8k + 8`), `DD?HH:MM`, `HH:MM:SS`.
    const DIGITS: [u64; 3] = [
        0x00FF_FF00_FFFF_FFFF,
        0xFFFF_00FF_FF00_FFFF,
        0xFFFF_0000_0000_0000,
    ];
    const PUNCT: [u64; 3] = [
        0xFF00_00FF_0000_0000,
        0x0000_FF00_0000_0000,
        0x0000_FF00_0000_0000,
    ];
    const WANT: [u64; 3] = [
        0x2D00_002D_0000_0000,
        0x0000_3A00_0000_0000,
        0x0000_3A00_0000_0000,
    ];
    let mut ok = true;
    let mut pairs = [0u64; 3];
    for (k, at) in [0, 8, 11].into_iter().enumerate() {
        let w = u64::from_le_bytes(*t[at..].first_chunk::<8>()?);
        // A digit byte is 0x30..=0x39: XOR with 0x30 leaves 0..=9, which adding 0x76 keeps below 0x80.
        let x = (w ^ ZEROS) & DIGITS[k];
        ok &= (x | x.wrapping_add(splat(0x76))) & HI & DIGITS[k] == 0;
        ok &= w & PUNCT[k] == WANT[k];
        // Byte `j`: digit `j` times ten plus digit `j + 1` (at most 99, no carry between bytes).
        pairs[k] = x.wrapping_mul(10).wrapping_add(x >> 8);
    }
    let byte = |w: u64, j: u32| ((w >> (8 * j)) & 0xFF) as u32;
    let year = byte(pairs[0], 0) * 100 + byte(pairs[0], 2);
    let (month, day) = (byte(pairs[0], 5), byte(pairs[1], 0));
    let (h, mi, s) = (byte(pairs[1], 3), byte(pairs[1], 6), byte(pairs[2], 6));
    // Plain `&`: one branch for the whole check, whatever the values.
    ok &= (month.wrapping_sub(1) < 12)
        & (day.wrapping_sub(1) < days_in_month(year, month))
        & (h < 24)
        & (mi < 60)
        & (s < 60);
    ok.then_some([year, month, day, h, mi, s])
}

/// `YYYY-MM-DD[T| ]HH:MM:SS[.f{1,9}][Z|±HH:MM|±HHMM]`; no offset means UTC.
fn parse_timestamp(t: &[u8]) -> Option<Parsed<'_>> {
    let head = t.first_chunk::<19>()?;
    if !matches!(head[10], b'T' | b't' | b' ') {
        return None;
    }
    let [y, mo, d, h, mi, s] = parse_date_time(head)?;
    let date = (y, mo, d);
    let mut rest = &t[19..];
    let mut frac: &[u8] = &[];
    if let Some(r) = rest.strip_prefix(b".") {
        let n = r.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        frac = &r[..n];
        rest = &r[n..];
    }
    let offset = match rest {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), a, b, b':', c, d] | [sign @ (b'+' | b'-'), a, b, c, d] => {
            let (oh, om) = (digits2(*a, *b)?, digits2(*c, *d)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let minutes = i64::from(oh * 60 + om);
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    Some(Parsed {
        date,
        time: (h, mi, s),
        frac,
        offset,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[inline(never)]
pub(super) fn write_timestamp(
    out: &mut Out<'_>,
    text: &[u8],
    format: Option<&str>,
) -> Result<(), Fail> {
    if let Some(f) = format {
        return write_timestamp_with_format(out, text, f);
    }
    let fail = || Fail::new(ErrorCode::InvalidTimestamp, TIMESTAMP_MESSAGE);
    // The canonical form (`YYYY-MM-DDTHH:MM:SSZ`, what most systems write) is its own output: checked, then
    // copied as it is.
    if let (Some(head), Some(b'Z')) = (text.first_chunk::<19>(), text.get(19)) {
        if text.len() == 20 && head[10] == b'T' {
            parse_date_time(head).ok_or_else(fail)?;
            stage(out, |b| {
                b[0] = b'"';
                b[1..20].copy_from_slice(head);
                b[20] = b'Z';
                b[21] = b'"';
                22
            });
            return Ok(());
        }
    }
    let p = parse_timestamp(text).ok_or_else(fail)?;
    // Minutes into the day, in UTC.
    let minutes = i64::from(p.time.0 * 60 + p.time.1) - p.offset;
    if (0..24 * 60).contains(&minutes) {
        // UTC already, or an offset that moves the time within the same day (the usual cases, taken alike so
        // that which one a row holds is not a branch): the date and the seconds (offsets are whole minutes)
        // are copied as written, the hour and the minute are written from `minutes`.
        let minutes = minutes as u32;
        write_same_day(out, text, (minutes / 60, minutes % 60), p.frac);
        return Ok(());
    }
    write_shifted(out, &p).ok_or_else(fail)
}

/// Writes `"` + `text[..19]` (a valid `YYYY-MM-DD?HH:MM:SS`) with `T` as the separator, the hour and minute
/// written from `(h, mi)`, then `.frac`, `Z` and `"`.
#[inline]
fn write_same_day(out: &mut Out<'_>, text: &[u8], (h, mi): (u32, u32), frac: &[u8]) {
    stage(out, |b| {
        b[0] = b'"';
        copy_small(&mut b[1..], &text[..19]);
        b[11] = b'T';
        stage_2(b, 12, h);
        stage_2(b, 15, mi);
        stage_frac_z(b, frac)
    });
}

/// Stages the end of a timestamp after its seconds (at byte 20): `.frac` (up to 9 digits, none when empty),
/// `Z` and the closing `"`; returns the staged length.
#[inline(always)]
fn stage_frac_z(b: &mut [u8], frac: &[u8]) -> usize {
    let mut n = 20;
    if !frac.is_empty() {
        let frac = &frac[..frac.len().min(9)];
        b[20] = b'.';
        copy_small(&mut b[21..30], frac);
        n = 21 + frac.len();
    }
    b[n] = b'Z';
    b[n + 1] = b'"';
    n + 2
}

/// Writes a timestamp converted to UTC through the calendar (any offset, across days, months and years).
/// `None` when the UTC year is outside 0000-9999.
fn write_shifted(out: &mut Out<'_>, p: &Parsed<'_>) -> Option<()> {
    let (y, mo, d) = p.date;
    let secs = days_from_civil(i64::from(y), i64::from(mo), i64::from(d)) * 86_400
        + i64::from(p.time.0 * 3600 + p.time.1 * 60 + p.time.2)
        - p.offset * 60;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400) as u32;
    let y = u32::try_from(y).ok().filter(|y| *y <= 9999)?;
    push_timestamp(
        out,
        (y, mo, d),
        (tod / 3600, tod / 60 % 60, tod % 60),
        p.frac,
    );
    Some(())
}

/// Writes `"YYYY-MM-DDTHH:MM:SS[.fff]Z"` (`frac`: up to 9 digits).
#[inline]
fn push_timestamp(
    out: &mut Out<'_>,
    (y, mo, d): (u32, u32, u32),
    (h, mi, s): (u32, u32, u32),
    frac: &[u8],
) {
    stage(out, |b| {
        b[0] = b'"';
        stage_date(b, 1, y, mo, d);
        b[11] = b'T';
        stage_2(b, 12, h);
        b[14] = b':';
        stage_2(b, 15, mi);
        b[17] = b':';
        stage_2(b, 18, s);
        stage_frac_z(b, frac)
    });
}

fn write_timestamp_with_format(out: &mut Out<'_>, text: &[u8], format: &str) -> Result<(), Fail> {
    use chrono::{Datelike, Timelike};
    let fail = || {
        Fail::new(
            ErrorCode::InvalidTimestamp,
            format!("expected a timestamp in the format `{format}`"),
        )
    };
    let s = std::str::from_utf8(text).map_err(|_| fail())?;
    // chrono reads any number of fraction digits and keeps nine: more would be cut without notice.
    if has_long_fraction(text) {
        return Err(fail());
    }
    let (local, utc) = match chrono::DateTime::parse_from_str(s, format) {
        Ok(t) => (t.naive_local(), t.naive_utc()),
        Err(_) => {
            let t = chrono::NaiveDateTime::parse_from_str(s, format).map_err(|_| fail())?;
            (t, t)
        }
    };
    // A leap second (`:60`) is kept by chrono as a nanosecond count past one second, which JSON cannot
    // say; the default forms reject it too.
    if utc.nanosecond() >= 1_000_000_000 || !year_written_whole(text, local.year().unsigned_abs()) {
        return Err(fail());
    }
    let y = u32::try_from(utc.year())
        .ok()
        .filter(|y| *y <= 9999)
        .ok_or_else(fail)?;
    let nanos = utc.nanosecond();
    let mut digits = [0u8; 9];
    let mut n = nanos;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let keep = if nanos == 0 {
        0
    } else {
        9 - digits.iter().rev().take_while(|&&b| b == b'0').count()
    };
    push_timestamp(
        out,
        (y, utc.month(), utc.day()),
        (utc.hour(), utc.minute(), utc.second()),
        &digits[..keep],
    );
    Ok(())
}

/// Whether `year`, read by chrono's `%Y` (which takes one digit or more), was written with four digits: a
/// year below 1000 must appear zero-padded (`0024`), else `24` was a two-digit year read as the year 24.
fn year_written_whole(text: &[u8], year: u32) -> bool {
    if year >= 1000 {
        return true;
    }
    let padded = format!("{year:04}");
    text.windows(4).any(|w| w == padded.as_bytes())
}

/// Whether `text` has a `.` or `,` followed by ten digits or more (a fraction finer than nanoseconds).
fn has_long_fraction(text: &[u8]) -> bool {
    text.split(|&b| b == b'.' || b == b',')
        .skip(1)
        .any(|after| after.iter().take_while(|b| b.is_ascii_digit()).count() > 9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_out;

    /// The same-day shortcut for timestamps with an offset writes what the calendar conversion writes.
    #[test]
    fn same_day_offset_shortcut_matches_calendar_conversion() {
        let mut rng = crate::test_rng::XorShift(0x853C_49E6_748F_EA9Bu64);
        let mut next = |n: u64| rng.below(n) as u32;
        let mut checked = 0;
        for _ in 0..20_000 {
            let (y, mo) = (next(10_000), 1 + next(12));
            let d = 1 + next(u64::from(days_in_month(y, mo)));
            let (h, mi, s) = (next(24), next(60), next(60));
            let frac = ["", ".5", ".123456789", ".000"][next(4) as usize];
            let sign = if next(2) == 0 { '+' } else { '-' };
            let (oh, om) = (next(24), [0, 15, 30, 45, next(60)][next(5) as usize]);
            let sep = ["T", "t", " "][next(3) as usize];
            let text = format!(
                "{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{sign}{oh:02}:{om:02}"
            );
            let Some(p) = parse_timestamp(text.as_bytes()) else {
                panic!("{text} does not parse");
            };
            let (slow, slow_ok) = json_out::to_vec(8, |out| write_shifted(out, &p).is_some());
            let (fast, fast_ok) =
                json_out::to_vec(8, |out| write_timestamp(out, text.as_bytes(), None).is_ok());
            assert_eq!(fast_ok, slow_ok, "{text}");
            if slow_ok {
                assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&slow),
                    "{text}"
                );
                checked += 1;
            }
        }
        assert!(checked > 19_000, "{checked}");
    }

    /// `parse_date_time` against the same rules read digit by digit, on valid text and on text with one to
    /// three bytes changed to digits, punctuation, neighbours of the digits and bytes above ASCII.
    #[test]
    fn date_and_time_words_match_a_digit_by_digit_reading() {
        fn by_digits(t: &[u8; 19]) -> Option<[u32; 6]> {
            if t[4] != b'-' || t[7] != b'-' || t[13] != b':' || t[16] != b':' {
                return None;
            }
            let n = |i: usize| digits2(t[i], t[i + 1]);
            let (y, mo, d) = (n(0)? * 100 + n(2)?, n(5)?, n(8)?);
            let (h, mi, s) = (n(11)?, n(14)?, n(17)?);
            let valid = (1..=12).contains(&mo)
                && d >= 1
                && d <= days_in_month(y, mo)
                && h < 24
                && mi < 60
                && s < 60;
            valid.then_some([y, mo, d, h, mi, s])
        }
        let alphabet = b"0123456789-:/;T tZ+.\x00\x7f\x80\xb0\xff";
        let mut rng = crate::test_rng::XorShift(0x2545_F491_4F6C_DD1Du64);
        let (mut valid, mut invalid) = (0, 0);
        for i in 0..60_000 {
            let mut next = |n: u64| rng.below(n) as u32;
            let (y, mo) = (next(10_000), next(14));
            let (d, h, mi, s) = (next(33), next(26), next(62), next(62));
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
            let mut t = *text.as_bytes().first_chunk::<19>().expect("19 bytes");
            for _ in 0..(i % 4) {
                let at = next(19) as usize;
                t[at] = alphabet[next(alphabet.len() as u64) as usize];
            }
            let want = by_digits(&t);
            assert_eq!(parse_date_time(&t), want, "{}", String::from_utf8_lossy(&t));
            if want.is_some() {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        assert!(valid > 10_000 && invalid > 10_000, "{valid} {invalid}");
    }

    #[test]
    fn february_has_29_days_in_leap_years_only() {
        for year in 0..=9999 {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            assert_eq!(days_in_month(year, 2), 28 + u32::from(leap), "{year}");
            assert_eq!(days_in_month(year, 1), 31);
            assert_eq!(days_in_month(year, 4), 30);
        }
        assert_eq!(days_in_month(2024, 0), 0);
        assert_eq!(days_in_month(2024, 13), 0);
    }

    #[test]
    fn two_digit_pairs_are_written_from_the_table() {
        for v in 0..100 {
            let mut b = [b'#'; 4];
            stage_2(&mut b, 1, v);
            assert_eq!(&b, format!("#{v:02}#").as_bytes());
        }
    }

    /// Canonical UTC timestamps (`...T...Z`, copied as they are once checked) come out as the general reading
    /// writes them, valid or not: random ones, and ones with one to three bytes changed.
    #[test]
    fn canonical_timestamps_are_written_as_the_general_path_writes_them() {
        let general = |t: &[u8]| {
            parse_timestamp(t).map(|p| {
                json_out::to_vec(32, |out| {
                    write_same_day(out, t, (p.time.0, p.time.1), p.frac)
                })
                .0
            })
        };
        let alphabet = b"0123456789-:T tZz+.\xff";
        let mut rng = crate::test_rng::XorShift(0x5DEE_CE66_D1CE_4E5Bu64);
        let mut valid = 0;
        for i in 0..30_000 {
            let mut next = |n: u64| rng.below(n) as u32;
            let (y, mo, d) = (next(10_000), next(14), next(33));
            let (h, mi, s) = (next(25), next(61), next(61));
            let mut t = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z").into_bytes();
            for _ in 0..(i % 4) {
                let at = next(20) as usize;
                t[at] = alphabet[next(alphabet.len() as u64) as usize];
            }
            let (out, ok) = json_out::to_vec(32, |out| write_timestamp(out, &t, None).is_ok());
            assert_eq!(
                ok.then_some(out),
                general(&t),
                "{}",
                String::from_utf8_lossy(&t)
            );
            valid += usize::from(ok);
        }
        assert!(valid > 5_000, "{valid}");
    }

    #[test]
    fn civil_days_round_trip() {
        for days in (-800_000..3_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(
                days_from_civil(y, i64::from(m), i64::from(d)),
                days,
                "days {days}"
            );
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(19_844), (2024, 5, 1));
    }
}
