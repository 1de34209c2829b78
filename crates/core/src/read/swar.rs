//! Finding the structural bytes of an unquoted CSV field (the delimiter, `\n`, `\r`) 64 bytes at a time.
//!
//! Each 64-byte block becomes a bitmask: on x86_64 with 16-byte SSE2 compares (SSE2 is part of the x86_64
//! baseline, so no runtime detection); elsewhere (the arm64 Lambda runtime) with portable SWAR on `u64` words.
//! The last block of a haystack, shorter than 64 bytes, is scanned byte by byte, so no load ever reads past it.

/// The bytes that end an unquoted field: the delimiter, `\n` and `\r`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldEnd {
    delimiter: u8,
}

impl FieldEnd {
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
    fn block_mask(self, hay: &[u8], at: usize) -> u64 {
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
    fn swar_block_mask(self, block: &[u8]) -> u64 {
        const LO7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
        const LO: u64 = 0x0101_0101_0101_0101;
        // High bit of each zero byte of `v`, exactly.
        #[inline(always)]
        fn zeros(v: u64) -> u64 {
            !(((v & LO7) + LO7) | v | LO7)
        }
        let delimiter = LO * u64::from(self.delimiter);
        let lf = LO * u64::from(b'\n');
        let cr = LO * u64::from(b'\r');
        let mut mask = 0u64;
        for (k, chunk) in block.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            let high = zeros(v ^ delimiter) | zeros(v ^ lf) | zeros(v ^ cr);
            // Gather the eight high bits into one byte.
            let bits = ((high >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
            mask |= bits << (8 * k);
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
fn eq_masks_16(block: &[u8; 16], a: u8, b: u8) -> (u32, u32) {
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
fn eq_masks_16(block: &[u8; 16], a: u8, b: u8) -> (u32, u32) {
    block.iter().enumerate().fold((0, 0), |(ma, mb), (k, &x)| {
        (ma | (u32::from(x == a) << k), mb | (u32::from(x == b) << k))
    })
}

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
    fn classify_swar(self, block: &[u8; 64]) -> BlockClasses {
        const LO7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        // The high bits of a word's bytes, one bit per byte.
        #[inline(always)]
        fn gather(high: u64) -> u64 {
            ((high >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
        }
        // High bit of each zero byte of `v`, exactly; then one bit per byte.
        #[inline(always)]
        fn bits_of_zeros(v: u64) -> u64 {
            gather(!(((v & LO7) + LO7) | v | LO7))
        }
        let mut c = BlockClasses::default();
        for (k, chunk) in block.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            let at = 8 * k;
            c.delimiters |= bits_of_zeros(v ^ (LO * u64::from(self.delimiter))) << at;
            c.line_breaks |= (bits_of_zeros(v ^ (LO * u64::from(b'\n')))
                | bits_of_zeros(v ^ (LO * u64::from(b'\r'))))
                << at;
            c.quotes |= bits_of_zeros(v ^ (LO * u64::from(self.quote))) << at;
            // Below 0x20: each byte's low seven bits with the high bit set lose it when 0x20 is taken away
            // (never borrowing from the next byte), and the byte itself must be below 0x80.
            let below_space = !((v & LO7) | HI).wrapping_sub(LO * 0x20) & !v & HI;
            c.escapes |= (gather(below_space) | bits_of_zeros(v ^ (LO * u64::from(b'\\')))) << at;
            c.non_ascii |= gather(v & HI) << at;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(hay: &[u8], from: usize, d: u8) -> Option<usize> {
        (from..hay.len()).find(|&i| hay[i] == d || hay[i] == b'\n' || hay[i] == b'\r')
    }

    #[test]
    fn find_byte_finds_the_first_one_and_counts_the_line_feeds_before_it() {
        let mut rng = crate::test_rng::XorShift(0x9E37_79B9_7F4A_7C15u64);
        for len in 0..70 {
            for _ in 0..50 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        let state = rng.step();
                        [b'"', b'a', b',', 0x00, 0xFF, b'\n', b'\r'][(state >> 8) as usize % 7]
                    })
                    .collect();
                for byte in [b'"', 0x00, 0xFF] {
                    for from in 0..=len + 1 {
                        let want = (from..len).find(|&i| hay[i] == byte).map(|at| {
                            let lines = hay[from..at].iter().filter(|&&b| b == b'\n').count();
                            (at, lines as u64)
                        });
                        assert_eq!(
                            find_byte_counting_lines(&hay, from, byte),
                            want,
                            "{hay:?} {from} {byte}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn block_classes_match_a_byte_by_byte_classification() {
        let alphabet = [
            b',', b'\n', b'\r', b'"', b'\'', b'a', 0x00, 0x01, 0x80, 0xFF, b'\t', 0x0B, 0x2D,
            b'\\', 0x1F, b' ', 0x7F, 0x9F, 0xA0,
        ];
        let mut rng = crate::test_rng::XorShift(0x9E37_79B9_7F4A_7C15u64);
        for _ in 0..2_000 {
            let mut block = [0u8; 64];
            for b in &mut block {
                let state = rng.step();
                *b = alphabet[(state >> 8) as usize % alphabet.len()];
            }
            for (d, q) in [(b',', b'"'), (b'\t', b'\''), (0x00, 0xFF), (0xFF, 0x01)] {
                let c = Classifier::new(d, q);
                let bits = |hit: &dyn Fn(u8) -> bool| {
                    (0..64).fold(0u64, |m, k| m | (u64::from(hit(block[k])) << k))
                };
                let want = BlockClasses {
                    delimiters: bits(&|b| b == d),
                    line_breaks: bits(&|b| b == b'\n' || b == b'\r'),
                    quotes: bits(&|b| b == q),
                    escapes: bits(&|b| b < 0x20 || b == b'\\'),
                    non_ascii: bits(&|b| b >= 0x80),
                };
                assert_eq!(c.classify(&block), want, "{block:?} {d} {q}");
                assert_eq!(c.classify_swar(&block), want, "{block:?} {d} {q}");
            }
        }
    }

    #[test]
    fn every_implementation_finds_the_first_structural_byte() {
        // Bytes chosen to trip borrow propagation (0x00, 0x01, 0x80, 0xFF next to the targets).
        let alphabet = [
            b',', b'\n', b'\r', b'a', 0x00, 0x01, 0x80, 0xFF, b'\t', b'"', 0x0B, 0x2D,
        ];
        let mut rng = crate::test_rng::XorShift(0x9E37_79B9_7F4A_7C15u64);
        for len in 0..150 {
            for _ in 0..25 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        let state = rng.step();
                        // Mostly plain bytes, so structural ones are sparse.
                        if state % 4 == 0 {
                            alphabet[(state >> 8) as usize % alphabet.len()]
                        } else {
                            alphabet[3 + (state >> 8) as usize % (alphabet.len() - 3)]
                        }
                    })
                    .collect();
                for d in [b',', b'\t', 0x00, 0xFF] {
                    let f = FieldEnd::new(d);
                    for from in 0..=len + 1 {
                        let want = naive(&hay, from, d);
                        let mut cursor = EndCursor::new(&hay, f);
                        assert_eq!(cursor.find(from), want, "{hay:?} from {from} delim {d}");
                        // The cursor goes on from where it was.
                        if let Some(at) = want {
                            let next = naive(&hay, at + 1, d);
                            assert_eq!(cursor.find(at + 1), next, "next: {hay:?} delim {d}");
                        }
                    }
                    for at in 0..len {
                        let want = (at..len.min(at + 64))
                            .filter(|&i| naive(&hay, i, d) == Some(i))
                            .fold(0u64, |m, i| m | 1 << (i - at));
                        assert_eq!(f.block_mask(&hay, at), want, "{hay:?} at {at} delim {d}");
                        if let Some(block) = hay.get(at..at + 64) {
                            assert_eq!(f.swar_block_mask(block), want, "{hay:?} at {at} delim {d}");
                        }
                    }
                }
            }
        }
    }
}
