//! Decoding object keys as S3 writes them into its notifications.

/// Why a key could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyDecodeError {
    /// A `%` not followed by two hex digits.
    #[error("bad percent escape at byte {at} of key {key:?}")]
    BadEscape {
        /// The key as received.
        key: String,
        /// Byte offset of the `%`.
        at: usize,
    },
    /// The decoded bytes are not UTF-8.
    #[error("key {key:?} does not decode to UTF-8")]
    NotUtf8 {
        /// The key as received.
        key: String,
    },
}

/// Decodes a key from an S3 → SQS/SNS/Lambda notification: `application/x-www-form-urlencoded`, so `+` is a
/// space and `%xx` is a byte (`%2B` a real `+`, `%25` a real `%`, multi-byte UTF-8 as several escapes).
pub fn form_decode(key: &str) -> Result<String, KeyDecodeError> {
    decode(key, true)
}

/// Decodes `%xx` escapes only (`+` stays `+`): RFC 3986 percent-encoding.
pub fn percent_decode(key: &str) -> Result<String, KeyDecodeError> {
    decode(key, false)
}

fn decode(key: &str, plus_is_space: bool) -> Result<String, KeyDecodeError> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| hex(*b));
                let lo = bytes.get(i + 2).and_then(|b| hex(*b));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => {
                        return Err(KeyDecodeError::BadEscape {
                            key: key.to_owned(),
                            at: i,
                        })
                    }
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| KeyDecodeError::NotUtf8 {
        key: key.to_owned(),
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_turns_plus_into_space_and_escapes_into_bytes() {
        let cases = [
            ("in/plain.csv", "in/plain.csv"),
            ("in/red+flower.csv", "in/red flower.csv"),
            ("in/a%2Bb.csv", "in/a+b.csv"),
            ("in/100%25.csv", "in/100%.csv"),
            ("in/caf%C3%A9+%E6%97%A5%E6%9C%AC.csv", "in/café 日本.csv"),
            ("in/x%3Dy%3A1.csv", "in/x=y:1.csv"),
        ];
        for (encoded, key) in cases {
            assert_eq!(form_decode(encoded).as_deref(), Ok(key), "{encoded}");
        }
    }

    #[test]
    fn percent_decoding_keeps_plus() {
        assert_eq!(percent_decode("a+b%20c.csv").as_deref(), Ok("a+b c.csv"));
    }

    #[test]
    fn bad_escapes_and_bad_utf8_are_errors() {
        assert_eq!(
            form_decode("in/100%.csv"),
            Err(KeyDecodeError::BadEscape {
                key: "in/100%.csv".into(),
                at: 6
            })
        );
        assert!(matches!(
            form_decode("in/%4"),
            Err(KeyDecodeError::BadEscape { .. })
        ));
        assert!(matches!(
            form_decode("in/%ZZ"),
            Err(KeyDecodeError::BadEscape { .. })
        ));
        assert!(matches!(
            form_decode("in/%C3.csv"),
            Err(KeyDecodeError::NotUtf8 { .. })
        ));
    }
}
