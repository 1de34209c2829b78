//! JSON text written out: cells as string literals (escaped, UTF-8 checked, length counted) and embedded
//! JSON values compacted.

use super::write::{copy_small, put_plan_key, stage, WINDOW};
use super::{Fail, Plan};
use crate::bytes::{needs_attention, plain_prefix, ESCAPE};
use crate::json_out::Out;
use crate::ErrorCode;

pub(super) fn check_length(text: &str, min: Option<u32>, max: Option<u32>) -> Result<(), Fail> {
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    check_count(text.chars().count(), min, max)
}

fn check_count(n: usize, min: Option<u32>, max: Option<u32>) -> Result<(), Fail> {
    let too_short = min.is_some_and(|m| n < m as usize);
    let too_long = max.is_some_and(|m| n > m as usize);
    if !(too_short || too_long) {
        return Ok(());
    }
    let message = match (min, max) {
        (Some(a), Some(b)) => format!("expected between {a} and {b} characters"),
        (Some(a), None) => format!("expected at least {a} characters"),
        (None, _) => format!("expected at most {} characters", max.unwrap_or_default()),
    };
    Err(Fail::new(ErrorCode::ConstraintViolated, message))
}

#[inline]
pub(super) fn write_string(
    out: &mut Out<'_>,
    cell: &[u8],
    min: Option<u32>,
    max: Option<u32>,
) -> Result<(), Fail> {
    let Ok(ascii) = write_json_string(out, cell) else {
        return Err(Fail::new(
            ErrorCode::InvalidUtf8,
            "the text is not valid UTF-8",
        ));
    };
    check_length_of(cell, ascii, min, max)
}

/// Checks the length in characters of valid UTF-8 `cell` (`ascii` when it is all ASCII).
#[inline(always)]
pub(super) fn check_length_of(
    cell: &[u8],
    ascii: bool,
    min: Option<u32>,
    max: Option<u32>,
) -> Result<(), Fail> {
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    // Characters are the bytes that start one (all of them in ASCII text).
    let n = if ascii {
        cell.len()
    } else {
        cell.iter().filter(|&&b| (b as i8) >= -0x40).count()
    };
    check_count(n, min, max)
}

/// Writes valid UTF-8 `cell` that needs no escaping as a JSON string literal; `tail` is `cell` and whatever
/// readable bytes follow it (see [`Fields::get_with_tail`]). A short cell with a long enough tail is copied as
/// one fixed-size block, the same moves whatever its length.
#[inline(always)]
pub(super) fn write_plain_cell(out: &mut Out<'_>, cell: &[u8], tail: &[u8]) {
    let n = cell.len();
    match tail.first_chunk::<WINDOW>() {
        Some(block) if n <= WINDOW => out.stage::<{ WINDOW + 2 }>(|w| {
            w[0] = b'"';
            w[1..=WINDOW].copy_from_slice(block);
            w[n + 1] = b'"';
            n + 2
        }),
        _ => write_plain_string(out, cell),
    }
}

/// Writes valid UTF-8 `s` that needs no escaping as a JSON string literal.
#[inline(always)]
pub(super) fn write_plain_string(out: &mut Out<'_>, s: &[u8]) {
    if s.len() <= WINDOW - 2 {
        stage(out, |b| {
            b[0] = b'"';
            copy_small(&mut b[1..], s);
            b[s.len() + 1] = b'"';
            s.len() + 2
        });
    } else {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    }
}

/// Writes `s` as a JSON string literal and tells whether it was all ASCII. Fails (having written a partial
/// literal) when `s` is not UTF-8.
///
/// The common case — short, plain ASCII — is one scan eight bytes at a time and one staged copy. Otherwise runs
/// of plain bytes are copied in bulk between escapes, and the first non-ASCII byte triggers one UTF-8 check of
/// the rest of the cell.
#[inline]
pub(super) fn write_json_string(out: &mut Out<'_>, s: &[u8]) -> Result<bool, ()> {
    let plain = plain_prefix(s);
    let mut i = plain;
    let mut utf8_ok = false;
    if s.get(plain).is_some_and(|&b| b >= 0x80) {
        // Everything before `plain` is ASCII: checking from here checks the whole cell. Then look for the
        // bytes that still need escaping.
        simdutf8::basic::from_utf8(&s[plain..]).map_err(|_| ())?;
        utf8_ok = true;
        while let Some(&b) = s.get(i) {
            if b < 0x80 && ESCAPE[b as usize] != 0 {
                break;
            }
            i += 1;
        }
    }
    if i == s.len() && s.len() <= 30 {
        stage(out, |b| {
            b[0] = b'"';
            copy_small(&mut b[1..], s);
            b[s.len() + 1] = b'"';
            s.len() + 2
        });
        return Ok(!utf8_ok);
    }
    out.push(b'"');
    let mut start = 0;
    while i < s.len() {
        while let Some(chunk) = s.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            if needs_attention(u64::from_le_bytes(w), utf8_ok) {
                break;
            }
            i += 8;
        }
        let Some(&b) = s.get(i) else { break };
        if b >= 0x80 {
            if !utf8_ok {
                // Everything before `i` is ASCII: checking from here checks the whole cell.
                simdutf8::basic::from_utf8(&s[i..]).map_err(|_| ())?;
                utf8_ok = true;
            }
            i += 1;
            continue;
        }
        let e = ESCAPE[b as usize];
        if e == 0 {
            i += 1;
            continue;
        }
        out.extend_from_slice(&s[start..i]);
        if e == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', e]);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
    Ok(!utf8_ok)
}

/// Writes the key and the (valid) JSON text of a `json` field, compacted; fails on a lone surrogate escape
/// (`"\ud800"`), which a `string` field rejects too and strict JSON readers of the output would choke on.
pub(super) fn write_json_text(
    out: &mut Out<'_>,
    p: &Plan,
    sep: &mut bool,
    json: &[u8],
) -> Result<(), Fail> {
    if has_lone_surrogate(json) {
        return Err(Fail::new(
            ErrorCode::InvalidUtf8,
            "the JSON text has an invalid escape (a lone surrogate)",
        ));
    }
    put_plan_key(out, p, sep);
    write_compact_json(out, json);
    Ok(())
}

/// Whether valid JSON text has a `\uXXXX` escape of a surrogate that is not half of a high-low pair. Escapes
/// are taken two bytes at a time, so `\\u` (a backslash, then `u`) is not one.
fn has_lone_surrogate(json: &[u8]) -> bool {
    let hex = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(json.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let Some(mut i) = memchr::memchr(b'\\', json) else {
        return false;
    };
    while i < json.len() {
        if json[i] != b'\\' {
            i += 1;
            continue;
        }
        if json.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        match hex(i + 2) {
            Some(0xD800..=0xDBFF) => {
                let low = (json.get(i + 6..i + 8) == Some(b"\\u")).then(|| hex(i + 8));
                if !matches!(low.flatten(), Some(0xDC00..=0xDFFF)) {
                    return true;
                }
                i += 12;
            }
            Some(0xDC00..=0xDFFF) => return true,
            _ => i += 6,
        }
    }
    false
}

/// Copies valid JSON text without insignificant whitespace, so an embedded value never breaks a JSON Lines row.
pub(super) fn write_compact_json(out: &mut Out<'_>, json: &[u8]) {
    if !json
        .iter()
        .any(|&b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
    {
        out.extend_from_slice(json);
        return;
    }
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_out;

    fn escaped(s: &[u8]) -> Option<String> {
        let (out, ok) = json_out::to_vec(s.len(), |out| write_json_string(out, s));
        ok.ok()?;
        String::from_utf8(out).ok()
    }

    #[test]
    fn json_string_escaping_matches_serde_json() {
        let cases = [
            "",
            "plain ascii text that is longer than eight bytes",
            "quote \" and backslash \\ inside",
            "control \u{1} \u{1f} \n \r \t \u{8} \u{c} end",
            "ünïcödé and emoji 🎉 mixed with \"quotes\"",
            "12345678\"",
            "\u{7f} del",
        ];
        for case in cases {
            let got = escaped(case.as_bytes());
            let want = serde_json::to_string(case).ok();
            assert_eq!(got, want, "input {case:?}");
        }
    }

    #[test]
    fn json_string_rejects_invalid_utf8_anywhere() {
        for bad in [
            &b"\xff"[..],
            b"abcdefghij\xc3",
            b"\xe2\x82",
            b"ok then \xed\xa0\x80 surrogate",
        ] {
            assert!(escaped(bad).is_none(), "input {bad:?}");
        }
    }

    #[test]
    fn compact_json_drops_only_insignificant_whitespace() {
        let (out, ()) = json_out::to_vec(8, |out| {
            write_compact_json(out, b"{ \"a b\" : [1, 2,\n 3], \"c\":\"x\\\" y\" }");
        });
        assert_eq!(out, b"{\"a b\":[1,2,3],\"c\":\"x\\\" y\"}");
    }
}
