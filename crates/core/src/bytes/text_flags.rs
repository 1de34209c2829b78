//! One pass over a whole record's text telling whether any of it needs JSON escaping or is not ASCII.
//!
//! A delimited record's fields are stored back to back (see [`crate::read::Fields`]), so one scan of the
//! record answers for every field at once: in a record with nothing to escape, each string field is copied
//! between quotes as is, instead of being scanned field by field. On x86_64 the scan compares 16 bytes at a
//! time with SSE2 (part of the x86_64 baseline); elsewhere (the arm64 Lambda runtime) it uses portable SWAR on
//! `u64` words. Both end with a scalar loop, so no load reads past the text.

use super::{splat, HI, LO};

/// What a text contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TextFlags {
    /// A byte JSON strings must escape: a control byte (below 0x20), `"` or `\`.
    pub(crate) escape: bool,
    /// A byte of 0x80 or above (UTF-8 to validate).
    pub(crate) non_ascii: bool,
}

impl TextFlags {
    #[inline(always)]
    pub(super) fn of_byte(b: u8) -> Self {
        Self {
            escape: b < 0x20 || b == b'"' || b == b'\\',
            non_ascii: b >= 0x80,
        }
    }

    #[inline(always)]
    fn or(self, other: Self) -> Self {
        Self {
            escape: self.escape | other.escape,
            non_ascii: self.non_ascii | other.non_ascii,
        }
    }
}

/// Scans `text` once.
#[inline]
pub(crate) fn text_flags(text: &[u8]) -> TextFlags {
    #[cfg(target_arch = "x86_64")]
    {
        flags_sse2(text)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        flags_swar(text)
    }
}

#[inline(always)]
pub(super) fn flags_scalar(text: &[u8]) -> TextFlags {
    text.iter()
        .fold(TextFlags::default(), |f, &b| f.or(TextFlags::of_byte(b)))
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn flags_sse2(text: &[u8]) -> TextFlags {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_setzero_si128,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline, so its intrinsics are always available.
    let (mut special, mut high) = unsafe { (_mm_setzero_si128(), _mm_setzero_si128()) };
    let mut scan = |block: &[u8; 16]| {
        // SAFETY: as above; `block` is exactly 16 readable bytes and `_mm_loadu_si128` has no alignment
        // requirement.
        unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
            // A control byte is one the unsigned minimum with 0x1F leaves unchanged (SSE2 has no unsigned
            // compare); bytes of 0x80 and above are kept apart in `high` by their sign bit.
            special = _mm_or_si128(
                special,
                _mm_or_si128(
                    _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v),
                    _mm_or_si128(
                        _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)),
                        _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)),
                    ),
                ),
            );
            high = _mm_or_si128(high, v);
        }
    };
    let mut i = 0;
    while let Some(block) = text.get(i..).and_then(|t| t.first_chunk::<16>()) {
        scan(block);
        i += 16;
    }
    // The last bytes: the last 16 of the text, overlapping the block before (scanning a byte twice changes
    // nothing, and is cheaper than a byte loop); a text shorter than 16 bytes goes byte by byte.
    if i < text.len() {
        if let Some(last) = text.last_chunk::<16>() {
            scan(last);
            i = text.len();
        }
    }
    // SAFETY: as above.
    let (special, high) = unsafe {
        (
            _mm_movemask_epi8(special) as u32,
            _mm_movemask_epi8(high) as u32,
        )
    };
    TextFlags {
        escape: special != 0,
        non_ascii: high != 0,
    }
    .or(flags_scalar(text.get(i..).unwrap_or_default()))
}

/// Portable version: eight bytes per step. Compiled on x86_64 too, for its tests.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
pub(super) fn flags_swar(text: &[u8]) -> TextFlags {
    let mut special = 0u64;
    let mut high = 0u64;
    let mut i = 0;
    while let Some(block) = text.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(block);
        let w = u64::from_le_bytes(word);
        // Each byte's low seven bits with the high bit set: subtracting at most 0x20 or 1 from such a byte
        // never borrows from the next one, and the high bit survives exactly when the low bits were large
        // enough. Bytes of 0x80 and above are then masked out (`& !w`).
        let a = (w & !HI) | HI;
        let below_space = !a.wrapping_sub(splat(0x20));
        let quote = !((a ^ splat(b'"')) | HI).wrapping_sub(LO);
        let backslash = !((a ^ splat(b'\\')) | HI).wrapping_sub(LO);
        special |= (below_space | quote | backslash) & !w;
        high |= w;
        i += 8;
    }
    TextFlags {
        escape: special & HI != 0,
        non_ascii: high & HI != 0,
    }
    .or(flags_scalar(&text[i..]))
}
