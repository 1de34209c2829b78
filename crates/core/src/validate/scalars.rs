//! Integers, decimals and booleans: parsed by hand from a cell's text and written in canonical form.

use super::json_string::write_plain_string;
use super::write::{copy_small, put_bytes, stage};
use super::Fail;
use crate::bytes::{load_short, splat};
use crate::json_out::Out;
use crate::ErrorCode;

/// Writes an integer in canonical form.
#[inline(never)]
pub(super) fn write_integer(
    out: &mut Out<'_>,
    text: &[u8],
    min: i64,
    max: i64,
) -> Result<(), Fail> {
    let Some(v) = parse_i64(text) else {
        return Err(Fail::new(
            ErrorCode::InvalidInteger,
            "expected an integer between -9223372036854775808 and 9223372036854775807",
        ));
    };
    if v < min || v > max {
        return Err(Fail::new(
            ErrorCode::ConstraintViolated,
            format!("expected an integer between {min} and {max}"),
        ));
    }
    // Usually the text is already the canonical form (no `+`, no leading zero, no `-0`) and is copied.
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if matches!(digits.first(), Some(b'1'..=b'9')) || text == b"0" {
        put_bytes(out, text);
    } else {
        put_bytes(out, itoa::Buffer::new().format(v).as_bytes());
    }
    Ok(())
}

/// Writes `true` or `false` from any accepted spelling.
#[inline(never)]
pub(super) fn write_boolean(out: &mut Out<'_>, text: &[u8]) -> Result<(), Fail> {
    const WORDS: [[u8; 8]; 2] = [*b"false\0\0\0", *b"true\0\0\0\0"];
    match parse_bool(text) {
        Some(value) => {
            // One copy for either word (the choice is data, not a branch).
            let i = usize::from(value);
            out.stage::<8>(|w| {
                *w = WORDS[i];
                5 - i
            });
            Ok(())
        }
        None => Err(Fail::new(
            ErrorCode::InvalidBoolean,
            "expected true, false, t, f, yes, no, y, n, 1 or 0 (any case)",
        )),
    }
}

/// The value of 1 to 8 ASCII digits, `None` when any byte is not a digit. SWAR: the digits are packed into a
/// word with `0` in front up to eight, checked and combined in three steps of pairwise multiply-adds.
#[inline(always)]
fn parse_8_digits(digits: &[u8]) -> Option<u32> {
    const ZEROS: u64 = splat(b'0');
    let n = digits.len();
    if n == 0 || n > 8 {
        return None;
    }
    // The first digit is the lowest byte; shifting moves the digits to the top and leaves room for `0`s.
    let pad = 8 * (8 - n as u32);
    let w = (load_short(digits) << pad) | ZEROS.checked_shr(64 - pad).unwrap_or(0);
    // Every byte is 0x30..=0x39: high nibble 3, and adding 6 keeps it at 3.
    let high = w & splat(0xF0);
    let carry = w.wrapping_add(splat(6)) & splat(0xF0);
    if high != ZEROS || carry != ZEROS {
        return None;
    }
    let v = w - ZEROS;
    let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    let v = (v.wrapping_mul(10_000) + (v >> 32)) & 0xFFFF_FFFF;
    u32::try_from(v).ok()
}

/// An `i64` from an optional sign and ASCII digits (leading zeros allowed).
#[inline]
fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    if digits.len() <= 8 {
        // Most integers: all digits at once, without a loop whose length (and exit branch) follows the data.
        let v = i64::from(parse_8_digits(digits)?);
        return Some(if negative { -v } else { v });
    }
    if digits.len() <= 18 {
        // Below 10^18: cannot overflow, no checked arithmetic needed.
        let mut v: i64 = 0;
        for &b in digits {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + i64::from(d);
        }
        return Some(if negative { -v } else { v });
    }
    let mut v: u64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    if negative {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

fn parse_bool(text: &[u8]) -> Option<bool> {
    // One word compare instead of ten slice compares: the text, ASCII-lowercased, packed into a u64.
    const fn word(s: &[u8]) -> u64 {
        let mut w = 0u64;
        let mut i = 0;
        while i < s.len() {
            w |= (s[i] as u64) << (8 * i);
            i += 1;
        }
        w
    }
    if text.is_empty() || text.len() > 5 {
        return None;
    }
    let raw = load_short(text);
    // Setting bit 5 of every byte maps only the letters A-Z onto a-z (and letters onto themselves).
    let w = raw | (splat(0x20) & (u64::MAX >> (64 - 8 * text.len())));
    const T: [u64; 4] = [word(b"true"), word(b"t"), word(b"yes"), word(b"y")];
    const F: [u64; 4] = [word(b"false"), word(b"f"), word(b"no"), word(b"n")];
    // Compared whole, without early exits: true and false are as good as random from row to row.
    let any = |words: [u64; 4], w: u64| words.iter().fold(false, |hit, &x| hit | (x == w));
    let is_true = any(T, w) | (raw == word(b"1"));
    let is_false = any(F, w) | (raw == word(b"0"));
    (is_true | is_false).then_some(is_true)
}

/// Writes an exact decimal as a JSON string: no `+`, no leading zeros, `0` before a bare point, no sign on
/// zero, and exactly `scale` fraction digits when the template declares a scale.
#[inline(never)]
pub(super) fn write_decimal(
    out: &mut Out<'_>,
    text: &[u8],
    precision: Option<u32>,
    scale: Option<u32>,
) -> Result<(), Fail> {
    if is_canonical_decimal(text, precision, scale) {
        write_plain_string(out, text);
        return Ok(());
    }
    write_decimal_general(out, text, precision, scale)
}

/// True when `text` is already written the way [`write_decimal_general`] would write it, within the limits:
/// unsigned digits without a leading zero (a lone `0` aside), and a point followed by exactly `scale` digits
/// (any number of digits, at least one, without a scale). Most amounts are; they are copied as is.
#[inline(always)]
fn is_canonical_decimal(text: &[u8], precision: Option<u32>, scale: Option<u32>) -> bool {
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let (int, frac) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => match (text.get(..dot), text.get(dot + 1..)) {
            (Some(int), Some(frac)) if !frac.is_empty() => (int, frac),
            _ => return false,
        },
        None => (text, &text[text.len()..]),
    };
    let Some(&first) = int.first() else {
        return false;
    };
    if (first == b'0' && int.len() > 1) || !digits(int) || !digits(frac) {
        return false;
    }
    match scale {
        Some(s) => {
            frac.len() == s as usize
                && precision.is_none_or(|p| int.len() <= p.saturating_sub(s) as usize)
        }
        None => precision.is_none_or(|p| int.len() + frac.len() <= p as usize),
    }
}

/// [`write_decimal`] for any accepted spelling: signs, leading zeros, missing or extra fraction digits.
fn write_decimal_general(
    out: &mut Out<'_>,
    text: &[u8],
    precision: Option<u32>,
    scale: Option<u32>,
) -> Result<(), Fail> {
    let (negative, rest) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    // One pass: digits and at most one point.
    let mut dot = usize::MAX;
    let mut bad = false;
    for (i, &b) in rest.iter().enumerate() {
        if b == b'.' && dot == usize::MAX {
            dot = i;
        } else if !b.is_ascii_digit() {
            bad = true;
            break;
        }
    }
    if bad || rest.is_empty() || rest == b"." {
        let message = if is_exponent_notation(rest) {
            "expected a decimal number in plain digits: exponent notation (1e3) is not accepted"
        } else {
            "expected a decimal number: digits with an optional sign and at most one decimal point"
        };
        return Err(Fail::new(ErrorCode::InvalidDecimal, message));
    }
    let (int, mut frac) = if dot == usize::MAX {
        (rest, &rest[rest.len()..])
    } else {
        (&rest[..dot], &rest[dot + 1..])
    };
    let int = &int[int.iter().take_while(|&&b| b == b'0').count()..];
    if let Some(s) = scale {
        let s = s as usize;
        if frac.len() > s {
            // Digits past the scale may only be zeros: dropping them keeps the value exact.
            if frac[s..].iter().any(|&b| b != b'0') {
                return Err(Fail::new(
                    ErrorCode::ConstraintViolated,
                    decimal_message(precision, scale),
                ));
            }
            frac = &frac[..s];
        }
        if let Some(p) = precision {
            if int.len() > (p as usize).saturating_sub(s) {
                return Err(Fail::new(
                    ErrorCode::ConstraintViolated,
                    decimal_message(precision, scale),
                ));
            }
        }
    } else if let Some(p) = precision {
        if int.len() + frac.len() > p as usize {
            return Err(Fail::new(
                ErrorCode::ConstraintViolated,
                decimal_message(precision, scale),
            ));
        }
    }
    let zero = int.is_empty() && frac.iter().all(|&b| b == b'0');
    let frac_len = scale.map_or(frac.len(), |s| s as usize);
    let sign = usize::from(negative && !zero);
    let int_len = int.len().max(1);
    let total = 2 + sign + int_len + if frac_len > 0 { 1 + frac_len } else { 0 };
    if total <= 32 && int.len() <= 16 && frac.len() <= 16 {
        // The usual short amount: written in place, no call to memcpy.
        stage(out, |b| {
            b[..total].fill(b'0');
            b[0] = b'"';
            if sign == 1 {
                b[1] = b'-';
            }
            let mut n = 1 + sign;
            copy_small(&mut b[n..], int);
            n += int_len;
            if frac_len > 0 {
                b[n] = b'.';
                copy_small(&mut b[n + 1..], frac);
                n += 1 + frac_len;
            }
            b[n] = b'"';
            n + 1
        });
        return Ok(());
    }
    out.push(b'"');
    if sign == 1 {
        out.push(b'-');
    }
    if int.is_empty() {
        out.push(b'0');
    } else {
        out.extend_from_slice(int);
    }
    if frac_len > 0 {
        out.push(b'.');
        out.extend_from_slice(frac);
        out.fill(b'0', frac_len - frac.len());
    }
    out.push(b'"');
    Ok(())
}

fn decimal_message(precision: Option<u32>, scale: Option<u32>) -> String {
    match (precision, scale) {
        (Some(p), Some(s)) => format!(
            "expected at most {} digits before the decimal point and {s} after it (precision {p}, scale {s})",
            p - s.min(p)
        ),
        (Some(p), None) => format!("expected at most {p} digits (precision {p})"),
        (None, Some(s)) => format!("expected at most {s} digits after the decimal point (scale {s})"),
        (None, None) => String::new(),
    }
}

/// Whether unsigned `text` is a number in exponent notation (`1e3`, `1.5E-2`, `.5e+7`), as opposed to any
/// text with an `e` in it (`yes`, `none`).
fn is_exponent_notation(text: &[u8]) -> bool {
    let Some(e) = text.iter().position(|&b| b == b'e' || b == b'E') else {
        return false;
    };
    let (mantissa, exponent) = (&text[..e], &text[e + 1..]);
    let exponent = exponent
        .strip_prefix(b"+")
        .or_else(|| exponent.strip_prefix(b"-"))
        .unwrap_or(exponent);
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let mantissa_ok = match mantissa.iter().position(|&b| b == b'.') {
        Some(dot) => {
            let (int, frac) = (&mantissa[..dot], &mantissa[dot + 1..]);
            (digits(int) || int.is_empty())
                && (digits(frac) || frac.is_empty())
                && mantissa.len() > 1
        }
        None => digits(mantissa),
    };
    mantissa_ok && digits(exponent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_out;
    use crate::validate::{write_typed, Kind};

    #[test]
    fn canonical_decimals_are_copied_exactly_as_the_general_path_writes_them() {
        let alphabet = b"0012345789.-+ e";
        let mut rng = crate::test_rng::XorShift(0x2545_F491_4F6C_DD1Du64);
        let limits = [
            (None, None),
            (None, Some(0)),
            (None, Some(2)),
            (Some(5), Some(2)),
            (Some(4), None),
            (Some(2), Some(2)),
        ];
        let mut copied = 0;
        for _ in 0..100_000 {
            let state = rng.step();
            let len = 1 + (state % 9) as usize;
            let text: Vec<u8> = (0..len)
                .map(|i| {
                    let pick = (state >> (8 + 5 * i)) as usize;
                    // Mostly digits, so that many texts are numbers.
                    if pick % 4 == 0 {
                        alphabet[pick / 4 % alphabet.len()]
                    } else {
                        b'0' + (pick / 4 % 10) as u8
                    }
                })
                .collect();
            for (precision, scale) in limits {
                let (general, want) = json_out::to_vec(8, |out| {
                    write_decimal_general(out, &text, precision, scale).ok()
                });
                if is_canonical_decimal(&text, precision, scale) {
                    copied += 1;
                    assert_eq!(want, Some(()), "{text:?} {precision:?} {scale:?}");
                    let mut quoted = b"\"".to_vec();
                    quoted.extend_from_slice(&text);
                    quoted.push(b'"');
                    assert_eq!(general, quoted, "{text:?} {precision:?} {scale:?}");
                }
                let (fast, got) =
                    json_out::to_vec(8, |out| write_decimal(out, &text, precision, scale).ok());
                assert_eq!(
                    (got, &fast),
                    (want, &general),
                    "{text:?} {precision:?} {scale:?}"
                );
            }
        }
        assert!(copied > 10_000, "the fast path was taken {copied} times");
    }

    #[test]
    fn parse_i64_table() {
        let cases: &[(&str, Option<i64>)] = &[
            ("0", Some(0)),
            ("-0", Some(0)),
            ("+42", Some(42)),
            ("007", Some(7)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("99999999999999999999999", None),
            ("", None),
            ("-", None),
            ("+", None),
            ("1.0", None),
            ("1e3", None),
            ("1_000", None),
            ("--1", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_i64(text.as_bytes()), *want, "input {text:?}");
        }
    }

    #[test]
    fn eight_digits_at_once_match_a_digit_loop() {
        let naive = |t: &[u8]| -> Option<u32> {
            if t.is_empty() || t.len() > 8 {
                return None;
            }
            t.iter().try_fold(0u32, |v, &b| {
                b.is_ascii_digit().then(|| v * 10 + u32::from(b - b'0'))
            })
        };
        // Digits and the bytes next to them, and bytes that carry when 6 is added.
        let alphabet = [b'0', b'1', b'5', b'9', b'/', b':', 0x00, 0xFA, 0xFF, b'a'];
        let mut rng = crate::test_rng::XorShift(0x2545_F491_4F6C_DD1Du64);
        for len in 0..=9 {
            for _ in 0..5_000 {
                let text: Vec<u8> = (0..len)
                    .map(|_| {
                        let state = rng.step();
                        if state % 8 == 0 {
                            alphabet[(state >> 8) as usize % alphabet.len()]
                        } else {
                            b'0' + (state >> 8) as u8 % 10
                        }
                    })
                    .collect();
                assert_eq!(parse_8_digits(&text), naive(&text), "{text:?}");
            }
        }
        assert_eq!(parse_8_digits(b"99999999"), Some(99_999_999));
        assert_eq!(parse_8_digits(b"00000000"), Some(0));
        assert_eq!(parse_8_digits(b"7"), Some(7));
    }

    #[test]
    fn integers_are_written_in_canonical_form() {
        let kind = Kind::Integer {
            min: i64::MIN,
            max: i64::MAX,
        };
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("+0", "0"),
            ("007", "7"),
            ("-007", "-7"),
            ("+42", "42"),
            ("42", "42"),
            ("-42", "-42"),
            ("999999999999999999", "999999999999999999"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("00000000000000000000042", "42"),
        ];
        for (text, want) in cases {
            let (out, ok) = json_out::to_vec(8, |out| {
                out.push(b'x');
                write_typed(&kind, text.as_bytes(), out).is_ok()
            });
            assert!(ok, "input {text:?}");
            assert_eq!(out, format!("x{want}").as_bytes(), "input {text:?}");
        }
    }
}
