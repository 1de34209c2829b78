use super::*;

fn numeric(text: &str) -> Result<Vec<i16>, String> {
    let mut out = Vec::new();
    push_numeric(text, &mut out)?;
    Ok(out
        .chunks(2)
        .map(|c| i16::from_be_bytes([c[0], c[1]]))
        .collect())
}

#[test]
fn decimals_become_base_10000_digits_with_weight_sign_and_scale() -> Result<(), String> {
    // ndigits, weight, sign, dscale, digits…
    let cases: [(&str, &[i16]); 8] = [
        ("12345.678", &[3, 1, 0, 3, 1, 2345, 6780]),
        ("-0.5", &[1, -1, 0x4000, 1, 5000]),
        ("100000000", &[1, 2, 0, 0, 1]),
        ("0.00", &[0, 0, 0, 2]),
        ("-0", &[0, 0, 0, 0]),
        ("+007.10", &[2, 0, 0, 2, 7, 1000]),
        ("0.00012", &[2, -1, 0, 5, 1, 2000]),
        ("1234567890.10", &[4, 2, 0, 2, 12, 3456, 7890, 1000]),
    ];
    for (text, want) in cases {
        assert_eq!(numeric(text)?, want, "{text}");
    }
    for bad in ["", "-", ".", "1e5", "1.2.3", "12a", " 1"] {
        assert!(numeric(bad).is_err(), "{bad:?} accepted");
    }
    Ok(())
}

#[test]
fn timestamps_count_microseconds_from_2000() -> Result<(), String> {
    assert_eq!(timestamp_micros("2000-01-01T00:00:00Z")?, 0);
    assert_eq!(timestamp_micros("2000-01-01T02:00:00.0000015+02:00")?, 2);
    assert_eq!(timestamp_micros("1999-12-31T23:59:59Z")?, -1_000_000);
    assert!(timestamp_micros("2024-01-01").is_err());
    Ok(())
}

fn template(toml: &str) -> Result<Template, String> {
    Template::from_toml(toml).map_err(|e| e.to_string())
}

const TYPES: &str = "name = \"t\"\n\
    [[fields]]\nname = \"s\"\ntype = \"string\"\n\
    [[fields]]\nname = \"n\"\ntype = \"integer\"\n\
    [[fields]]\nname = \"ok\"\ntype = \"boolean\"\n\
    [[fields]]\nname = \"day\"\ntype = \"date\"\n\
    [[fields]]\nname = \"doc\"\ntype = \"json\"\n";

#[test]
fn a_row_becomes_one_tuple_in_template_order_whatever_its_key_order() -> Result<(), String> {
    let encoder = RowEncoder::new(&template(TYPES)?);
    let mut out = Vec::new();
    encoder
        .encode(
            9,
            br#"{"doc":{"a":[1]},"extra":1,"day":"2000-01-02","n":-3,"s":"a\"b","ok":true}
"#,
            &mut out,
        )
        .map_err(|e| e.to_string())?;
    let mut want = Vec::new();
    want.extend_from_slice(&6i16.to_be_bytes());
    want.extend_from_slice(&8i32.to_be_bytes());
    want.extend_from_slice(&9i64.to_be_bytes());
    want.extend_from_slice(&3i32.to_be_bytes());
    want.extend_from_slice(b"a\"b");
    want.extend_from_slice(&8i32.to_be_bytes());
    want.extend_from_slice(&(-3i64).to_be_bytes());
    want.extend_from_slice(&1i32.to_be_bytes());
    want.push(1);
    want.extend_from_slice(&4i32.to_be_bytes());
    want.extend_from_slice(&1i32.to_be_bytes());
    want.extend_from_slice(&10i32.to_be_bytes());
    want.push(1);
    want.extend_from_slice(br#"{"a":[1]}"#);
    assert_eq!(out, want);
    Ok(())
}

#[test]
fn missing_keys_and_nulls_are_null_and_a_wrong_form_names_record_and_column() -> Result<(), String>
{
    let encoder = RowEncoder::new(&template(TYPES)?);
    let mut out = Vec::new();
    encoder
        .encode(1, br#"{"s":null}"#, &mut out)
        .map_err(|e| e.to_string())?;
    let mut want = 6i16.to_be_bytes().to_vec();
    want.extend_from_slice(&8i32.to_be_bytes());
    want.extend_from_slice(&1i64.to_be_bytes());
    for _ in 0..5 {
        want.extend_from_slice(&(-1i32).to_be_bytes());
    }
    assert_eq!(out, want);
    let err = encoder
        .encode(4, br#"{"n":"not a number"}"#, &mut Vec::new())
        .err()
        .ok_or("accepted")?;
    assert_eq!((err.record, err.column.as_str()), (4, "n"));
    assert!(!err.to_string().contains("not a number"), "{err}");
    assert!(encoder.encode(5, b"[1]", &mut Vec::new()).is_err());
    Ok(())
}
