//! The few pieces of Go's standard library whose exact behaviour Kargo users
//! can see: `strconv.ParseFloat`, `strconv.ParseBool`, `strconv.Atoi`,
//! `strconv.Quote` (`%q`), float formatting by `fmt` (`%v`) and by
//! `encoding/json`, and JSON string escaping.

/// `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `strconv.Atoi`: an optional sign and decimal digits, nothing else.
pub(crate) fn atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

/// `strconv.ParseFloat(s, 64)`: decimal and hexadecimal (`0x1p-2`) floats,
/// `_` between digits, `inf`/`infinity`/`nan` in any case (a sign only
/// before the infinities). Overflow is an error, as in Go; underflow is 0.
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    if let Some(f) = special_float(s) {
        return Some(f);
    }
    let text = if s.contains('_') {
        if !underscore_ok(s) {
            return None;
        }
        s.replace('_', "")
    } else {
        s.to_string()
    };
    let (negative, body) = match text.as_bytes().first() {
        Some(b'+') => (false, &text[1..]),
        Some(b'-') => (true, &text[1..]),
        _ => (false, text.as_str()),
    };
    let value = if body.len() > 2 && (body.starts_with("0x") || body.starts_with("0X")) {
        parse_hex_float(&body[2..])?
    } else {
        if !is_decimal_float(body) {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    if value.is_infinite() {
        return None;
    }
    Some(if negative { -value } else { value })
}

fn special_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// digits [. digits] [e [sign] digits], or . digits [...]; at least one
/// mantissa digit.
fn is_decimal_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let mut mantissa_digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        mantissa_digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            mantissa_digits += 1;
        }
    }
    if mantissa_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

/// The part after `0x`: hex mantissa with optional `.`, then a required
/// `p` exponent.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mantissa, exponent) = s.split_once(['p', 'P'])?;
    let exp: i32 = {
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        exponent
            .parse::<i32>()
            .unwrap_or(if exponent.starts_with('-') {
                i32::MIN / 2
            } else {
                i32::MAX / 2
            })
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut value = 0f64;
    for c in int_part.chars().chain(frac_part.chars()) {
        value = value * 16.0 + f64::from(c.to_digit(16)?);
    }
    let shift = exp.saturating_sub((frac_part.len() as i32).saturating_mul(4));
    Some(value * 2f64.powi(shift))
}

/// Go's rule for `_` in numbers: only between digits (or after a base
/// prefix).
fn underscore_ok(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let b = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// Shortest round-trip mantissa and decimal exponent of a finite, non-zero
/// float's magnitude: `("1.5", 2)` for 150.0.
fn shortest_exp(f: f64) -> (String, i32) {
    // `{:e}` gives the shortest round-trip digits: "1.5e2", "-1e-7".
    let s = format!("{:e}", f.abs());
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    (mantissa.to_string(), exp.parse().unwrap_or(0))
}

/// Go's exponent notation for shortest digits: `1.5e+06`, `1e-07`.
fn go_exponent_form(f: f64) -> String {
    let (mantissa, exp) = shortest_exp(f);
    let sign = if f.is_sign_negative() { "-" } else { "" };
    let exp_sign = if exp < 0 { '-' } else { '+' };
    format!("{sign}{mantissa}e{exp_sign}{:02}", exp.unsigned_abs())
}

/// A float as `fmt` prints it with `%v` (what `string(x)` gives): `%g` with
/// the shortest digits, which uses the exponent form when the decimal
/// exponent is < -4 or >= 6 (`1e+06`, `1.234567e+06`, `1e-05`).
pub(crate) fn format_float_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let (_, exp) = shortest_exp(f);
    if !(-4..6).contains(&exp) {
        go_exponent_form(f)
    } else {
        format!("{f}")
    }
}

/// A float as `encoding/json` writes it: fixed notation unless the
/// magnitude is < 1e-6 or >= 1e21, then `1e+21`, `1e-7`. Non-finite floats
/// cannot be written (`None`).
pub(crate) fn format_float_json(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = go_exponent_form(f);
        // Go cleans up e-09 to e-9 (only for negative exponents).
        Some(match s.find("e-0") {
            Some(i) if s.len() == i + 4 => format!("{}e-{}", &s[..i], &s[i + 3..]),
            _ => s,
        })
    } else {
        Some(format!("{f}"))
    }
}

/// The error text Go's `encoding/json` gives for a non-finite float.
pub(crate) fn unsupported_float(f: f64) -> String {
    let v = if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    };
    format!("json: unsupported value: {v}")
}

/// Appends `s` as a JSON string the way `encoding/json` does: with HTML
/// characters (`<`, `>`, `&`) and U+2028/U+2029 escaped. Runs of plain
/// characters are copied in one go.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut plain_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let line_separator = b == 0xE2
            && bytes.get(i + 1) == Some(&0x80)
            && matches!(bytes.get(i + 2), Some(0xA8 | 0xA9));
        let special = b < 0x20 || matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&') || line_separator;
        if !special {
            i += 1;
            continue;
        }
        out.push_str(&s[plain_from..i]);
        let width = if line_separator { 3 } else { 1 };
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ if line_separator => {
                out.push_str(if bytes[i + 2] == 0xA8 {
                    "\\u2028"
                } else {
                    "\\u2029"
                });
            }
            _ => out.push_str(&format!("\\u{:04x}", b)),
        }
        i += width;
        plain_from = i;
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

/// Whether Go's `strconv.IsPrint` holds, approximately: not a control
/// character, not a space other than U+0020, and not one of the invisible
/// formatting characters.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xE000..=0xF8FF | 0xFFFE | 0xFFFF | 0xF0000..=0x10FFFF)
}

/// `strconv.Quote` (Go's `%q` of a string).
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_print(c) => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_float_accepts_what_go_accepts() {
        assert_eq!(parse_float("12"), Some(12.0));
        assert_eq!(parse_float("-1.5e3"), Some(-1500.0));
        assert_eq!(parse_float(".5"), Some(0.5));
        assert_eq!(parse_float("5."), Some(5.0));
        assert_eq!(parse_float("1_000"), Some(1000.0));
        assert_eq!(parse_float("0x1p-2"), Some(0.25));
        assert_eq!(parse_float("+Inf"), Some(f64::INFINITY));
        assert!(parse_float("NaN").is_some_and(f64::is_nan));
    }

    #[test]
    fn parse_float_rejects_what_go_rejects() {
        for s in [
            "", " 1", "1 ", "1e", "e1", "1_", "_1", "0x10", "+nan", "1e400", "abc", "1.2.3", ".",
        ] {
            assert_eq!(parse_float(s), None, "{s:?}");
        }
    }

    #[test]
    fn float_v_formatting_switches_to_exponent_like_go() {
        assert_eq!(format_float_v(3.0), "3");
        assert_eq!(format_float_v(1.5), "1.5");
        assert_eq!(format_float_v(123456.0), "123456");
        assert_eq!(format_float_v(1234567.0), "1.234567e+06");
        assert_eq!(format_float_v(1e21), "1e+21");
        assert_eq!(format_float_v(0.0001), "0.0001");
        assert_eq!(format_float_v(0.00001), "1e-05");
    }

    #[test]
    fn float_json_formatting_matches_encoding_json() {
        assert_eq!(format_float_json(3.0).as_deref(), Some("3"));
        assert_eq!(format_float_json(1e21).as_deref(), Some("1e+21"));
        assert_eq!(format_float_json(1e-7).as_deref(), Some("1e-7"));
        assert_eq!(format_float_json(1.5e-10).as_deref(), Some("1.5e-10"));
        assert_eq!(format_float_json(0.000001).as_deref(), Some("0.000001"));
        assert_eq!(format_float_json(f64::NAN), None);
    }

    #[test]
    fn quote_escapes_like_strconv_quote() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(quote("é\u{1}"), "\"é\\x01\"");
    }

    #[test]
    fn json_strings_escape_html_like_go() {
        let mut s = String::new();
        push_json_string(&mut s, "<a&b>\u{2028}é\n\u{1}");
        assert_eq!(s, r#""\u003ca\u0026b\u003e\u2028é\n\u0001""#);
    }
}
