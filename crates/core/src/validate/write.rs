//! The pieces a row is written from: separators, keys, short copies as fixed-size moves, nulls, and the
//! error of a field.

use super::{Fail, Plan};
use crate::json_out::Out;
use crate::{ErrorCode, RowError};

#[inline]
pub(super) fn put_sep(out: &mut Out<'_>, sep: &mut bool) {
    if *sep {
        out.push(b',');
    }
    *sep = true;
}

/// Writes a field's key, as [`put_key`] does, with one fixed-size copy when the key is short.
#[inline(always)]
pub(super) fn put_plan_key(out: &mut Out<'_>, p: &Plan, sep: &mut bool) {
    let skip = usize::from(!*sep);
    *sep = true;
    match &p.key_block {
        Some(block) => stage(out, |w| {
            if let Some(src) = block.get(skip..skip + WINDOW) {
                w.copy_from_slice(src);
            }
            p.key.len() - skip
        }),
        None => put_bytes(out, p.key.get(skip..).unwrap_or_default()),
    }
}

#[inline(always)]
pub(super) fn put_key(out: &mut Out<'_>, key: &[u8], sep: &mut bool) {
    if *sep {
        put_bytes(out, key);
    } else {
        put_bytes(out, key.get(1..).unwrap_or_default());
        *sep = true;
    }
}

/// Appends `s`. Slices of up to 32 bytes (most keys and cells) are copied with at most two overlapping
/// fixed-size moves straight into the vector: a few register moves instead of a call to `memcpy`, whose call
/// overhead dominated the cost of the short copies a row is made of.
#[inline(always)]
pub(super) fn put_bytes(out: &mut Out<'_>, s: &[u8]) {
    if s.len() > 32 {
        out.extend_from_slice(s);
        return;
    }
    stage(out, |w| {
        copy_small(w, s);
        s.len()
    });
}

/// Bytes a staged write may use.
pub(super) const WINDOW: usize = 32;

/// Lets `write` fill the next [`WINDOW`] bytes in place and keeps the first `n` it returns (see
/// [`Out::stage`]). Writing in place (rather than assembling on the stack and copying) avoids reading back
/// freshly written bytes with wider loads, which stalls store-to-load forwarding.
#[inline(always)]
pub(super) fn stage(out: &mut Out<'_>, write: impl FnOnce(&mut [u8; WINDOW]) -> usize) {
    out.stage::<WINDOW>(write);
}

/// Copies `s` (at most 32 bytes, at most `dst.len()`) to the start of `dst` with at most two overlapping
/// fixed-size copies.
#[inline(always)]
pub(super) fn copy_small(dst: &mut [u8], s: &[u8]) {
    let n = s.len();
    if n >= 16 {
        dst[..16].copy_from_slice(&s[..16]);
        dst[n - 16..n].copy_from_slice(&s[n - 16..]);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&s[..8]);
        dst[n - 8..n].copy_from_slice(&s[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&s[..4]);
        dst[n - 4..n].copy_from_slice(&s[n - 4..]);
    } else if n >= 2 {
        dst[..2].copy_from_slice(&s[..2]);
        dst[n - 2..n].copy_from_slice(&s[n - 2..]);
    } else if n == 1 {
        dst[0] = s[0];
    }
}

#[inline]
pub(super) fn null_value(
    p: &Plan,
    what: &'static str,
    out: &mut Out<'_>,
    sep: &mut bool,
    errors: &mut Vec<RowError>,
) {
    if p.required {
        errors.push(RowError::column(&*p.column, ErrorCode::NullValue, what));
    } else {
        put_key(out, &p.null, sep);
    }
}

#[cold]
#[inline(never)]
pub(super) fn push_fail(errors: &mut Vec<RowError>, p: &Plan, fail: Fail) {
    errors.push(RowError::column(&*p.column, fail.code, fail.message));
}
