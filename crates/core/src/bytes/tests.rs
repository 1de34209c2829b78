//! One differential harness for every fast routine of the module: each is checked against a plain
//! byte-by-byte reference on random inputs of every byte value (the structural bytes and the neighbours of
//! every threshold over-represented, to trip carries and borrows), at every length up to past three 64-byte
//! blocks, from every start. Below it, the targeted tests each routine came with.

use super::classify::{BlockClasses, Classifier};
use super::field_end::{eq_masks_16, eq_masks_16_portable, EndCursor, FieldEnd};
use super::text_flags::{flags_scalar, flags_swar, TextFlags};
use super::*;
use crate::test_rng::XorShift;

/// Bytes next to the thresholds the routines test (0x1F/0x20, 0x7F/0x80, 0xBF/0xC0) and the bytes they look
/// for (delimiters, line breaks, quotes, escapes).
const EDGES: [u8; 20] = [
    b',', b'\t', b'\n', b'\r', b'"', b'\'', b'\\', b' ', b'a', 0x00, 0x01, 0x1F, 0x20, 0x21, 0x7F,
    0x80, 0x81, 0xBF, 0xC0, 0xFF,
];

/// A random text of `len` bytes: a quarter any byte at all, a quarter from [`EDGES`], the rest letters (so
/// that structural bytes are sometimes sparse, sometimes dense).
fn random_text(rng: &mut XorShift, len: usize) -> Vec<u8> {
    let dense = rng.below(2) == 0;
    (0..len)
        .map(|_| {
            let state = rng.step();
            match state % if dense { 2 } else { 8 } {
                0 => (state >> 16) as u8,
                1 => EDGES[(state >> 16) as usize % EDGES.len()],
                _ => b'a' + ((state >> 16) % 26) as u8,
            }
        })
        .collect()
}

/// The delimiters and quotes to test with: the usual ones, the extremes, and a byte of the text itself.
fn syntaxes(text: &[u8]) -> [(u8, u8); 5] {
    let own = text.first().copied().unwrap_or(b';');
    [
        (b',', b'"'),
        (b'\t', b'\''),
        (0x00, 0xFF),
        (0xFF, 0x01),
        (own, b'"'),
    ]
}

fn is_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Checks every routine on `text` against its reference; panics with the input on a difference.
fn check_all(text: &[u8]) {
    let len = text.len();
    // Text flags.
    let want = TextFlags {
        escape: text.iter().any(|&b| is_escape(b)),
        non_ascii: text.iter().any(|&b| b >= 0x80),
    };
    assert_eq!(flags_scalar(text), want, "flags_scalar {text:?}");
    assert_eq!(flags_swar(text), want, "flags_swar {text:?}");
    assert_eq!(text_flags(text), want, "text_flags {text:?}");
    // The plain prefix of a JSON string, and the word test under it.
    let plain = text
        .iter()
        .position(|&b| b >= 0x80 || is_escape(b))
        .unwrap_or(len);
    assert_eq!(plain_prefix(text), plain, "plain_prefix {text:?}");
    for (at, window) in text.windows(8).enumerate() {
        let w = u64::from_le_bytes(*window.first_chunk::<8>().expect("8 bytes"));
        for utf8_ok in [false, true] {
            let want = window
                .iter()
                .any(|&b| is_escape(b) || (b >= 0x80 && !utf8_ok));
            assert_eq!(
                needs_attention(w, utf8_ok),
                want,
                "needs_attention {text:?} at {at}"
            );
        }
    }
    for n in 0..=len.min(8) {
        let want = text[..n]
            .iter()
            .enumerate()
            .fold(0u64, |w, (k, &b)| w | (u64::from(b) << (8 * k)));
        assert_eq!(load_short(&text[..n]), want, "load_short {text:?} {n}");
    }
    for (d, q) in syntaxes(text) {
        // Field ends: the block masks, and the cursor from every start, going on from where it stopped.
        let is_end = |b: u8| b == d || b == b'\n' || b == b'\r';
        let next_end = |from: usize| (from..len).find(|&i| is_end(text[i]));
        let f = FieldEnd::new(d);
        for at in 0..len {
            let want = (at..len.min(at + 64))
                .filter(|&i| is_end(text[i]))
                .fold(0u64, |m, i| m | 1 << (i - at));
            assert_eq!(
                f.block_mask(text, at),
                want,
                "block_mask {text:?} at {at} delim {d}"
            );
            if let Some(block) = text.get(at..at + 64) {
                assert_eq!(
                    f.swar_block_mask(block),
                    want,
                    "swar_block_mask {text:?} at {at} delim {d}"
                );
            }
        }
        for from in 0..=len + 1 {
            let mut cursor = EndCursor::new(text, f);
            let want = next_end(from);
            assert_eq!(
                cursor.find(from),
                want,
                "EndCursor {text:?} from {from} delim {d}"
            );
            if let Some(at) = want {
                assert_eq!(
                    cursor.find(at + 1),
                    next_end(at + 1),
                    "EndCursor again {text:?} delim {d}"
                );
            }
        }
        // A closing quote and the line feeds before it.
        for from in 0..=len + 1 {
            let want = (from..len).find(|&i| text[i] == q).map(|at| {
                let lines = text[from..at].iter().filter(|&&b| b == b'\n').count();
                (at, lines as u64)
            });
            assert_eq!(
                find_byte_counting_lines(text, from, q),
                want,
                "find_byte_counting_lines {text:?} from {from} byte {q}"
            );
        }
        for window in text.windows(16) {
            let block = window.first_chunk::<16>().expect("16 bytes");
            let bits = |x: u8| (0..16).fold(0u32, |m, k| m | (u32::from(block[k] == x) << k));
            let want = (bits(q), bits(b'\n'));
            assert_eq!(
                eq_masks_16(block, q, b'\n'),
                want,
                "eq_masks_16 {block:?} {q}"
            );
            assert_eq!(
                eq_masks_16_portable(block, q, b'\n'),
                want,
                "eq_masks_16_portable {block:?} {q}"
            );
        }
        // Block classes, at every offset of the text that leaves a whole block.
        let c = Classifier::new(d, q);
        for window in text.windows(64) {
            let block = window.first_chunk::<64>().expect("64 bytes");
            let want = naive_classes(block, d, q);
            assert_eq!(c.classify(block), want, "classify {block:?} {d} {q}");
            assert_eq!(
                c.classify_swar(block),
                want,
                "classify_swar {block:?} {d} {q}"
            );
        }
    }
}

#[test]
fn every_fast_routine_matches_its_byte_by_byte_reference_on_random_text() {
    let mut rng = XorShift(0x243F_6A88_85A3_08D3u64);
    for len in 0..=3 * 64 + 9 {
        // More texts at the lengths around a word or a block boundary.
        let rounds = if len % 8 <= 1 || len % 8 == 7 { 8 } else { 2 };
        for _ in 0..rounds {
            let text = random_text(&mut rng, len);
            check_all(&text);
        }
    }
}

#[test]
fn every_fast_routine_matches_its_reference_on_every_byte_value_at_every_block_position() {
    for b in 0..=255u8 {
        // The first and last byte of a word, of a 16-byte step and of a 64-byte block, and a tail byte.
        for at in [0, 7, 8, 15, 16, 63, 64, 70] {
            let mut text = vec![b'x'; 71];
            text[at] = b;
            check_all(&text);
        }
    }
}

// The targeted tests the routines came with.

fn naive(hay: &[u8], from: usize, d: u8) -> Option<usize> {
    (from..hay.len()).find(|&i| hay[i] == d || hay[i] == b'\n' || hay[i] == b'\r')
}

#[test]
fn find_byte_finds_the_first_one_and_counts_the_line_feeds_before_it() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15u64);
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
        b',', b'\n', b'\r', b'"', b'\'', b'a', 0x00, 0x01, 0x80, 0xFF, b'\t', 0x0B, 0x2D, b'\\',
        0x1F, b' ', 0x7F, 0x9F, 0xA0,
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15u64);
    for _ in 0..2_000 {
        let mut block = [0u8; 64];
        for b in &mut block {
            let state = rng.step();
            *b = alphabet[(state >> 8) as usize % alphabet.len()];
        }
        for (d, q) in [(b',', b'"'), (b'\t', b'\''), (0x00, 0xFF), (0xFF, 0x01)] {
            let c = Classifier::new(d, q);
            let want = naive_classes(&block, d, q);
            assert_eq!(c.classify(&block), want, "{block:?} {d} {q}");
            assert_eq!(c.classify_swar(&block), want, "{block:?} {d} {q}");
        }
    }
}

/// The classes of `block`, bit by bit: what [`Classifier::classify`] must give.
fn naive_classes(block: &[u8; 64], d: u8, q: u8) -> BlockClasses {
    let bits =
        |hit: &dyn Fn(u8) -> bool| (0..64).fold(0u64, |m, k| m | (u64::from(hit(block[k])) << k));
    BlockClasses {
        delimiters: bits(&|b| b == d),
        line_breaks: bits(&|b| b == b'\n' || b == b'\r'),
        quotes: bits(&|b| b == q),
        escapes: bits(&|b| b < 0x20 || b == b'\\'),
        non_ascii: bits(&|b| b >= 0x80),
    }
}

/// `len` bytes from `alphabet`: one in `one_in` drawn from all of it, the others from `alphabet[plain]`.
fn sparse_bytes(
    rng: &mut XorShift,
    len: usize,
    alphabet: &[u8],
    one_in: u64,
    plain: std::ops::Range<usize>,
) -> Vec<u8> {
    (0..len)
        .map(|_| {
            let state = rng.step();
            let pick = (state >> 8) as usize;
            if state % one_in == 0 {
                alphabet[pick % alphabet.len()]
            } else {
                alphabet[plain.start + pick % plain.len()]
            }
        })
        .collect()
}

#[test]
fn every_implementation_finds_the_first_structural_byte() {
    // Bytes chosen to trip borrow propagation (0x00, 0x01, 0x80, 0xFF next to the targets).
    let alphabet = [
        b',', b'\n', b'\r', b'a', 0x00, 0x01, 0x80, 0xFF, b'\t', b'"', 0x0B, 0x2D,
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15u64);
    for len in 0..150 {
        for _ in 0..25 {
            // Mostly plain bytes, so structural ones are sparse.
            let hay = sparse_bytes(&mut rng, len, &alphabet, 4, 3..alphabet.len());
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

#[test]
fn every_implementation_agrees_with_the_byte_by_byte_scan() {
    // Bytes next to the thresholds (0x1F/0x20, 0x7F/0x80) and the specials.
    let alphabet = [
        b'a', b' ', b'!', b'#', b'[', b']', 0x7F, 0x1F, 0x00, b'\n', b'"', b'\\', 0x80, 0xC3, 0xFF,
        0xA2,
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15u64);
    for len in 0..70 {
        for _ in 0..300 {
            // Mostly plain bytes, so most texts have none or one special byte.
            let text = sparse_bytes(&mut rng, len, &alphabet, 16, 0..6);
            let want = flags_scalar(&text);
            assert_eq!(text_flags(&text), want, "{text:?}");
            assert_eq!(flags_swar(&text), want, "{text:?}");
        }
    }
}

#[test]
fn each_kind_of_byte_is_classified() {
    for b in 0..=255u8 {
        for at in [0, 7, 8, 15, 16, 31, 40] {
            let mut text = vec![b'x'; 41];
            text[at] = b;
            let want = TextFlags::of_byte(b);
            assert_eq!(text_flags(&text), want, "byte {b:#04x} at {at}");
            assert_eq!(flags_swar(&text), want, "byte {b:#04x} at {at}");
        }
    }
}
