//! How much of a cell a JSON string literal can copy as is: the bytes JSON escapes (a control byte, `"`, `\`)
//! and, until the cell is known to be UTF-8, the bytes above ASCII, eight at a time.

use super::{load_short, splat, HI, LO};

/// Escape for each byte below 0x80: 0 = copy, `u` = `\u00XX`, else the character after the backslash.
pub(crate) static ESCAPE: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// True when one of the 8 bytes of `w` is a control byte, `"`, `\`, or (unless `utf8_ok`) non-ASCII.
#[inline(always)]
pub(crate) fn needs_attention(w: u64, utf8_ok: bool) -> bool {
    let control = w.wrapping_sub(splat(0x20)) & !w;
    let quote = (w ^ splat(b'"')).wrapping_sub(LO) & !(w ^ splat(b'"'));
    let backslash = (w ^ splat(b'\\')).wrapping_sub(LO) & !(w ^ splat(b'\\'));
    let high = if utf8_ok { 0 } else { w };
    (control | quote | backslash | high) & HI != 0
}

/// Index of the first byte of `s` that is a control byte, `"`, `\\` or non-ASCII (`s.len()` when none).
///
/// Checks eight bytes at a time; the last partial word is checked as the (overlapping) last eight bytes, or
/// padded with spaces when the whole cell is shorter, so a plain cell never goes byte by byte.
#[inline(always)]
pub(crate) fn plain_prefix(s: &[u8]) -> usize {
    let n = s.len();
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let mut i = 0;
    if n >= 8 {
        while i + 8 <= n {
            if needs_attention(word(i), false) {
                return slow_prefix(s, i);
            }
            i += 8;
        }
        if i == n || !needs_attention(word(n - 8), false) {
            return n;
        }
    } else {
        // Pad with spaces, which need no attention.
        let pad = if n == 0 {
            u64::MAX
        } else {
            !(u64::MAX >> (64 - 8 * n))
        };
        if !needs_attention(load_short(s) | (pad & splat(b' ')), false) {
            return n;
        }
    }
    slow_prefix(s, i)
}

fn slow_prefix(s: &[u8], mut i: usize) -> usize {
    while let Some(&b) = s.get(i) {
        if b >= 0x80 || ESCAPE[b as usize] != 0 {
            break;
        }
        i += 1;
    }
    i
}
