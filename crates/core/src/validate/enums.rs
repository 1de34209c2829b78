//! Enum fields: the declared values, matched (exactly or ignoring case) and written in their declared
//! spelling. Short ASCII values are packed into words and found with one probe of a collision-free hash.

use super::write::put_bytes;
use super::Fail;
use crate::bytes::load_short;
use crate::json_out::Out;
use crate::ErrorCode;

/// The packed words of an enum's short ASCII values (see [`EnumValue::word`]) in a table indexed by a
/// multiplicative hash, its multiplier chosen when the template is compiled so that no two words share a
/// slot: a text's word is then found, or found missing, with one multiplication and one compare, whatever the
/// number of values. Comparing with every value in turn made a chain of dependent selections per row.
#[derive(Debug)]
pub(super) struct WordIndex {
    multiplier: u64,
    /// 64 minus the log2 of the table size.
    shift: u32,
    /// A word and the index of its value; word 0 is an empty slot (no packed word is 0: its length byte is
    /// not).
    slots: Box<[(u64, usize)]>,
}

impl WordIndex {
    /// Words indexed at most; an enum with more is searched value by value.
    const MAX_WORDS: usize = 16;
    /// Log2 of the table size: 64 slots for at most 16 words, so that a multiplier without collisions is
    /// found within a few tries.
    const BITS: u32 = 6;

    /// `None` when more than [`WordIndex::MAX_WORDS`] values have a word (or, in theory, when no multiplier
    /// tried separates them).
    pub(super) fn new(values: &[EnumValue]) -> Option<Self> {
        let mut words: Vec<(u64, usize)> = Vec::new();
        for (i, v) in values.iter().enumerate() {
            // The first value of a word is the one found (the template parser rejects duplicates anyway).
            if let Some(w) = v.word.filter(|w| !words.iter().any(|&(x, _)| x == *w)) {
                words.push((w, i));
            }
        }
        if words.len() > Self::MAX_WORDS {
            return None;
        }
        let shift = 64 - Self::BITS;
        // Candidate multipliers from a fixed sequence (splitmix64), so a template always compiles the same.
        let mut state = 0u64;
        for _ in 0..10_000 {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let multiplier = (z ^ (z >> 31)) | 1;
            let mut slots = vec![(0u64, 0usize); 1 << Self::BITS].into_boxed_slice();
            let separated = words.iter().all(|&(w, i)| {
                match slots.get_mut((w.wrapping_mul(multiplier) >> shift) as usize) {
                    Some(slot) if slot.0 == 0 => {
                        *slot = (w, i);
                        true
                    }
                    _ => false,
                }
            });
            if separated {
                return Some(Self {
                    multiplier,
                    shift,
                    slots,
                });
            }
        }
        None
    }

    /// The index of the value whose word is `w` (not 0).
    #[inline(always)]
    fn find(&self, w: u64) -> Option<usize> {
        let slot = self
            .slots
            .get((w.wrapping_mul(self.multiplier) >> self.shift) as usize)?;
        (slot.0 == w).then_some(slot.1)
    }
}

#[derive(Debug)]
pub(super) struct EnumValue {
    pub(super) text: Box<str>,
    /// Short ASCII values (up to 8 bytes) packed into a word, lowercased when matching ignores case: a
    /// match is then one compare.
    pub(super) word: Option<u64>,
    /// The declared spelling as a JSON string literal.
    pub(super) json: Box<[u8]>,
}

/// Writes the declared spelling of the enum value `text` matches.
#[inline(never)]
pub(super) fn write_enum(
    out: &mut Out<'_>,
    text: &[u8],
    values: &[EnumValue],
    index: Option<&WordIndex>,
    case_insensitive: bool,
) -> Result<(), Fail> {
    let found = match short_word(text) {
        Some(w) => {
            let w = if case_insensitive { ascii_lower(w) } else { w };
            let by_word = match index {
                Some(index) => index.find(w).and_then(|i| values.get(i)),
                None => values.iter().find(|v| v.word == Some(w)),
            };
            by_word.or_else(|| {
                // A non-ASCII value may still equal a short text ignoring case (`ǅ` and `ǆ`).
                values.iter().find(|v| {
                    v.word.is_none() && case_insensitive && eq_ignore_case(v.text.as_bytes(), text)
                })
            })
        }
        None if case_insensitive => values
            .iter()
            .find(|v| eq_ignore_case(v.text.as_bytes(), text)),
        None => values.iter().find(|v| v.text.as_bytes() == text),
    };
    match found {
        Some(v) => {
            put_bytes(out, &v.json);
            Ok(())
        }
        None => Err(Fail::new(
            ErrorCode::InvalidEnum,
            enum_message(values, case_insensitive),
        )),
    }
}

fn enum_message(values: &[EnumValue], case_insensitive: bool) -> String {
    const SHOWN: usize = 20;
    let mut m = String::from("expected one of ");
    for (i, v) in values.iter().take(SHOWN).enumerate() {
        if i > 0 {
            m.push_str(", ");
        }
        m.push('`');
        m.push_str(&v.text);
        m.push('`');
    }
    if values.len() > SHOWN {
        m.push_str(&format!(" and {} more", values.len() - SHOWN));
    }
    if case_insensitive {
        m.push_str(" (any case)");
    }
    m
}

/// An ASCII text of 1 to 7 bytes packed into a word, its length in the top byte (so `a` and `a\0` differ).
pub(super) fn short_word(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 7 || !text.is_ascii() {
        return None;
    }
    Some(load_short(text) | ((text.len() as u64) << 56))
}

/// Lowercases the ASCII letters of a packed word.
pub(super) fn ascii_lower(w: u64) -> u64 {
    let b = w.to_le_bytes();
    let mut out = [0u8; 8];
    for (o, c) in out.iter_mut().zip(b) {
        *o = c.to_ascii_lowercase();
    }
    // The length byte (at most 7) is not a letter and stays as is.
    u64::from_le_bytes(out)
}

fn eq_ignore_case(declared: &[u8], text: &[u8]) -> bool {
    if declared.is_ascii() && text.is_ascii() {
        return declared.eq_ignore_ascii_case(text);
    }
    match (std::str::from_utf8(declared), std::str::from_utf8(text)) {
        (Ok(a), Ok(b)) => a
            .chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::compile::json_string_literal;

    /// Sets of 0 to 16 short words (random, and close to each other): each is found at its value, other words
    /// are not; a word listed twice finds its first value; more than 16 get no index.
    #[test]
    fn word_index_finds_exactly_the_values_words() {
        let value = |text: &str| EnumValue {
            text: text.into(),
            word: short_word(text.as_bytes()),
            json: json_string_literal(text).into_boxed_slice(),
        };
        let mut rng = crate::test_rng::XorShift(0x1234_5678_9ABC_DEF1u64);
        for round in 0..400 {
            let n = round % 17;
            let texts: Vec<String> = (0..n)
                .map(|i| match round % 3 {
                    0 => format!("V{i}"),
                    1 => format!("{:x}", rng.step() % 0xFFF_FFFF),
                    _ => ["US", "GB", "FR", "DE", "JP", "BR", "IN", "CA", "us", "gb"][i % 10]
                        .repeat(1 + i / 10),
                })
                .collect();
            let values: Vec<EnumValue> = texts.iter().map(|t| value(t)).collect();
            let index = WordIndex::new(&values).expect("16 words or fewer are indexed");
            for (i, t) in texts.iter().enumerate() {
                let first = texts.iter().position(|x| x == t).expect("listed");
                assert_eq!(
                    index.find(short_word(t.as_bytes()).expect("short")),
                    Some(first),
                    "{t}"
                );
                assert!(first <= i);
            }
            for other in ["V99", "zz", "USA", "U", "g", "0", "fffffff"] {
                if !texts.iter().any(|t| t == other) {
                    assert_eq!(
                        index.find(short_word(other.as_bytes()).expect("short")),
                        None,
                        "{other}"
                    );
                }
            }
        }
        let twice: Vec<EnumValue> = ["a", "b", "a"].into_iter().map(value).collect();
        let index = WordIndex::new(&twice).expect("indexed");
        assert_eq!(index.find(short_word(b"a").expect("short")), Some(0));
        let many: Vec<EnumValue> = (0..17).map(|i| value(&format!("V{i}"))).collect();
        assert!(WordIndex::new(&many).is_none());
    }
}
