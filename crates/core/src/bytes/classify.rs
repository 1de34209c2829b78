//! Five classes of the bytes of a 64-byte block at once, for the CSV reader's unquoted-record path.

use super::{gather, splat, zero_bytes, HI, LO7};

/// Which bytes of a 64-byte block are the delimiter, a line break (`\n` or `\r`), the quote, a byte a JSON
/// string must escape (a control byte or `\`; `"` is the quote's business) and a byte of 0x80 or above: bit
/// `k` of each mask is byte `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BlockClasses {
    pub(crate) delimiters: u64,
    pub(crate) line_breaks: u64,
    pub(crate) quotes: u64,
    pub(crate) escapes: u64,
    pub(crate) non_ascii: u64,
}

/// The delimiter and the quote a block is classified by (see [`BlockClasses`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Classifier {
    delimiter: u8,
    quote: u8,
}

impl Classifier {
    /// Classifies by `delimiter` and `quote`.
    pub(crate) fn new(delimiter: u8, quote: u8) -> Self {
        Self { delimiter, quote }
    }

    /// The classes of the 64 bytes of `block`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) fn classify(self, block: &[u8; 64]) -> BlockClasses {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        let mut c = BlockClasses::default();
        for (k, chunk) in block.chunks_exact(16).enumerate() {
            // SAFETY: SSE2 is part of the x86_64 baseline, so its intrinsics are always available; `chunk` is
            // exactly 16 readable bytes and `_mm_loadu_si128` has no alignment requirement.
            let (d, l, q, e, h) = unsafe {
                let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
                let eq = |b: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8));
                // A control byte is one the unsigned minimum with 0x1F leaves unchanged.
                let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v);
                (
                    _mm_movemask_epi8(eq(self.delimiter)) as u16,
                    _mm_movemask_epi8(_mm_or_si128(eq(b'\n'), eq(b'\r'))) as u16,
                    _mm_movemask_epi8(eq(self.quote)) as u16,
                    _mm_movemask_epi8(_mm_or_si128(control, eq(b'\\'))) as u16,
                    _mm_movemask_epi8(v) as u16,
                )
            };
            c.delimiters |= u64::from(d) << (16 * k);
            c.line_breaks |= u64::from(l) << (16 * k);
            c.quotes |= u64::from(q) << (16 * k);
            c.escapes |= u64::from(e) << (16 * k);
            c.non_ascii |= u64::from(h) << (16 * k);
        }
        c
    }

    /// The classes of the 64 bytes of `block`.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    pub(crate) fn classify(self, block: &[u8; 64]) -> BlockClasses {
        self.classify_swar(block)
    }

    /// Portable version: eight bytes per step, exact. Compiled on x86_64 too, for its tests.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    #[inline(always)]
    pub(super) fn classify_swar(self, block: &[u8; 64]) -> BlockClasses {
        // One bit per zero byte of `v`.
        #[inline(always)]
        fn bits_of_zeros(v: u64) -> u64 {
            gather(zero_bytes(v))
        }
        let mut c = BlockClasses::default();
        for (k, chunk) in block.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            let at = 8 * k;
            c.delimiters |= bits_of_zeros(v ^ splat(self.delimiter)) << at;
            c.line_breaks |=
                (bits_of_zeros(v ^ splat(b'\n')) | bits_of_zeros(v ^ splat(b'\r'))) << at;
            c.quotes |= bits_of_zeros(v ^ splat(self.quote)) << at;
            // Below 0x20: each byte's low seven bits with the high bit set lose it when 0x20 is taken away
            // (never borrowing from the next byte), and the byte itself must be below 0x80.
            let below_space = !((v & LO7) | HI).wrapping_sub(splat(0x20)) & !v & HI;
            c.escapes |= (gather(below_space) | bits_of_zeros(v ^ splat(b'\\'))) << at;
            c.non_ascii |= gather(v & HI) << at;
        }
        c
    }
}
