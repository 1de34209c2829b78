use super::*;

fn entries(row: &str) -> Result<Vec<(String, Scalar<'_>)>, String> {
    let mut out = Vec::new();
    for_each_entry(row.as_bytes(), |k, v| {
        out.push((k.into_owned(), v));
        Ok::<(), ()>(())
    })
    .map_err(|e| format!("{e:?}"))?;
    Ok(out)
}

#[test]
fn entries_come_in_order_with_strings_borrowed_unless_escaped() -> Result<(), String> {
    let got = entries(r#"{"a":"x","b\"":"y\n","c":-1,"d":2,"e":1.5,"f":null,"g":true,"h":[1]}"#)?;
    assert!(matches!(&got[0].1, Scalar::Str(Cow::Borrowed("x"))));
    assert_eq!(
        got[1],
        ("b\"".into(), Scalar::Str(Cow::Owned("y\n".into())))
    );
    assert_eq!(got[2].1, Scalar::I64(-1));
    assert_eq!(got[3].1, Scalar::U64(2));
    assert_eq!(got[4].1, Scalar::F64(1.5));
    assert_eq!(got[5].1, Scalar::Null);
    assert_eq!(got[6].1, Scalar::Bool(true));
    assert_eq!(got[7].1, Scalar::Other(serde_json::json!([1])));
    Ok(())
}

#[test]
fn a_row_that_is_not_one_object_is_refused() {
    for row in ["[1]", "1", "{\"a\":1} x", "{\"a\":", ""] {
        assert!(entries(row).is_err(), "{row:?}");
    }
}

#[test]
fn the_first_refused_entry_stops_the_row() {
    let mut seen = 0;
    let got = for_each_entry(br#"{"a":1,"b":2,"c":3}"#, |k, _| {
        seen += 1;
        if k == "b" {
            Err("no b")
        } else {
            Ok(())
        }
    });
    assert!(matches!(got, Err(RowError::Entry("no b"))));
    assert_eq!(seen, 2);
}

/// What a reader saw: each entry, or that the row was refused.
fn seen(
    read: impl FnOnce(&mut dyn FnMut(Cow<'_, str>, Scalar<'_>) -> Result<(), ()>) -> bool,
) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let ok = read(&mut |k, v| {
        out.push(format!("{k:?}={v:?}"));
        Ok(())
    });
    ok.then_some(out)
}

/// Rows put together from pieces that trip each branch of the fast path: escapes, numbers at the edges
/// of i64/u64, `-0`, leading zeros, fractions, literals cut short, whitespace, nesting, bad UTF-8.
fn rows() -> Vec<Vec<u8>> {
    let keys: [&[u8]; 5] = [
        br#""a""#,
        br#""b\"c""#,
        br#""""#,
        br#""\u00e9""#,
        "\"é\"".as_bytes(),
    ];
    let values: [&[u8]; 30] = [
        b"0",
        b"-0",
        b"01",
        b"-",
        b"7",
        b"-12",
        b"9223372036854775807",
        b"9223372036854775808",
        b"-9223372036854775808",
        b"-9223372036854775809",
        b"18446744073709551615",
        b"18446744073709551616",
        b"1.5",
        b"1e3",
        b"-0.0",
        b"true",
        b"false",
        b"null",
        b"tru",
        b"nul",
        b"truex",
        br#""x""#,
        br#""x\ny""#,
        b"\"x\ty\"",
        b"\"\xff\"",
        br#""""#,
        b"[1,{\"a\":null}]",
        b"{}",
        b" 1 ",
        b"1a",
    ];
    let mut state = 0x5EED_u64;
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize % n
    };
    let mut out = Vec::new();
    for _ in 0..4000 {
        let mut row = b"{".to_vec();
        for i in 0..next(4) {
            if i > 0 {
                // Mostly `,`; sometimes spaced, sometimes missing.
                row.extend_from_slice([&b","[..], b",", b",", b",", b" , ", b""][next(6)]);
            }
            row.extend_from_slice(keys[next(keys.len())]);
            row.extend_from_slice([&b":"[..], b":", b":", b" :\n"][next(4)]);
            row.extend_from_slice(values[next(values.len())]);
        }
        row.extend_from_slice([&b"}"[..], b"}", b"}", b"}", b"} ", b"}x", b""][next(7)]);
        out.push(row);
    }
    out.extend([
        b"[1]".to_vec(),
        b"1".to_vec(),
        b" {}".to_vec(),
        b"{,}".to_vec(),
        Vec::new(),
    ]);
    out
}

#[test]
fn the_fast_reader_agrees_with_serde_json() {
    let mut read = 0;
    for row in rows() {
        let fast = seen(|f| for_each_entry(&row, f).is_ok());
        let reference = seen(|f| for_each_entry_serde(&row, f).is_ok());
        assert_eq!(fast, reference, "{:?}", String::from_utf8_lossy(&row));
        read += usize::from(fast.is_some());
    }
    assert!(read > 500, "only {read} rows were valid JSON");
}
