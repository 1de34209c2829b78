//! The structural bytes of delimited text: where unquoted fields end, and where a quoted field's closing quote
//! is.

use super::{gather, splat, zero_bytes};

/// The bytes that end an unquoted field: the delimiter, `\n` and `\r`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldEnd {
    delimiter: u8,
}

impl FieldEnd {
    /// The field ends of a file delimited by `delimiter`.
    pub(crate) fn new(delimiter: u8) -> Self {
        Self { delimiter }
    }

    #[inline(always)]
    fn is_end(self, b: u8) -> bool {
        b == self.delimiter || b == b'\n' || b == b'\r'
    }
}

/// Walks the structural bytes (delimiter, `\n`, `\r`) of a haystack in 64-byte blocks: each block is turned
/// into a bitmask once, and every field end inside it is then a shift and a count of trailing zeros. Searching
/// from each field start instead loads and compares the same bytes again per field, and its loop exit
/// depends on the field's length, which a CPU predicts badly for the varied lengths of real data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EndCursor<'a> {
    hay: &'a [u8],
    ends: FieldEnd,
    /// Start of the block `mask` describes.
    base: usize,
    /// Bit `k`: `hay[base + k]` is a structural byte (bits past the haystack's end are clear).
    mask: u64,
}

impl<'a> EndCursor<'a> {
    /// A cursor over `hay`, its first block at 0.
    #[inline(always)]
    pub(crate) fn new(hay: &'a [u8], ends: FieldEnd) -> Self {
        Self {
            hay,
            ends,
            base: 0,
            mask: ends.block_mask(hay, 0),
        }
    }

    /// Index of the first structural byte at or after `from`, if any.
    #[inline(always)]
    pub(crate) fn find(&mut self, mut from: usize) -> Option<usize> {
        loop {
            let off = from.wrapping_sub(self.base);
            if off < 64 {
                let m = self.mask >> off;
                if m != 0 {
                    return Some(from + m.trailing_zeros() as usize);
                }
                from = self.base + 64;
            }
            if from >= self.hay.len() {
                return None;
            }
            self.base = from;
            self.mask = self.ends.block_mask(self.hay, from);
        }
    }
}

impl FieldEnd {
    /// Bit `k` set when `hay[at + k]` is a structural byte, for the (up to) 64 bytes from `at`.
    #[inline(always)]
    pub(super) fn block_mask(self, hay: &[u8], at: usize) -> u64 {
        match hay.get(at..at + 64) {
            Some(block) => self.full_block_mask(block),
            None => {
                let tail = hay.get(at..).unwrap_or_default();
                tail.iter()
                    .enumerate()
                    .fold(0, |m, (k, &b)| m | (u64::from(self.is_end(b)) << k))
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn full_block_mask(self, block: &[u8]) -> u64 {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        let mut mask = 0u64;
        for (k, chunk) in block.chunks_exact(16).enumerate() {
            // SAFETY: SSE2 is part of the x86_64 baseline, so its intrinsics are always available; `chunk` is
            // exactly 16 readable bytes and `_mm_loadu_si128` has no alignment requirement.
            let bits = unsafe {
                let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
                let hits = _mm_or_si128(
                    _mm_or_si128(
                        _mm_cmpeq_epi8(v, _mm_set1_epi8(self.delimiter as i8)),
                        _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)),
                    ),
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\r' as i8)),
                );
                _mm_movemask_epi8(hits) as u16
            };
            mask |= u64::from(bits) << (16 * k);
        }
        mask
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn full_block_mask(self, block: &[u8]) -> u64 {
        self.swar_block_mask(block)
    }

    /// Portable version of the block mask: eight bytes per step, exact (no borrow between bytes). Compiled
    /// on x86_64 too, for its tests.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    #[inline(always)]
    pub(super) fn swar_block_mask(self, block: &[u8]) -> u64 {
        let delimiter = splat(self.delimiter);
        let lf = splat(b'\n');
        let cr = splat(b'\r');
        let mut mask = 0u64;
        for (k, chunk) in block.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            let high = zero_bytes(v ^ delimiter) | zero_bytes(v ^ lf) | zero_bytes(v ^ cr);
            mask |= gather(high) << (8 * k);
        }
        mask
    }
}

/// Index of the first `byte` in `hay` at or after `from`, and how many `\n` come before it from `from` on; 16
/// bytes a step, inline: the closing quote of a quoted field is usually a few bytes on, where a call into a
/// general search costs more than the search. The line feeds come from the same loads (a quoted field's line
/// count is needed for positions; counting them in a loop of its own took a turn per byte).
#[inline(always)]
pub(crate) fn find_byte_counting_lines(hay: &[u8], from: usize, byte: u8) -> Option<(usize, u64)> {
    let mut i = from;
    let mut lines = 0u64;
    while let Some(block) = hay.get(i..).and_then(|t| t.first_chunk::<16>()) {
        let (mask, feeds) = eq_masks_16(block, byte, b'\n');
        if mask != 0 {
            let at = mask.trailing_zeros();
            let feeds = feeds & ((1 << at) - 1);
            if feeds != 0 {
                lines += u64::from(feeds.count_ones());
            }
            return Some((i + at as usize, lines));
        }
        if feeds != 0 {
            lines += u64::from(feeds.count_ones());
        }
        i += 16;
    }
    let tail = hay.get(i..)?;
    let at = tail.iter().position(|&b| b == byte)?;
    lines += tail[..at].iter().filter(|&&b| b == b'\n').count() as u64;
    Some((i + at, lines))
}

/// Bit `k` of the first mask set when `block[k] == a`, of the second when `block[k] == b`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn eq_masks_16(block: &[u8; 16], a: u8, b: u8) -> (u32, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline, so its intrinsics are always available; `block` is exactly
    // 16 readable bytes and `_mm_loadu_si128` has no alignment requirement.
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        let eq = |x: u8| _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(x as i8))) as u32;
        (eq(a), eq(b))
    }
}

/// Bit `k` of the first mask set when `block[k] == a`, of the second when `block[k] == b`.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(super) fn eq_masks_16(block: &[u8; 16], a: u8, b: u8) -> (u32, u32) {
    eq_masks_16_portable(block, a, b)
}

/// Portable version of [`eq_masks_16`] (a loop the compiler vectorises). Compiled on x86_64 too, for its
/// tests.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
pub(super) fn eq_masks_16_portable(block: &[u8; 16], a: u8, b: u8) -> (u32, u32) {
    block.iter().enumerate().fold((0, 0), |(ma, mb), (k, &x)| {
        (ma | (u32::from(x == a) << k), mb | (u32::from(x == b) << k))
    })
}
