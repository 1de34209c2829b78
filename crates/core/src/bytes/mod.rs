//! Byte-level tricks: finding and classifying bytes many at a time instead of one by one, with one set of
//! constants and one differential test (`tests.rs`) that checks every fast routine against a plain
//! byte-by-byte reference on random inputs of every byte value, at lengths around the block boundaries.
//!
//! * [`FieldEnd`] / [`EndCursor`]: the field ends (delimiter, `\n`, `\r`) of a haystack, a bitmask per 64
//!   bytes; [`find_byte_counting_lines`]: a closing quote and the line feeds before it, 16 bytes a step.
//! * [`Classifier`]: the delimiters, line breaks, quotes, bytes to escape and bytes above ASCII of a 64-byte
//!   block, as five bitmasks.
//! * [`text_flags`]: whether a whole text has a byte to escape in JSON or a byte above ASCII.
//! * [`plain_prefix`] / [`needs_attention`]: how much of a cell a JSON string can copy as is.
//!
//! The portable code is SWAR on `u64` words (or a plain loop the compiler vectorises): it is what the arm64
//! Lambda runtime runs. On x86_64 the block masks, the 16-byte compares and the text scan use SSE2 (part of
//! the x86_64 baseline, so no runtime detection), each with its portable twin compiled beside it and checked
//! by the same tests. Loads never read past the slice they are given: the last partial block of a haystack
//! is handled byte by byte or with an overlapping load inside the slice.
//!
//! # Why SSE2 stays on x86_64
//! Measured on a shared 2-core x86_64 VM (load 11-15 from other builds, so wall figures moved by ±30% from
//! run to run; CPU time moved less), 100 MB per format, the SSE2 build against the same code with the
//! portable path forced (every `target_arch = "x86_64"` test made false), interleaved:
//! * `make bench` (3 runs each, best of 3 inside each): CSV `cpu_ratio` median 0.39 with SSE2, 0.33
//!   portable (`cpu_ratio_tmpfs` 0.36 / 0.29; `mb_per_s` 55-63 / 37-46); JSON Lines 0.33 / 0.30
//!   (`mb_per_s` 39-42 / 34-40); JSON 0.86 / 0.90.
//! * the pipeline alone, 5 interleaved runs each, CPU seconds for 100 MB (min / median): CSV 0.54 / 0.70
//!   with SSE2, 0.68 / 0.87 portable (about 20% less CPU with SSE2); JSON Lines 0.71 / 0.96 and 0.70 / 0.91
//!   (no difference).
//!
//! SSE2 buys about a fifth of the CSV pipeline's CPU time, far over the few percent that would justify the
//! second implementation, so it stays; the portable twins stay compiled on x86_64 for the tests.

mod classify;
mod field_end;
mod json;
#[cfg(test)]
mod tests;
mod text_flags;

pub(crate) use classify::Classifier;
pub(crate) use field_end::{find_byte_counting_lines, EndCursor, FieldEnd};
pub(crate) use json::{needs_attention, plain_prefix, ESCAPE};
pub(crate) use text_flags::{text_flags, TextFlags};

/// The low bit of every byte of a word.
pub(crate) const LO: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte of a word.
pub(crate) const HI: u64 = 0x8080_8080_8080_8080;
/// The low seven bits of every byte of a word.
pub(crate) const LO7: u64 = !HI;

/// `b` in every byte of a word.
#[inline(always)]
pub(crate) const fn splat(b: u8) -> u64 {
    LO * b as u64
}

/// The high bit of each zero byte of `v`, exactly (no borrow from one byte into the next, so a zero byte
/// never marks the byte after it).
#[inline(always)]
pub(crate) fn zero_bytes(v: u64) -> u64 {
    !(((v & LO7) + LO7) | v | LO7)
}

/// The high bits of a word's bytes gathered into one byte: bit `k` is the high bit of byte `k` (every
/// other bit of `high` must be clear).
#[inline(always)]
pub(crate) fn gather(high: u64) -> u64 {
    ((high >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// The first `s.len()` (at most 8) bytes of `s` as a little-endian word, the other bytes zero. Overlapping
/// loads straight from `s`; no round trip through memory.
#[inline(always)]
pub(crate) fn load_short(s: &[u8]) -> u64 {
    let n = s.len();
    let at = |i: usize, len: usize| -> u64 {
        let mut v = 0u64;
        for (k, &b) in s[i..i + len].iter().enumerate() {
            v |= u64::from(b) << (8 * k);
        }
        v
    };
    if n >= 8 {
        at(0, 8)
    } else if n >= 4 {
        // The two halves overlap on equal bytes, so OR-ing them is exact.
        at(0, 4) | (at(n - 4, 4) << (8 * (n - 4)))
    } else if n >= 2 {
        at(0, 2) | (at(n - 2, 2) << (8 * (n - 2)))
    } else if n == 1 {
        u64::from(s[0])
    } else {
        0
    }
}
