//! Finding the structural bytes of an unquoted CSV field (the delimiter, `\n`, `\r`) several bytes at a time.
//!
//! On x86_64 with 16-byte SSE2 compares (SSE2 is part of the x86_64 baseline, so no runtime detection); elsewhere
//! (the arm64 Lambda runtime) with portable SWAR on `u64` words. Both end in a scalar loop for the last bytes
//! of the haystack, so no load ever reads past it.

/// Finds the first delimiter, `\n` or `\r` in `hay` at or after `from`.
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

    /// Index of the first delimiter, `\n` or `\r` at or after `from`, if any.
    #[inline(always)]
    pub(crate) fn find(self, hay: &[u8], from: usize) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        {
            self.find_sse2(hay, from)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self.find_swar(hay, from)
        }
    }

    #[inline(always)]
    fn find_scalar(self, hay: &[u8], from: usize) -> Option<usize> {
        let tail = hay.get(from..)?;
        tail.iter().position(|&b| self.is_end(b)).map(|p| from + p)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn find_sse2(self, hay: &[u8], from: usize) -> Option<usize> {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        let mut i = from;
        while let Some(block) = hay.get(i..i + 16) {
            // SAFETY: SSE2 is part of the x86_64 baseline, so its intrinsics are always available; `block` is
            // exactly 16 readable bytes and `_mm_loadu_si128` has no alignment requirement.
            let mask = unsafe {
                let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
                let hits = _mm_or_si128(
                    _mm_or_si128(
                        _mm_cmpeq_epi8(v, _mm_set1_epi8(self.delimiter as i8)),
                        _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)),
                    ),
                    _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\r' as i8)),
                );
                _mm_movemask_epi8(hits) as u32
            };
            if mask != 0 {
                return Some(i + mask.trailing_zeros() as usize);
            }
            i += 16;
        }
        self.find_scalar(hay, i)
    }

    /// Portable version: eight bytes per step. Compiled on x86_64 too, for its tests.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    #[inline(always)]
    fn find_swar(self, hay: &[u8], from: usize) -> Option<usize> {
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        // High bit of each zero byte of `v`. A byte above a zero byte may be flagged too (the borrow of the
        // subtraction), never one below it: the lowest flagged byte is always the first zero byte.
        #[inline(always)]
        fn zeros(v: u64) -> u64 {
            v.wrapping_sub(LO) & !v & HI
        }
        let delimiter = LO * u64::from(self.delimiter);
        let lf = LO * u64::from(b'\n');
        let cr = LO * u64::from(b'\r');
        let mut i = from;
        while let Some(block) = hay.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(block);
            let v = u64::from_le_bytes(word);
            let mask = zeros(v ^ delimiter) | zeros(v ^ lf) | zeros(v ^ cr);
            if mask != 0 {
                return Some(i + (mask.trailing_zeros() / 8) as usize);
            }
            i += 8;
        }
        self.find_scalar(hay, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(hay: &[u8], from: usize, d: u8) -> Option<usize> {
        (from..hay.len()).find(|&i| hay[i] == d || hay[i] == b'\n' || hay[i] == b'\r')
    }

    #[test]
    fn every_implementation_finds_the_first_structural_byte() {
        // Bytes chosen to trip borrow propagation (0x00, 0x01, 0x80, 0xFF next to the targets).
        let alphabet = [
            b',', b'\n', b'\r', b'a', 0x00, 0x01, 0x80, 0xFF, b'\t', b'"', 0x0B, 0x2D,
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..80 {
            for _ in 0..200 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
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
                        assert_eq!(f.find(&hay, from), want, "{hay:?} from {from} delim {d}");
                        assert_eq!(
                            f.find_swar(&hay, from),
                            want,
                            "{hay:?} from {from} delim {d}"
                        );
                        assert_eq!(f.find_scalar(&hay, from), want, "{hay:?} from {from}");
                    }
                }
            }
        }
    }
}
